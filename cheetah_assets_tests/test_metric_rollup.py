"""The analysis per Optimove campaign (metrics/rollup.py): an A/B campaign's templates added up,
each template's rates alongside (a leftover of the last stop: two rows, one per template, nothing
saying how the campaign did)."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from cheetah_assets.metrics.analysis import OPTIMOVE_METRICS, AnalysisResult, CampaignAnalysis, CurvePoint
from cheetah_assets.metrics.rollup import rollup

T0 = dt.datetime(2026, 12, 1, 14, tzinfo=dt.timezone.utc)


def _campaign(cid, template, counts, days=7, send_date=dt.date(2026, 12, 1)):
    curve = tuple(CurvePoint(day=d, as_of=T0 + dt.timedelta(days=d), counts=dict(counts)) for d in range(1, days + 1))
    return CampaignAnalysis(
        cheetah_name=f"OPT-{cid}-{template}-{send_date:%Y%m%d}", camp_id=1, campaign_id=cid, template_id=template,
        send_date=send_date, send_at=T0, curve=curve, updated_at=T0,
    )


def _counts(sent, delivered, opens, clicks=0, unsubs=0):
    return dict(zip(OPTIMOVE_METRICS, (sent, delivered, opens, clicks, unsubs)))


def test_an_ab_campaign_is_one_row_its_counts_added_and_its_rates_those_of_the_sums():
    a = _campaign("C1", "1001", _counts(1000, 900, 90))
    b = _campaign("C1", "1003", _counts(100, 100, 50), days=3)
    other = _campaign("C2", "1005", _counts(10, 10, 1))
    (c2, c1) = rollup(AnalysisResult(campaigns=[a, b, other], computed_at=T0))  # newest first: same send
    assert {c1.campaign_id, c2.campaign_id} == {"C1", "C2"}
    c1 = c1 if c1.campaign_id == "C1" else c2
    assert c1.templates == ["1001", "1003"]
    assert c1.counts["Delivered"] == 1000 and c1.counts["Unique Opens"] == 140
    assert c1.rates()["open_rate"] == 0.14  # 140 / 1000, not the mean of 10% and 50%
    assert c1.status == "in progress (day 3 of 7)"  # the day both templates reached
    assert c1.template_rates("open_rate") == "1001 10.0% / 1003 50.0%"


def test_a_campaign_sent_on_two_days_is_two_rollups():
    a = _campaign("C1", "1001", _counts(10, 10, 1), send_date=dt.date(2026, 12, 1))
    b = _campaign("C1", "1001", _counts(10, 10, 1), send_date=dt.date(2026, 12, 2))
    assert len(rollup(AnalysisResult(campaigns=[a, b], computed_at=T0))) == 2


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["C1", "C2", "C3"]), st.sampled_from(["1001", "1002", "1003"]),
                          st.integers(0, 10_000), st.integers(0, 10_000), st.integers(1, 7)),
                unique_by=lambda t: (t[0], t[1]), max_size=9))
def test_the_rollups_partition_the_campaigns_and_keep_every_count(parts):
    campaigns = [_campaign(cid, t, _counts(d + o, d, min(o, d)), days=days) for cid, t, d, o, days in parts]
    result = AnalysisResult(campaigns=campaigns, computed_at=T0)
    ups = rollup(result)
    assert sorted(p.cheetah_name for r in ups for p in r.parts) == sorted(c.cheetah_name for c in campaigns)
    for m in OPTIMOVE_METRICS:
        assert sum(r.counts[m] for r in ups) == sum(c.latest.counts[m] for c in campaigns)
    for r in ups:
        rates = [p.rates()["open_rate"] for p in r.parts if p.rates()["open_rate"] is not None]
        if rates:  # a rate of sums lies between its parts' rates
            assert min(rates) - 1e-12 <= r.rates()["open_rate"] <= max(rates) + 1e-12
        assert r.latest_day == min(p.latest_day for p in r.parts)


def test_the_ab_comparison_is_a_table_of_its_own_and_the_rollup_stays_narrow():
    """Item 5 of the UX review (tables wrapping over several lines): the roll-up carried two wide
    text columns of per-template rates on every row, A/B or not. They are a table of their own,
    ``ab_split``, one row per campaign sent with several templates; nothing is lost."""
    from cheetah_assets.metrics.assets import ab_split_table
    from cheetah_assets.metrics.columns import AB_COLUMNS, ROLLUP_COLUMNS

    a = _campaign("C1", "1001", _counts(1000, 900, 90, 9))
    b = _campaign("C1", "1003", _counts(100, 100, 50, 5), days=3)
    other = _campaign("C2", "1005", _counts(10, 10, 1))
    table = ab_split_table(AnalysisResult(campaigns=[a, b, other], computed_at=T0), {a.cheetah_name: "Winter sale"})
    assert [r.data for r in table.value.records] == [
        {"campaign_id": "C1", "name": "Winter sale", "send_date": "2026-12-01",
         "open_rates": "1001 10.0% / 1003 50.0%", "click_rates": "1001 1.0% / 1003 5.0%"},
    ]
    assert [c.name for c in table.value.schema.columns] == [c[0] for c in AB_COLUMNS]
    assert not {"open_rate_by_template", "click_rate_by_template"} & {c[0] for c in ROLLUP_COLUMNS}
