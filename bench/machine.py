"""How fast this machine is at the moment a benchmark runs (imported by the bench_*.py scripts).

The benchmarks compare approaches measured in the same run, so their ratios do not depend on the
machine's speed; but they do move with it. On this project's shared 2-core machine the same code
read 1.6-1.8x the raw scan one morning and 3.0x that evening, when a plain Python loop took 2.5
times as long: a noisy neighbour slows sorts and b-trees (the freeze) more than a sequential
scan (the raw limit). Each benchmark prints this line first, so its figures can be read against
the machine's state.
"""

from __future__ import annotations

import sqlite3
import time

#: Steps of the Python loop and integers of the SQLite sort (about a second each on a quiet machine).
PY_STEPS = 10_000_000
SORT_ROWS = 1_000_000


def python_loop_seconds(steps: int = PY_STEPS) -> float:
    started = time.perf_counter()
    total = 0
    for i in range(steps):
        total += i
    return time.perf_counter() - started


def sqlite_sort_seconds(rows: int = SORT_ROWS) -> float:
    """An in-memory SQLite sort of ``rows`` pseudo-random integers (SQLite's C: sorter, b-trees)."""
    con = sqlite3.connect(":memory:")
    try:
        started = time.perf_counter()
        con.execute(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) "
            "SELECT count(*), max(k) FROM (SELECT (x * 7919) % 1000003 AS k FROM c ORDER BY k)",
            (rows,),
        ).fetchone()
        return time.perf_counter() - started
    finally:
        con.close()


def speed_line() -> str:
    """One line: the machine's speed now (smaller is faster)."""
    return (f"machine now: a {PY_STEPS:,}-step Python loop {python_loop_seconds():.2f}s, "
            f"an SQLite sort of {SORT_ROWS:,} integers {sqlite_sort_seconds():.2f}s")


if __name__ == "__main__":
    print(speed_line())
