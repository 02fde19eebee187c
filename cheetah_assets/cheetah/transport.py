"""How the Cheetah Messaging client moves requests: session, retries, token, error mapping.

Meaning (paths, bodies, reply shapes) lives in :mod:`.contract`; the endpoint methods in
:mod:`.client`. :class:`Transport` sends one authorised call and turns its HTTP outcome into a
parsed body or a typed error of :mod:`.errors` (:mod:`.error_mapping` says which).

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

  A GET whose 2xx reply is not JSON is repeated too (up to ``max_retries``, with backoff).
* **Redirects** are never followed, for the token request and every API call
  (``max_redirects = 0`` on the session, ``allow_redirects=False`` on each call): following one
  would send the credentials or the recipients' CSV to whatever host it names, or have us trust
  another server's answer. A 3xx is a :class:`~.errors.Redirected` naming the status and the
  target host (never its query), and it is not repeated.
* **Plain HTTP.** oauthlib refuses ``http://`` unless ``OAUTHLIB_INSECURE_TRANSPORT`` is set, and
  reads that variable at each call. Settings only accept ``http://`` for a loopback host (the
  simulator); for such an endpoint, and only for the duration of each of its own calls, the
  transport sets the variable (reference-counted, restored afterwards). An ``https://`` endpoint
  never touches it. The residual exposure is another thread of the same process using oauthlib
  over plain HTTP during one of those loopback calls, which only tests and the local demo do, and
  another thread iterating ``os.environ`` as the variable is removed (``requests`` does, to read
  proxies, outside a session with ``trust_env`` off): the simulator's admin client has it off.
* **Secrets.** The consumer key, secret and issued tokens are registered with the log filter of
  :mod:`.redaction`. Failures are raised as fresh exceptions outside the ``except`` clauses: the
  originals carry the prepared request (the form body with the secret, the bearer header).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import time
from http import HTTPStatus
from typing import IO, Any, Iterator, Mapping

import requests
from oauthlib.oauth2 import LegacyApplicationClient, OAuth2Error, TokenExpiredError
from requests.adapters import HTTPAdapter
from requests_oauthlib import OAuth2Session
from urllib3.exceptions import InvalidHeader
from urllib3.util import Retry, parse_url

from . import parsers
from .contract import CAMPAIGN_PATH, INVALID_GRANT_ERROR, TOKEN_PATH
from .error_mapping import (
    INVALID_CREDENTIALS_MESSAGE,
    ErrorFactory,
    call_name,
    json_or_none,
    raise_for_common,
    raise_for_token_reply,
    redirect_error,
    refusal,
    retries_made,
    retries_text,
    status_phrase,
    transport_error,
)
from .errors import CheetahError, InvalidCredentials, MalformedResponse, Unauthorized
from .pacing import pacer_for
from .redaction import install_secret_filter
from .settings import CheetahSettings

__all__ = ["Transport", "RetryAlsoOn429", "loopback_http_allowed"]

#: Longest ``Retry-After`` the client honours, in seconds (urllib3 caps the wait at this).
RETRY_AFTER_MAX_SECONDS = 300
#: HTTP statuses retried where the call is safe to repeat.
RETRY_STATUSES = frozenset({500, 502, 503, 504})
#: Methods repeatable at transport level outside EmailCampaign (POST there: token and Import).
#: Repeating an Import POST whose reply was lost is deliberate: the repeat is the very same file
#: into the same list, whose rows are keyed by the identifier (a re-import replaces them
#: [assumed]); the send protocol re-imports the same way when a step fails, and the list-size
#: check before LAUNCH stops a campaign whose list came out different.
REPEATABLE_METHODS = frozenset({"GET", "PUT", "DELETE", "POST"})
#: Methods repeatable at transport level on EmailCampaign: creating a campaign is not. A repeated
#: PUT action is answered "already launched" (or applies nothing new); the protocol takes neither
#: for a confirmation before reading the campaign's status back.
REPEATABLE_CAMPAIGN_METHODS = frozenset({"GET", "PUT", "DELETE"})

_JSON = {"Content-Type": "application/json"}
_RETRY_AFTER_SECONDS = re.compile(r"\s*[0-9]+(\.[0-9]+)?\s*")
_INSECURE_ENV = "OAUTHLIB_INSECURE_TRANSPORT"
_insecure_lock = threading.Lock()
_insecure_users = 0
_insecure_saved: str | None = None


@contextlib.contextmanager
def loopback_http_allowed() -> Iterator[None]:
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


def _no_redirects(url: str, headers: dict, request_kwargs: dict) -> tuple[str, dict, dict]:
    """Token-request compliance hook: the token POST never follows a redirect either."""
    return url, headers, {**request_kwargs, "allow_redirects": False}


class RetryAlsoOn429(Retry):
    """urllib3 ``Retry`` that also repeats a 429 for *any* method, POST included.

    A 429 means the server refused the request without applying it, so repeating it (after
    ``Retry-After``, or the backoff when there is none) is always safe.
    """

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        if status_code == HTTPStatus.TOO_MANY_REQUESTS and self.respect_retry_after_header:
            return True
        return super().is_retry(method, status_code, has_retry_after)

    def parse_retry_after(self, retry_after: str) -> float:
        """Seconds to wait: whole or fractional (``"1.5"``), or an HTTP date; capped at
        ``retry_after_max``. Anything else (negative, junk) counts as absent (0: the backoff
        applies) instead of urllib3's InvalidHeader, which would fail the call unrepeated."""
        if _RETRY_AFTER_SECONDS.fullmatch(retry_after):
            return min(float(retry_after), self.retry_after_max)
        try:
            return super().parse_retry_after(retry_after)  # an HTTP date
        except InvalidHeader:
            return 0.0


class Transport:
    """One OAuth session with one account: authorised calls, retried where safe, mapped to errors."""

    def __init__(self, settings: CheetahSettings, log: logging.Logger):
        self.settings = settings
        self._log = log
        self._token_url = settings.endpoint + TOKEN_PATH
        self._token_lock = threading.RLock()
        self._token_generation = 0
        self._token_renew_at = 0.0  # time.monotonic() after which the token is renewed
        self._issued_lifetime: int | None = None
        self._recent_tokens: list[str] = []
        self._redactor = install_secret_filter()
        self._redactor.register(self, self._secrets())

        session = OAuth2Session(client=LegacyApplicationClient(client_id=settings.client_id.get_secret_value()))
        session.verify = True
        session.headers["Accept"] = "application/json"
        session.max_redirects = 0  # a redirect is an error (Redirected), never followed
        session.mount(settings.endpoint + "/", HTTPAdapter(max_retries=self._retry_policy(REPEATABLE_METHODS)))
        session.mount(
            settings.endpoint + CAMPAIGN_PATH,
            HTTPAdapter(max_retries=self._retry_policy(REPEATABLE_CAMPAIGN_METHODS)),
        )
        session.register_compliance_hook("access_token_request", _no_redirects)
        session.register_compliance_hook("access_token_response", self._on_token_response)
        self.session = session
        self._pacer = pacer_for(settings.endpoint, settings.cust_id, settings.max_requests_per_second)

    def close(self) -> None:
        self.session.close()

    def check_access(self) -> None:
        """Fetch a token now: raises InvalidCredentials / IpNotWhitelisted / transport errors."""
        self._ensure_token(force=True)

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping | None = None,
        body: Any = None,
        body_file: IO[bytes] | None = None,
        errors: Mapping[int, ErrorFactory] | None = None,
        expect_json: bool = True,
        expected: frozenset[int] = frozenset(),
    ) -> Any:
        """Send, map statuses (``errors`` first, then generic), return the parsed JSON body.
        ``body_file``: a JSON body already encoded in a seekable binary file, streamed from it in
        blocks (with its ``Content-Length``; rewound for every repeat) instead of ``body``.
        A GET (safe to repeat) whose 2xx reply is not JSON is repeated up to ``max_retries``
        times with backoff. ``expected`` statuses are logged at DEBUG (see :meth:`_log_call`)."""
        name = call_name(method, path)
        settings = self.settings
        for retry in range(settings.max_retries + 1 if method == "GET" and expect_json else 1):
            if retry:
                self._log.info("Cheetah %s: the reply was not JSON; repeating it (retry %d of %d)", name, retry,
                               settings.max_retries)
                time.sleep(min(settings.backoff_max_seconds, settings.backoff_factor * 2 ** (retry - 1)))
            resp = self._send(method, path, params=params, body=body, body_file=body_file, expected=expected)
            status = resp.status_code
            if not 200 <= status < 300 or not expect_json:
                break
            parsed = json_or_none(resp)
            if parsed is not None or resp.content.strip() == b"null":
                return parsed
        if 200 <= status < 300:
            if not expect_json:
                return None
            tried = f" after {retries_text(settings.max_retries)}" if method == "GET" and settings.max_retries else ""
            raise MalformedResponse(f"The {name} reply is not JSON{tried}.")
        raise refusal(name, resp, errors)

    # --- requests --------------------------------------------------------------------------------
    def _retry_policy(self, methods: frozenset[str]) -> Retry:
        settings = self.settings
        return RetryAlsoOn429(
            total=settings.max_retries,
            other=0,  # TLS and other unclassified failures: not retried
            allowed_methods=methods,
            status_forcelist=RETRY_STATUSES,
            backoff_factor=settings.backoff_factor,
            backoff_max=settings.backoff_max_seconds,
            backoff_jitter=settings.backoff_factor,
            raise_on_status=False,
            respect_retry_after_header=True,
            retry_after_max=RETRY_AFTER_MAX_SECONDS,
        )

    def _scope(self) -> contextlib.AbstractContextManager[None]:
        return loopback_http_allowed() if self.settings.loopback_http else contextlib.nullcontext()

    def _repeatable(self, method: str, url: str) -> bool:
        allowed = self.session.get_adapter(url).max_retries.allowed_methods
        return allowed is None or method.upper() in allowed

    def _transport_error(self, name: str, exc: BaseException, *, repeatable: bool) -> CheetahError:
        return transport_error(
            name, exc, repeatable=repeatable, host=parse_url(self.settings.endpoint).host or "",
            timeout_seconds=self.settings.timeout_seconds, max_retries=self.settings.max_retries,
        )

    def _redirected(self, name: str, exc: requests.TooManyRedirects) -> CheetahError:
        """The :class:`~.errors.Redirected` of the 3xx that ``max_redirects = 0`` refused to follow."""
        if isinstance(exc.response, requests.Response):
            self._log_call(exc.response)
            return redirect_error(name, exc.response)
        return CheetahError(f"{name} was redirected, and the client never follows a redirect.")

    def _log_call(self, resp: requests.Response, expected: frozenset[int] = frozenset()) -> None:
        """One line per call: method, path (no query), status, attempt (1 + transport retries)."""
        request = resp.request
        attempt = retries_made(resp) + 1
        # Routine successes and ``expected`` statuses (a look-up's 404) at DEBUG; retried calls
        # and errors at INFO, where an operator looks.
        routine = resp.status_code < 400 or resp.status_code in expected
        level = logging.DEBUG if routine and attempt == 1 else logging.INFO
        self._log.log(
            level,
            "Cheetah %s %s: %s (attempt %d)",
            request.method,
            (request.path_url or "").split("?", 1)[0],
            status_phrase(resp.status_code),
            attempt,
        )

    def _send(
        self, method: str, path: str, *, params: Mapping | None = None, body: Any = None,
        body_file: IO[bytes] | None = None, expected: frozenset[int] = frozenset(),
    ) -> requests.Response:
        """One authorised call: renews the token ahead of expiry, and once after a 401."""
        name = call_name(method, path)
        url = self.settings.endpoint + path
        repeatable = self._repeatable(method, url)
        generation = self._ensure_token()
        for attempt in (1, 2):
            resp: requests.Response | None = None
            failure: CheetahError | None = None
            try:
                if self._pacer is not None:
                    self._pacer.wait()
                with self._scope():
                    if body_file is None:
                        resp = self.session.request(method, url, params=params, json=body, timeout=self.settings.timeout,
                                                    allow_redirects=False)
                    else:  # streamed from the file (urllib3 rewinds it for its own retries)
                        body_file.seek(0)
                        resp = self.session.request(method, url, params=params, data=body_file, headers=_JSON,
                                                    timeout=self.settings.timeout, allow_redirects=False)
            except TokenExpiredError:  # oauthlib's own clock says so: same as a 401
                pass
            except requests.TooManyRedirects as exc:  # a 3xx with a Location (max_redirects = 0)
                failure = self._redirected(name, exc)
            except requests.RequestException as exc:
                # raised outside the handler: the original holds the request and its bearer header
                failure = self._transport_error(name, exc, repeatable=repeatable)
            if failure is not None:
                raise failure
            if resp is not None:
                self._log_call(resp, expected)
                if 300 <= resp.status_code < 400:  # a 3xx without a Location
                    raise redirect_error(name, resp)
            if resp is None or resp.status_code == 401:
                if attempt == 2:
                    raise Unauthorized(
                        f"{name} was refused with 401 Unauthorized even with a newly issued token.", status=401
                    )
                generation = self._ensure_token(replace=generation)
                continue
            raise_for_common(name, resp, repeatable=repeatable)
            return resp
        raise AssertionError("unreachable")  # pragma: no cover

    # --- token -----------------------------------------------------------------------------------
    def _on_token_response(self, resp: requests.Response) -> requests.Response:
        """Compliance hook: map the token reply before oauthlib parses it."""
        self._log_call(resp)
        if resp.status_code != 200:
            raise_for_token_reply(resp)
        body = json_or_none(resp)
        if body is None:
            raise MalformedResponse("The token reply is not JSON.")
        _token, self._issued_lifetime = parsers.parse_token(body)
        resp.encoding = json.detect_encoding(resp.content)  # oauthlib reads ``resp.text`` as we read the bytes
        return resp

    def _fetch_token(self) -> None:
        settings = self.settings
        self._issued_lifetime = None
        # Failures are raised as fresh exceptions *outside* the except clauses: the originals
        # carry the prepared request (form body with the secret) and tracebacks through
        # requests-oauthlib frames whose locals hold the password.
        failure: CheetahError | None = None
        token: Mapping[str, Any] = {}
        try:
            if self._pacer is not None:
                self._pacer.wait()
            with self._scope():
                token = self.session.fetch_token(
                    self._token_url,
                    username=settings.consumer_key.get_secret_value(),
                    password=settings.consumer_secret.get_secret_value(),
                    client_id=settings.client_id.get_secret_value(),
                    include_client_id=True,  # client_id in the form body, as the API expects
                    timeout=settings.timeout,
                )
        except CheetahError as exc:  # raised by _on_token_response
            failure = type(exc)(exc.message, status=exc.status)
        except requests.TooManyRedirects as exc:  # a 3xx with a Location (max_redirects = 0)
            failure = self._redirected(call_name("POST", TOKEN_PATH), exc)
        except requests.RequestException as exc:
            failure = self._transport_error(call_name("POST", TOKEN_PATH), exc, repeatable=True)
        except OAuth2Error as exc:  # a 200 whose body oauthlib still refuses
            if exc.error == INVALID_GRANT_ERROR:
                failure = InvalidCredentials(INVALID_CREDENTIALS_MESSAGE)
            else:
                failure = MalformedResponse(f"The token reply was refused by oauthlib ({exc.error}).")
        except Warning:  # oauthlib's "scope has changed" warning-as-exception
            failure = MalformedResponse("The token reply changed the requested scope.")
        if failure is not None:
            raise failure
        access_token = token.get("access_token", "")
        lifetime = self._issued_lifetime or parsers.DEFAULT_TOKEN_LIFETIME_S
        margin = min(settings.token_renew_margin_seconds, lifetime / 2)
        self._token_renew_at = time.monotonic() + lifetime - margin
        self._token_generation += 1
        self._recent_tokens = [access_token, *self._recent_tokens][:2]
        self._redactor.register(self, self._secrets())

    def _secrets(self) -> set[str]:
        """What the log filter withholds for this session: the credentials and the recent tokens."""
        settings = self.settings
        return {settings.consumer_key.get_secret_value(), settings.consumer_secret.get_secret_value(),
                *self._recent_tokens}

    def _ensure_token(self, *, replace: int | None = None, force: bool = False) -> int:
        """The generation of a usable token; renews it when due, forced, or when ``replace``
        names the generation that was just refused (unless another thread renewed it already)."""
        with self._token_lock:
            current = self._token_generation
            due = not self.session.authorized or time.monotonic() >= self._token_renew_at
            if force or due or (replace is not None and replace == current):
                self._fetch_token()
            return self._token_generation
