"""The simulator's API error reply: :class:`SimError`, raised by every part of the simulated world
and turned into the HTTP reply by :mod:`.app`."""

from __future__ import annotations

from typing import Any, Mapping


class SimError(Exception):
    """An API error reply: HTTP ``status``, a one-sentence ``message``, optionally an OAuth
    ``error`` code, extra reply headers and extra body keys."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.error = error
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self) -> dict[str, Any]:
        """The JSON error body: always ``message``, plus ``error`` when set."""
        out: dict[str, Any] = {}
        if self.error:
            out["error"] = self.error
        out["message"] = self.message
        out.update(self.extra)
        return out
