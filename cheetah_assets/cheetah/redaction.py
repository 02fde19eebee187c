"""Secret hygiene in logs: no credential or token of a Cheetah client reaches a log record.

requests-oauthlib logs the token request body (with the consumer secret), token replies and
bearer headers at DEBUG. A :class:`logging.Filter` on the requests_oauthlib, oauthlib, urllib3
and requests loggers (and this package's) withholds the arguments of every requests-oauthlib
DEBUG line that may carry headers or bodies, and redacts the consumer key, consumer secret and
issued tokens (raw, URL- and JSON-encoded) from any record. Each client registers its secrets
(:meth:`SecretRedactingFilter.register`), weakly: they go when the client goes.
"""

from __future__ import annotations

import json
import logging
import threading
import weakref
from typing import Mapping
from urllib.parse import quote, quote_plus

__all__ = ["DEFAULT_LOGGER_NAME", "REDACTED", "SecretRedactingFilter", "install_secret_filter"]

#: The client's logger when the caller gives none.
DEFAULT_LOGGER_NAME = "cheetah_assets.cheetah"

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
    loggers = [logging.getLogger(name) for name in sorted(names)]
    for logger in loggers + [other for other in extra if isinstance(other, logging.Logger)]:
        logger.addFilter(_REDACTOR)  # a no-op when already attached
    return _REDACTOR
