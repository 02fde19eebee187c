"""The Dagster resource giving assets a :class:`~.client.CheetahClient`."""

from __future__ import annotations

import logging
import os

import dagster as dg
from pydantic import Field

from .client import CheetahClient, CheetahSettings

#: resource field -> environment variable read by :meth:`CheetahMessagingResource.from_env`
ENV_VARS = {
    "endpoint": "CHEETAH_ENDPOINT",
    "cust_id": "CHEETAH_CUST_ID",
    "folder_id": "CHEETAH_FOLDER_ID",
    "prop_map_id": "CHEETAH_PROP_MAP_ID",
    "consumer_key": "CHEETAH_CONSUMER_KEY",
    "consumer_secret": "CHEETAH_CONSUMER_SECRET",
    "client_id": "CHEETAH_CLIENT_ID",
}
#: The optional address the send-path set-up check imports (see ``sending/setup.py``).
TEST_ADDRESS_VAR = "CHEETAH_TEST_ADDRESS"


class CheetahMessagingResource(dg.ConfigurableResource):
    """Access to one Cheetah Messaging account (one consumer key) through its REST API.

    Configure every field from the environment with :meth:`from_env` (``dg.EnvVar``): Dagster
    then resolves the values when a run starts and shows only the variable names in the UI and in
    run config. Never pass the consumer key or secret as literal strings. Values are validated
    when a client is made (:meth:`get_client`): a missing or malformed setting raises
    ``ConfigurationError`` naming it, and the endpoint must be ``https://`` (plain ``http://``
    only to a loopback address, for the simulator). The IDs are strings so that they can come
    from environment variables; they must hold whole numbers.

    Use ``with cheetah.get_client(context.log) as client: ...`` in an asset.
    """

    endpoint: str = Field(
        description=(
            "API endpoint URL of the account's region (set-up step 6), e.g. https://api.example.com, "
            "without /services2. Environment: CHEETAH_ENDPOINT."
        )
    )
    cust_id: str = Field(description="Cust_ID: the account's customer id (a whole number). Environment: CHEETAH_CUST_ID.")
    folder_id: str = Field(
        description=(
            "Folder ID of the folder (e.g. 'Optimove') holding the email templates, where campaigns "
            "are created. Environment: CHEETAH_FOLDER_ID."
        )
    )
    prop_map_id: str = Field(
        description=(
            "PROP_MAP_ID: id of the Data Map whose field names head the recipient import files. "
            "Environment: CHEETAH_PROP_MAP_ID."
        )
    )
    consumer_key: str = Field(
        repr=False,
        description="Consumer Key of the API user (OAuth username). Secret: set it with EnvVar CHEETAH_CONSUMER_KEY.",
    )
    consumer_secret: str = Field(
        repr=False,
        description="Consumer Secret of the API user (OAuth password). Secret: set it with EnvVar CHEETAH_CONSUMER_SECRET.",
    )
    client_id: str = Field(
        repr=False,
        description="Client Identifier of the API client (OAuth client_id). Environment: CHEETAH_CLIENT_ID.",
    )
    timeout_seconds: float = Field(
        default=30.0, description="Seconds to wait for each API reply before it counts as lost."
    )
    max_retries: int = Field(
        default=5,
        description=(
            "Retries of a call after a 429, a 5xx or a lost connection (the last two only for calls safe to "
            "repeat; creating a campaign is not)."
        ),
    )
    backoff_factor: float = Field(
        default=0.5, description="Exponential backoff between retries: factor x 2^(retry-1) seconds, plus jitter."
    )
    import_poll_interval_seconds: float = Field(
        default=2.0, description="Seconds between polls of a queued recipient import."
    )
    import_timeout_seconds: float = Field(
        default=1800.0, description="Seconds to wait for a recipient import to complete before failing."
    )
    require_https: bool = Field(
        default=False,
        description=(
            "Refuse a plain http:// endpoint even on loopback. A deployment (from_env) sets it: plain HTTP is "
            "only ever for the simulator, which the demo reaches with its own demo credentials."
        ),
    )
    test_address: str = Field(
        default="",
        description=(
            "An address of your own for the send-path set-up check: it is imported into a one-row list "
            "and a campaign is created on it and deleted, never launched, so it is never mailed. "
            "Environment: CHEETAH_TEST_ADDRESS (optional; without it that check is skipped, with a warning)."
        ),
    )

    def settings(self) -> CheetahSettings:
        """The validated settings (``ConfigurationError`` naming any bad one)."""
        return CheetahSettings.from_raw(
            endpoint=self.endpoint,
            cust_id=self.cust_id,
            folder_id=self.folder_id,
            prop_map_id=self.prop_map_id,
            consumer_key=self.consumer_key,
            consumer_secret=self.consumer_secret,
            client_id=self.client_id,
            timeout_seconds=self.timeout_seconds,
            max_retries=self.max_retries,
            backoff_factor=self.backoff_factor,
            import_poll_interval_seconds=self.import_poll_interval_seconds,
            import_timeout_seconds=self.import_timeout_seconds,
            require_https=self.require_https,
        )

    def get_client(self, logger: logging.Logger | None = None) -> CheetahClient:
        """A new client (close it, or use it as a context manager)."""
        return CheetahClient(self.settings(), logger=logger)

    @classmethod
    def from_env(cls) -> "CheetahMessagingResource":
        """Every account setting from its environment variable (see ``ENV_VARS``), https only.

        ``CHEETAH_TEST_ADDRESS`` is optional: it is read (as an ``EnvVar``) only if it is set now."""
        extra = {"test_address": dg.EnvVar(TEST_ADDRESS_VAR)} if os.environ.get(TEST_ADDRESS_VAR) else {}
        return cls(**{field: dg.EnvVar(var) for field, var in ENV_VARS.items()}, require_https=True, **extra)
