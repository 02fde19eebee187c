"""Deterministic metric curves of the simulator's ``Reports/EmailCampaign`` route.

Every count is a pure function of ``(seed, camp_id, recipients, elapsed)`` -- nothing else -- so
a test can compute the ground truth the simulator will report with :func:`metrics_at`::

    from cheetah_assets.simulator.metrics import metrics_at
    metrics_at("demo", 5001, 1200, datetime.timedelta(days=2, hours=3))
    # {"Sent": 1200, "Received": 1164, "MessageOpens": 301, "MessageClicks": 52, "Unsubs": 3}

The model (all parameters drawn from ``random.Random(f"cheetah-sim:{seed}:{camp_id}")``):

* ``Sent`` is the recipient count from the moment of the send.
* Each other metric rises towards a final value as ``1 - exp(-t / tau)`` and is exactly that final
  value from seven days after the send on: ``Received`` (94-99 % of sent, hours), ``MessageOpens``
  (15-40 % of received, about a day), ``MessageClicks`` (8-30 % of opens, slower than opens) and
  ``Unsubs`` (0.1-0.6 % of received).  A slower curve never overtakes a faster one of a larger
  final value, so ``MessageClicks <= MessageOpens <= Received <= Sent`` and
  ``Unsubs <= Received`` always hold.
* About one campaign in three has a *restatement*: on one whole day ``d`` after the send
  (``d`` in 2..4, i.e. ``d * 24h <= elapsed < (d + 1) * 24h``) one of ``MessageOpens``,
  ``MessageClicks`` or ``Unsubs`` reads a few percent *below* its value at the start of the
  previous day (so below anything reported during that previous day, whenever the count was at
  least 1); from day ``d + 1`` on the curve resumes.  A restated ``MessageOpens`` also caps
  ``MessageClicks`` so the ordering above still holds.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from dataclasses import dataclass

#: Metric names in the order of the report (Cheetah Messaging names).
METRICS = ("Sent", "Received", "MessageOpens", "MessageClicks", "Unsubs")
#: Metrics that a restatement may lower.
RESTATABLE = ("MessageOpens", "MessageClicks", "Unsubs")
#: Counts are final from this long after the send on.
HORIZON = dt.timedelta(days=7)
_DAY_S = 86_400.0


@dataclass(frozen=True)
class Restatement:
    """One downward restatement: ``metric`` reads ``factor`` x its value at the start of day
    ``day - 1`` throughout day ``day`` after the send."""

    metric: str
    day: int
    factor: float


@dataclass(frozen=True)
class CurveParams:
    """The per-campaign parameters of the metric curves (rates are fractions, taus hours)."""

    received_rate: float  # of Sent
    open_rate: float  # of Received
    click_rate: float  # of MessageOpens
    unsub_rate: float  # of Received
    tau_received_h: float
    tau_open_h: float
    tau_click_h: float
    tau_unsub_h: float
    restatement: Restatement | None


def curve_params(seed: str, camp_id: int) -> CurveParams:
    """The curve parameters of campaign ``camp_id`` under simulator seed ``seed`` (deterministic:
    ``random.Random`` seeded with a string does not depend on ``PYTHONHASHSEED``)."""
    rng = random.Random(f"cheetah-sim:{seed}:{camp_id}")
    received_rate = rng.uniform(0.94, 0.99)
    open_rate = rng.uniform(0.15, 0.40)
    click_rate = rng.uniform(0.08, 0.30)
    unsub_rate = rng.uniform(0.001, 0.006)
    tau_received = rng.uniform(0.25, 1.0)
    tau_open = rng.uniform(8.0, 20.0)
    tau_click = tau_open * rng.uniform(1.0, 1.5)
    tau_unsub = rng.uniform(12.0, 36.0)
    restatement = None
    if rng.random() < 1 / 3:
        restatement = Restatement(
            metric=rng.choice(RESTATABLE),
            day=rng.randint(2, 4),
            factor=round(rng.uniform(0.93, 0.98), 4),
        )
    return CurveParams(
        received_rate=received_rate,
        open_rate=open_rate,
        click_rate=click_rate,
        unsub_rate=unsub_rate,
        tau_received_h=tau_received,
        tau_open_h=tau_open,
        tau_click_h=tau_click,
        tau_unsub_h=tau_unsub,
        restatement=restatement,
    )


def _finals(p: CurveParams, recipients: int) -> dict[str, int]:
    received = min(recipients, round(recipients * p.received_rate))
    opens = min(received, round(received * p.open_rate))
    clicks = min(opens, round(opens * p.click_rate))
    unsubs = min(received, round(received * p.unsub_rate))
    return {"Received": received, "MessageOpens": opens, "MessageClicks": clicks, "Unsubs": unsubs}


def _taus(p: CurveParams) -> dict[str, float]:
    return {
        "Received": p.tau_received_h,
        "MessageOpens": p.tau_open_h,
        "MessageClicks": p.tau_click_h,
        "Unsubs": p.tau_unsub_h,
    }


def _trend(final: int, tau_h: float, elapsed_s: float) -> int:
    """``floor(final * (1 - exp(-t/tau)))``, exactly ``final`` from the horizon on; monotonic."""
    if elapsed_s <= 0:
        return 0
    if elapsed_s >= HORIZON.total_seconds():
        return final
    return math.floor(final * (1.0 - math.exp(-elapsed_s / (tau_h * 3600.0))))


def metrics_at(seed: str, camp_id: int, recipients: int, elapsed: dt.timedelta) -> dict[str, int]:
    """The report counts of a campaign sent to ``recipients`` people, ``elapsed`` after its send.

    Pure and deterministic: the simulator reports exactly this for campaign ``camp_id`` when its
    clock is ``sentAt + elapsed``.  Raises ``ValueError`` for a negative ``elapsed`` or
    ``recipients`` (there are no metrics before the send).
    """
    if recipients < 0:
        raise ValueError("recipients must be >= 0")
    elapsed_s = elapsed.total_seconds()
    if elapsed_s < 0:
        raise ValueError("a campaign has no metrics before its send (elapsed < 0)")
    p = curve_params(seed, camp_id)
    finals = _finals(p, recipients)
    taus = _taus(p)
    counts = {name: _trend(finals[name], taus[name], elapsed_s) for name in finals}
    r = p.restatement
    if r is not None and r.day * _DAY_S <= elapsed_s < (r.day + 1) * _DAY_S:
        before = _trend(finals[r.metric], taus[r.metric], (r.day - 1) * _DAY_S)
        counts[r.metric] = min(counts[r.metric], math.floor(before * r.factor))
    # The ordering invariants (only a restated MessageOpens can disturb them, but be explicit).
    counts["MessageOpens"] = min(counts["MessageOpens"], counts["Received"])
    counts["MessageClicks"] = min(counts["MessageClicks"], counts["MessageOpens"])
    counts["Unsubs"] = min(counts["Unsubs"], counts["Received"])
    return {"Sent": recipients, **counts}
