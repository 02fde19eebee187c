"""Transport helpers of the Cheetah Messaging client (:mod:`.client`): plain HTTP to loopback
for oauthlib, the retry policy that also repeats 429, and the small functions that name calls,
statuses and retries in messages. No secrets pass through here."""

from __future__ import annotations

import contextlib
import os
import threading
from http import HTTPStatus
from typing import Any, Callable, Iterator

import requests
from urllib3.util import Retry

from .contract import TOKEN_PATH
from .errors import CheetahError

_insecure_lock = threading.Lock()
_insecure_users = 0
_insecure_saved: str | None = None
_INSECURE_ENV = "OAUTHLIB_INSECURE_TRANSPORT"


@contextlib.contextmanager
def _loopback_http_allowed() -> Iterator[None]:
    """Let oauthlib speak plain HTTP for the duration of one call to a loopback endpoint."""
    global _insecure_users, _insecure_saved
    with _insecure_lock:
        if _insecure_users == 0:
            _insecure_saved = os.environ.get(_INSECURE_ENV)
            os.environ[_INSECURE_ENV] = "1"
        _insecure_users += 1
    try:
        yield
    finally:
        with _insecure_lock:
            _insecure_users -= 1
            if _insecure_users == 0:
                if _insecure_saved is None:
                    os.environ.pop(_INSECURE_ENV, None)
                else:
                    os.environ[_INSECURE_ENV] = _insecure_saved


class _Retry(Retry):
    """urllib3 ``Retry`` that also repeats a 429 for *any* method, POST included.

    A 429 means the server refused the request without applying it, so repeating it (after
    ``Retry-After``, or the backoff when there is none) is always safe.
    """

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        if status_code == HTTPStatus.TOO_MANY_REQUESTS and self.respect_retry_after_header:
            return True
        return super().is_retry(method, status_code, has_retry_after)


def _call_name(method: str, path: str) -> str:
    """``"POST EmailCampaign"``, ``"GET Folder/Objects"``, ``"POST Token"``."""
    if path == TOKEN_PATH:
        return f"{method} Token"
    return f"{method} {path.removeprefix('/services2/api/')}"


def _phrase(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _retries(n: int) -> str:
    return f"{n} retry" if n == 1 else f"{n} retries"


def _retries_made(resp: requests.Response) -> int:
    retries = getattr(resp.raw, "retries", None)
    return len(retries.history) if retries is not None else 0


def _exception_chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    stack = [exc]
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        stack.extend(a for a in getattr(e, "args", ()) if isinstance(a, BaseException))
        for linked in (getattr(e, "reason", None), e.__cause__, e.__context__):
            if isinstance(linked, BaseException):
                stack.append(linked)


def _sentence(prefix: str, detail: str) -> str:
    detail = " ".join(detail.split()).rstrip(".")
    return f"{prefix}: {detail}." if detail else f"{prefix}."


def _json_or_none(resp: requests.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


ErrorFactory = Callable[[str], CheetahError]
