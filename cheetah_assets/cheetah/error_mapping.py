"""From HTTP outcomes to the typed errors of :mod:`.errors`, one clear sentence each.

Pure functions of a reply (or a ``requests`` exception) and the call's name: the transport
(:mod:`.transport`) raises what they return. Messages are built from the call's name, the status
and the API's own message (:func:`reply_message`); never from a request body or header, and a
plain-text reply is echoed only short, trimmed and with every registered credential redacted.
"""

from __future__ import annotations

import json
import re
from http import HTTPStatus
from typing import Any, Callable, Iterator, Mapping
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from . import parsers
from .contract import INVALID_GRANT_ERROR, IP_NOT_WHITELISTED_ERROR, TOKEN_PATH
from .errors import (
    BadRequest,
    CheetahError,
    InvalidCredentials,
    IpNotWhitelisted,
    NotFound,
    RateLimited,
    Redirected,
    ServerError,
    TransportError,
)
from .redaction import install_secret_filter
from .settings import setting_label

__all__ = [
    "ErrorFactory", "INVALID_CREDENTIALS_MESSAGE", "IP_NOT_WHITELISTED_MESSAGE", "call_name", "json_or_none",
    "raise_for_common", "raise_for_token_reply", "redirect_error", "refusal", "reply_message", "retries_made", "retries_text", "sentence",
    "status_phrase", "transport_error",
]

#: Makes the error of one status of one call from the API's ``message``.
ErrorFactory = Callable[[str], CheetahError]

INVALID_CREDENTIALS_MESSAGE = (
    "Cheetah Messaging refused the credentials: check the Consumer Key (consumer_key), "
    "Consumer Secret (consumer_secret) and Client Identifier (client_id)."
)
IP_NOT_WHITELISTED_MESSAGE = (
    "Cheetah Messaging refused this server's IP address: ask Cheetah Digital support to add it "
    "to the account's IP whitelist (set-up step 7)."
)
#: ``error`` codes of a token reply that mean the credentials were refused.
_REFUSED_CREDENTIALS = (INVALID_GRANT_ERROR, "invalid_client", "unauthorized_client")


# --- words -----------------------------------------------------------------------------------------
def call_name(method: str, path: str) -> str:
    """``"POST EmailCampaign"``, ``"GET Folder/Objects"``, ``"POST Token"``."""
    if path == TOKEN_PATH:
        return f"{method} Token"
    return f"{method} {path.removeprefix('/services2/api/')}"


def status_phrase(status: int) -> str:
    """``"503 Service Unavailable"`` (the bare number when the status has no name)."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def retries_text(count: int) -> str:
    return f"{count} retry" if count == 1 else f"{count} retries"


def retries_made(resp: requests.Response) -> int:
    """How many times urllib3 repeated the request before this reply."""
    retries = getattr(resp.raw, "retries", None)
    return len(retries.history) if retries is not None else 0


def sentence(prefix: str, detail: str) -> str:
    """``prefix: detail.`` (one sentence; ``prefix.`` when there is no detail)."""
    detail = " ".join(detail.split()).rstrip(".")
    return f"{prefix}: {detail}." if detail else f"{prefix}."


def json_or_none(resp: requests.Response) -> Any:
    """The parsed body, or None. The decode error is never raised: it holds the body.

    Decoded from the bytes (JSON is UTF-8, or UTF-16/32 told by its first bytes, a byte-order
    mark allowed), never through the ``Content-Type`` charset: ``text/plain`` without one would
    make "été" into "Ã©tÃ©" without any error."""
    try:
        return json.loads(resp.content)
    except ValueError:  # UnicodeDecodeError included
        return None


#: A plain-text error reply longer than this is not a message (a page, a dump): not echoed.
_TEXT_MAX_BYTES = 1000
#: How much of a plain-text message is echoed.
_TEXT_MAX_CHARS = 200


def reply_message(resp: requests.Response, *, plain_text: bool = True) -> str:
    """The API's human message in an error reply (:func:`~.parsers.error_message`), or else, with
    ``plain_text``, a short plain-text body: trimmed, capped, never HTML, credentials redacted.
    The token endpoint passes ``plain_text=False``: its replies are read from known keys only."""
    body = json_or_none(resp)
    message = parsers.error_message(body)
    if not message and body is None and plain_text:
        message = _plain_text(resp)
    return install_secret_filter().redact(message) if message else ""


def _plain_text(resp: requests.Response) -> str:
    content_type = resp.headers.get("Content-Type", "").lower()
    if "html" in content_type or "xml" in content_type or len(resp.content) > _TEXT_MAX_BYTES:
        return ""
    text = " ".join(resp.content.decode("utf-8", errors="replace").split())
    if text.startswith("<"):
        return ""
    return text if len(text) <= _TEXT_MAX_CHARS else text[:_TEXT_MAX_CHARS] + "\u2026"


def _exception_chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack.extend(arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException))
        for linked in (getattr(current, "reason", None), current.__cause__, current.__context__):
            if isinstance(linked, BaseException):
                stack.append(linked)


# --- errors ----------------------------------------------------------------------------------------
_HOST_CHARS = re.compile(r"[A-Za-z0-9.:\[\]_-]{1,100}")


def _redirect_target(location: str | None) -> str:
    """Where a redirect points, as a host name only: never its path, query or user part (any of
    which may carry a secret)."""
    if not location or not location.strip():
        return "no location"
    try:
        parts = urlsplit(location.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return "an unreadable location"
    if not host:
        return "another path of the same host"
    if not _HOST_CHARS.fullmatch(host):
        return "an unreadable location"
    return f"host {host}:{port}" if port else f"host {host}"


def redirect_error(name: str, resp: requests.Response) -> CheetahError:
    """The error of a 3xx reply: never followed (it would take the credentials or the recipients'
    data elsewhere, or have us trust another server's answer), and never repeated."""
    status = resp.status_code
    return Redirected(
        f"{name} was redirected ({status_phrase(status)}) to {_redirect_target(resp.headers.get('Location'))}, "
        f"and the client never follows a redirect: check {setting_label('endpoint')}.",
        status=status,
    )


def transport_error(
    name: str, exc: BaseException, *, repeatable: bool, host: str, timeout_seconds: float, max_retries: int
) -> CheetahError:
    """The :class:`TransportError` of a request that got no (whole) reply: what went wrong, and
    whether it was repeated (``repeatable``: the call is safe to repeat)."""
    chain = list(_exception_chain(exc))

    def among(*types: type) -> bool:
        return any(isinstance(link, types) for link in chain)

    if among(NewConnectionError):
        what, retried = f"could not connect to {host}", True
    elif among(ConnectTimeoutError, requests.exceptions.ConnectTimeout):
        what, retried = f"timed out connecting to {host}", True
    elif among(ReadTimeoutError, requests.exceptions.ReadTimeout):
        what, retried = f"no reply within {timeout_seconds:g} s", repeatable
    elif among(SSLError, requests.exceptions.SSLError):
        what, retried = f"the TLS connection to {host} failed (certificate or protocol)", False
    elif among(requests.exceptions.ChunkedEncodingError):
        what, retried = "the reply was cut off", False
    elif among(ProtocolError):
        what, retried = "the connection closed before a reply", repeatable
    else:
        what, retried = f"{type(exc).__name__}", False
    if among(MaxRetryError) and retried:
        return TransportError(f"{name} failed after {retries_text(max_retries)}: {what}.")
    if not repeatable:
        return TransportError(f"{name} failed: {what}; it was not repeated, because it may have taken effect.")
    return TransportError(f"{name} failed: {what}.")


def raise_for_common(name: str, resp: requests.Response, *, repeatable: bool, plain_text: bool = True) -> None:
    """403, 429 and 5xx: the same for every call (``plain_text``: see :func:`reply_message`)."""
    status = resp.status_code
    if status == 403:
        body = json_or_none(resp)
        if isinstance(body, Mapping) and body.get("error") == IP_NOT_WHITELISTED_ERROR:
            raise IpNotWhitelisted(IP_NOT_WHITELISTED_MESSAGE, status=403)
        raise CheetahError(sentence(f"{name} was refused with 403 Forbidden", reply_message(resp, plain_text=plain_text)), status=403)
    retries = retries_made(resp)
    if status == 429:
        raise RateLimited(f"{name} was still rate-limited (429 Too Many Requests) after {retries_text(retries)}.")
    if status >= 500:
        if retries:
            raise ServerError(f"{name} failed after {retries_text(retries)}: {status_phrase(status)}.", status=status)
        if not repeatable:
            raise ServerError(
                f"{name} failed with {status_phrase(status)}; it was not repeated, because it may have taken effect.",
                status=status,
            )
        raise ServerError(f"{name} failed: {status_phrase(status)}.", status=status)


def raise_for_token_reply(resp: requests.Response) -> None:
    """A token reply other than 200: refused credentials, a closed IP whitelist, or the rest."""
    name = call_name("POST", TOKEN_PATH)
    status = resp.status_code
    if 300 <= status < 400:
        raise redirect_error(name, resp)
    body = json_or_none(resp)
    error = body.get("error") if isinstance(body, Mapping) else None
    if status == 403 and error == IP_NOT_WHITELISTED_ERROR:
        raise IpNotWhitelisted(IP_NOT_WHITELISTED_MESSAGE, status=403)
    if status == 401 or (status == 400 and error in _REFUSED_CREDENTIALS):
        raise InvalidCredentials(INVALID_CREDENTIALS_MESSAGE, status=status)
    raise_for_common(name, resp, repeatable=True, plain_text=False)
    raise CheetahError(
        sentence(f"{name} was refused with {status_phrase(status)}", reply_message(resp, plain_text=False)),
        status=status,
    )


def refusal(name: str, resp: requests.Response, errors: Mapping[int, ErrorFactory] | None) -> CheetahError:
    """The error of a 4xx reply to an API call: the call's own (``errors``) first, then generic."""
    status = resp.status_code
    message = reply_message(resp)
    if errors and status in errors:
        err = errors[status](message)
        err.status = status
        return err
    if status == 400:
        return BadRequest(sentence(f"{name} was refused with 400 Bad Request", message))
    if status == 404:
        return NotFound(sentence(f"{name} found nothing (404 Not Found)", message))
    return CheetahError(sentence(f"{name} was refused with {status_phrase(status)}", message), status=status)
