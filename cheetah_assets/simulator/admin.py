"""A small client of the simulator's ``/_sim`` admin routes (docs/simulator.md), for tests and
the demo. Every method raises :class:`SimulatorAdminError` (with the simulator's ``message``)
on a non-2xx reply."""

from __future__ import annotations

import datetime as dt
from typing import Any

import requests

from ..timeutil import parse_iso


class SimulatorAdminError(RuntimeError):
    """An admin call was refused; ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class SimulatorAdmin:
    """``SimulatorAdmin("http://127.0.0.1:8765")``: methods mirror the admin routes."""

    def __init__(self, base_url: str, *, timeout: float = 30.0, session: requests.Session | None = None):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        if session is None:
            # The simulator is on loopback: no proxy or CA bundle of the environment applies, and
            # not reading them keeps these calls clear of a loopback Cheetah client in another
            # thread setting and removing OAUTHLIB_INSECURE_TRANSPORT (cheetah.transport).
            session = requests.Session()
            session.trust_env = False
        self._session = session

    def close(self) -> None:
        """Close the underlying HTTP session."""
        self._session.close()

    def _call(self, method: str, route: str, body: Any = None, params: dict | None = None) -> Any:
        resp = self._session.request(method, f"{self.base_url}/_sim/{route}", json=body, params=params,
                                     timeout=self.timeout)
        try:
            data = resp.json()
        except ValueError:
            data = None
        if not resp.ok:
            message = data.get("message") if isinstance(data, dict) else resp.text[:200]
            raise SimulatorAdminError(f"{method} /_sim/{route} failed ({resp.status_code}): {message}", resp.status_code)
        return data

    # ------------------------------------------------------------------------------ world
    def reset(self, seed: str = "demo", *, now: dt.datetime | None = None, rate_limit: int | None = None,
              token_ttl: int | None = None, live_clock: bool | None = None,
              string_ids: bool | None = None) -> dict:
        """Drop all state and re-create the demo account (optionally with its limits changed;
        ``live_clock`` None keeps the clock mode; ``string_ids`` True serves the string-id
        variant, None the server's default)."""
        body: dict[str, Any] = {"seed": seed}
        if string_ids is not None:
            body["stringIds"] = string_ids
        if live_clock is not None:
            body["liveClock"] = live_clock
        if now is not None:
            body["now"] = now.isoformat()
        if rate_limit is not None:
            body["rateLimit"] = rate_limit
        if token_ttl is not None:
            body["tokenTtl"] = token_ttl
        return self._call("POST", "reset", body)

    def add_account(self, **fields: Any) -> dict:
        """Add an account; keyword names are the route's JSON keys (``consumerKey=...``)."""
        return self._call("POST", "accounts", fields)

    def add_templates(self, folder_id: int | None = None, templates: list[dict] | None = None, *,
                      folderId: int | None = None) -> dict:  # noqa: N803 - the route's key, accepted too
        """Add (or replace, by objId) templates in a folder (``folder_id`` or ``folderId``)."""
        folder = folder_id if folder_id is not None else folderId
        if folder is None or templates is None:
            raise TypeError("add_templates needs a folder id and a list of templates")
        return self._call("POST", "templates", {"folderId": folder, "templates": templates})

    def set_whitelist(self, open: bool) -> dict:  # noqa: A002 - the route's key
        """Open or close the IP whitelist."""
        return self._call("POST", "whitelist", {"open": open})

    def expire_tokens(self) -> dict:
        """Expire every issued token now."""
        return self._call("POST", "tokens/expire", {})

    # ------------------------------------------------------------------------------ clock
    def now(self) -> dt.datetime:
        """The simulated now (aware, UTC)."""
        return parse_iso(self._call("GET", "clock")["now"])

    def set_now(self, when: dt.datetime) -> dt.datetime:
        """Move the clock forward to ``when`` (naive = UTC); due campaigns are sent."""
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        return parse_iso(self._call("POST", "clock", {"now": when.isoformat()})["now"])

    def advance(self, by: float | dt.timedelta) -> dt.datetime:
        """Move the clock forward by seconds or a timedelta; returns the new now."""
        seconds = by.total_seconds() if isinstance(by, dt.timedelta) else float(by)
        return parse_iso(self._call("POST", "clock", {"advanceSeconds": seconds})["now"])

    # ----------------------------------------------------------------------------- faults
    def add_fault(self, *, kind: str, method: str = "*", path: str = "*", status: int | None = None,
                  retry_after: int | None = None, delay: float = 0.0, times: int | None = 1,
                  after: int = 0, body: str | None = None, retryAfter: int | None = None) -> int:  # noqa: N803
        """Arm a fault (see docs/simulator.md); returns its id.

        ``status`` defaults to 503 (``kind="status"``) or 200 (``kind="malformed"``, whose
        ``body`` is the raw reply text sent after applying the request); ``times=None`` fires
        until cleared; ``retryAfter`` is accepted as a spelling of ``retry_after``.
        """
        payload: dict[str, Any] = {
            "kind": kind, "method": method, "path": path, "delay": delay, "times": times, "after": after,
            "retryAfter": retry_after if retry_after is not None else retryAfter,
        }
        if status is not None:
            payload["status"] = status
        if body is not None:
            payload["body"] = body
        return self._call("POST", "faults", payload)["faultId"]

    def clear_faults(self) -> dict:
        """Disarm and forget every fault."""
        return self._call("DELETE", "faults")

    def faults(self) -> list[dict]:
        """Every fault with ``seen``, ``fired`` and ``armed``."""
        return self._call("GET", "faults")["faults"]

    # ---------------------------------------------------------------------------- read-back
    def sent(self, recipients: bool = True) -> dict:
        """``{"campaigns": [...], "duplicates": n}``: what actually went out."""
        return self._call("GET", "sent", params=None if recipients else {"recipients": "false"})

    def lists(self, list_id: int | None = None, rows: bool = True) -> list[dict]:
        """The recipient lists (one, with ``list_id``) and their current rows."""
        params: dict[str, Any] = {} if rows else {"rows": "false"}
        if list_id is not None:
            params["id"] = list_id
        return self._call("GET", "lists", params=params)["lists"]

    def stats(self) -> dict:
        """Request counts per ``METHOD path`` and status, totals, faults fired."""
        return self._call("GET", "stats")

    def requests(self) -> list[dict]:
        """The last 1,000 API requests (method, path, query, status, account; no bodies)."""
        return self._call("GET", "requests")["requests"]

    def __repr__(self) -> str:
        return f"SimulatorAdmin({self.base_url!r})"
