"""Request pacing (``max_requests_per_second``): one account's requests from this process spaced
under its rate, shared by every client and send worker, so parallel sends do not run into 429s."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from cheetah_assets.cheetah.contract import FOLDER_PATH
from cheetah_assets.cheetah.pacing import RequestPacer, pacer_for

from .test_client import client, count, fresh, sim  # noqa: F401 - the fixtures and helpers of the client tests


class FakeClock:
    def __init__(self):
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@given(rate=st.floats(0.5, 200), gaps=st.lists(st.floats(0, 2), min_size=1, max_size=40))
@hsettings(max_examples=200, deadline=None)
def test_requests_start_at_least_one_interval_apart_and_never_wait_needlessly(rate, gaps):
    clock = FakeClock()
    pacer = RequestPacer(rate, clock=clock, sleep=clock.sleep)
    starts = []
    for gap in gaps:
        clock.now += gap  # the caller's own work between two requests
        before = clock.now
        waited = pacer.wait()
        starts.append(clock.now)
        assert waited == pytest.approx(clock.now - before, abs=1e-9)
        # it waits only when the last request was less than one interval ago
        if len(starts) > 1:
            assert starts[-1] - starts[-2] >= 1 / rate - 1e-9
            if waited > 0:
                assert starts[-1] - starts[-2] == pytest.approx(1 / rate)
        else:
            assert waited == 0


def test_threads_share_the_slots_and_rate_zero_means_no_pacer():
    pacer = RequestPacer(50.0)
    started = time.monotonic()
    threads = [threading.Thread(target=lambda: [pacer.wait() for _ in range(5)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.monotonic() - started >= 19 / 50 - 0.01  # 20 requests, 19 intervals of 20 ms
    assert pacer_for("https://api.example.com", 1, 0) is None
    assert pacer_for("https://api.example.com", 1, 5.0) is pacer_for("https://api.example.com", 1, 5.0)
    assert pacer_for("https://api.example.com", 2, 5.0) is not pacer_for("https://api.example.com", 1, 5.0)
    with pytest.raises(ValueError):
        RequestPacer(0)


def _burst(sim, **overrides) -> None:
    """Three clients of the account, in three threads, 6 GET Folder calls each."""
    clients = [client(sim, **overrides) for _ in range(3)]
    for c in clients:
        c.check_access()
    threads = [threading.Thread(target=lambda c=c: [c.get_folder() for _ in range(6)]) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in clients:
        c.close()


@pytest.mark.parametrize("paced", [False, True], ids=["unpaced", "paced under the rate"])
def test_paced_clients_stay_under_the_accounts_rate(sim, paced):
    """Against an account limited to 5 requests a second, 18 calls from three clients at once run
    into 429s unpaced, and none paced at 4.5 a second (the same calls, all succeeding)."""
    sim.admin.reset(seed="demo", rate_limit=5)
    _burst(sim, max_requests_per_second="4.5" if paced else "0", max_retries="8", backoff_factor="0.05")
    rejected = count(sim, "GET", FOLDER_PATH, 429)
    assert count(sim, "GET", FOLDER_PATH, 200) == 18
    assert (rejected == 0) if paced else (rejected > 0), rejected
