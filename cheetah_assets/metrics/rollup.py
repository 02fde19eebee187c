"""The analysis per Optimove campaign: its Cheetah campaigns (one per template: an A/B split, say)
added up (no Dagster here).

An Optimove campaign sent with two templates is two Cheetah campaigns, two rows of the analysis;
a marketer asks how *the campaign* did. Its roll-up sums the latest counts of its templates (each
template's recipients are distinct people: the split gives each person one template) and takes
the rates of the sums, so a template sent to ten times more people weighs ten times more. Each
template's own rates stay alongside, for the A/B comparison.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .analysis import OPTIMOVE_METRICS, RATES, AnalysisResult, CampaignAnalysis, rate
from .snapshots import DAYS


@dataclass(frozen=True)
class CampaignRollup:
    campaign_id: str
    send_date: dt.date | None
    parts: tuple[CampaignAnalysis, ...]  # by template id

    @property
    def templates(self) -> list[str]:
        return [p.template_id or "?" for p in self.parts]

    @property
    def counts(self) -> dict[str, int]:
        return {m: sum(p.latest.counts[m] for p in self.parts) for m in OPTIMOVE_METRICS}

    def rates(self) -> dict[str, float | None]:
        total = self.counts
        return {name: rate(total[num], total[den]) for name, (num, den) in RATES.items()}

    @property
    def latest_day(self) -> int:
        """The day every template has reached (the roll-up is final when all are)."""
        return min(p.latest_day for p in self.parts)

    @property
    def status(self) -> str:
        if all(p.status == f"final (day {len(DAYS)})" for p in self.parts):
            return f"final (day {len(DAYS)})"
        if self.latest_day == len(DAYS) and len(self.parts) == 1:
            return self.parts[0].status
        flagged = any(p.late_days or p.provisional_days for p in self.parts)
        return f"in progress (day {self.latest_day} of {len(DAYS)})" + ("; see its templates" if flagged else "")

    @property
    def restated(self) -> bool:
        return any(p.restated for p in self.parts)

    def template_rates(self, name: str) -> str:
        """One rate of each template, for the A/B comparison: ``1001 31.2% / 1003 27.9%``."""
        return " / ".join(
            f"{p.template_id or '?'} {'-' if (r := p.rates()[name]) is None else f'{100 * r:.1f}%'}" for p in self.parts
        )


def rollup(result: AnalysisResult) -> list[CampaignRollup]:
    """One roll-up per (Optimove campaign, send date), newest send first; a Cheetah campaign whose
    ledger row is gone (no campaign id) stands alone, under its Cheetah name."""
    groups: dict[tuple[str, dt.date | None], list[CampaignAnalysis]] = {}
    for c in result.newest_first():
        key = (c.campaign_id or c.cheetah_name, c.send_date)
        groups.setdefault(key, []).append(c)
    return [
        CampaignRollup(campaign_id=cid, send_date=day, parts=tuple(sorted(parts, key=lambda p: p.template_id or "")))
        for (cid, day), parts in groups.items()
    ]
