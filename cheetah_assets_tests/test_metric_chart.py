"""The analysis's chart file: saved where chart_dir says, and a folder that cannot be written
does not fail the analysis (the chart is a view of it) but says so."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg

from cheetah_assets.clock import ClockResource
from cheetah_assets.customers.resource import CustomerDatabaseResource
from cheetah_assets.metrics.assets import campaign_analysis
from cheetah_assets.metrics.chart import CHART_FILE

from .test_metrics import engine, mat_metadata  # noqa: F401 - fixture

NOW = dt.datetime(2026, 11, 23, 12, tzinfo=dt.timezone.utc)


def analyse(db_url, instance, chart_dir: str):
    return dg.materialize(
        [campaign_analysis],
        resources={"customer_db": CustomerDatabaseResource(url=db_url), "clock": ClockResource(fixed_now=NOW.isoformat())},
        instance=instance,
        run_config={"ops": {"campaign_analysis": {"config": {"chart_dir": chart_dir}}}},
    )


def test_the_chart_goes_to_chart_dir_and_an_unwritable_one_is_reported(db_url, engine, tmp_path):  # noqa: F811
    with dg.instance_for_test() as instance:
        meta = mat_metadata(analyse(db_url, instance, str(tmp_path / "charts")))
        assert meta["curves_chart_file"] == str(tmp_path / "charts" / CHART_FILE)
        assert Path(meta["curves_chart_file"]).read_bytes().startswith(b"\x89PNG")

        blocked = tmp_path / "a-file"
        blocked.write_text("not a folder")
        result = analyse(db_url, instance, str(blocked))
        assert result.success
        meta = mat_metadata(result)
        assert "curves_chart_file" not in meta and meta["curves_chart"].startswith("![Seven-day curves](data:image/png")
        assert meta["curves_chart_file_error"].startswith(f"The curves chart could not be saved in {blocked}")
        assert "set chart_dir to a writable folder" in meta["curves_chart_file_error"]


def test_a_full_chart_stays_small():
    """Eight campaigns of seven days each (the most the chart draws), one restated, one provisional."""
    from cheetah_assets.metrics.analysis import AnalysisResult, CampaignAnalysis, CurvePoint
    from cheetah_assets.metrics.chart import CHART_CAMPAIGNS, curves_png

    campaigns = []
    for i in range(CHART_CAMPAIGNS + 2):
        curve = []
        for day in range(1, 8):
            delivered = 970 * (i + 1)
            opens = int(delivered * 0.3 * (1 - 0.5**day))
            counts = {"Sent": 1000 * (i + 1), "Delivered": delivered, "Unique Opens": opens,
                      "Unique Clicks": opens // 5, "Unique Unsubscribes": day * (i + 1)}
            curve.append(CurvePoint(day, NOW, counts, restated=("Unique Opens",) if (i, day) == (1, 3) else (),
                                    provisional=(i, day) == (2, 7)))
        send_at = NOW - dt.timedelta(days=8 + i)
        campaigns.append(CampaignAnalysis(f"OPT-C{i}-1004-{send_at:%Y%m%d}", 5000 + i, f"C{i}", "1004", send_at.date(), send_at, tuple(curve), NOW))
    png = curves_png(AnalysisResult(campaigns, NOW), {c.cheetah_name: f"Campaign number {i}" for i, c in enumerate(campaigns)})
    assert png.startswith(b"\x89PNG") and len(png) < 200_000
