"""The simulator's request bodies (pydantic models): what a refused body's 400 says, and what an
accepted one reads as. Pure: no server."""

from __future__ import annotations

import datetime as dt

import pytest

from cheetah_assets.simulator.accounts import AccountBody, TemplatesBody
from cheetah_assets.simulator.bodies import read
from cheetah_assets.simulator.campaigns import CampaignActionBody, CampaignBody
from cheetah_assets.simulator.clock import ClockBody
from cheetah_assets.simulator.errors import SimError
from cheetah_assets.simulator.faults import FaultBody
from cheetah_assets.simulator.imports import ImportBody
from cheetah_assets.simulator.state import ResetBody

UTC = dt.timezone.utc
CAMPAIGN = {"CampName": " Spring ", "CustId": 1234, "TemplateObjId": "1001", "ToFilterId": 9001, "PropMapId": 77,
            "CampParam": {"sendSchedule": {"startTime": "2026-03-02T12:00:00", "timeZone": "Europe/Berlin"}},
            "Obj": {"parent_obj_id": 4242}}
IMPORT = {"fileName": "f.csv", "fileData": "", "propMapId": 77, "listName": "L"}


def refused(model, body, what: str) -> str:
    with pytest.raises(SimError) as err:
        read(model, body, what)
    assert err.value.status == 400
    return err.value.message


@pytest.mark.parametrize("model, body, message", [
    (ImportBody, ["not", "an", "object"], "The Import body must be a JSON object."),
    (ImportBody, {k: v for k, v in IMPORT.items() if k != "fileData"}, "'fileData' is required."),
    (ImportBody, {**IMPORT, "fileData": None}, "'fileData' is required."),
    (ImportBody, {**IMPORT, "propMapId": "77"}, "'propMapId' must be an integer, got str."),
    (ImportBody, {**IMPORT, "propMapId": True}, "'propMapId' must be an integer, got bool."),
    (ImportBody, {**IMPORT, "listName": "  "}, "'listName' must not be empty."),
    (CampaignBody, {**CAMPAIGN, "CampParam": {"sendSchedule": {}}}, "'CampParam.sendSchedule.startTime' is required."),
    (CampaignBody, {**CAMPAIGN, "Obj": []}, "'Obj' must be an object, got list."),
    (CampaignBody, {**CAMPAIGN, "CampParam": {"sendSchedule": {"startTime": "x", "timeZone": "Mars/Base"}}},
     "'CampParam.sendSchedule.timeZone' is not a known time zone: 'Mars/Base'."),
    (CampaignBody, {**CAMPAIGN, "CampParam": {"sendSchedule": {"startTime": "soon"}}},
     "'CampParam.sendSchedule.startTime' is not an ISO time: 'soon'."),
    (CampaignActionBody, {"CampAction": 1}, "'CampAction' must be a string, got int."),
    (AccountBody, {"templates": [{"objId": True}]}, "'templates[0].objId' must be a string or an integer, got bool."),
    (AccountBody, {"dataMap": {"id": 5, "fields": [{"name": "A", "mapTo": "a"}]}, "propMapId": 5},
     "'dataMap.fields' must mark exactly one field as the identifier."),
    (AccountBody, {"tokenTtl": 0}, "'tokenTtl' must be at least 1 second."),
    (AccountBody, {"propMapId": 78}, "'propMapId' must be the id of 'dataMap'."),
    (TemplatesBody, {"folderId": 4242, "templates": [{"objId": "1"}]}, "'templates[0].displayName' is required."),
    (FaultBody, {"kind": "explode"}, "'kind' must be one of status, delay, drop, apply_then_drop, malformed, "
                                     "unapplied; got 'explode'."),
    (FaultBody, {"kind": "status", "status": 42}, "'status' must be an HTTP status code (100-599)."),
    (FaultBody, {"kind": "drop", "times": 0}, "'times' must be >= 1 (or null: until cleared)."),
    (FaultBody, {"kind": "delay", "delay": -1}, "'delay' must be >= 0."),
    (FaultBody, {"kind": "malformed"}, "'body' (the raw reply text) is required for a malformed fault."),
    (ClockBody, {"now": "2026-03-02T10:00:00Z", "advanceSeconds": 1}, "Give either 'now' or 'advanceSeconds', not both."),
    (ClockBody, {}, "'now' or 'advanceSeconds' is required."),
    (ClockBody, {"advanceSeconds": -1}, "'advanceSeconds' must be >= 0: the simulated clock only moves forward."),
    (ClockBody, {"now": "tomorrow"}, "'now' is not an ISO time: 'tomorrow'."),
    (ResetBody, {"now": 5}, "'now' must be an ISO time string, got int."),
    (ResetBody, {"liveClock": "yes"}, "'liveClock' must be a boolean, got str."),
])
def test_a_refused_body_says_what_is_wrong(model, body, message):
    assert refused(model, body, "Import") == message


def test_an_accepted_body_reads_as_the_api_means_it():
    campaign = read(CampaignBody, CAMPAIGN, "EmailCampaign")
    assert campaign.name == "Spring"  # stripped
    assert campaign.start == dt.datetime(2026, 3, 2, 11, 0, tzinfo=UTC)  # no offset: read in timeZone
    assert read(CampaignActionBody, {"CampAction": "launch"}, "x").action == "LAUNCH"
    fault = read(FaultBody, {"kind": "malformed", "body": "<html>", "retryAfter": None, "method": "put"}, "fault")
    assert (fault.status, fault.retry_after, fault.times, fault.method) == (200, None, 1, "PUT")
    assert read(FaultBody, {"kind": "drop", "times": None}, "fault").times is None  # until cleared
    assert read(FaultBody, {"kind": "status"}, "fault").status == 503
    account = read(AccountBody, {"consumerKey": "k2"}, "account")
    assert (account.prop_map_id, account.folder.id, len(account.templates)) == (77, 4242, 6)  # the demo's
    assert read(AccountBody, {"templates": [{"objId": 7, "displayName": "T"}]}, "account").templates[0].obj_id == "7"
    assert read(ClockBody, {"now": "2026-03-02T10:00:00"}, "clock").now == dt.datetime(2026, 3, 2, 10, tzinfo=UTC)
    assert read(ImportBody, {**IMPORT, "listName": " weekly ", "extra": 1}, "Import").list_name == "weekly"
