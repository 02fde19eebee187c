"""Injected faults (``/_sim/faults``): what to do to the next matching API requests instead of
(or besides) answering them. The HTTP layer (:mod:`.app`) asks :meth:`Faults.take` before every
``/services2`` request and carries out the :class:`FiredFault` it gets."""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import Field, field_validator, model_validator

from .bodies import Body, bounded, read

#: Fault kinds of ``POST /_sim/faults``. ``unapplied``: a normal-looking 200 reply (for a
#: campaign action, the campaign as if the action had been applied) but nothing is applied.
FAULT_KINDS = ("status", "delay", "drop", "apply_then_drop", "malformed", "unapplied")
#: Kinds that reply 200 unless told otherwise (the others: 503).
KINDS_REPLYING_OK = ("malformed", "unapplied")


@dataclass
class Fault:
    fault_id: int
    method: str
    path: str
    kind: str
    status: int
    retry_after: int | None
    delay: float
    times: int | None  # None = until cleared
    after: int
    body: str | None = None  # the raw reply of a "malformed" fault
    seen: int = 0
    fired: int = 0

    @property
    def armed(self) -> bool:
        return self.times is None or self.fired < self.times

    def matches(self, method: str, path: str) -> bool:
        if self.method != "*" and self.method != method.upper():
            return False
        if self.path == "*":
            return True
        if self.path.endswith("*"):
            return path.startswith(self.path[:-1])
        return self.path == path

    def reply(self) -> dict[str, Any]:
        return {
            "faultId": self.fault_id, "method": self.method, "path": self.path, "kind": self.kind,
            "status": self.status, "retryAfter": self.retry_after, "delay": self.delay,
            "times": self.times, "after": self.after, "body": self.body, "seen": self.seen,
            "fired": self.fired, "armed": self.armed,
        }


@dataclass(frozen=True)
class FiredFault:
    """What the HTTP layer must do for one request (a snapshot, safe outside the lock)."""

    fault_id: int
    kind: str
    status: int
    retry_after: int | None
    delay: float
    body: str | None = None


class FaultBody(Body):
    """``POST /_sim/faults`` (docs/simulator.md). ``"times": null`` fires until cleared."""

    null_is_a_value: ClassVar[frozenset[str]] = frozenset({"times"})

    kind: str
    #: Default: 200 for the kinds that reply OK, else 503.
    status: Annotated[int | None, bounded("'status' must be an HTTP status code (100-599).", 100, 599)] = None
    retry_after: Annotated[int | None, bounded("'retryAfter' must be >= 0.", 0)] = Field(None, alias="retryAfter")
    delay: Annotated[float, bounded("'delay' must be >= 0.", 0)] = 0.0
    times: Annotated[int | None, bounded("'times' must be >= 1 (or null: until cleared).", 1)] = 1
    after: Annotated[int, bounded("'after' must be >= 0.", 0)] = 0
    body: str | None = None
    method: str = "*"
    path: str = "*"

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in FAULT_KINDS:
            raise ValueError(f"'kind' must be one of {', '.join(FAULT_KINDS)}; got {value!r}.")
        return value

    @field_validator("method")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @model_validator(mode="after")
    def _status_and_body(self) -> "FaultBody":
        if self.status is None:
            self.status = 200 if self.kind in KINDS_REPLYING_OK else 503
        if self.kind == "malformed" and self.body is None:
            raise ValueError("'body' (the raw reply text) is required for a malformed fault.")
        return self


class Faults:
    """The armed (and spent) faults of the simulated world."""

    def __init__(self, lock: threading.RLock):
        self._lock = lock
        self.faults: list[Fault] = []
        #: How many times any fault fired.
        self.fired = 0
        self._fault_ids = itertools.count(1)

    def add(self, body: Any) -> dict[str, Any]:
        """``POST /_sim/faults``; returns ``{"faultId"}``."""
        request = read(FaultBody, body, "fault")
        assert request.status is not None  # set by the model
        with self._lock:
            fault = Fault(next(self._fault_ids), request.method, request.path, request.kind, request.status,
                          request.retry_after, request.delay, request.times, request.after, request.body)
            self.faults.append(fault)
            return {"faultId": fault.fault_id}

    def take(self, method: str, path: str) -> FiredFault | None:
        """The fault to apply to this request, if any. Every armed fault that matches counts the
        request as seen; the first one past its ``after`` fires."""
        with self._lock:
            chosen = None
            for f in self.faults:
                if not f.armed or not f.matches(method, path):
                    continue
                f.seen += 1
                if chosen is None and f.seen > f.after:
                    f.fired += 1
                    self.fired += 1
                    chosen = FiredFault(f.fault_id, f.kind, f.status, f.retry_after, f.delay, f.body)
            return chosen

    def clear(self) -> dict[str, Any]:
        """``DELETE /_sim/faults``."""
        with self._lock:
            n = len(self.faults)
            self.faults.clear()
            return {"cleared": n}

    def listing(self) -> dict[str, Any]:
        """``GET /_sim/faults``: every fault (``armed`` tells whether it can still fire)."""
        with self._lock:
            return {"faults": [f.reply() for f in self.faults]}

    def fired_counts(self) -> list[dict[str, int]]:
        """How many times each fault fired (for ``/_sim/stats``)."""
        with self._lock:
            return [{"faultId": f.fault_id, "fired": f.fired} for f in self.faults]
