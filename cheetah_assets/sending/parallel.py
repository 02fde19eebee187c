"""The day's sends, campaigns in parallel within an API concurrency (``campaign_sends``).

Each campaign's sends (one per template) go one after the other, in one worker; different
campaigns go to different workers, at most ``concurrency`` at a time. Each worker has a client
(a session and token) and a :class:`~.protocol.Sender` of its own, whose claim owner is the run
id plus the worker's number (:func:`.runs.worker_owner`), so the ledger's compare-and-set claim
keeps two workers of one run off the same send exactly as it keeps two runs apart. A send key
is handed to one worker only (they are de-duplicated before the work is shared out).

One failing send never stops the others: its problem is collected, the worker goes on. Every
log line of a worker names its campaign (:class:`CampaignLog`). ``concurrency=1`` is the
sequential path: every send in the calling thread, with the caller's own sender.

Nothing here imports Dagster.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Iterable, Sequence

from ..cheetah.errors import CheetahError
from .errors import SendError
from .importing import left_out_note, left_out_of
from .plan import PlanRow
from .protocol import Sender

#: The default API concurrency of a run of ``campaign_sends``: campaigns sent at a time.
DEFAULT_CONCURRENCY = 4
#: The most campaigns a run sends at a time.
MAX_CONCURRENCY = 32


class CampaignLog(logging.LoggerAdapter):
    """A worker's logger: every line starts with the campaign it is working on."""

    def __init__(self, logger: logging.Logger | logging.LoggerAdapter):
        super().__init__(logger, {})
        self.campaign: str | None = None

    def process(self, msg, kwargs):
        return (f"[campaign {self.campaign}] {msg}" if self.campaign else msg), kwargs


@dataclass
class SendResults:
    """What the day's sends came to: one outcome record per send that completed (in the order
    of the plan), and one problem line per send that did not."""

    outcomes: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: (worker number, send key) of every send a worker took, in the order they were taken
    #: (worker 0: the caller's thread).
    taken: list[tuple[int, str]] = field(default_factory=list)
    #: the outcome record of each completed send, by send key.
    done: dict[str, dict] = field(default_factory=dict)
    #: send keys of the problems a re-execution alone cannot fix (a ``permanent`` SendError).
    permanent: list[str] = field(default_factory=list)


def by_campaign(todo: Iterable[PlanRow]) -> list[list[PlanRow]]:
    """The sends grouped by campaign (first-seen order), each send key once."""
    groups: dict[str, list[PlanRow]] = {}
    seen: set[str] = set()
    for r in todo:
        if r.send_key in seen:
            continue
        seen.add(r.send_key)
        groups.setdefault(r.campaign_id, []).append(r)
    return list(groups.values())


def outcome_line(record: dict) -> str:
    """One send's outcome in a sentence: the run's log has this line and the send's start line,
    not one per step (each step's line goes to the detail logger: :mod:`cheetah_assets.runlog`).
    It says how many frozen recipients the import left out, suppressed since the freeze."""
    name, state, note = record["cheetah_name"], record["state"], record.get("note")
    left_out = left_out_of(record)
    said = left_out_note(left_out) if left_out else ""
    if said in (note or ""):
        said = ""  # the note says it already
    if state == "APPROVED":
        accepted, recipients = record.get("accepted"), record.get("recipients")
        counts = "" if accepted is None or recipients is None else (
            f" {accepted} of {recipients} recipients accepted"
            + (f", {record['rejected']} rejected" if record.get("rejected") else "") + ";"
            + (f" {said};" if said else ""))
        return (f"{name}: APPROVED:{counts} Cheetah campaign {record.get('camp_id')} launched and approved to send "
                f"at {record.get('send_at')}" + (f" ({note})" if note else ""))
    told = "; ".join(filter(None, [said, note]))
    return f"{name}: {state}" + (f": {told}" if told else "")


def send_one(sender: Sender, r: PlanRow, logger, results: SendResults, lock: threading.Lock) -> None:
    """One send, as far as it goes; its outcome (and its line in the log) or its problem goes
    into ``results``."""
    try:
        sender.ledger.ensure(
            campaign_id=r.campaign_id, template_id=r.template_id, send_date=r.send_date, list_key=r.list_key,
            send_at=r.send_at,
        )
        outcome = sender.send(r.send_key).as_record()
    except (SendError, CheetahError) as exc:
        with lock:
            results.problems.append(f"{r.send_key}: {exc}")
            if getattr(exc, "permanent", False):
                results.permanent.append(r.send_key)
        logger.error("%s: %s", r.send_key, exc)
    except Exception as exc:  # noqa: BLE001 - one bad send never stops the others
        with lock:
            results.problems.append(f"{r.send_key}: unexpected {type(exc).__name__}: {exc}")
        logger.exception("%s: unexpected error; the other sends go on", r.send_key)
    else:
        record = {"campaign": r.campaign_id, "name": r.campaign_name, "template": r.template_id, **outcome}
        with lock:
            results.done[r.send_key] = record
        logger.info("%s", outcome_line(record))


def send_all(
    todo: Sequence[PlanRow],
    *,
    sender: Sender,
    worker_sender: Callable[[int, CampaignLog], ContextManager[Sender]],
    concurrency: int,
    logger: Any,
) -> SendResults:
    """Send ``todo``: sequentially with ``sender`` when ``concurrency`` is 1 (or there is one
    campaign), else campaigns in parallel, worker ``n`` (from 1) with the sender that
    ``worker_sender(n, its logger)`` opens."""
    if not 1 <= concurrency <= MAX_CONCURRENCY:
        raise ValueError(f"The send concurrency must be from 1 to {MAX_CONCURRENCY}, not {concurrency}.")
    groups = by_campaign(todo)
    total = sum(len(g) for g in groups)
    results, lock = SendResults(), threading.Lock()
    counter = iter(range(1, total + 1))

    def run(n: int, s: Sender, log, group: list[PlanRow]) -> None:
        for r in group:
            with lock:
                k = next(counter)
                results.taken.append((n, r.send_key))
            log.info("send %d of %d: %s (template %s)", k, total, r.campaign_id, r.template_id)
            send_one(s, r, log, results, lock)

    workers = min(concurrency, len(groups))
    if workers <= 1:
        for group in groups:
            run(0, sender, logger, group)
    else:
        work: queue.SimpleQueue[list[PlanRow]] = queue.SimpleQueue()
        for group in groups:
            work.put(group)
        threads = [
            threading.Thread(target=_worker, args=(n, work, worker_sender, run, logger),
                             name=f"campaign-sends-{n}", daemon=True)
            for n in range(1, workers + 1)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # Left over only if every worker failed to open its client: said, not silently dropped.
        for group in _drain(work):
            results.problems.extend(f"{r.send_key}: not sent: no send worker could start" for r in group)
    results.outcomes = [results.done[r.send_key] for g in groups for r in g if r.send_key in results.done]
    return results


def _drain(work: queue.SimpleQueue) -> list:
    out = []
    while True:
        try:
            out.append(work.get_nowait())
        except queue.Empty:
            return out


def _worker(n, work, worker_sender, run, logger) -> None:
    """Worker ``n``: take campaigns off ``work`` until it is empty. A worker that cannot open its
    client stops, leaving its campaigns to the others."""
    log = CampaignLog(logger)
    try:
        with worker_sender(n, log) as s:
            while True:
                try:
                    group = work.get_nowait()
                except queue.Empty:
                    return
                log.campaign = group[0].campaign_id
                try:
                    run(n, s, log, group)
                finally:
                    log.campaign = None
    except Exception as exc:  # noqa: BLE001 - the worker's client or sender could not be opened
        logger.error("send worker %d stopped (%s: %s); the other workers go on", n, type(exc).__name__, exc)
