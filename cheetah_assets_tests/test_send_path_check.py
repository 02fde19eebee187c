"""The set-up check that goes through the whole send path without mailing anyone (issue 8, item 11)."""

from __future__ import annotations

import datetime as dt

import pytest

from cheetah_assets.sending.findings import failures
from cheetah_assets.sending.send_path_check import CHECK_LIST_NAME, CHECK_PREFIX
from cheetah_assets.sending.setup import check_account

from .conftest import cheetah_resource

TEST_ADDRESS = "ops-seed@example.com"


def _by_check(findings):
    return {f.check: f for f in findings}


def _calls(sim) -> list[str]:
    return [f"{r['method']} {r['path']}" for r in sim.admin.requests()]


def test_the_check_imports_creates_and_deletes_without_mailing_anyone(sim):
    findings, data_map = check_account(cheetah_resource(sim, test_address=TEST_ADDRESS))
    assert data_map is not None
    found = _by_check(findings)["send_path"]
    assert found.ok, found.message
    calls = _calls(sim)
    assert "POST /services2/api/Import" in calls and "POST /services2/api/EmailCampaign" in calls
    assert "DELETE /services2/api/EmailCampaign" in calls
    assert "PUT /services2/api/EmailCampaign" not in calls  # never launched, never approved
    # What it leaves: the one-row list, and a CANCELLED campaign of the check's name.
    (lst,) = [x for x in sim.admin.lists() if x.get("listName") == CHECK_LIST_NAME]
    assert [r["identifier"] for r in lst["rows"]] == [TEST_ADDRESS]
    # Running it again (even within the same second) keeps the list at one row.
    findings, _ = check_account(cheetah_resource(sim, test_address=TEST_ADDRESS))
    assert _by_check(findings)["send_path"].ok
    (lst,) = [x for x in sim.admin.lists() if x.get("listName") == CHECK_LIST_NAME]
    assert len(lst["rows"]) == 1
    # Nothing goes out, however far the clock moves.
    sim.admin.advance(dt.timedelta(days=40))
    assert sim.admin.sent()["campaigns"] == []


def test_without_a_test_address_the_check_warns_and_does_not_block(sim):
    findings, _ = check_account(cheetah_resource(sim))
    found = _by_check(findings)["send_path"]
    assert not found.ok and not found.blocking
    assert "CHEETAH_TEST_ADDRESS" in found.message
    assert not failures(findings, blocking=True)
    assert "POST /services2/api/Import" not in _calls(sim)


@pytest.mark.parametrize(
    "fault, step",
    [
        (dict(kind="status", method="POST", path="/services2/api/Import", status=400, times=None), "the import"),
        (
            dict(kind="status", method="POST", path="/services2/api/EmailCampaign", status=403, times=None),
            "the campaign creation",
        ),
        (
            dict(kind="malformed", method="GET", path="/services2/api/Import", body="<html>oops</html>", times=None),
            "the import",
        ),
    ],
)
def test_checks_that_used_to_pass_while_every_send_fails_now_fail(sim, fault, step):
    """Regression (issue 8.11): the old checks never touched Import or EmailCampaign, so they all
    passed on an account where every send fails."""
    sim.admin.add_fault(**fault)
    findings, _ = check_account(cheetah_resource(sim, test_address=TEST_ADDRESS, max_retries=1))
    blocking = failures(findings, blocking=True)
    assert [f.check for f in blocking] == ["send_path"], findings
    message = blocking[0].message
    assert message.startswith(f"The send path fails at {step}:"), message
    assert "nobody was mailed" in message and "Traceback" not in message
    assert "PUT /services2/api/EmailCampaign" not in _calls(sim)


def test_the_check_runs_against_the_string_id_variant(sim):
    """The variant of the API that hands out ids as strings (issue 8.8) passes the check, and so
    would the sends: the check exercises the same parsers."""
    sim.admin.reset(seed="demo", now=sim.admin.now(), rate_limit=0, string_ids=True)
    findings, _ = check_account(cheetah_resource(sim, test_address=TEST_ADDRESS))
    assert _by_check(findings)["send_path"].ok, findings


def test_the_check_campaign_name_cannot_be_a_send_name():
    from cheetah_assets.sending.ledger import cheetah_name

    assert not cheetah_name("X", "1", dt.date(2026, 11, 23)).startswith(CHECK_PREFIX)
    assert not CHECK_PREFIX.startswith("OPT-")
