"""Pacing of API requests: at most N a second from this process to one account.

Cheetah Messaging answers 429 past the account's rate, with a ``Retry-After`` in whole seconds, so
every request over the rate costs its caller a second or more. The parallel send workers of one run
(and any other client of the same account in the process) share one :class:`RequestPacer`, which
spaces their requests ``1 / rate`` seconds apart. It is off (rate 0) unless
``max_requests_per_second`` is set; set it just under the account's rate.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

__all__ = ["RequestPacer", "pacer_for"]


class RequestPacer:
    """Hands out request slots ``1 / rate`` seconds apart to every thread that asks."""

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if rate <= 0:
            raise ValueError("a pacer needs a rate above 0 requests a second")
        self.rate = rate
        self._interval = 1.0 / rate
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._next = 0.0  # the earliest time of the next slot

    def wait(self) -> float:
        """Block until this caller's slot; the seconds waited."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self._interval
        delay = slot - now
        if delay > 0:
            self._sleep(delay)
        return delay


_PACERS: dict[tuple[str, int, float], RequestPacer] = {}
_PACERS_LOCK = threading.Lock()


def pacer_for(endpoint: str, cust_id: int, rate: float) -> RequestPacer | None:
    """The process's pacer of one account at ``rate`` (None when ``rate`` is 0: no pacing)."""
    if rate <= 0:
        return None
    key = (endpoint, cust_id, rate)
    with _PACERS_LOCK:
        pacer = _PACERS.get(key)
        if pacer is None:
            pacer = _PACERS[key] = RequestPacer(rate)
        return pacer
