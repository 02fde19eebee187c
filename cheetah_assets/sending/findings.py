"""One result of a set-up check: which check, whether it passed, and one sentence saying why."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool
    message: str
    #: a blocking failure stops the day's sends; a non-blocking one is a warning
    blocking: bool = True


def failures(findings: Iterable[Finding], *, blocking: bool | None = None) -> list[Finding]:
    return [f for f in findings if not f.ok and (blocking is None or f.blocking == blocking)]
