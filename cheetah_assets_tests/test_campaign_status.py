"""campaign_status after a real day's cycle (the send path against the simulator): each planned
campaign in one row, plan -> list -> send -> metrics, the invalid one included."""

from __future__ import annotations

import dagster as dg

from cheetah_assets.customers import seed
from cheetah_assets.metrics.views import campaign_status

from .conftest import make_resources
from .helpers import run_cycle
from .test_metrics import engine, mat_metadata  # noqa: F401 - fixture


def test_each_planned_campaign_has_one_status_row(sim, db_url, engine):  # noqa: F811
    start = sim.admin.now()  # 06:00 UTC today
    day = start.date()
    seed.seed_demo(engine, customers=40, days=0, today=day, now=start)
    seed.add_campaign(engine, campaign_id="ST1", name="Status sent", send_date=day, send_time="09:00",
                      time_zone="UTC", template_ids="1004", target_group="all_customers")
    seed.add_campaign(engine, campaign_id="ST2", name="Status invalid", send_date=day, send_time="10:00",
                      time_zone="UTC", template_ids="NOPE", target_group="all_customers")
    with dg.DagsterInstance.ephemeral() as instance:
        run_cycle(make_resources(sim, db_url), day, instance)
        meta = mat_metadata(dg.materialize([campaign_status], resources=make_resources(sim, db_url), instance=instance))
    rows = {r.data["campaign"]: r.data for r in meta["campaigns"].records}
    assert set(rows) == {"ST1", "ST2"} and meta["dagster/row_count"] == 2
    sent, invalid = rows["ST1"], rows["ST2"]
    # Approved in Cheetah, going out at 09:00: its metric week has not begun.
    assert (sent["name"], sent["template"], sent["send"], sent["stage"]) == ("Status sent", "1004", "APPROVED", "approved")
    assert sent["metrics"] == f"goes out {day:%m-%d} 09:00 UTC" and sent["recipients"] > 0
    assert sent["send at"] == f"{day:%Y-%m-%d} 09:00 UTC" and sent["cheetah_name"].startswith("OPT-ST1-1004-")
    assert (sent["delivered"], sent["open_rate"], sent["days taken"]) == (None, None, 0)
    # Invalid in the plan: no list, no send, the plan's reason.
    assert (invalid["plan"], invalid["stage"], invalid["send"], invalid["metrics"]) == ("INVALID", "invalid", "–", "–")
    assert "NOPE" in invalid["note"] and invalid["cheetah_name"] is None
    assert meta["by_stage"] == {"approved": 1, "invalid": 1} and meta["overdue"] == 0
