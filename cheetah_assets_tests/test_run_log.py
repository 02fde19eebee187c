"""What a run writes to its log (Dagster's event log): INFO and above; the routine DEBUG lines
(each API call, each send step) go to the Python logger ``cheetah_assets.detail``, which a
deployment can capture into the run's log (docs/deploy.md)."""

from __future__ import annotations

import logging
import re

import dagster as dg
import pytest

from cheetah_assets.customers import seed
from cheetah_assets.customers.resource import CustomerDatabaseResource
from cheetah_assets.runlog import DETAIL_LOGGER, RunLog, every
from cheetah_assets.sending import plan as sending_plan
from cheetah_assets.sending.assets import SEND_ASSETS
from cheetah_assets.sending.parallel import CampaignLog, outcome_line
from cheetah_assets.sending.protocol import Sender

from .conftest import cheetah_resource, make_resources
from .helpers import run_cycle

#: A routine call line of the client, e.g. "Cheetah PUT /services2/api/EmailCampaign: 200 OK (attempt 1)".
CALL_LINE = re.compile(r"Cheetah (GET|POST|PUT|DELETE) /\S+: \d{3} .*\(attempt 1\)$")


def test_run_log_keeps_info_and_above_and_hands_debug_to_the_detail_logger(caplog):
    run_log, detail = logging.getLogger("test_run_log.run"), logging.getLogger("test_run_log.detail")
    caplog.set_level(logging.DEBUG, logger="test_run_log")
    log = CampaignLog(RunLog(run_log, detail))  # as a send worker wraps it: the prefix is kept
    log.campaign = "C1"
    log.debug("routine %s", "call")
    log.info("state %s", "change")
    log.log(logging.WARNING, "warn")
    log.log("debug", "by name")  # Dagster's log manager takes level names too
    log.log("WARNING", "named")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    got = [(r.name, r.levelname, r.getMessage(), bool(r.exc_info)) for r in caplog.records]
    assert got == [
        ("test_run_log.detail", "DEBUG", "[campaign C1] routine call", False),
        ("test_run_log.run", "INFO", "[campaign C1] state change", False),
        ("test_run_log.run", "WARNING", "[campaign C1] warn", False),
        ("test_run_log.detail", "DEBUG", "[campaign C1] by name", False),
        ("test_run_log.run", "WARNING", "[campaign C1] named", False),
        ("test_run_log.run", "ERROR", "[campaign C1] failed", True),
    ]
    assert RunLog(run_log, detail).isEnabledFor(logging.DEBUG)
    detail.setLevel(logging.INFO)
    try:
        assert not RunLog(run_log, detail).isEnabledFor(logging.DEBUG)
    finally:
        detail.setLevel(logging.NOTSET)


def _day_run(sim, db_url, instance, concurrency=None):
    engine = CustomerDatabaseResource(url=db_url).get_engine(create=True)
    day = sim.admin.now().date()
    seed.seed_demo(engine, customers=60, days=1, today=day, now=sim.admin.now())
    result = run_cycle(make_resources(sim, db_url), day, instance, concurrency=concurrency)
    assert result.success
    return [(e.level, e.user_message) for e in instance.all_logs(result.run_id) if e.dagster_event is None]


@pytest.mark.parametrize("concurrency", [1, None], ids=["one send at a time", "parallel sends"])
def test_a_runs_log_tells_each_send_without_a_line_per_api_call(sim, db_url, caplog, concurrency):
    """The state changes stay in the run's log; the routine call lines and step lines go to the
    detail logger (a day of 240 sends wrote 4,575 of them into the event log, a third of the
    pipeline's CPU). Sequential sends go through the run's own sender, parallel ones through the
    workers'."""
    caplog.set_level(logging.DEBUG, logger=DETAIL_LOGGER)
    with dg.DagsterInstance.ephemeral() as instance:
        lines = _day_run(sim, db_url, instance, concurrency)
    messages = [m for _, m in lines]
    assert not [m for m in messages if CALL_LINE.search(m)]
    assert all(level >= logging.INFO for level, _ in lines)
    detail = [r.getMessage() for r in caplog.records if r.name == DETAIL_LOGGER]
    assert any(CALL_LINE.search(m) for m in detail), detail[:5]
    assert any(re.search(r": (find|import|create|launch|approve)$", m) for m in detail), detail[:5]  # step lines
    assert any("APPROVE accepted" in m for m in detail) and any("completed into list" in m for m in detail)

    # Two lines per send in the run's log, its start and its outcome, and one per recipient list;
    # the steps between (import completed, one-file import progress, LAUNCH and APPROVE accepted)
    # were three more per send: 1,601 INFO events in the day of 240 sends; 680 by this count.
    starts = [m for m in messages if re.search(r"send \d+ of \d+: ", m)]
    outcomes = [m for m in messages if re.search(r": APPROVED: \d+ of \d+ recipients accepted(, \d+ rejected)?; "
                                                  r"Cheetah campaign \S+ launched and approved to send at ", m)]
    lists = [m for m in messages if re.search(r"recipient list \d+ of \d+: campaign \S+: \d+ recipients", m)]
    sends = int(re.search(r"of (\d+):", starts[0]).group(1))
    assert len(starts) == len(outcomes) == sends >= 2, messages
    assert len(lists) == int(re.search(r"of (\d+):", lists[0]).group(1)) >= 2, messages
    others = [m for m in messages if m not in set(starts) | set(outcomes) | set(lists)]
    assert len(others) <= 10, others  # the day's own lines (catalog, plan, summary), none per send


def test_no_asset_hands_the_run_log_to_a_client_unwrapped():
    """Every run that gives a Cheetah client a logger wraps context.log in RunLog (a guard for the
    assets the day's run above does not reach: metric snapshots, the cancellation job)."""
    import pathlib

    package = pathlib.Path(__file__).resolve().parents[1] / "cheetah_assets"
    unwrapped = [f"{path.relative_to(package)}:{n}" for path in package.rglob("*.py")
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if re.search(r"get_client\(logger=context\.log\)|Sender\(.*logger=context\.log", line)]
    assert unwrapped == []
    wrapped = [path for path in package.rglob("*.py") if "get_client(logger=RunLog(context.log))" in path.read_text()]
    assert len(wrapped) >= 4  # the send path, the metric snapshots (one and batch), the cancellation job


def test_the_detail_logger_can_be_captured_into_the_runs_log(sim, db_url):
    """docs/deploy.md: ``python_logs.managed_python_loggers`` brings the call lines back."""
    overrides = {"python_logs": {"managed_python_loggers": [DETAIL_LOGGER], "python_log_level": "DEBUG"}}
    with dg.instance_for_test(overrides=overrides) as instance:
        lines = _day_run(sim, db_url, instance)
    calls = [(level, m) for level, m in lines if CALL_LINE.search(m)]
    assert calls and all(level == logging.DEBUG for level, _ in calls)
    assert any("EmailCampaign" in m for _, m in calls)


@pytest.fixture
def db_url(tmp_path):
    return f"sqlite:///{tmp_path / 'runlog.db'}"


def test_progress_lines_come_only_when_the_work_takes_long():
    """``every``: a freeze that ends within the interval writes no progress line; a long one
    writes one per interval, with the count reached."""
    now = [100.0]
    lines: list[int] = []
    progress = every(10.0, lines.append, clock=lambda: now[0])
    for count, t in [(1_000, 101.0), (5_000, 109.9), (10_000, 110.0), (12_000, 115.0), (30_000, 120.5), (31_000, 121)]:
        now[0] = t
        progress(count)
    assert lines == [10_000, 30_000]


@pytest.mark.parametrize("max_rows", [3, 100_000], ids=["several files", "one file"])
def test_an_import_of_several_files_tells_its_progress_and_one_of_one_file_does_not(sim, db_url, caplog, max_rows):
    """The import's "imported k of n" line is progress on long work: in the run's log (INFO)
    after each file of a list that takes several, at DEBUG (the detail logger) for a one-file
    list, whose send's outcome line says the same."""
    engine = CustomerDatabaseResource(url=db_url).get_engine(create=True)
    day = sim.admin.now().date()
    seed.seed_demo(engine, customers=60, days=1, today=day, now=sim.admin.now())
    with dg.DagsterInstance.ephemeral() as instance:
        dg.materialize(SEND_ASSETS[:3], partition_key=day.isoformat(), resources=make_resources(sim, db_url),
                       instance=instance)
    row = next(r for r in sending_plan.load_plan(engine, day) if r.status == sending_plan.READY)
    logger = logging.getLogger("test_run_log.imports")
    with cheetah_resource(sim).get_client() as client, caplog.at_level(logging.DEBUG, "test_run_log.imports"):
        sender = Sender(client=client, engine=engine, owner="run-1", now=sim.admin.now, logger=logger,
                        step_backoff_seconds=0.01, max_rows_per_file=max_rows)
        sender.ledger.ensure(campaign_id=row.campaign_id, template_id=row.template_id, send_date=day,
                             list_key=row.list_key, send_at=row.send_at)
        outcome = sender.send(row.send_key)
    assert outcome.state == "APPROVED" and outcome.rows_in_list > 6, outcome
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if "recipients (" in r.getMessage()]
    done = [int(re.search(r"imported (\d+) of", m).group(1)) for _, m in lines]
    if max_rows == 3:
        assert {level for level, _ in lines} == {logging.INFO}
        assert done == list(range(3, outcome.rows_in_list, 3)) + [outcome.rows_in_list]
    else:
        assert lines and {level for level, _ in lines} == {logging.DEBUG} and done == [outcome.rows_in_list]


def test_a_sends_outcome_line_says_what_its_ledger_row_holds():
    base = {"cheetah_name": "OPT-A-1001-20261207", "camp_id": 5031, "send_at": "2026-12-07T07:00:00+00:00",
            "recipients": 9661, "accepted": 9623, "rejected": 38, "note": ""}
    assert outcome_line({**base, "state": "APPROVED"}) == (
        "OPT-A-1001-20261207: APPROVED: 9623 of 9661 recipients accepted, 38 rejected; Cheetah campaign 5031 "
        "launched and approved to send at 2026-12-07T07:00:00+00:00")
    assert outcome_line({**base, "state": "APPROVED", "recipients": 9623, "rejected": 0}).startswith(
        "OPT-A-1001-20261207: APPROVED: 9623 of 9623 recipients accepted; Cheetah campaign 5031")
    # counts the ledger row lacks are left out, never printed as "None of None"
    line = outcome_line({**base, "state": "APPROVED", "accepted": None, "note": "recovered by a look-up"})
    assert "None" not in line and "recipients" not in line and line.endswith("(recovered by a look-up)")
    assert outcome_line({**base, "state": "EMPTY", "note": "no recipients for this template"}) == (
        "OPT-A-1001-20261207: EMPTY: no recipients for this template")
    assert outcome_line({**base, "state": "MISSED"}) == "OPT-A-1001-20261207: MISSED"


def test_an_outcome_line_says_who_the_import_left_out():
    """The frozen rows the import's files did not hold (each row of its files is accepted or
    rejected, ListImporter checks it) are those it left out, suppressed since the freeze (review
    finding 6); said once, also when the send's note says it already."""
    base = {"cheetah_name": "OPT-A-1001-20261207", "camp_id": 5031, "send_at": "2026-12-07T07:00:00+00:00",
            "recipients": 9661, "accepted": 9620, "rejected": 38, "note": ""}
    assert outcome_line({**base, "state": "APPROVED"}) == (
        "OPT-A-1001-20261207: APPROVED: 9620 of 9661 recipients accepted, 38 rejected; 3 recipients suppressed "
        "since the list was frozen were left out; Cheetah campaign 5031 launched and approved to send at "
        "2026-12-07T07:00:00+00:00")
    assert "; 1 recipient suppressed since the list was frozen was left out;" in outcome_line(
        {**base, "state": "APPROVED", "accepted": 9622})
    nobody = {**base, "state": "EMPTY", "accepted": 0, "rejected": 0}
    assert outcome_line({**nobody, "note": "no campaign was created."}) == (
        "OPT-A-1001-20261207: EMPTY: 9661 recipients suppressed since the list was frozen were left out; "
        "no campaign was created.")
    said = "9661 recipients suppressed since the list was frozen were left out; no campaign was created."
    assert outcome_line({**nobody, "note": said}) == f"OPT-A-1001-20261207: EMPTY: {said}"
    # before the import (no counts yet), and when Cheetah rejected everyone, nobody was left out
    assert outcome_line({**base, "state": "EMPTY", "accepted": None, "rejected": None, "note": "x"}).endswith("EMPTY: x")
    assert outcome_line({**base, "state": "EMPTY", "accepted": 0, "rejected": 9661, "note": "x"}).endswith("EMPTY: x")
