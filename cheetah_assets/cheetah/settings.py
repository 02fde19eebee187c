"""The settings of one Cheetah Messaging account: the one place they are defined.

:class:`CheetahSettings` is a pydantic model. Each field carries, besides its type, default and
bounds, a :class:`Setting` with its label in the seed guide, the environment variable a
deployment sets, the value in the simulator's demo account and one line for the README. From
those come every setting's name in messages (:func:`setting_label`), the deployment's variables
(:data:`ENV_VARS`), the demo account (:func:`demo_account`), the Dagster resource's fields
(``resource.py``) and the README's table (checked by ``test_settings.py``).

Credentials are :class:`~pydantic.SecretStr`: no repr, str or dump shows them. Every problem is a
:class:`ConfigurationError` (:class:`InsecureEndpoint` for plain HTTP) whose one sentence names
the setting; nothing here imports Dagster or makes a network call.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from typing import Annotated, Any, Iterator

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from .errors import ConfigurationError, InsecureEndpoint
from .ids import ObjId

__all__ = [
    "CheetahSettings", "Setting", "ENV_VARS", "demo_account", "is_loopback_host", "setting_label",
    "setting_of", "account_settings", "setting_problems",
]


@dataclass(frozen=True)
class Setting:
    """What a field of :class:`CheetahSettings` is called, and where its value comes from."""

    #: its name in the seed guide ("Cust_ID"): every message names the setting by it
    label: str
    #: the variable a deployment sets it with; None for the tuning settings (resource config only)
    env: str | None = None
    #: its value in the simulator's demo account (``CHEETAH_DEMO=1``); None when it has none
    demo: str | None = None
    #: one line for the README's table of variables (set-up step 6 of the integration guide)
    meaning: str = ""


#: the kinds of value, by how they are parsed
_URL, _ID, _OPAQUE_ID, _CREDENTIAL, _NUMBER = "url", "id", "opaque id", "credential", "number"


class CheetahSettings(BaseModel):
    """Validated settings of one Cheetah Messaging account (one consumer key).

    Construct it with keyword arguments, as strings (environment, Dagster config) or typed
    values; :meth:`from_raw` is the same and says so. Empty or blank values count as unset; every
    missing required setting is named in one message; an unknown one is a ``TypeError``. The
    repr shows the endpoint and the ids, never the credentials. Each field's description is the
    docstring under it (``use_attribute_docstrings``). Cust_ID is a positive whole number (the
    campaign body's ``CustId``); Folder ID and PROP_MAP_ID are opaque ids (the contract's
    "Conventions"): kept as given, stripped, a plain decimal number as the int it always was (so it
    is sent as the JSON number it always was), any other text ("004242", "OPT-1") as that string.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True, use_attribute_docstrings=True)

    # first: the endpoint's validation reads it
    require_https: bool = False
    """Refuse a plain http:// endpoint even on loopback. A deployment (from_env) sets it: plain HTTP is
    only ever for the simulator, which the demo reaches with its own demo credentials."""

    # --- the account: required, each from its environment variable in a deployment -------------
    endpoint: Annotated[str, Setting(
        label="API endpoint URL", env="CHEETAH_ENDPOINT", meaning="API endpoint URL (`https://…` only)",
    )]
    """API endpoint URL of the account's region (set-up step 6), e.g. https://api.example.com, without
    /services2."""
    cust_id: Annotated[int, Field(gt=0), Setting(
        label="Cust_ID", env="CHEETAH_CUST_ID", demo="1234", meaning="Cust_ID",
    )]
    """Cust_ID: the account's customer id (a whole number)."""
    folder_id: Annotated[ObjId, Setting(
        label="Folder ID", env="CHEETAH_FOLDER_ID", demo="4242", meaning='Folder ID of the "Optimove" folder',
    )]
    """Folder ID of the folder (e.g. 'Optimove') holding the email templates, where campaigns are
    created (opaque: kept as given)."""
    prop_map_id: Annotated[ObjId, Setting(
        label="PROP_MAP_ID", env="CHEETAH_PROP_MAP_ID", demo="77", meaning="PROP_MAP_ID (the Data Map)",
    )]
    """PROP_MAP_ID: id of the Data Map whose field names head the recipient import files (opaque: kept
    as given)."""
    consumer_key: Annotated[SecretStr, Setting(
        label="Consumer Key", env="CHEETAH_CONSUMER_KEY", demo="demo-consumer-key",
        meaning="API access credentials: Consumer Key",
    )]
    """Consumer Key of the API user (OAuth username)."""
    consumer_secret: Annotated[SecretStr, Setting(
        label="Consumer Secret", env="CHEETAH_CONSUMER_SECRET", demo="demo-consumer-secret",
        meaning="API access credentials: Consumer Secret",
    )]
    """Consumer Secret of the API user (OAuth password)."""
    client_id: Annotated[SecretStr, Setting(
        label="Client Identifier", env="CHEETAH_CLIENT_ID", demo="demo-client-id",
        meaning="API access credentials: Client Identifier",
    )]
    """Client Identifier of the API client (OAuth client_id)."""

    # --- tuning: optional, resource config only ---------------------------------------------------
    timeout_seconds: Annotated[float, Field(gt=0), Setting(label="Request timeout")] = 30.0
    """Seconds to wait for each API reply before it counts as lost."""
    connect_timeout_seconds: Annotated[float, Field(gt=0), Setting(label="Connect timeout")] = 5.0
    """Seconds to wait for a connection to the API before it counts as failed."""
    max_retries: Annotated[int, Field(ge=0), Setting(label="Retry limit")] = 5
    """Retries of a call after a 429, a 5xx or a lost connection (the last two only for calls safe to
    repeat; creating a campaign is not)."""
    backoff_factor: Annotated[float, Field(ge=0), Setting(label="Retry backoff factor")] = 0.5
    """Exponential backoff between retries: factor x 2^(retry-1) seconds, plus jitter."""
    backoff_max_seconds: Annotated[float, Field(ge=0), Setting(label="Longest retry backoff")] = 30.0
    """Longest wait between two retries, in seconds (the backoff stops growing there)."""
    token_renew_margin_seconds: Annotated[float, Field(ge=0), Setting(label="Token renewal margin")] = 300.0
    """Seconds before its expiry that the access token is renewed (at most half its lifetime ahead, so a
    short-lived token still works)."""
    max_requests_per_second: Annotated[float, Field(ge=0), Setting(label="Request rate limit")] = 0.0
    """Most API requests a second this process sends to the account, shared by all its clients and
    send workers (0: no limit). Set it just under the account's rate: each request past the rate is
    answered 429 and waits for its Retry-After, a second or more."""
    import_poll_interval_seconds: Annotated[float, Field(gt=0), Setting(label="Import poll interval")] = 2.0
    """Seconds between polls of a queued recipient import."""
    import_timeout_seconds: Annotated[float, Field(gt=0), Setting(label="Import timeout")] = 1800.0
    """Seconds to wait for a recipient import to complete before failing."""

    # --- validation ------------------------------------------------------------------------------
    @model_validator(mode="before")
    @classmethod
    def _unset_and_missing(cls, raw: Any) -> Any:
        """Blank means unset; unknown names are a ``TypeError``; every missing one in one message."""
        if not isinstance(raw, dict):
            return raw
        unknown = sorted(set(raw) - set(cls.model_fields))
        if unknown:
            raise TypeError(f"Unknown Cheetah setting(s): {', '.join(unknown)}.")
        values = {name: value for name, value in raw.items() if _given(value)}
        missing = [name for name, info in cls.model_fields.items() if info.is_required() and name not in values]
        if missing:
            names = ", ".join(setting_label(name) for name in missing)
            raise ConfigurationError(f"{names} {'is' if len(missing) == 1 else 'are'} missing.")
        return values

    @field_validator("*", mode="before")
    @classmethod
    def _parse(cls, value: Any, info) -> Any:
        kind = _kind(info.field_name)
        if kind == _URL:
            return _normalise_endpoint(value, require_https=bool(info.data.get("require_https")))
        if kind == _ID:
            return _positive(info.field_name, _parse_whole(info.field_name, value))
        if kind == _OPAQUE_ID:
            return _parse_opaque_id(info.field_name, value)
        if kind == _CREDENTIAL:
            return value if isinstance(value, SecretStr) else SecretStr(str(value).strip())
        if kind == _NUMBER:
            return _in_bounds(info.field_name, _parse_number(info.field_name, value))
        return value

    @classmethod
    def from_raw(cls, **raw: Any) -> "CheetahSettings":
        """Parse and validate settings given as strings (or numbers); empty or ``None`` = unset."""
        return cls(**raw)

    # --- use -------------------------------------------------------------------------------------
    @property
    def timeout(self) -> tuple[float, float]:
        """``(connect, read)`` timeout of every request."""
        return (self.connect_timeout_seconds, self.timeout_seconds)

    @property
    def loopback_http(self) -> bool:
        return self.endpoint.startswith("http://")

    def __repr__(self) -> str:
        return (
            f"CheetahSettings(endpoint={self.endpoint!r}, cust_id={self.cust_id}, "
            f"folder_id={self.folder_id}, prop_map_id={self.prop_map_id}, credentials=<redacted>)"
        )

    __str__ = __repr__


# --- what the fields say about themselves ----------------------------------------------------------
def setting_of(name: str) -> Setting:
    """The :class:`Setting` of field ``name`` of :class:`CheetahSettings`."""
    for item in CheetahSettings.model_fields[name].metadata:
        if isinstance(item, Setting):
            return item
    raise KeyError(f"{name} is not a Cheetah setting")


def account_settings() -> Iterator[tuple[str, FieldInfo, Setting]]:
    """Every labelled field: ``(name, pydantic field, setting)``, in the model's order."""
    for name, info in CheetahSettings.model_fields.items():
        if any(isinstance(item, Setting) for item in info.metadata):
            yield name, info, setting_of(name)


def setting_label(name: str) -> str:
    """``"Cust_ID (cust_id, env CHEETAH_CUST_ID)"``: how every message names a setting."""
    setting = setting_of(name)
    return f"{setting.label} ({name}, env {setting.env})" if setting.env else f"{setting.label} ({name})"


#: settings field -> the environment variable a deployment sets it with, in the model's order
ENV_VARS: dict[str, str] = {name: setting.env for name, _info, setting in account_settings() if setting.env}


def demo_account() -> dict[str, str]:
    """The simulator's demo account as settings take it (not secrets: they open nothing real)."""
    return {name: setting.demo for name, _info, setting in account_settings() if setting.demo is not None}


def _kind(name: str) -> str | None:
    annotation = CheetahSettings.model_fields[name].annotation
    if name == "endpoint":
        return _URL
    if annotation is SecretStr:
        return _CREDENTIAL
    if name in ENV_VARS and annotation is int:
        return _ID
    if annotation == ObjId:
        return _OPAQUE_ID
    if annotation in (int, float):
        return _NUMBER
    return None


def _given(value: Any) -> bool:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    return value is not None and not (isinstance(value, str) and not value.strip())


# --- parsing, with messages that name the setting ----------------------------------------------
def is_loopback_host(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _normalise_endpoint(raw: Any, *, require_https: bool = False) -> str:
    """``scheme://host[:port]``. A message never shows more than that of the value given: a path,
    query or fragment may hold a token."""
    label = setting_label("endpoint")
    if not isinstance(raw, str):
        raise ConfigurationError(f"{label} is missing.")
    text = raw.strip()
    try:
        url = parse_url(text)
    except LocationParseError:
        raise ConfigurationError(f"{label} is not a URL.") from None
    if url.auth:
        raise ConfigurationError(f"{label} must not contain a user name or password.")
    scheme = (url.scheme or "").lower()
    if scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(
            f"{label} must be an https:// URL with a host name, e.g. https://api.example.com"
            + (f", got one starting {scheme}://." if scheme and url.host is not None else ".")
        )
    shown = f"{scheme}://{url.netloc}"
    if url.query is not None or url.fragment is not None:
        raise ConfigurationError(
            f"{label} must not have a query or fragment: give the host only ({shown}), not shown here in full."
        )
    if scheme == "http" and require_https:
        raise InsecureEndpoint(
            f"{label} must use https:// in a deployment (plain http:// is only for the simulator, which "
            f"CHEETAH_DEMO=1 selects with its own demo credentials), got {shown!r}."
        )
    if scheme == "http" and not is_loopback_host(url.host):
        raise InsecureEndpoint(
            f"{label} must use https:// (plain http:// is accepted only for this machine's "
            f"loopback address, e.g. the simulator), got {shown!r}."
        )
    path = (url.path or "").rstrip("/")
    if path.lower().endswith("/services2"):
        raise ConfigurationError(
            f"{label} must be the API host without /services2 (the client adds the paths): give the host "
            f"only, {shown}."
        )
    if path:  # it would prefix every call (/v1/services2/...), which then reads as refused credentials
        raise ConfigurationError(
            f"{label} must be the API host only, without a path (the client adds /services2/...): give "
            f"{shown}, not a URL under it."
        )
    return shown


def _parse_whole(name: str, raw: Any) -> int:
    label = setting_label(name)
    if isinstance(raw, bool):
        raise ConfigurationError(f"{label} must be a whole number, got {raw!r}.")
    if isinstance(raw, int):
        return raw
    text = str(raw).strip()
    try:
        return int(text, 10)
    except ValueError:
        raise ConfigurationError(f"{label} must be a whole number, got {text!r}.") from None


def _parse_opaque_id(name: str, raw: Any) -> ObjId:
    """An opaque id as given: an int as is; text stripped, and a plain decimal number without
    leading zeros read as that int (what it always was); any other text kept as the string."""
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise ConfigurationError(f"{setting_label(name)} must be an id (a number or text), got a {type(raw).__name__}.")
    if isinstance(raw, int):
        return raw
    text = raw.strip()
    if not text:
        raise ConfigurationError(f"{setting_label(name)} is missing.")
    return int(text) if text.isascii() and text.isdigit() and (text == "0" or not text.startswith("0")) else text


def setting_problems(raw: dict[str, Any], *, require_https: bool = True) -> list[str]:
    """Every given value's problem, each checked on its own (one sentence each, in the model's
    order): unlike constructing :class:`CheetahSettings`, which stops at the first. Blank values
    and credentials are not checked here (a missing one is the caller's to name)."""
    problems = []
    for name in CheetahSettings.model_fields:
        value = raw.get(name)
        if name not in raw or not _given(value):
            continue
        kind = _kind(name)
        try:
            if kind == _URL:
                _normalise_endpoint(value, require_https=require_https)
            elif kind == _ID:
                _positive(name, _parse_whole(name, value))
            elif kind == _OPAQUE_ID:
                _parse_opaque_id(name, value)
            elif kind == _NUMBER:
                _in_bounds(name, _parse_number(name, value))
        except ConfigurationError as exc:
            problems.append(str(exc))
    return problems


def _positive(name: str, value: int) -> int:
    if value <= 0:
        raise ConfigurationError(f"{setting_label(name)} must be a positive whole number, got {value}.")
    return value


def _parse_number(name: str, raw: Any) -> float | int:
    if CheetahSettings.model_fields[name].annotation is int:
        return _parse_whole(name, raw)
    label = setting_label(name)
    if isinstance(raw, bool):
        raise ConfigurationError(f"{label} must be a number, got {raw!r}.")
    if isinstance(raw, (int, float)):
        value = float(raw)
    else:
        text = str(raw).strip()
        try:
            value = float(text)
        except ValueError:
            raise ConfigurationError(f"{label} must be a number, got {text!r}.") from None
    if not math.isfinite(value):
        raise ConfigurationError(f"{label} must be a number, got {value!r}.")
    return value


def _in_bounds(name: str, value: float | int) -> float | int:
    """The field's own ``gt`` / ``ge`` bound, checked here so that the message names the setting."""
    for bound in CheetahSettings.model_fields[name].metadata:
        if isinstance(bound, annotated_types.Gt) and not value > bound.gt:
            raise ConfigurationError(f"{setting_label(name)} must be more than {bound.gt}, got {value!r}.")
        if isinstance(bound, annotated_types.Ge) and not value >= bound.ge:
            raise ConfigurationError(f"{setting_label(name)} must be at least {bound.ge}, got {value!r}.")
    return value
