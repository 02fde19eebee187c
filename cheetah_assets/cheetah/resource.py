"""The Dagster resource giving assets a :class:`~.client.CheetahClient`.

Its fields are derived from :class:`~.settings.CheetahSettings`: one field per setting, with the
setting's description, default and environment variable. The account's ids and credentials are
strings here (Dagster resolves ``EnvVar`` to strings); the settings parse and validate them when a
client is made.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import dagster as dg
from pydantic import Field, SecretStr, create_model

from .client import CheetahClient
from .settings import ENV_VARS, CheetahSettings, account_settings

__all__ = ["CheetahMessagingResource", "ENV_VARS", "TEST_ADDRESS_VAR"]

#: The optional address the send-path set-up check imports (see ``sending/setup.py``).
TEST_ADDRESS_VAR = "CHEETAH_TEST_ADDRESS"


def _resource_field(name: str, info, env: str | None) -> tuple[type, Any]:
    """The resource's field for setting ``name``: a string for account settings (they may come
    from environment variables), the setting's own type and default for the tuning ones."""
    secret = info.annotation is SecretStr
    description = _one_line(info.description)
    if env is None:
        return info.annotation, Field(default=info.default, description=description)
    where = f"Secret: set it with EnvVar {env}." if secret else f"Environment: {env}."
    return str, Field(description=f"{description} {where}", repr=not secret)


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())


_SettingsFields = create_model(
    "_SettingsFields",
    __base__=dg.ConfigurableResource,
    **{name: _resource_field(name, info, setting.env) for name, info, setting in account_settings()},
)


class CheetahMessagingResource(_SettingsFields):
    """Access to one Cheetah Messaging account (one consumer key) through its REST API.

    Configure every account field from the environment with :meth:`from_env` (``dg.EnvVar``):
    Dagster then resolves the values when a run starts and shows only the variable names in the
    UI and in run config. Never pass the consumer key or secret as literal strings. Values are
    validated when a client is made (:meth:`get_client`): a missing or malformed setting raises
    ``ConfigurationError`` naming it, and the endpoint must be ``https://`` (plain ``http://``
    only to a loopback address, for the simulator). The fields are those of
    :class:`~.settings.CheetahSettings` (endpoint, ids, credentials, timeouts, retries, token
    renewal, import polling), plus ``require_https`` and ``test_address``.

    Use ``with cheetah.get_client(context.log) as client: ...`` in an asset.
    """

    require_https: bool = Field(
        default=False, description=_one_line(CheetahSettings.model_fields["require_https"].description)
    )
    test_address: str = Field(
        default="",
        description=(
            "An address of your own for the send-path set-up check: it is imported into a one-row list "
            "and a campaign is created on it and deleted, never launched, so it is never mailed. "
            f"Environment: {TEST_ADDRESS_VAR} (optional; without it that check is skipped, with a warning)."
        ),
    )

    def settings(self) -> CheetahSettings:
        """The validated settings (``ConfigurationError`` naming any bad one)."""
        return CheetahSettings(**{name: getattr(self, name) for name in CheetahSettings.model_fields})

    def get_client(self, logger: logging.Logger | None = None) -> CheetahClient:
        """A new, plain client (close it, or use it as a context manager)."""
        return CheetahClient(self.settings(), logger=logger)

    @classmethod
    def from_env(cls) -> "CheetahMessagingResource":
        """Every account setting from its environment variable (see ``ENV_VARS``), https only.

        ``CHEETAH_TEST_ADDRESS`` is optional: it is read (as an ``EnvVar``) only if it is set now."""
        extra = {"test_address": dg.EnvVar(TEST_ADDRESS_VAR)} if os.environ.get(TEST_ADDRESS_VAR) else {}
        return cls(**{field: dg.EnvVar(var) for field, var in ENV_VARS.items()}, require_https=True, **extra)
