"""The Cheetah Messaging API client: transport, authentication, retries and error mapping.

Meaning (paths, bodies, reply shapes) lives in :mod:`.contract`; this module moves requests and
turns HTTP outcomes into the typed errors of :mod:`.errors`.

Transport, in short:

* **Authentication.** OAuth 2.0 password grant through requests-oauthlib
  (``OAuth2Session`` + ``LegacyApplicationClient``). The token is reused until it is due for
  renewal (``token_renew_margin_seconds`` before it expires, but never more than half its
  lifetime ahead, so a 10-second token still works); a 401 on an API call renews it once and
  repeats the call once. A compliance hook inspects the token reply *before* oauthlib parses it,
  so 403/429/5xx map to our errors rather than to oauthlib's.
* **Retries.** urllib3 :class:`~urllib3.util.Retry` on the session's adapters, with exponential
  backoff plus jitter; 500/502/503/504 and dropped or timed-out replies are retried only where the
  call is safe to repeat; connection failures (nothing was sent) and 429 (the server refused the
  request unapplied; ``Retry-After`` is honoured) are retried for every call. Two adapters carry
  the per-route policy (requests picks the one with the longest matching URL prefix):

  - ``endpoint + "/"``: GET, PUT, DELETE and POST are repeatable: the only POSTs outside
    EmailCampaign are the token request and Import (a re-import replaces rows by identifier);
  - ``endpoint + CAMPAIGN_PATH``: GET, PUT, DELETE are repeatable, POST (create) is **not**: a
    lost reply or a 5xx surfaces as :class:`TransportError` / :class:`ServerError` and the send
    path recovers by looking the campaign up by name.
* **Plain HTTP.** oauthlib refuses ``http://`` unless ``OAUTHLIB_INSECURE_TRANSPORT`` is set, and
  reads that variable at each call. Settings only accept ``http://`` for a loopback host (the
  simulator); for such an endpoint, and only for the duration of each of its own calls, the client
  sets the variable (reference-counted, restored afterwards). An ``https://`` endpoint never
  touches it. The residual exposure is another thread of the same process using oauthlib over
  plain HTTP during one of those loopback calls, which only tests and the local demo do.
* **Secrets.** requests-oauthlib logs the token request body (with the consumer secret), token
  replies and bearer headers at DEBUG. A :class:`logging.Filter` on the requests_oauthlib,
  oauthlib, urllib3 and requests loggers withholds the arguments of every requests-oauthlib
  DEBUG line that may carry headers or bodies, and redacts the consumer key, consumer secret and
  issued tokens (raw, URL- and JSON-encoded) from any record. Errors are built from setting
  names and the API's own ``message``; reprs show the endpoint and ids only.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import ipaddress
import json
import logging
import os
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping
from urllib.parse import quote, quote_plus

import requests
from oauthlib.oauth2 import LegacyApplicationClient, OAuth2Error, TokenExpiredError
from requests.adapters import HTTPAdapter
from requests_oauthlib import OAuth2Session
from urllib3.exceptions import (
    ConnectTimeoutError,
    LocationParseError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.util import Retry, parse_url

from . import contract
from .contract import (
    CAMPAIGN_PATH,
    DATA_MAP_PATH,
    FOLDER_OBJECTS_PATH,
    FOLDER_PATH,
    IMPORT_PATH,
    REPORT_PATH,
    TOKEN_PATH,
    Campaign,
    CampaignMetrics,
    DataMap,
    Folder,
    ImportStatus,
    ObjId,
    Template,
)
from .transport import (
    ErrorFactory,
    _call_name,
    _exception_chain,
    _json_or_none,
    _loopback_http_allowed,
    _phrase,
    _retries,
    _retries_made,
    _Retry,
    _sentence,
)
from .errors import (
    AlreadyLaunched,
    BadRequest,
    CampaignAlreadySent,
    CheetahError,
    ConfigurationError,
    ImportFailed,
    ImportTooLarge,
    InsecureEndpoint,
    InvalidCredentials,
    IpNotWhitelisted,
    MalformedResponse,
    MetricsNotReady,
    NameAlreadyExists,
    NotFound,
    RateLimited,
    ServerError,
    StartTimeInPast,
    TransportError,
    Unauthorized,
    UnknownCampaign,
    UnknownDataMap,
    UnknownFolder,
    UnknownImport,
    UnknownList,
    UnknownTemplate,
)

__all__ = ["CheetahClient", "CheetahSettings"]

DEFAULT_LOGGER_NAME = "cheetah_assets.cheetah"

INVALID_CREDENTIALS_MESSAGE = (
    "Cheetah Messaging refused the credentials: check the Consumer Key (consumer_key), "
    "Consumer Secret (consumer_secret) and Client Identifier (client_id)."
)
IP_NOT_WHITELISTED_MESSAGE = (
    "Cheetah Messaging refused this server's IP address: ask Cheetah Digital support to add it "
    "to the account's IP whitelist (set-up step 7)."
)

#: Longest ``Retry-After`` the client honours, in seconds (urllib3 caps the wait at this).
RETRY_AFTER_MAX_SECONDS = 300
#: HTTP statuses retried where the call is safe to repeat.
RETRY_STATUSES = frozenset({500, 502, 503, 504})
#: Methods repeatable at transport level outside EmailCampaign (POST there: token and Import).
REPEATABLE_METHODS = frozenset({"GET", "PUT", "DELETE", "POST"})
#: Methods repeatable at transport level on EmailCampaign: creating a campaign is not.
REPEATABLE_CAMPAIGN_METHODS = frozenset({"GET", "PUT", "DELETE"})
#: A look-up's "there is none": logged at DEBUG, not as a failure.
_NOT_FOUND = frozenset({404})


# =================================================================================================
# settings
# =================================================================================================
#: field name -> (label in the seed guide, environment variable or None)
_SETTING_LABELS: dict[str, tuple[str, str | None]] = {
    "endpoint": ("API endpoint URL", "CHEETAH_ENDPOINT"),
    "cust_id": ("Cust_ID", "CHEETAH_CUST_ID"),
    "folder_id": ("Folder ID", "CHEETAH_FOLDER_ID"),
    "prop_map_id": ("PROP_MAP_ID", "CHEETAH_PROP_MAP_ID"),
    "consumer_key": ("Consumer Key", "CHEETAH_CONSUMER_KEY"),
    "consumer_secret": ("Consumer Secret", "CHEETAH_CONSUMER_SECRET"),
    "client_id": ("Client Identifier", "CHEETAH_CLIENT_ID"),
    "timeout_seconds": ("Request timeout", None),
    "connect_timeout_seconds": ("Connect timeout", None),
    "max_retries": ("Retry limit", None),
    "backoff_factor": ("Retry backoff factor", None),
    "backoff_max_seconds": ("Longest retry backoff", None),
    "token_renew_margin_seconds": ("Token renewal margin", None),
    "import_poll_interval_seconds": ("Import poll interval", None),
    "import_timeout_seconds": ("Import timeout", None),
}
_REQUIRED_TEXT = ("endpoint", "consumer_key", "consumer_secret", "client_id")
_REQUIRED_IDS = ("cust_id", "folder_id", "prop_map_id")
_SECRET_SETTINGS = ("consumer_key", "consumer_secret", "client_id")
#: optional numeric settings -> (type, smallest allowed, whether the smallest is allowed)
_NUMBERS: dict[str, tuple[type, float, bool]] = {
    "timeout_seconds": (float, 0, False),
    "connect_timeout_seconds": (float, 0, False),
    "max_retries": (int, 0, True),
    "backoff_factor": (float, 0, True),
    "backoff_max_seconds": (float, 0, True),
    "token_renew_margin_seconds": (float, 0, True),
    "import_poll_interval_seconds": (float, 0, False),
    "import_timeout_seconds": (float, 0, False),
}


def setting_label(name: str) -> str:
    """``"Cust_ID (cust_id, env CHEETAH_CUST_ID)"``: how every message names a setting."""
    label, env = _SETTING_LABELS[name]
    return f"{label} ({name}, env {env})" if env else f"{label} ({name})"


def is_loopback_host(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _normalise_endpoint(raw: str, *, require_https: bool = False) -> str:
    label = setting_label("endpoint")
    text = raw.strip()
    try:
        url = parse_url(text)
    except LocationParseError:
        raise ConfigurationError(f"{label} is not a URL.") from None
    if url.auth:
        raise ConfigurationError(f"{label} must not contain a user name or password.")
    scheme = (url.scheme or "").lower()
    if scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(f"{label} must be an https:// URL with a host name, got {text!r}.")
    if url.query is not None or url.fragment is not None:
        raise ConfigurationError(f"{label} must not have a query or fragment, got {text!r}.")
    if scheme == "http" and require_https:
        raise InsecureEndpoint(
            f"{label} must use https:// in a deployment (plain http:// is only for the simulator, which "
            f"CHEETAH_DEMO=1 selects with its own demo credentials), got {text!r}."
        )
    if scheme == "http" and not is_loopback_host(url.host):
        raise InsecureEndpoint(
            f"{label} must use https:// (plain http:// is accepted only for this machine's "
            f"loopback address, e.g. the simulator), got {text!r}."
        )
    path = (url.path or "").rstrip("/")
    if path.lower().endswith("/services2"):
        raise ConfigurationError(
            f"{label} must be the API host without /services2 (the client adds the paths), got {text!r}."
        )
    return f"{scheme}://{url.netloc}{path}"


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


def _parse_number(name: str, raw: Any, typ: type) -> float | int:
    if typ is int:
        return _parse_whole(name, raw)
    label = setting_label(name)
    if isinstance(raw, bool):
        raise ConfigurationError(f"{label} must be a number, got {raw!r}.")
    if isinstance(raw, (int, float)):
        return float(raw)
    text = str(raw).strip()
    try:
        return float(text)
    except ValueError:
        raise ConfigurationError(f"{label} must be a number, got {text!r}.") from None


@dataclass(frozen=True, repr=False)
class CheetahSettings:
    """Validated settings of one Cheetah Messaging account (one consumer key).

    Build it with :meth:`from_raw` from strings (environment, Dagster config): every problem is a
    :class:`ConfigurationError` naming the setting. Constructing it directly validates too. The
    repr shows the endpoint and the ids, never the credentials.
    """

    endpoint: str
    cust_id: int
    folder_id: int
    prop_map_id: int
    consumer_key: str
    consumer_secret: str
    client_id: str
    timeout_seconds: float = 30.0
    connect_timeout_seconds: float = 5.0
    max_retries: int = 5
    backoff_factor: float = 0.5
    backoff_max_seconds: float = 30.0
    token_renew_margin_seconds: float = 300.0
    import_poll_interval_seconds: float = 2.0
    import_timeout_seconds: float = 1800.0
    #: refuse plain http:// even to loopback (a deployment's settings; only the simulator speaks http)
    require_https: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.endpoint, str) or not self.endpoint.strip():
            raise ConfigurationError(f"{setting_label('endpoint')} is missing.")
        object.__setattr__(self, "endpoint", _normalise_endpoint(self.endpoint, require_https=self.require_https))
        for name in _REQUIRED_IDS:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigurationError(f"{setting_label(name)} must be a whole number, got {value!r}.")
            if value <= 0:
                raise ConfigurationError(f"{setting_label(name)} must be a positive whole number, got {value}.")
        for name in _SECRET_SETTINGS:
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ConfigurationError(f"{setting_label(name)} is missing.")
        for name, (typ, low, inclusive) in _NUMBERS.items():
            value = getattr(self, name)
            ok_type = isinstance(value, (int, float)) and not isinstance(value, bool)
            if typ is int:
                ok_type = ok_type and isinstance(value, int)
            if not ok_type or value != value or value in (float("inf"), float("-inf")):
                kind = "a whole number" if typ is int else "a number"
                raise ConfigurationError(f"{setting_label(name)} must be {kind}, got {value!r}.")
            if value < low or (value == low and not inclusive):
                bound = f"at least {low}" if inclusive else f"more than {low}"
                raise ConfigurationError(f"{setting_label(name)} must be {bound}, got {value!r}.")

    @classmethod
    def from_raw(cls, *, require_https: bool = False, **raw: Any) -> "CheetahSettings":
        """Parse and validate settings given as strings (or numbers); empty or ``None`` = unset.

        Every missing required setting is named in one message."""
        unknown = sorted(set(raw) - set(_SETTING_LABELS))
        if unknown:
            raise TypeError(f"Unknown Cheetah setting(s): {', '.join(unknown)}.")

        def given(name: str) -> bool:
            value = raw.get(name)
            return value is not None and not (isinstance(value, str) and not value.strip())

        missing = [n for n in _SETTING_LABELS if (n in _REQUIRED_TEXT or n in _REQUIRED_IDS) and not given(n)]
        if missing:
            names = ", ".join(setting_label(n) for n in missing)
            raise ConfigurationError(f"{names} {'is' if len(missing) == 1 else 'are'} missing.")
        values: dict[str, Any] = {"require_https": require_https}
        for name in _SETTING_LABELS:
            if not given(name):
                continue
            value = raw[name]
            if name in _REQUIRED_TEXT:
                values[name] = str(value).strip()
            elif name in _REQUIRED_IDS:
                values[name] = _parse_whole(name, value)
            else:
                values[name] = _parse_number(name, value, _NUMBERS[name][0])
        return cls(**values)

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


# =================================================================================================
# secret hygiene in logs
# =================================================================================================
#: requests-oauthlib DEBUG templates whose arguments cannot carry headers, bodies or tokens.
_SAFE_OAUTHLIB_TEMPLATES = frozenset(
    {
        "Requesting url %s using method %s.",
        "Request to fetch token completed with status %s.",
        "Request url was %s",
        "Invoking %d token response hooks.",
        "Invoking %d protected resource request hooks.",
        "Invoking hook %s.",
        "Invoking access_token_request hook %s.",
    }
)
_FILTERED_NAMESPACES = ("requests_oauthlib", "oauthlib", "urllib3", "requests", DEFAULT_LOGGER_NAME)
_KNOWN_LOGGERS = (
    "requests_oauthlib",
    "requests_oauthlib.oauth2_session",
    "oauthlib",
    "urllib3",
    "urllib3.connectionpool",
    "urllib3.connection",
    "urllib3.response",
    "urllib3.util.retry",
    "requests",
    DEFAULT_LOGGER_NAME,
)
REDACTED = "[redacted]"


class SecretRedactingFilter(logging.Filter):
    """Withholds and redacts credentials and tokens from log records.

    A filter on a logger only sees records created by that very logger (not by its children),
    so :func:`install_secret_filter` attaches it to every logger of the libraries involved.
    Secrets are registered per client (weakly: they go when the client goes).
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._owners: weakref.WeakKeyDictionary[object, frozenset[str]] = weakref.WeakKeyDictionary()
        self._needles: tuple[str, ...] = ()
        self._owner_count = 0

    def register(self, owner: object, secrets: set[str]) -> None:
        needles: set[str] = set()
        for secret in secrets:
            if not secret:
                continue
            needles.update({secret, quote_plus(secret), quote(secret, safe=""), json.dumps(secret)[1:-1]})
        with self._lock:
            self._owners[owner] = frozenset(needles)
            self._rebuild()

    def _rebuild(self) -> None:
        union: set[str] = set()
        for needles in list(self._owners.values()):
            union.update(needles)
        self._needles = tuple(sorted(union, key=len, reverse=True))
        self._owner_count = len(self._owners)

    def redact(self, text: str) -> str:
        with self._lock:
            if len(self._owners) != self._owner_count:  # a client was garbage-collected
                self._rebuild()
            needles = self._needles
        for needle in needles:
            if needle in text:
                text = text.replace(needle, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            record.name.startswith(("requests_oauthlib", "oauthlib"))
            and record.args
            and record.msg not in _SAFE_OAUTHLIB_TEMPLATES
        ):
            # headers, bodies, token dicts: withhold the arguments, keep the template
            # (logging turns a single dict argument into a mapping: it filled one placeholder)
            n = 1 if isinstance(record.args, Mapping) else len(record.args)
            try:
                record.msg = str(record.msg) % (("<withheld>",) * n)
            except (TypeError, ValueError):
                record.msg = f"{record.msg} [arguments withheld]"
            record.args = None
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is the logging module's problem, not ours
            return True
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


_REDACTOR = SecretRedactingFilter()


def install_secret_filter(*extra: logging.Logger) -> SecretRedactingFilter:
    """Attach the redacting filter to every logger of requests-oauthlib, oauthlib, urllib3,
    requests and this package (existing now or known by name), and to ``extra``."""
    names = set(_KNOWN_LOGGERS)
    for name, obj in list(logging.root.manager.loggerDict.items()):
        if isinstance(obj, logging.Logger) and (
            name in _FILTERED_NAMESPACES or name.startswith(tuple(f"{ns}." for ns in _FILTERED_NAMESPACES))
        ):
            names.add(name)
    for lg in [logging.getLogger(n) for n in sorted(names)] + [x for x in extra if isinstance(x, logging.Logger)]:
        lg.addFilter(_REDACTOR)  # a no-op when already attached
    return _REDACTOR


# =================================================================================================
# the client
# =================================================================================================
class CheetahClient:
    """A session with one Cheetah Messaging account. Use as a context manager, or call close()."""

    def __init__(self, settings: CheetahSettings, *, logger: logging.Logger | None = None):
        if not isinstance(settings, CheetahSettings):
            raise TypeError("CheetahClient needs a CheetahSettings (see CheetahSettings.from_raw).")
        self.settings = settings
        self._log = logger if logger is not None else logging.getLogger(DEFAULT_LOGGER_NAME)
        self._redactor = install_secret_filter()
        self._redactor.register(self, {settings.consumer_key, settings.consumer_secret})
        self._token_url = settings.endpoint + TOKEN_PATH
        self._token_lock = threading.RLock()
        self._token_generation = 0
        self._token_renew_at = 0.0  # time.monotonic() after which the token is renewed
        self._issued_lifetime: int | None = None
        self._recent_tokens: list[str] = []

        session = OAuth2Session(client=LegacyApplicationClient(client_id=settings.client_id))
        session.verify = True
        session.headers["Accept"] = "application/json"
        session.mount(settings.endpoint + "/", HTTPAdapter(max_retries=self._retry(REPEATABLE_METHODS)))
        session.mount(
            settings.endpoint + CAMPAIGN_PATH, HTTPAdapter(max_retries=self._retry(REPEATABLE_CAMPAIGN_METHODS))
        )
        session.register_compliance_hook("access_token_response", self._on_token_response)
        self._session = session

    # --- life cycle ------------------------------------------------------------------------------
    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> "CheetahClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        s = self.settings
        return (
            f"CheetahClient(endpoint={s.endpoint!r}, cust_id={s.cust_id}, "
            f"folder_id={s.folder_id}, prop_map_id={s.prop_map_id})"
        )

    # --- transport -------------------------------------------------------------------------------
    def _retry(self, methods: frozenset[str]) -> Retry:
        s = self.settings
        return _Retry(
            total=s.max_retries,
            other=0,  # TLS and other unclassified failures: not retried
            allowed_methods=methods,
            status_forcelist=RETRY_STATUSES,
            backoff_factor=s.backoff_factor,
            backoff_max=s.backoff_max_seconds,
            backoff_jitter=s.backoff_factor,
            raise_on_status=False,
            respect_retry_after_header=True,
            retry_after_max=RETRY_AFTER_MAX_SECONDS,
        )

    def _scope(self) -> contextlib.AbstractContextManager[None]:
        return _loopback_http_allowed() if self.settings.loopback_http else contextlib.nullcontext()

    def _repeatable(self, method: str, url: str) -> bool:
        allowed = self._session.get_adapter(url).max_retries.allowed_methods
        return allowed is None or method.upper() in allowed

    def _log_call(self, resp: requests.Response, expected: frozenset[int] = frozenset()) -> None:
        """One line per call: method, path (no query), status, attempt (1 + transport retries)."""
        request = resp.request
        attempt = _retries_made(resp) + 1
        # Routine successes and ``expected`` statuses (a look-up's 404) at DEBUG; retried calls
        # and errors at INFO, where an operator looks.
        routine = resp.status_code < 400 or resp.status_code in expected
        level = logging.DEBUG if routine and attempt == 1 else logging.INFO
        self._log.log(
            level,
            "Cheetah %s %s: %s (attempt %d)",
            request.method,
            (request.path_url or "").split("?", 1)[0],
            _phrase(resp.status_code),
            attempt,
        )

    def _transport_error(self, name: str, exc: BaseException, *, repeatable: bool) -> CheetahError:
        chain = list(_exception_chain(exc))
        exhausted = any(isinstance(e, MaxRetryError) for e in chain)
        host = parse_url(self.settings.endpoint).host
        if any(isinstance(e, NewConnectionError) for e in chain):
            what, retried = f"could not connect to {host}", True
        elif any(isinstance(e, (ConnectTimeoutError, requests.exceptions.ConnectTimeout)) for e in chain):
            what, retried = f"timed out connecting to {host}", True
        elif any(isinstance(e, (ReadTimeoutError, requests.exceptions.ReadTimeout)) for e in chain):
            what, retried = f"no reply within {self.settings.timeout_seconds:g} s", repeatable
        elif any(isinstance(e, (SSLError, requests.exceptions.SSLError)) for e in chain):
            what, retried = f"the TLS connection to {host} failed (certificate or protocol)", False
        elif any(isinstance(e, requests.exceptions.ChunkedEncodingError) for e in chain):
            what, retried = "the reply was cut off", False
        elif any(isinstance(e, ProtocolError) for e in chain):
            what, retried = "the connection closed before a reply", repeatable
        else:
            what, retried = f"{type(exc).__name__}", False
        if exhausted and retried:
            return TransportError(f"{name} failed after {_retries(self.settings.max_retries)}: {what}.")
        if not repeatable:
            return TransportError(f"{name} failed: {what}; it was not repeated, because it may have taken effect.")
        return TransportError(f"{name} failed: {what}.")

    def _raise_for_common(self, name: str, resp: requests.Response, *, repeatable: bool) -> None:
        """403, 429 and 5xx: the same for every call."""
        status = resp.status_code
        if status == 403:
            body = _json_or_none(resp)
            if isinstance(body, Mapping) and body.get("error") == contract.IP_NOT_WHITELISTED_ERROR:
                raise IpNotWhitelisted(IP_NOT_WHITELISTED_MESSAGE, status=403)
            raise CheetahError(
                _sentence(f"{name} was refused with 403 Forbidden", contract.error_message(body)), status=403
            )
        retries = _retries_made(resp)
        if status == 429:
            raise RateLimited(f"{name} was still rate-limited (429 Too Many Requests) after {_retries(retries)}.")
        if status >= 500:
            if retries:
                raise ServerError(f"{name} failed after {_retries(retries)}: {_phrase(status)}.", status=status)
            if not repeatable:
                raise ServerError(
                    f"{name} failed with {_phrase(status)}; it was not repeated, because it may have taken effect.",
                    status=status,
                )
            raise ServerError(f"{name} failed: {_phrase(status)}.", status=status)

    # --- token -----------------------------------------------------------------------------------
    def _on_token_response(self, resp: requests.Response) -> requests.Response:
        """Compliance hook: map the token reply before oauthlib parses it."""
        name = _call_name("POST", TOKEN_PATH)
        self._log_call(resp)
        status = resp.status_code
        body = _json_or_none(resp)
        if status == 200:
            if body is None:
                raise MalformedResponse("The token reply is not JSON.")
            _token, lifetime = contract.parse_token(body)
            self._issued_lifetime = lifetime
            return resp
        error = body.get("error") if isinstance(body, Mapping) else None
        if status == 403 and error == contract.IP_NOT_WHITELISTED_ERROR:
            raise IpNotWhitelisted(IP_NOT_WHITELISTED_MESSAGE, status=403)
        if status == 401 or (
            status == 400 and error in (contract.INVALID_GRANT_ERROR, "invalid_client", "unauthorized_client")
        ):
            raise InvalidCredentials(INVALID_CREDENTIALS_MESSAGE, status=status)
        self._raise_for_common(name, resp, repeatable=True)
        raise CheetahError(
            _sentence(f"{name} was refused with {_phrase(status)}", contract.error_message(body)), status=status
        )

    def _fetch_token(self) -> None:
        s = self.settings
        name = _call_name("POST", TOKEN_PATH)
        self._issued_lifetime = None
        # Failures are raised as fresh exceptions *outside* the except clauses: the originals
        # carry the prepared request (form body with the secret) and tracebacks through
        # requests-oauthlib frames whose locals hold the password.
        failure: CheetahError | None = None
        token: Mapping[str, Any] = {}
        try:
            with self._scope():
                token = self._session.fetch_token(
                    self._token_url,
                    username=s.consumer_key,
                    password=s.consumer_secret,
                    client_id=s.client_id,
                    include_client_id=True,  # client_id in the form body, as the API expects
                    timeout=s.timeout,
                )
        except CheetahError as exc:  # raised by _on_token_response
            failure = type(exc)(exc.message, status=exc.status)
        except requests.RequestException as exc:
            failure = self._transport_error(name, exc, repeatable=True)
        except OAuth2Error as exc:  # a 200 whose body oauthlib still refuses
            if exc.error == contract.INVALID_GRANT_ERROR:
                failure = InvalidCredentials(INVALID_CREDENTIALS_MESSAGE)
            else:
                failure = MalformedResponse(f"The token reply was refused by oauthlib ({exc.error}).")
        except Warning:  # oauthlib's "scope has changed" warning-as-exception
            failure = MalformedResponse("The token reply changed the requested scope.")
        if failure is not None:
            raise failure
        access_token = token.get("access_token", "")
        lifetime = self._issued_lifetime or contract.DEFAULT_TOKEN_LIFETIME_S
        margin = min(s.token_renew_margin_seconds, lifetime / 2)
        self._token_renew_at = time.monotonic() + lifetime - margin
        self._token_generation += 1
        self._recent_tokens = [access_token, *self._recent_tokens][:2]
        self._redactor.register(self, {s.consumer_key, s.consumer_secret, *self._recent_tokens})

    def _ensure_token(self, *, replace: int | None = None, force: bool = False) -> int:
        """The generation of a usable token; renews it when due, forced, or when ``replace``
        names the generation that was just refused (unless another thread renewed it already)."""
        with self._token_lock:
            current = self._token_generation
            due = not self._session.authorized or time.monotonic() >= self._token_renew_at
            if force or due or (replace is not None and replace == current):
                self._fetch_token()
            return self._token_generation

    def check_access(self) -> None:
        """Fetch a token now: raises InvalidCredentials / IpNotWhitelisted / transport errors."""
        self._ensure_token(force=True)

    def _send(
        self, method: str, path: str, *, params: Mapping | None = None, body: Any = None,
        expected: frozenset[int] = frozenset(),
    ) -> requests.Response:
        """One authorised call: renews the token ahead of expiry, and once after a 401."""
        name = _call_name(method, path)
        url = self.settings.endpoint + path
        repeatable = self._repeatable(method, url)
        generation = self._ensure_token()
        for attempt in (1, 2):
            resp: requests.Response | None = None
            failure: CheetahError | None = None
            try:
                with self._scope():
                    resp = self._session.request(
                        method, url, params=params, json=body, timeout=self.settings.timeout
                    )
            except TokenExpiredError:  # oauthlib's own clock says so: same as a 401
                pass
            except requests.RequestException as exc:
                # raised outside the handler: the original holds the request and its bearer header
                failure = self._transport_error(name, exc, repeatable=repeatable)
            if failure is not None:
                raise failure
            if resp is not None:
                self._log_call(resp, expected)
            if resp is None or resp.status_code == 401:
                if attempt == 2:
                    raise Unauthorized(
                        f"{name} was refused with 401 Unauthorized even with a newly issued token.", status=401
                    )
                generation = self._ensure_token(replace=generation)
                continue
            self._raise_for_common(name, resp, repeatable=repeatable)
            return resp
        raise AssertionError("unreachable")  # pragma: no cover

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping | None = None,
        body: Any = None,
        errors: Mapping[int, ErrorFactory] | None = None,
        expect_json: bool = True,
        expected: frozenset[int] = frozenset(),
    ) -> Any:
        """Send, map statuses (``errors`` first, then generic), return the parsed JSON body.
        A GET (safe to repeat) whose 2xx reply is not JSON is repeated up to ``max_retries``
        times with backoff. ``expected`` statuses are logged at DEBUG (see :meth:`_log_call`)."""
        name = _call_name(method, path)
        s = self.settings
        for retry in range(s.max_retries + 1 if method == "GET" and expect_json else 1):
            if retry:
                self._log.info("Cheetah %s: the reply was not JSON; repeating it (retry %d of %d)", name, retry,
                               s.max_retries)
                time.sleep(min(s.backoff_max_seconds, s.backoff_factor * 2 ** (retry - 1)))
            resp = self._send(method, path, params=params, body=body, expected=expected)
            status = resp.status_code
            if not 200 <= status < 300 or not expect_json:
                break
            parsed = _json_or_none(resp)  # the decode error is never raised: it holds the body
            if parsed is not None or resp.content.strip() == b"null":
                return parsed
        if 200 <= status < 300:
            if not expect_json:
                return None
            tried = f" after {_retries(s.max_retries)}" if method == "GET" and s.max_retries else ""
            raise MalformedResponse(f"The {name} reply is not JSON{tried}.")
        message = contract.error_message(_json_or_none(resp))
        if errors and status in errors:
            err = errors[status](message)
            err.status = status
            raise err
        if status == 400:
            raise BadRequest(_sentence(f"{name} was refused with 400 Bad Request", message))
        if status == 404:
            raise NotFound(_sentence(f"{name} found nothing (404 Not Found)", message))
        raise CheetahError(_sentence(f"{name} was refused with {_phrase(status)}", message), status=status)

    # --- account ---------------------------------------------------------------------------------
    def _unknown_folder(self, _message: str) -> CheetahError:
        return UnknownFolder(
            f"Cheetah Messaging has no folder with {setting_label('folder_id')} {self.settings.folder_id}."
        )

    def get_data_map(self) -> DataMap:
        pid = self.settings.prop_map_id
        body = self._call(
            "GET",
            DATA_MAP_PATH,
            params=contract.id_query(pid),
            errors={404: lambda m: UnknownDataMap(
                f"Cheetah Messaging has no Data Map with {setting_label('prop_map_id')} {pid}."
            )},
        )
        return contract.parse_data_map(body)

    def get_folder(self) -> Folder:
        body = self._call(
            "GET", FOLDER_PATH, params=contract.id_query(self.settings.folder_id), errors={404: self._unknown_folder}
        )
        return contract.parse_folder(body)

    def iter_templates(self, page_size: int = contract.DEFAULT_PAGE_SIZE) -> Iterator[Template]:
        """Every template of the folder, fetched a page at a time as the iterator is consumed."""
        if not isinstance(page_size, int) or not 1 <= page_size <= contract.MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be a whole number from 1 to {contract.MAX_PAGE_SIZE}, got {page_size!r}.")
        return self._template_pages(page_size)

    def _template_pages(self, page_size: int) -> Iterator[Template]:
        seen: set[str] = set()
        received = 0
        page = 1
        while True:
            body = self._call(
                "GET",
                FOLDER_OBJECTS_PATH,
                params=contract.folder_objects_query(self.settings.folder_id, page, page_size),
                errors={404: self._unknown_folder},
            )
            objects, total = contract.parse_folder_page(body)
            received += len(objects)
            for template in objects:
                if template.obj_id not in seen:  # a listing shifting under us must not repeat one
                    seen.add(template.obj_id)
                    yield template
            if not objects or received >= total:
                return
            page += 1

    # --- imports ---------------------------------------------------------------------------------
    def start_import(self, *, list_name: str, csv_bytes: bytes, file_name: str) -> ObjId:
        """Queue a CSV (header = Data Map field names) for import into ``list_name``."""
        body = contract.import_request(
            file_name=file_name,
            file_data_b64=base64.b64encode(csv_bytes).decode("ascii"),
            prop_map_id=self.settings.prop_map_id,
            list_name=list_name,
        )
        reply = self._call(
            "POST",
            IMPORT_PATH,
            body=body,
            errors={
                400: lambda m: BadRequest(_sentence(f"Import of {file_name} into list {list_name!r} was refused", m)),
                413: lambda m: ImportTooLarge(
                    f"Import of {file_name} was refused as too large (413): split it into files of at most "
                    f"{contract.MAX_IMPORT_ROWS:,} rows and {contract.MAX_IMPORT_BYTES // (1024 * 1024)} MB."
                ),
            },
        )
        return contract.parse_import_id(reply)

    def get_import(self, import_id: ObjId) -> ImportStatus:
        body = self._call(
            "GET",
            IMPORT_PATH,
            params=contract.id_query(import_id),
            errors={404: lambda m: UnknownImport(f"Cheetah Messaging has no import {import_id}.")},
        )
        return contract.parse_import(body)

    def wait_for_import(
        self, import_id: ObjId, *, on_poll: Callable[[ImportStatus], None] | None = None
    ) -> ImportStatus:
        """Poll until the import is COMPLETED (returned, rejected rows included); FAILED or no
        end within ``import_timeout_seconds`` raise :class:`ImportFailed`."""
        s = self.settings
        deadline = time.monotonic() + s.import_timeout_seconds
        while True:
            status = self.get_import(import_id)
            if on_poll is not None:
                on_poll(status)
            if status.status == "COMPLETED":
                self._log.info(
                    "Cheetah import %s completed into list %s: %d rows read, %d accepted, %d rejected",
                    import_id, status.list_id, status.rows_read, status.rows_accepted, len(status.rejected),
                )
                return status
            if status.status == "FAILED":
                raise ImportFailed(_sentence(
                    f"Import {import_id} ended FAILED after reading {status.rows_read} rows",
                    f"Cheetah's reason: {status.reason}" if status.reason else "Cheetah gave no reason",
                ))
            if time.monotonic() + s.import_poll_interval_seconds > deadline:
                raise ImportFailed(
                    f"Import {import_id} did not finish within {s.import_timeout_seconds:g} s "
                    f"(last status {status.status})."
                )
            time.sleep(s.import_poll_interval_seconds)

    # --- campaigns -------------------------------------------------------------------------------
    def create_campaign(
        self, *, name: str, template_obj_id: ObjId, list_id: ObjId, start_time: dt.datetime
    ) -> ObjId:
        """Create a DRAFT campaign. Not repeated at transport level: after a TransportError or
        ServerError the campaign may exist; look it up with :meth:`find_campaign`."""
        s = self.settings
        body = contract.campaign_request(
            name=name,
            cust_id=s.cust_id,
            template_obj_id=template_obj_id,
            list_id=list_id,
            prop_map_id=s.prop_map_id,
            folder_id=s.folder_id,
            start_time=start_time,
        )

        def bad_request(message: str) -> CheetahError:
            if contract.NAME_EXISTS_MESSAGE.lower().rstrip(".") in message.lower():
                return NameAlreadyExists(f"A campaign named {name!r} already exists in folder {s.folder_id}.")
            return BadRequest(_sentence(f"Campaign {name!r} was refused", message))

        def not_found(message: str) -> CheetahError:
            lowered = message.lower()
            if "template" in lowered:
                return UnknownTemplate(_sentence(f"Template {template_obj_id} was not found", message))
            if "list" in lowered or "filter" in lowered:
                return UnknownList(_sentence(f"List {list_id} was not found", message))
            return NotFound(_sentence(f"Campaign {name!r} refers to something that was not found", message))

        when = contract.format_start_time(start_time)["startTime"]
        reply = self._call(
            "POST",
            CAMPAIGN_PATH,
            body=body,
            errors={
                400: bad_request,
                404: not_found,
                422: lambda m: StartTimeInPast(
                    f"Campaign {name!r} was refused because its start time {when} UTC has already passed."
                ),
            },
        )
        return contract.parse_campaign_id(reply)

    def _unknown_campaign(self, camp_id: ObjId) -> ErrorFactory:
        return lambda m: UnknownCampaign(f"Cheetah Messaging has no campaign {camp_id}.")

    def get_campaign(self, camp_id: ObjId) -> Campaign:
        body = self._call(
            "GET", CAMPAIGN_PATH, params=contract.id_query(camp_id), errors={404: self._unknown_campaign(camp_id)}
        )
        return contract.parse_campaign(body)

    def find_campaign(self, name: str) -> Campaign | None:
        """The campaign of that name, or None when there is none."""
        try:
            body = self._call("GET", CAMPAIGN_PATH, params=contract.campaign_name_query(name), expected=_NOT_FOUND)
        except NotFound:
            return None
        return contract.parse_campaign(body)

    def _action(self, camp_id: ObjId, action: str, extra: Mapping[int, ErrorFactory] | None = None) -> None:
        errors: dict[int, ErrorFactory] = {
            404: self._unknown_campaign(camp_id),
            400: lambda m: BadRequest(_sentence(f"{action} of campaign {camp_id} was refused", m)),
        }
        errors.update(extra or {})
        self._call(
            "PUT",
            CAMPAIGN_PATH,
            params=contract.id_query(camp_id),
            body=contract.campaign_action_request(action),
            errors=errors,
            expect_json=False,
        )
        self._log.info("Cheetah campaign %s: %s accepted", camp_id, action)

    def launch_campaign(self, camp_id: ObjId) -> None:
        def bad_request(message: str) -> CheetahError:
            if contract.ALREADY_LAUNCHED_MESSAGE.lower().rstrip(".") in message.lower():
                return AlreadyLaunched(f"Campaign {camp_id} has been launched already.")
            return BadRequest(_sentence(f"LAUNCH of campaign {camp_id} was refused", message))

        self._action(camp_id, contract.ACTION_LAUNCH, {400: bad_request})

    def approve_campaign(self, camp_id: ObjId) -> None:
        self._action(camp_id, contract.ACTION_APPROVE)

    def pause_campaign(self, camp_id: ObjId) -> None:
        self._action(camp_id, contract.ACTION_PAUSE)

    def resume_campaign(self, camp_id: ObjId) -> None:
        self._action(camp_id, contract.ACTION_RESUME)

    def delete_campaign(self, camp_id: ObjId) -> None:
        """Cancel the campaign (status CANCELLED); CampaignAlreadySent once it went out."""
        self._call(
            "DELETE",
            CAMPAIGN_PATH,
            params=contract.id_query(camp_id),
            errors={
                404: self._unknown_campaign(camp_id),
                409: lambda m: CampaignAlreadySent(
                    f"Campaign {camp_id} has already been sent and can no longer be cancelled."
                ),
            },
            expect_json=False,
        )

    # --- metrics ---------------------------------------------------------------------------------
    def get_metrics(self, camp_id: ObjId) -> CampaignMetrics:
        body = self._call(
            "GET",
            REPORT_PATH,
            params=contract.id_query(camp_id),
            errors={
                404: self._unknown_campaign(camp_id),
                409: lambda m: MetricsNotReady(f"Campaign {camp_id} has no metrics yet: it has not been sent."),
            },
        )
        return contract.parse_metrics(body)
