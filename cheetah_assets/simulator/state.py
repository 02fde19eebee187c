"""The simulator's in-memory world, composed of one part per concern:

* :class:`~.accounts.Directory` -- accounts, Data Maps, folders and templates;
* :class:`~.auth.AccessControl` -- the IP whitelist, tokens and the rate limit;
* :class:`~.imports.Imports` -- recipient lists and their import queue;
* :class:`~.campaigns.Campaigns` -- campaigns and their send;
* :class:`~.reports.Reports` -- metrics and what went out;
* :class:`~.faults.Faults` and :class:`~.requestlog.RequestLog` -- the test surface;
* :class:`~.clock.SimClock` -- the simulated now.

Pure model, no HTTP: every operation takes plain values (parsed JSON bodies, query values) and
returns a JSON-ready ``dict`` or raises :class:`~.errors.SimError` carrying the HTTP status and
``message`` the API replies with. All parts share one re-entrant lock, so every operation is
thread-safe; the only slow work, decoding and parsing an import file, runs outside it.

:class:`SimState` holds the parts and does what spans them: the reset (a new world, each part
anew) and the admin clock (moving it sends what became due).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path
from typing import Any, Callable

from pydantic import Field

from .accounts import DEMO_ACCOUNT, Directory
from .auth import AccessControl
from .bodies import Body, IsoInstant, read
from .campaigns import Campaigns
from .clock import UTC, ClockBody, SimClock, iso
from .errors import SimError
from .faults import Faults
from .imports import Imports
from .reports import Reports
from .requestlog import RequestLog
from .rowstore import RowStore


class ResetBody(Body):
    """``POST /_sim/reset`` (every key optional)."""

    seed: str = "demo"
    now: IsoInstant | None = None
    rate_limit: int | None = Field(None, alias="rateLimit")
    token_ttl: int | None = Field(None, alias="tokenTtl")
    live_clock: bool | None = Field(None, alias="liveClock")
    string_ids: bool | None = Field(None, alias="stringIds")


class SimState:
    """The whole simulated Cheetah Messaging world (see the module docstring)."""

    directory: Directory
    access: AccessControl
    imports: Imports
    campaigns: Campaigns
    reports: Reports
    faults: Faults
    log: RequestLog

    def __init__(self, seed: str = "demo", now: dt.datetime | None = None, *,
                 rate_limit: int | None = None, token_ttl: int | None = None, live_clock: bool = False,
                 string_ids: bool = False, monotonic: Callable[[], float] = time.monotonic,
                 rows_path: str | Path | None = None):
        self.lock = threading.RLock()
        #: The recipient rows, on disk: in ``rows_path`` (the persisted state file), else a
        #: temporary file of their own (:mod:`.rowstore`).
        self.rows = RowStore(rows_path)
        #: A state file's rows come back with its world (:mod:`.persist`): the first reset keeps them.
        self._keep_rows = rows_path is not None
        self._monotonic = monotonic
        #: Frozen unless moved; ``live_clock``: it also runs with real time (the embedded demo),
        #: still movable forward by the admin routes.
        self.clock = SimClock(monotonic, live=live_clock)
        #: What a reset without ``string_ids`` returns to (``cheetah-sim --string-ids``).
        self.default_string_ids = string_ids
        #: Bumped by every reset (a request delayed across a reset is dropped, not applied).
        self.generation = 0
        self.reset(seed, now, rate_limit=rate_limit, token_ttl=token_ttl)

    # --------------------------------------------------------------------------------- reset
    def reset(self, seed: str = "demo", now: dt.datetime | None = None, *,
              rate_limit: int | None = None, token_ttl: int | None = None,
              live_clock: bool | None = None, string_ids: bool | None = None) -> dict[str, Any]:
        """Drop all state and re-create the demo account (``rate_limit``/``token_ttl`` override
        its defaults). ``seed`` also seeds the metric curves; ``now`` sets the clock (default:
        the real time, to the second); ``live_clock`` (default: unchanged) lets it run;
        ``string_ids`` (default: the server's) serves the string-id variant (:mod:`.variants`)."""
        with self.lock:
            #: Serve the string-id variant (ids and counts as strings, extra fields, key order).
            self.string_ids = self.default_string_ids if string_ids is None else string_ids
            if live_clock is not None:
                self.clock.live = live_clock
            self.generation += 1
            self.seed = str(seed)
            start = (now or dt.datetime.now(UTC)).astimezone(UTC)
            self.clock.set(start if now is not None else start.replace(microsecond=0))
            self.directory = Directory(self.lock, self.clock)
            self.access = AccessControl(self.lock, self.directory, self._monotonic)
            if not self._keep_rows:
                self.rows.clear()
            self._keep_rows = False
            self.imports = Imports(self.lock, self.directory, self.rows)
            self.campaigns = Campaigns(self.lock, self.clock, self.directory, self.imports)
            self.reports = Reports(self.campaigns, self.seed)
            self.faults = Faults(self.lock)
            self.log = RequestLog(self.lock, self.clock, self.faults)
            demo = dict(DEMO_ACCOUNT)
            if rate_limit is not None:
                demo["rateLimit"] = rate_limit
            if token_ttl is not None:
                demo["tokenTtl"] = token_ttl
            self.directory.add_account(demo)
            return {"seed": self.seed, "now": iso(self.clock.now()), "liveClock": self.clock.live,
                    "stringIds": self.string_ids}

    def reset_from(self, body: Any) -> dict[str, Any]:
        """``POST /_sim/reset``: :meth:`reset` with the body's keys."""
        request = read(ResetBody, body, "reset")
        return self.reset(request.seed, request.now, rate_limit=request.rate_limit, token_ttl=request.token_ttl,
                          live_clock=request.live_clock, string_ids=request.string_ids)

    # --------------------------------------------------------------------------------- clock
    @property
    def now(self) -> dt.datetime:
        """The simulated now."""
        with self.lock:
            return self.clock.now()

    def clock_reply(self) -> dict[str, Any]:
        """``GET /_sim/clock``."""
        with self.lock:
            return {"now": iso(self.clock.now()), "live": self.clock.live}

    def set_clock(self, body: Any) -> dict[str, Any]:
        """``POST /_sim/clock {"now": ISO} | {"advanceSeconds": N}``: set or move the clock and send
        every campaign now due. It may be set back, but never before a send that happened (400):
        what went out stays out, and its metrics never run backwards."""
        request = read(ClockBody, body, "clock")
        with self.lock:
            target = request.target(self.clock.now())
            last_send = self.campaigns.last_send()
            if last_send is not None and target < last_send:
                raise SimError(400, f"The simulated clock cannot be set before {iso(last_send)}: a campaign was "
                                    "sent then.")
            self.clock.set(target)
            return {"now": iso(target), "sent": self.campaigns.process_due()}

    def process_due(self) -> list[int]:
        """Send every campaign now due (see :meth:`.campaigns.Campaigns.process_due`)."""
        return self.campaigns.process_due()
