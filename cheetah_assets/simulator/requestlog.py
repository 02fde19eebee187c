"""The request log and counts of the ``/services2`` API (``GET /_sim/requests``, ``GET
/_sim/stats``). Never bodies, headers or secrets: secret-looking query values are masked."""

from __future__ import annotations

import collections
import datetime as dt
import itertools
import threading
from typing import Any

from .accounts import Account
from .clock import UTC, SimClock, iso
from .faults import Faults, FiredFault

#: How many requests ``/_sim/requests`` keeps.
REQUEST_LOG_SIZE = 1_000
#: Query keys whose values are never recorded in the request log.
SECRET_QUERY_KEYS = frozenset({"username", "password", "client_id", "client_secret", "access_token", "token"})


def masked_query(query: str) -> str:
    """``query`` with the value of every secret-looking key replaced by ``***``."""
    if not query:
        return query
    parts = []
    for part in query.split("&"):
        key, sep, _value = part.partition("=")
        parts.append(f"{key}=***" if sep and key.lower() in SECRET_QUERY_KEYS else part)
    return "&".join(parts)


class RequestLog:
    """The last requests, and counts per route and status, of the simulated world."""

    def __init__(self, lock: threading.RLock, clock: SimClock, faults: Faults):
        self._lock = lock
        self._clock = clock
        self._faults = faults
        self.entries: collections.deque = collections.deque(maxlen=REQUEST_LOG_SIZE)
        self.counts: collections.Counter = collections.Counter()  # (method path, status) -> n
        self.total = 0
        self.dropped = 0
        self._seq = itertools.count(1)

    def record(self, method: str, path: str, query: str, status: int | None,
               account: Account | None, fault: FiredFault | None, dropped: bool) -> None:
        """Log one API request (``status`` None: no reply; ``dropped``: the connection was closed
        without one)."""
        query = masked_query(query)
        with self._lock:
            self.total += 1
            self.dropped += dropped
            self.counts[(f"{method} {path}", "dropped" if dropped else str(status))] += 1
            self.entries.append({
                "seq": next(self._seq),
                "time": dt.datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "simTime": iso(self._clock.now()),
                "method": method, "path": path, "query": query, "status": status,
                "account": account.cust_id if account else None,
                "fault": fault.kind if fault else None, "dropped": dropped,
            })

    def requests(self) -> dict[str, Any]:
        """``GET /_sim/requests``: the last 1,000 API requests, oldest first."""
        with self._lock:
            return {"requests": list(self.entries)}

    def stats(self) -> dict[str, Any]:
        """``GET /_sim/stats``: counts per ``METHOD path`` and status (``dropped`` for a
        connection closed without a reply), totals and faults fired."""
        with self._lock:
            per: dict[str, dict[str, int]] = {}
            for (route, status), n in sorted(self.counts.items()):
                per.setdefault(route, {})[status] = n
            return {"requests": per, "total": self.total, "dropped": self.dropped,
                    "faultsFired": self._faults.fired, "faults": self._faults.fired_counts()}
