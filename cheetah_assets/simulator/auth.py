"""Who may call the API: the IP whitelist, the OAuth password grant and its Bearer tokens, and the
per-account rate limit. Token lifetimes and the rate limit use the wall clock (``monotonic``),
not the simulated one."""

from __future__ import annotations

import hmac
import math
import secrets
import threading
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ..cheetah.contract import INVALID_GRANT_ERROR, IP_NOT_WHITELISTED_ERROR
from .accounts import Account, Directory
from .bodies import Body, read
from .errors import SimError

#: Tokens expired longer ago than this are forgotten when the next one is issued.
EXPIRED_TOKEN_MEMORY_S = 3600


@dataclass
class Token:
    account_id: int
    expires_at: float  # monotonic()


class WhitelistBody(Body):
    """``POST /_sim/whitelist``."""

    open: bool


class AccessControl:
    """The whitelist, the issued tokens and the rate limit of the simulated world."""

    def __init__(self, lock: threading.RLock, directory: Directory, monotonic: Callable[[], float]):
        self._lock = lock
        self._directory = directory
        self._monotonic = monotonic
        self.tokens: dict[str, Token] = {}
        self.whitelist_open = True

    # -------------------------------------------------------------------------------- the token
    def issue_token(self, form: Mapping[str, str], basic: tuple[str, str] | None) -> tuple[dict[str, Any], Account]:
        """The password grant: the token reply and the account it is for. ``form`` is the decoded
        form body; ``basic`` the HTTP Basic (client id, client secret) if sent -- requests-oauthlib
        sends the client id that way unless told to put it in the body; either is accepted."""
        def bad(message: str, error: str = "invalid_request") -> SimError:
            return SimError(400, message, error=error)

        grant = form.get("grant_type")
        if not grant:
            raise bad("'grant_type' is required.")
        if grant != "password":
            raise bad("Only grant_type=password is supported.", "unsupported_grant_type")
        for key in ("username", "password"):
            if not form.get(key):
                raise bad(f"'{key}' is required.")
        presented = [c for c in (form.get("client_id"), basic[0] if basic else None) if c]
        if not presented:
            raise bad("'client_id' is required (in the form body or as the HTTP Basic user).")
        with self._lock:
            account = self._directory.account_with_key(form["username"])
            if account is not None:
                self.check_rate(account)
            if (account is None
                    or not hmac.compare_digest(account.consumer_secret.encode(), form["password"].encode())
                    or not all(hmac.compare_digest(account.client_id.encode(), c.encode()) for c in presented)):
                raise SimError(400, "The consumer key, consumer secret or client identifier is not valid.",
                               error=INVALID_GRANT_ERROR)
            value = secrets.token_urlsafe(32)
            now = self._monotonic()
            self.tokens = {k: t for k, t in self.tokens.items() if t.expires_at > now - EXPIRED_TOKEN_MEMORY_S}
            self.tokens[value] = Token(account.account_id, now + account.token_ttl)
            return {"access_token": value, "token_type": "bearer", "expires_in": account.token_ttl}, account

    def authenticate(self, authorization: str | None) -> Account:
        """The account of an ``Authorization: Bearer`` header; 401 when missing/unknown/expired."""
        if not authorization or not authorization.lower().startswith("bearer "):
            raise SimError(401, "An 'Authorization: Bearer <token>' header is required.")
        value = authorization[7:].strip()
        with self._lock:
            token = self.tokens.get(value)
            if token is None:
                raise SimError(401, "The access token is not valid.")
            if token.expires_at <= self._monotonic():
                raise SimError(401, "The access token has expired.")
            return self._directory.accounts[token.account_id]

    def expire_tokens(self) -> dict[str, Any]:
        """``POST /_sim/tokens/expire``: every issued token is expired from now on."""
        with self._lock:
            for token in self.tokens.values():
                token.expires_at = -math.inf
            return {"expired": len(self.tokens)}

    # --------------------------------------------------------------------------- the rate limit
    def check_rate(self, account: Account) -> None:
        """Count one request against the account's per-second limit, or 429 with Retry-After."""
        if account.rate_limit <= 0:
            return
        with self._lock:
            now = self._monotonic()
            hits = account.hits
            while hits and hits[0] <= now - 1.0:
                hits.popleft()
            if len(hits) >= account.rate_limit:
                retry = max(1, math.ceil(hits[0] + 1.0 - now))
                raise SimError(429, f"Rate limit of {account.rate_limit} requests per second exceeded; "
                                    f"retry after {retry} s.", headers={"Retry-After": str(retry)})
            hits.append(now)

    # ---------------------------------------------------------------------------- the whitelist
    def whitelist_error(self) -> SimError | None:
        """403 ``ip_not_whitelisted`` when the whitelist is closed, else ``None``."""
        if self.whitelist_open:
            return None
        return SimError(403, "This address is not on the account's IP whitelist.", error=IP_NOT_WHITELISTED_ERROR)

    def whitelist(self) -> dict[str, Any]:
        """``GET /_sim/whitelist``."""
        return {"open": self.whitelist_open}

    def set_whitelist(self, body: Any) -> dict[str, Any]:
        """``POST /_sim/whitelist {"open": bool}``."""
        request = read(WhitelistBody, body, "whitelist")
        with self._lock:
            self.whitelist_open = request.open
            return self.whitelist()
