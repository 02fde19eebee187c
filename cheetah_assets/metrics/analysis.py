"""The campaign analysis: snapshots rolled up per campaign (plain functions, no Dagster).

For each Cheetah campaign with at least one snapshot: its latest metrics under the Optimove names
(Sent, Delivered, Unique Opens, Unique Clicks, Unique Unsubscribes), the rates

* delivery rate = Delivered / Sent,
* open rate = Unique Opens / Delivered,
* click rate = Unique Clicks / Delivered,
* unsubscribe rate = Unique Unsubscribes / Delivered

(``None`` when the denominator is 0), how many days reported, whether Cheetah restated a count
downwards (a day's count lower than the previous reported day's), and the day-by-day curve. A
snapshot fetched before its day had come (``allow_early``) is *provisional*: it holds the counts
so far, and the campaign's status says so until the day is fetched again on time.
Written to ``cheetah_campaign_analysis``; the two data-quality scans the asset checks run
(:func:`find_impossible`, :func:`find_restatements`) are single SQL queries over the snapshots.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..cheetah.contract import METRIC_NAMES, ObjId, id_from_db, id_to_db
from ..customers.recipients import Bind, connect, lock_for_replace
from ..customers.schema import campaign_analysis, metric_snapshot, send_ledger
from ..timeutil import utc
from .snapshots import COLUMNS, DAY, DAYS, is_late

if TYPE_CHECKING:
    import pandas as pd

#: Optimove metric names, in report order.
OPTIMOVE_METRICS: list[str] = [METRIC_NAMES[k] for k in COLUMNS]
#: Optimove name -> column of ``cheetah_campaign_analysis``.
ANALYSIS_COLUMNS: dict[str, str] = {
    "Sent": "sent",
    "Delivered": "delivered",
    "Unique Opens": "unique_opens",
    "Unique Clicks": "unique_clicks",
    "Unique Unsubscribes": "unique_unsubscribes",
}
RATES: dict[str, tuple[str, str]] = {  # rate column -> (numerator, denominator), Optimove names
    "delivery_rate": ("Delivered", "Sent"),
    "open_rate": ("Unique Opens", "Delivered"),
    "click_rate": ("Unique Clicks", "Delivered"),
    "unsubscribe_rate": ("Unique Unsubscribes", "Delivered"),
}


def rate(numerator: int, denominator: int) -> float | None:
    return None if not denominator else numerator / denominator


# ------------------------------------------------------------------------------------------------
# data-quality scans (the asset checks)
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Restatement:
    """A count lower on ``day`` than on the previous reported day: Cheetah restated it."""

    cheetah_name: str
    day: int
    previous_day: int
    metric: str  # Cheetah name
    previous: int
    value: int

    @property
    def optimove(self) -> str:
        return METRIC_NAMES[self.metric]

    def record(self) -> dict:
        return {
            "campaign": self.cheetah_name,
            "day": self.day,
            "metric": f"{self.optimove} ({self.metric})",
            "previous_day": self.previous_day,
            "was": self.previous,
            "now": self.value,
        }


@dataclass(frozen=True)
class Impossible:
    """A snapshot whose counts cannot be true."""

    cheetah_name: str
    day: int
    problems: tuple[str, ...]

    def record(self) -> dict:
        return {"campaign": self.cheetah_name, "day": self.day, "problem": "; ".join(self.problems)}


def find_restatements(bind: Bind) -> list[Restatement]:
    """Every (campaign, day, metric) whose count is below the previous reported day's.

    One query: each snapshot next to its predecessor (``LAG`` over the campaign's days).
    """
    t = metric_snapshot.c
    window = {"partition_by": t.cheetah_name, "order_by": t.day}
    cols = list(COLUMNS.values())
    lagged = sa.select(
        t.cheetah_name,
        t.day,
        sa.func.lag(t.day).over(**window).label("prev_day"),
        *[t[c] for c in cols],
        *[sa.func.lag(t[c]).over(**window).label(f"prev_{c}") for c in cols],
    ).subquery()
    s = lagged.c
    query = (
        sa.select(lagged)
        .where(s.prev_day.is_not(None), sa.or_(*(s[c] < s[f"prev_{c}"] for c in cols)))
        .order_by(s.cheetah_name, s.day)
    )
    out = []
    with connect(bind) as conn:
        for r in conn.execute(query).mappings():
            for metric, c in COLUMNS.items():
                if r[c] < r[f"prev_{c}"]:
                    out.append(Restatement(r["cheetah_name"], r["day"], r["prev_day"], metric, r[f"prev_{c}"], r[c]))
    return out


def find_impossible(bind: Bind) -> list[Impossible]:
    """Every snapshot with a count above Sent (Received, Unique Opens, Unique Clicks, Unique
    Unsubscribes: each is a count of distinct recipients among those sent to) or below 0."""
    t = metric_snapshot.c
    above_sent = {k: t[c] for k, c in COLUMNS.items() if k != "Sent"}
    query = (
        sa.select(metric_snapshot)
        .where(sa.or_(*(col > t.sent for col in above_sent.values()), *(t[c] < 0 for c in COLUMNS.values())))
        .order_by(t.cheetah_name, t.day)
    )
    out = []
    with connect(bind) as conn:
        for r in conn.execute(query).mappings():
            problems = [f"{k} {r[c]} < 0" for k, c in COLUMNS.items() if r[c] < 0]
            problems += [
                f"{METRIC_NAMES[k]} ({k}) {r[c]} > Sent {r['sent']}" for k, c in COLUMNS.items() if k != "Sent" and r[c] > r["sent"]
            ]
            out.append(Impossible(r["cheetah_name"], r["day"], tuple(problems)))
    return out


# ------------------------------------------------------------------------------------------------
# the roll-up
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CurvePoint:
    day: int
    as_of: dt.datetime
    counts: dict[str, int]  # Optimove names
    restated: tuple[str, ...] = ()  # Optimove names lower than on the previous reported day
    #: Taken before its day had come (``allow_early``): the counts so far, not the day's.
    provisional: bool = False
    #: Taken after its day's grace (a catch-up after an outage): the counts of when it was taken.
    late: bool = False

    def rates(self) -> dict[str, float | None]:
        return {name: rate(self.counts[num], self.counts[den]) for name, (num, den) in RATES.items()}


@dataclass(frozen=True)
class CampaignAnalysis:
    cheetah_name: str
    camp_id: ObjId
    campaign_id: str | None
    template_id: str | None
    send_date: dt.date | None
    send_at: dt.datetime | None
    curve: tuple[CurvePoint, ...]  # by day
    updated_at: dt.datetime

    @property
    def latest(self) -> CurvePoint:
        return self.curve[-1]

    @property
    def days_reported(self) -> int:
        return len(self.curve)

    @property
    def latest_day(self) -> int:
        return self.latest.day

    @property
    def restated(self) -> bool:
        return any(p.restated for p in self.curve)

    @property
    def provisional_days(self) -> list[int]:
        return [p.day for p in self.curve if p.provisional]

    @property
    def late_days(self) -> list[int]:
        return [p.day for p in self.curve if p.late]

    @property
    def status(self) -> str:
        """Where the campaign's week stands, in words: ``in progress (day 3 of 7)``, ``final (day 7)``,
        or ``provisional (day 6, 7 taken early)`` when a snapshot was taken before its day; days
        taken late (after an outage) are named: ``…; day 1, 2 taken late``."""
        late = self.late_days
        suffix = f"; day {', '.join(map(str, late))} taken late (counts of when taken)" if late else ""
        early = self.provisional_days
        if early:
            return f"provisional (day {', '.join(map(str, early))} taken early)" + suffix
        if self.latest_day == len(DAYS):
            missing = len(DAYS) - self.days_reported
            return f"final (day {self.latest_day})" + (f", {missing} earlier days not taken" if missing else "") + suffix
        return f"in progress (day {self.latest_day} of {len(DAYS)})" + suffix

    def rates(self) -> dict[str, float | None]:
        return self.latest.rates()

    def row(self) -> dict:
        """The row of ``cheetah_campaign_analysis``."""
        return {
            "cheetah_name": self.cheetah_name,
            "camp_id": id_to_db(self.camp_id),
            "campaign_id": self.campaign_id,
            "template_id": self.template_id,
            "send_date": self.send_date,
            "days_reported": self.days_reported,
            "latest_day": self.latest_day,
            **{col: self.latest.counts[name] for name, col in ANALYSIS_COLUMNS.items()},
            **self.rates(),
            "restated": self.restated,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class AnalysisResult:
    campaigns: list[CampaignAnalysis]
    computed_at: dt.datetime
    restatements: list[Restatement] = field(default_factory=list)

    @property
    def row_count(self) -> int:
        return len(self.campaigns)

    def by_name(self) -> dict[str, CampaignAnalysis]:
        return {c.cheetah_name: c for c in self.campaigns}

    def overall_rates(self) -> dict[str, float | None]:
        """The rates of all campaigns together (their latest counts summed): what Dagster plots."""
        total = {m: sum(c.latest.counts[m] for c in self.campaigns) for m in OPTIMOVE_METRICS}
        return {name: rate(total[num], total[den]) for name, (num, den) in RATES.items()}

    def newest_first(self) -> list[CampaignAnalysis]:
        far_past = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
        return sorted(self.campaigns, key=lambda c: (c.send_at or far_past, c.cheetah_name), reverse=True)


def compute_analysis(conn: Connection, now: dt.datetime) -> AnalysisResult:
    """Read every snapshot (with its ledger row) in one read transaction and roll it up."""
    s, lg = metric_snapshot.c, send_ledger.c
    query = (
        sa.select(
            metric_snapshot,
            lg.campaign_id,
            lg.template_id,
            lg.send_date,
            lg.send_at,
        )
        .select_from(metric_snapshot.outerjoin(send_ledger, lg.cheetah_name == s.cheetah_name))
        .order_by(s.cheetah_name, s.day)
    )
    restatements = find_restatements(conn)
    lowered: dict[tuple[str, int], list[str]] = defaultdict(list)
    for r in restatements:
        lowered[(r.cheetah_name, r.day)].append(r.optimove)
    now = utc(now)
    grouped: dict[str, list] = defaultdict(list)
    for r in conn.execute(query).mappings():
        grouped[r["cheetah_name"]].append(r)
    campaigns = []
    for name, rows in grouped.items():
        last = rows[-1]
        send_at = utc(last["send_at"])
        curve = tuple(
            CurvePoint(
                day=r["day"],
                as_of=utc(r["as_of"]),
                counts={METRIC_NAMES[k]: r[c] for k, c in COLUMNS.items()},
                restated=tuple(lowered.get((name, r["day"]), ())),
                provisional=send_at is not None and utc(r["fetched_at"]) < send_at + r["day"] * DAY,
                late=send_at is not None and is_late(utc(r["fetched_at"]), send_at + r["day"] * DAY),
            )
            for r in rows
        )
        campaigns.append(
            CampaignAnalysis(
                cheetah_name=name,
                camp_id=id_from_db(last["camp_id"]),
                campaign_id=last["campaign_id"],
                template_id=last["template_id"],
                send_date=last["send_date"],
                send_at=send_at,
                curve=curve,
                updated_at=now,
            )
        )
    return AnalysisResult(campaigns=campaigns, computed_at=now, restatements=restatements)


def write_analysis(conn: Connection, result: AnalysisResult, *, replace_all: bool = True) -> None:
    """Replace the analysis rows: all of them (``replace_all``), or those of the computed campaigns."""
    lock_for_replace(conn, "campaign_analysis")
    if replace_all:
        conn.execute(campaign_analysis.delete())
    else:
        names = [c.cheetah_name for c in result.campaigns]
        for i in range(0, len(names), 500):
            conn.execute(campaign_analysis.delete().where(campaign_analysis.c.cheetah_name.in_(names[i : i + 500])))
    if result.campaigns:
        conn.execute(campaign_analysis.insert(), [c.row() for c in result.campaigns])


def build_analysis(engine: Engine, now: dt.datetime) -> AnalysisResult:
    """Roll every campaign's snapshots up and replace ``cheetah_campaign_analysis``, in one transaction.

    Readers of the table see the previous analysis or the new one, never a mix.
    """
    with engine.begin() as conn:
        result = compute_analysis(conn, now)
        write_analysis(conn, result, replace_all=True)
    return result


def load_analysis(engine: Engine) -> pd.DataFrame:
    """``cheetah_campaign_analysis`` as a DataFrame, newest send first."""
    import pandas as pd  # here, not at module level: loading the code location needs no pandas (0.5 s a process)

    t = campaign_analysis.c
    with engine.connect() as conn:
        rows = conn.execute(sa.select(campaign_analysis).order_by(t.send_date.desc(), t.cheetah_name)).mappings().all()
    return pd.DataFrame([dict(r) for r in rows], columns=[c.name for c in campaign_analysis.columns])


def pct(value: float | None) -> str:
    """A 0-1 ratio as the tables show it: ``"12.3%"`` (``"–"`` for none)."""
    return "–" if value is None else f"{100 * value:.1f}%"
