"""Bad input, table-driven: each row names its problem and proves nothing was half-sent.

A row is (id, arrange, expect). ``arrange(ctx)`` prepares the day (and may arm simulator
faults); the day's cycle then runs once; ``expect(ctx)`` checks the clear message *and* the
no-harm guarantee. To add a case, add a row.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Callable

import dagster as dg
import pytest
import sqlalchemy as sa

from cheetah_assets.customers import seed
from cheetah_assets.customers.resource import CustomerDatabaseResource
from cheetah_assets.customers.schema import campaign_plan, recipient_list

from .conftest import cheetah_resource, make_resources
from .helpers import audit_sends, failure_messages, ledger_rows, rejected, run_cycle

API = "/services2/api"


@dataclass
class Ctx:
    sim: object
    engine: sa.Engine
    url: str
    day: dt.date
    result: object = None
    extra: dict = field(default_factory=dict)

    def campaign(self, cid="C", templates="1002", at="12:00", tz="UTC", day=None, group="all_customers"):
        seed.add_campaign(
            self.engine, campaign_id=cid, name=cid, send_date=day or self.day, send_time=at, time_zone=tz,
            template_ids=templates, target_group=group,
        )

    def plan(self, cid="C") -> list[dict]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.select(campaign_plan).where(campaign_plan.c.campaign_id == cid)).mappings()]

    def assert_nothing_in_cheetah(self) -> None:
        """No write to Cheetah Messaging took effect, and nothing goes out even a day later."""
        writes = [
            f"{r['method']} {r['path']} {r['status']}"
            for r in self.sim.admin.requests()
            if r["method"] in ("POST", "PUT", "DELETE") and r["path"].startswith(API) and r["status"] in (200, 201)
        ]
        assert writes == [], writes
        with cheetah_resource(self.sim).get_client() as client:
            found = [r["cheetah_name"] for r in ledger_rows(self.engine) if client.find_campaign(r["cheetah_name"])]
        assert found == [], found
        self.sim.admin.advance(dt.timedelta(days=1))
        assert self.sim.admin.sent()["campaigns"] == []

    def message(self) -> str:
        return " ".join(failure_messages(self.result))


def _invalid(reason: str) -> Callable[[Ctx], None]:
    def expect(ctx: Ctx) -> None:
        assert ctx.result.success
        (row,) = ctx.plan()
        assert row["status"] == "INVALID" and reason in row["reason"], row
        assert ledger_rows(ctx.engine) == []
        ctx.assert_nothing_in_cheetah()

    return expect


def _customers(ctx: Ctx, emails: list[str | None]) -> None:
    seed.add_customers(ctx.engine, [{"email": e, "first_name": "Ann", "fav_dept": "Shoes"} for e in emails], groups=("edge",))


def _expect_identifiers(ctx: Ctx) -> None:
    assert ctx.result.success
    (row,) = ledger_rows(ctx.engine)
    with ctx.engine.connect() as conn:
        lst = conn.execute(sa.select(recipient_list)).mappings().one()
    # NULL and blank: left out and counted; duplicates (by case) collapsed and counted.
    assert lst["excluded_missing_identifier"] == 2 and lst["collapsed_duplicates"] == 1, dict(lst)
    assert lst["row_count"] == 3
    # Malformed: sent to Cheetah, rejected there with a reason, and recorded (not dropped silently).
    assert rejected(ctx.engine, row["send_key"]) == {"not-an-address"}
    assert row["rows_accepted"] == 2 and row["rows_rejected"] == 1
    assert row["state"] == "APPROVED"
    ctx.sim.admin.advance(dt.timedelta(days=1))
    audit = audit_sends(ctx.engine, ctx.sim.admin.sent())
    assert audit.ok and audit.campaigns_checked == 1, audit


def _unfreezable(ctx: Ctx) -> None:
    """Campaign U's only member has an identifier stored as bytes that are not UTF-8 (SQLite keeps
    what it is given); campaign C, on another group, is fine."""
    seed.add_customers(ctx.engine, [{"email": "placeholder@example.com", "first_name": "Ann"}], groups=("bad_bytes",))
    with ctx.engine.begin() as conn:
        conn.execute(sa.text("UPDATE customers SET email = CAST(X'6AFF40782E696F' AS TEXT) WHERE email = 'placeholder@example.com'"))
    ctx.campaign(cid="U", group="bad_bytes", templates="1001,1003")
    ctx.campaign(cid="C")


def _expect_others_sent(ctx: Ctx) -> None:
    """The list that cannot be frozen stops its own campaign, says why and what to fix, and fails the
    run; the day's other campaign is sent."""
    assert not ctx.result.success
    assert {(r["campaign_id"], r["state"]) for r in ledger_rows(ctx.engine)} == {("C", "APPROVED")}
    plan_rows = ctx.plan("U")
    assert [r["status"] for r in plan_rows] == ["INVALID", "INVALID"], plan_rows
    assert all("its recipient list could not be frozen" in r["reason"] and "nothing was sent for it" in r["reason"]
               for r in plan_rows), plan_rows
    (message,) = [m for m in failure_messages(ctx.result) if "U" in m]
    assert "campaign U" in message and "could not be frozen" in message and "Traceback" not in message, message
    ctx.sim.admin.advance(dt.timedelta(days=1))
    (sent,) = ctx.sim.admin.sent()["campaigns"]
    assert sent["name"].startswith("OPT-C-"), sent["name"]


def _expect_missed(ctx: Ctx) -> None:
    assert ctx.result.success
    (row,) = ctx.plan()
    assert row["status"] == "MISSED" and "has passed" in row["reason"]
    ctx.assert_nothing_in_cheetah()


def _expect_empty(ctx: Ctx) -> None:
    assert ctx.result.success
    (row,) = ledger_rows(ctx.engine)
    assert row["state"] == "EMPTY" and "no recipients" in row["error"]
    ctx.assert_nothing_in_cheetah()


def _expect_split(ctx: Ctx) -> None:
    assert ctx.result.success
    (row,) = ledger_rows(ctx.engine)
    assert row["state"] == "APPROVED"
    assert sum(f["fired"] for f in ctx.sim.admin.faults()) == 1
    imports = [r["status"] for r in ctx.sim.admin.requests() if r["method"] == "POST" and r["path"] == f"{API}/Import"]
    assert imports[0] == 413 and imports[1:].count(200) >= 2, imports  # refused whole, then sent in parts
    assert len(ctx.sim.admin.lists()) == 1  # the parts went into one list
    ctx.sim.admin.advance(dt.timedelta(days=1))
    audit = audit_sends(ctx.engine, ctx.sim.admin.sent())
    assert audit.ok and audit.campaigns_checked == 1, audit


def _unknown_field(ctx: Ctx) -> None:
    ctx.campaign()
    ctx.extra["after_lists"] = lambda: _add_bogus_field(ctx.engine)


def _add_bogus_field(engine) -> None:
    with engine.begin() as conn:
        raw = conn.execute(sa.select(recipient_list.c.fields)).scalar()
        fields = json.loads(raw)
        fields["BOGUS_FIELD"] = "city"
        conn.execute(recipient_list.update().values(fields=json.dumps(fields)))


def _expect_unknown_field(ctx: Ctx) -> None:
    assert not ctx.result.success
    assert "BOGUS_FIELD" in ctx.message()
    (row,) = ledger_rows(ctx.engine)
    assert row["state"] in ("IMPORTING",) and row["camp_id"] is None
    ctx.assert_nothing_in_cheetah()


def _malformed(body: str):
    def arrange(ctx: Ctx) -> None:
        ctx.campaign()
        ctx.sim.admin.add_fault(method="POST", path=f"{API}/EmailCampaign", kind="malformed", body=body, times=1)

    return arrange


def _expect_malformed(fragment: str):
    def expect(ctx: Ctx) -> None:
        assert not ctx.result.success
        assert fragment in ctx.message(), ctx.message()
        (row,) = ledger_rows(ctx.engine)
        assert row["state"] == "IMPORTED"  # stopped before anything could be launched
        ctx.sim.admin.clear_faults()
        # The next run finds the campaign the malformed reply hid, and finishes exactly once.
        with dg.DagsterInstance.ephemeral() as instance:
            assert run_cycle(make_resources(ctx.sim, ctx.url), ctx.day, instance).success
        (row,) = ledger_rows(ctx.engine)
        assert row["state"] == "APPROVED"
        creates = [r for r in ctx.sim.admin.requests() if r["method"] == "POST" and r["path"] == f"{API}/EmailCampaign"]
        assert len(creates) == 1  # found again by its name, not created twice
        ctx.sim.admin.advance(dt.timedelta(days=1))
        audit = audit_sends(ctx.engine, ctx.sim.admin.sent())
        assert audit.ok and audit.campaigns_checked == 1, audit

    return expect


GAP_DAY = dt.date(2027, 3, 28)  # 01:00-02:00 does not exist in London


def _expect_dst_gap(ctx: Ctx) -> None:
    """The gap day is not a partition yet, so its plan is made by the planner the asset calls,
    with today's catalog and the account's Data Map."""
    from cheetah_assets.customers.queries import reflect_customers
    from cheetah_assets.sending.catalog import load_catalog
    from cheetah_assets.sending.plan import INVALID, plan_day, resolve_send_at

    assert ctx.result.success  # today's cycle, which has no campaign
    with cheetah_resource(ctx.sim).get_client() as client:
        data_map = client.get_data_map()
    rows = plan_day(
        ctx.engine, GAP_DAY, catalog=load_catalog(ctx.engine, ctx.day), data_map=data_map,
        customer_columns=set(reflect_customers(ctx.engine).columns.keys()), now=ctx.sim.admin.now(),
    )
    (row,) = rows
    assert row.status == INVALID and "01:30 on 2027-03-28 does not exist in Europe/London (daylight-saving gap)" in row.reason, row
    (stored,) = ctx.plan()
    assert stored["status"] == "INVALID"
    assert ledger_rows(ctx.engine) == []
    ctx.assert_nothing_in_cheetah()
    # The ambiguous hour when clocks go back means its first occurrence (01:30 BST = 00:30 UTC).
    assert resolve_send_at(dt.date(2027, 10, 31), "01:30", "Europe/London").hour == 0


CASES = [
    ("template not in the folder", lambda c: c.campaign(templates="4040"), _invalid("template 4040 is not in the Optimove folder")),
    ("template field not in the Data Map", lambda c: (c.sim.admin.add_templates(folderId=4242, templates=[{"objId": "2001", "displayName": "Loyal", "subject": "Hi", "fields": ["LOYALTY_TIER"]}]), c.campaign(templates="2001")), _invalid("LOYALTY_TIER, which is not in the Data Map")),
    ("send time without a time zone", lambda c: c.campaign(tz=None), _invalid("has no time zone")),
    ("send time in a daylight-saving gap", lambda c: c.campaign(day=GAP_DAY, at="01:30", tz="Europe/London"), _expect_dst_gap),
    ("send time in the past", lambda c: c.campaign(at="05:00"), _expect_missed),
    ("NULL, empty, malformed and duplicate identifiers", lambda c: (_customers(c, [None, "  ", "not-an-address", "Dup@Example.com", "dup@example.com", "ok@example.com"]), c.campaign(templates="1002", group="edge")), _expect_identifiers),
    ("a campaign with zero recipients", lambda c: c.campaign(group="nobody"), _expect_empty),
    ("a list that cannot be frozen, beside a good one", _unfreezable, _expect_others_sent),
    ("a batch the API rejects as too large", lambda c: (c.campaign(), c.sim.admin.add_fault(method="POST", path=f"{API}/Import", kind="status", status=413, times=1)), _expect_split),
    ("an import with an unknown field", _unknown_field, _expect_unknown_field),
    ("a reply that is not JSON", _malformed("<html>oops</html>"), _expect_malformed("not JSON")),
    ("a reply missing a key", _malformed('{"id": 5}'), _expect_malformed("has no 'campId'")),
    ("a reply with a wrong type", _malformed('{"campId": [1]}'), _expect_malformed("'campId' should be an id")),
]


@pytest.mark.parametrize("name, arrange, expect", CASES, ids=[c[0] for c in CASES])
def test_bad_input(sim, tmp_path, name, arrange, expect):
    day = sim.admin.now().date()
    url = f"sqlite:///{tmp_path / 'c.db'}"
    engine = CustomerDatabaseResource(url=url).get_engine(create=True)
    seed.seed_demo(engine, customers=40, days=0, today=day, now=sim.admin.now())
    ctx = Ctx(sim=sim, engine=engine, url=url, day=day)
    arrange(ctx)
    with dg.DagsterInstance.ephemeral() as instance:
        if "after_lists" in ctx.extra:
            res = make_resources(sim, url)
            assert dg.materialize(
                _assets()[:3], partition_key=day.isoformat(), resources=res, instance=instance
            ).success
            ctx.extra["after_lists"]()
            ctx.result = dg.materialize(
                _assets(), partition_key=day.isoformat(), resources=res, instance=instance,
                selection=["campaign_sends"], raise_on_error=False,
            )
        else:
            ctx.result = run_cycle(make_resources(sim, url), day, instance)
    expect(ctx)


def _assets():
    from cheetah_assets.sending.assets import SEND_ASSETS

    return SEND_ASSETS


def test_an_import_that_ended_failed_says_when_re_executing_will_not_help():
    """Regression: a FAILED import (a file Cheetah could not take) said only "re-execute the run to
    resume", which fails the same way forever when the file is the problem."""
    from cheetah_assets.cheetah.errors import ImportFailed
    from cheetah_assets.sending.errors import stopped

    error = stopped("X/1002/2026-11-23", "IMPORTING", ImportFailed("Import 7 ended FAILED after reading 0 rows; Cheetah's reason: bad CSV."))
    text = str(error)
    assert "Import 7 ended FAILED" in text and "bad CSV" in text
    assert "If it fails the same way again, re-executing will not help" in text and "fix what Cheetah's reason names" in text
    assert not getattr(error, "permanent", False)  # Cheetah's own trouble may pass: a re-execution is worth it
