"""What a run writes to its log (Dagster's event log), and what it leaves to Python's logging.

Every line written to ``context.log`` is an event in the instance's event log: a row written and
committed, then read back by the UI. A day of 200 campaigns (240 sends) wrote 4,575 routine DEBUG
lines (each API call, each send step's start) next to 1,601 INFO lines, and writing them took a
third of the pipeline's CPU (``bench/bench_day.py``). :class:`RunLog` keeps INFO and above in the
run's log (each send's start and outcome, progress on long work, retried or failed calls, warnings
and errors) and hands the routine DEBUG lines (each call, each step) to the Python logger
``cheetah_assets.detail``. The INFO lines are few too: two per send and one per recipient list,
and progress lines only when the work takes long (:func:`every`). A deployment that wants them in
the run's log too captures that logger in its ``dagster.yaml`` (docs/deploy.md)::

    python_logs:
      managed_python_loggers: [cheetah_assets.detail]
      python_log_level: DEBUG
"""

from __future__ import annotations

import logging
import time
from typing import Callable

#: The Python logger that receives a run's routine DEBUG lines.
DETAIL_LOGGER = "cheetah_assets.detail"


class RunLog(logging.LoggerAdapter):
    """``run_log`` (a run's ``context.log``) for INFO and above, ``detail`` for lower levels."""

    def __init__(self, run_log: logging.Logger | logging.LoggerAdapter, detail: logging.Logger | None = None):
        super().__init__(run_log, {})
        self.detail = detail if detail is not None else logging.getLogger(DETAIL_LOGGER)

    @staticmethod
    def _level(level: int | str) -> int:
        """A level's number; a name (as Dagster's log manager accepts) by logging's own names, an
        unknown one as INFO (the run's log, never lost)."""
        if isinstance(level, int):
            return level
        return logging.getLevelNamesMapping().get(str(level).upper(), logging.INFO)

    def _target(self, level: int):
        return self.logger if level >= logging.INFO else self.detail

    def isEnabledFor(self, level: int | str) -> bool:  # noqa: N802 - logging's name
        level = self._level(level)
        return self._target(level).isEnabledFor(level)

    def log(self, level: int | str, msg, *args, **kwargs) -> None:
        level = self._level(level)
        target = self._target(level)
        if target.isEnabledFor(level):
            target.log(level, msg, *args, **kwargs)


def every(seconds: float, emit: Callable[[int], None], clock: Callable[[], float] = time.monotonic) -> Callable[[int], None]:
    """A progress callback for long work: it hands its count to ``emit`` only once ``seconds``
    have passed since the callback was made and since its last line, so short work writes no
    progress line at all."""
    last = clock()

    def progress(count: int) -> None:
        nonlocal last
        now = clock()
        if now - last >= seconds:
            last = now
            emit(count)

    return progress
