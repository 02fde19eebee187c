"""The Cheetah Messaging simulator over real HTTP (``requests`` against a running
:class:`SimulatorServer`; no project client): authentication, every route's happy path and
errors, the import queue, the campaign life cycle and sends on the simulated clock, metric
curves, fault injection, the rate limit and the admin read-backs."""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import socket
import subprocess
import sys
import time

import pytest
import requests

from cheetah_assets.cheetah.contract import (
    ALREADY_LAUNCHED_MESSAGE,
    CAMPAIGN_PATH,
    DATA_MAP_PATH,
    FOLDER_OBJECTS_PATH,
    FOLDER_PATH,
    IMPORT_PATH,
    MAX_IMPORT_BYTES,
    MAX_IMPORT_ROWS,
    NAME_EXISTS_MESSAGE,
    REPORT_PATH,
    TOKEN_PATH,
    campaign_request,
)
from cheetah_assets.simulator.admin import SimulatorAdminError
from cheetah_assets.simulator.metrics import HORIZON, METRICS, curve_params, metrics_at
from cheetah_assets.simulator.server import SimulatorServer

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.timezone.utc)
KEY, SECRET, CLIENT = "demo-consumer-key", "demo-consumer-secret", "demo-client-id"
CUST, MAP, FOLDER = 1234, 77, 4242
HEADER = "EMAIL_ADDR,FNAME,CITY"


@pytest.fixture(scope="module")
def sim():
    with SimulatorServer(seed="demo", now=T0, rate_limit=0) as server:
        yield server


class Api:
    """Raw HTTP helpers against the simulator (one keep-alive session, one token)."""

    def __init__(self, sim: SimulatorServer):
        self.sim = sim
        self.url = sim.url
        self.http = requests.Session()
        self.token = self.fetch_token()

    def fetch_token(self, key=KEY, secret=SECRET, client=CLIENT) -> str:
        r = self.http.post(self.url + TOKEN_PATH, data={"grant_type": "password", "username": key,
                                                        "password": secret, "client_id": client}, timeout=5)
        assert r.status_code == 200, r.text
        return r.json()["access_token"]

    def call(self, method, path, *, token=None, **kw) -> requests.Response:
        headers = {"Authorization": f"Bearer {token or self.token}", **kw.pop("headers", {})}
        return self.http.request(method, self.url + path, headers=headers, timeout=kw.pop("timeout", 10), **kw)

    def get(self, path, **params):
        return self.call("GET", path, params=params)

    # -------------------------------------------------------------------- imports
    def post_import(self, csv_text: str, list_name: str = "L1", **override) -> requests.Response:
        body = {"fileName": "r.csv", "fileData": base64.b64encode(csv_text.encode()).decode(),
                "propMapId": MAP, "listName": list_name, **override}
        return self.call("POST", IMPORT_PATH, json=body)

    def run_import(self, csv_text: str, list_name: str = "L1") -> dict:
        r = self.post_import(csv_text, list_name)
        assert r.status_code == 200, r.text
        import_id = r.json()["importId"]
        for _ in range(5):
            reply = self.get(IMPORT_PATH, id=import_id).json()
            if reply["status"] in ("COMPLETED", "FAILED"):
                return reply
        raise AssertionError(f"import {import_id} never finished: {reply}")

    def make_list(self, n: int, list_name: str = "L1") -> int:
        rows = "\n".join(f"p{i}@example.com,P{i},Town{i % 3}" for i in range(n))
        reply = self.run_import(f"{HEADER}\n{rows}\n", list_name)
        assert reply["status"] == "COMPLETED" and reply["rowsAccepted"] == n, reply
        return reply["listId"]

    # ------------------------------------------------------------------ campaigns
    def create(self, name: str, list_id: int, start: dt.datetime, template="1001", timeout=10,
               **override) -> requests.Response:
        body = campaign_request(name=name, cust_id=CUST, template_obj_id=template, list_id=list_id,
                                prop_map_id=MAP, folder_id=FOLDER, start_time=start)
        body.update(override)
        return self.call("POST", CAMPAIGN_PATH, json=body, timeout=timeout)

    def action(self, camp_id: int, action: str) -> requests.Response:
        return self.call("PUT", CAMPAIGN_PATH, params={"id": camp_id}, json={"CampAction": action})

    def approved(self, name: str, list_id: int, start: dt.datetime, **kw) -> int:
        r = self.create(name, list_id, start, **kw)
        assert r.status_code == 200, r.text
        camp_id = r.json()["campId"]
        for act in ("LAUNCH", "APPROVE"):
            assert self.action(camp_id, act).status_code == 200
        return camp_id


@pytest.fixture
def api(sim):
    sim.admin.reset("demo", now=T0, rate_limit=0, live_clock=False)
    client = Api(sim)
    yield client
    client.http.close()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# ================================================================ authentication and limits
def test_token_password_grant_with_client_id_in_body_or_basic_auth(api):
    form = {"grant_type": "password", "username": KEY, "password": SECRET}
    r = requests.post(api.url + TOKEN_PATH, data={**form, "client_id": CLIENT}, timeout=5)
    assert r.status_code == 200
    body = r.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 28_800 and len(body["access_token"]) > 20
    # requests-oauthlib's default: the client id as the HTTP Basic user, not in the body.
    r = requests.post(api.url + TOKEN_PATH, data=form, auth=(CLIENT, ""), timeout=5)
    assert r.status_code == 200
    assert api.call("GET", DATA_MAP_PATH, token=r.json()["access_token"], params={"id": MAP}).status_code == 200


@pytest.mark.parametrize("form, error, named", [
    ({"grant_type": "password", "username": KEY, "password": "wrong", "client_id": CLIENT}, "invalid_grant", None),
    ({"grant_type": "password", "username": "nobody", "password": SECRET, "client_id": CLIENT}, "invalid_grant", None),
    ({"grant_type": "password", "username": KEY, "password": SECRET, "client_id": "other"}, "invalid_grant", None),
    ({"grant_type": "password", "username": KEY, "password": SECRET}, "invalid_request", "client_id"),
    ({"username": KEY, "password": SECRET, "client_id": CLIENT}, "invalid_request", "grant_type"),
    ({"grant_type": "password", "password": SECRET, "client_id": CLIENT}, "invalid_request", "username"),
    ({"grant_type": "client_credentials", "client_id": CLIENT}, "unsupported_grant_type", None),
])
def test_token_refusals(api, form, error, named):
    r = requests.post(api.url + TOKEN_PATH, data=form, timeout=5)
    assert r.status_code == 400
    assert r.json()["error"] == error and r.json()["message"]
    if named:
        assert named in r.json()["message"]
    assert SECRET not in r.text


def test_token_refuses_json_body(api):
    r = requests.post(api.url + TOKEN_PATH, json={"grant_type": "password"}, timeout=5)
    assert r.status_code == 400 and "form-urlencoded" in r.json()["message"]


def test_closed_whitelist_refuses_every_call_token_included(api):
    api.sim.admin.set_whitelist(False)
    r = requests.post(api.url + TOKEN_PATH, data={"grant_type": "password", "username": KEY, "password": SECRET,
                                                 "client_id": CLIENT}, timeout=5)
    assert r.status_code == 403 and r.json()["error"] == "ip_not_whitelisted" and r.json()["message"]
    for path in (DATA_MAP_PATH, CAMPAIGN_PATH, "/services2/api/NoSuchThing"):
        r = api.get(path, id=1)
        assert r.status_code == 403 and r.json()["error"] == "ip_not_whitelisted"
    api.sim.admin.set_whitelist(True)
    assert api.get(DATA_MAP_PATH, id=MAP).status_code == 200


def test_bearer_token_required_and_expiry(api, sim):
    r = requests.get(api.url + DATA_MAP_PATH, params={"id": MAP}, timeout=5)
    assert r.status_code == 401 and "Bearer" in r.json()["message"]
    assert api.call("GET", DATA_MAP_PATH, token="made-up", params={"id": MAP}).status_code == 401
    assert api.get(DATA_MAP_PATH, id=MAP).status_code == 200
    sim.admin.expire_tokens()
    r = api.get(DATA_MAP_PATH, id=MAP)
    assert r.status_code == 401 and "expired" in r.json()["message"]
    api.token = api.fetch_token()
    assert api.get(DATA_MAP_PATH, id=MAP).status_code == 200
    # tokenTtl is wall-clock seconds
    sim.admin.add_account(consumerKey="short-key", tokenTtl=1)
    short = api.fetch_token(key="short-key")
    assert api.call("GET", DATA_MAP_PATH, token=short, params={"id": MAP}).status_code == 200
    time.sleep(1.1)
    assert api.call("GET", DATA_MAP_PATH, token=short, params={"id": MAP}).status_code == 401


def test_rate_limit_429_with_retry_after_token_endpoint_included(api, sim):
    sim.admin.reset("demo", now=T0, rate_limit=4)
    session = requests.Session()
    form = {"grant_type": "password", "username": KEY, "password": SECRET, "client_id": CLIENT}
    token = session.post(api.url + TOKEN_PATH, data=form, timeout=5).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    codes = [session.get(api.url + FOLDER_PATH, params={"id": FOLDER}, headers=headers, timeout=5)
             for _ in range(5)]
    assert [r.status_code for r in codes][:3] == [200, 200, 200]
    limited = codes[3] if codes[3].status_code == 429 else codes[4]
    assert limited.status_code == 429, [r.status_code for r in codes]
    retry_after = int(limited.headers["Retry-After"])
    assert retry_after >= 1 and "Rate limit" in limited.json()["message"]
    r = session.post(api.url + TOKEN_PATH, data=form, timeout=5)
    assert r.status_code == 429  # the token endpoint counts against the same account
    time.sleep(retry_after)
    assert session.get(api.url + FOLDER_PATH, params={"id": FOLDER}, headers=headers, timeout=5).status_code == 200


def test_unknown_route_and_method_get_json_messages(api):
    r = api.get("/services2/api/Nope")
    assert r.status_code == 404 and "No such route" in r.json()["message"]
    r = api.call("DELETE", DATA_MAP_PATH, params={"id": MAP})
    assert r.status_code == 405 and r.json()["message"]


# ======================================================================= Data Map and folder
def test_data_map_and_folder(api):
    dm = api.get(DATA_MAP_PATH, id=MAP).json()
    assert dm["id"] == MAP
    assert [(f["name"], f["mapTo"], f["isIdentifier"]) for f in dm["fields"]][:2] == [
        ("EMAIL_ADDR", "email", True), ("FNAME", "first_name", False)]
    assert {f["name"] for f in dm["fields"]} == {"EMAIL_ADDR", "FNAME", "LNAME", "FAV_DEPT", "CITY"}
    assert api.get(FOLDER_PATH, id=FOLDER).json() == {"id": FOLDER, "name": "Optimove", "parentId": 1}
    assert api.get(DATA_MAP_PATH, id=78).status_code == 404
    assert api.get(FOLDER_PATH, id=1).status_code == 404
    r = api.get(FOLDER_PATH)
    assert r.status_code == 400 and "'id'" in r.json()["message"]
    r = api.get(FOLDER_PATH, id="abc")
    assert r.status_code == 400 and "'id'" in r.json()["message"]


def test_demo_templates_use_only_data_map_fields(api):
    page = api.get(FOLDER_OBJECTS_PATH, id=FOLDER).json()
    assert page["totalCount"] == 6
    assert [o["objId"] for o in page["objects"]] == [str(i) for i in range(1001, 1007)]
    by_id = {o["objId"]: o for o in page["objects"]}
    assert by_id["1001"]["displayName"] == "Winter sale" and by_id["1001"]["fields"] == ["FNAME", "FAV_DEPT"]
    assert by_id["1003"]["fields"] == [] and by_id["1006"]["fields"] == ["FNAME", "CITY"]
    names = {f["name"] for f in api.get(DATA_MAP_PATH, id=MAP).json()["fields"]}
    assert all(set(o["fields"]) <= names and o["typeId"] == "CampaignEmail" and o["modified"]
               for o in page["objects"])


def test_folder_objects_pagination(api, sim):
    sim.admin.add_templates(FOLDER, [{"objId": str(20_000 + i), "displayName": f"T{i}", "fields": ["FNAME"]}
                                     for i in range(450)])
    seen = []
    for page in (1, 2, 3):
        body = api.get(FOLDER_OBJECTS_PATH, id=FOLDER, pageNumber=page, pageSize=200).json()
        assert body["totalCount"] == 456
        seen += [o["objId"] for o in body["objects"]]
    assert len(seen) == 456 == len(set(seen))
    assert api.get(FOLDER_OBJECTS_PATH, id=FOLDER, pageNumber=4, pageSize=200).json()["objects"] == []
    assert len(api.get(FOLDER_OBJECTS_PATH, id=FOLDER).json()["objects"]) == 100  # default pageSize
    for bad in ({"pageSize": 201}, {"pageSize": 0}, {"pageNumber": 0}, {"pageNumber": "x"}):
        r = api.get(FOLDER_OBJECTS_PATH, id=FOLDER, **bad)
        assert r.status_code == 400 and next(iter(bad)) in r.json()["message"]
    assert api.get(FOLDER_OBJECTS_PATH, id=999).status_code == 404


# ================================================================================= imports
def test_import_queue_rejections_and_duplicates(api, sim):
    csv_text = (f"{HEADER}\n"
                "a@x.io,Ann,Oslo\n"       # 1
                "not-an-email,Bob,Rome\n"  # 2 rejected
                "c@x.io,Cid,Bern\n"        # 3
                "a@x.io,Anna,Oslo\n"       # 4 duplicate: wins, row 1 not rejected
                ",Nobody,Nowhere\n"        # 5 rejected
                "d@@x.io,Dee,Lyon\n"       # 6 rejected
                "e@x.io,Eve\n")            # 7 wrong number of columns
    r = api.post_import(csv_text)
    assert r.status_code == 200
    import_id = r.json()["importId"]
    first = api.get(IMPORT_PATH, id=import_id).json()
    assert first["status"] == "PROCESSING" and first["listId"]
    assert sim.admin.lists(first["listId"])[0]["rowCount"] == 0  # not applied before completion
    done = api.get(IMPORT_PATH, id=import_id).json()
    assert done["status"] == "COMPLETED"
    assert (done["rowsRead"], done["rowsAccepted"]) == (7, 3)
    assert [(x["row"], x["reason"]) for x in done["rejected"]][:3] == [
        (2, "invalid identifier"), (5, "invalid identifier"), (6, "invalid identifier")]
    assert done["rejected"][3]["row"] == 7 and "columns" in done["rejected"][3]["reason"]
    assert api.get(IMPORT_PATH, id=import_id).json()["status"] == "COMPLETED"  # stays done
    rows = {r["identifier"]: r["fields"] for r in sim.admin.lists(done["listId"])[0]["rows"]}
    assert rows == {"a@x.io": {"FNAME": "Anna", "CITY": "Oslo"}, "c@x.io": {"FNAME": "Cid", "CITY": "Bern"}}
    assert api.get(IMPORT_PATH, id=import_id + 1).status_code == 404


def test_import_into_same_list_name_replaces_rows(api, sim):
    one = api.run_import(f"{HEADER}\na@x.io,Ann,Oslo\nb@x.io,Bob,Rome\n", "weekly")
    two = api.run_import("EMAIL_ADDR,FNAME\nb@x.io,Robert\nc@x.io,Cid\n", "weekly")
    other = api.run_import("EMAIL_ADDR\nz@x.io\n", "other")
    assert one["listId"] == two["listId"] != other["listId"]
    rows = {r["identifier"]: r["fields"] for r in sim.admin.lists(one["listId"])[0]["rows"]}
    assert rows == {"a@x.io": {"FNAME": "Ann", "CITY": "Oslo"}, "b@x.io": {"FNAME": "Robert"}, "c@x.io": {"FNAME": "Cid"}}


@pytest.mark.parametrize("header, named", [
    ("email,FNAME", "email"),             # the Map To name of EMAIL_ADDR
    ("EMAIL_ADDR,first_name", "first_name"),
    ("EMAIL_ADDR,LOYALTY_TIER", "LOYALTY_TIER"),
    ("EMAIL_ADDR,fname", "fname"),
    ("FNAME,CITY", "EMAIL_ADDR"),         # no identifier column
    ("EMAIL_ADDR,FNAME,FNAME", "FNAME"),
])
def test_import_header_must_hold_data_map_field_names(api, sim, header, named):
    r = api.post_import(f"{header}\na@x.io,x\n")
    assert r.status_code == 400 and f"'{named}'" in r.json()["message"], r.text
    assert sim.admin.lists() == []  # nothing created


def test_import_body_validation(api):
    r = api.call("POST", IMPORT_PATH, json={"fileName": "x.csv", "propMapId": MAP, "listName": "L"})
    assert r.status_code == 400 and "'fileData'" in r.json()["message"]
    r = api.post_import("EMAIL_ADDR\na@x.io\n", propMapId="77")
    assert r.status_code == 400 and "'propMapId'" in r.json()["message"]
    assert api.post_import("EMAIL_ADDR\na@x.io\n", propMapId=78).status_code == 404
    r = api.call("POST", IMPORT_PATH, data="{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.json()["message"]


@pytest.mark.parametrize("file_data, reason", [
    ("***not base64***", "Base64"),
    (base64.b64encode(b"EMAIL_ADDR\n\xff\xfe@x.io\n").decode(), "UTF-8"),
    (b64(""), "empty"),
    (b64('EMAIL_ADDR,FNAME\n"a@x.io,unterminated\n'), "CSV"),
])
def test_unreadable_import_fails_with_a_reason(api, file_data, reason):
    r = api.post_import("", fileData=file_data)
    assert r.status_code == 200, r.text
    import_id = r.json()["importId"]
    assert api.get(IMPORT_PATH, id=import_id).json()["status"] == "PROCESSING"
    failed = api.get(IMPORT_PATH, id=import_id).json()
    assert failed["status"] == "FAILED" and reason in failed["reason"]


def test_import_limits_413(api):
    rows = "\n".join(f"u{i}@x.io" for i in range(MAX_IMPORT_ROWS + 1))
    r = api.post_import(f"EMAIL_ADDR\n{rows}\n")
    assert r.status_code == 413 and str(MAX_IMPORT_ROWS) in r.json()["message"]
    too_big = "A" * (math.ceil(MAX_IMPORT_BYTES / 3) * 4 + 8)
    r = api.post_import("", fileData=too_big)
    assert r.status_code == 413 and "bytes" in r.json()["message"]
    ok = api.run_import("EMAIL_ADDR\n" + "\n".join(f"u{i}@x.io" for i in range(MAX_IMPORT_ROWS)) + "\n")
    assert ok["status"] == "COMPLETED" and ok["rowsAccepted"] == MAX_IMPORT_ROWS


# =============================================================================== campaigns
def test_campaign_life_cycle_and_send_on_the_clock(api, sim):
    list_id = api.make_list(3)
    start = T0 + dt.timedelta(hours=1)
    r = api.create("Winter 1", list_id, start)
    assert r.status_code == 200
    camp_id = r.json()["campId"]
    got = api.get(CAMPAIGN_PATH, id=camp_id).json()
    assert (got["campId"], got["custId"], got["CampName"], got["status"], got["recipientCount"]) == (
        camp_id, CUST, "Winter 1", "DRAFT", 3)
    assert got["CampParam"]["sendSchedule"] == {"startTime": "2026-03-02T10:00:00", "timeZone": "UTC"}
    assert api.action(camp_id, "APPROVE").status_code == 400  # not launched yet
    assert api.action(camp_id, "LAUNCH").json()["status"] == "LAUNCHED"
    again = api.action(camp_id, "LAUNCH")
    assert again.status_code == 400 and again.json()["message"] == ALREADY_LAUNCHED_MESSAGE
    assert api.action(camp_id, "APPROVE").json()["status"] == "APPROVED"
    r = api.action(camp_id, "APPROVE")
    assert r.status_code == 400 and "approved already" in r.json()["message"]
    r = api.get(REPORT_PATH, id=camp_id)
    assert r.status_code == 409 and r.json()["message"] == "Campaign has not been sent yet."
    # rows imported after approval but before the start time are recipients too
    api.run_import("EMAIL_ADDR,FNAME\nlate@x.io,Late\n")
    sim.admin.advance(dt.timedelta(minutes=59))
    assert api.get(CAMPAIGN_PATH, id=camp_id).json()["status"] == "APPROVED"
    assert sim.admin.sent()["campaigns"] == []
    sim.admin.advance(120)
    got = api.get(CAMPAIGN_PATH, id=camp_id).json()
    assert got["status"] == "SENT" and got["recipientCount"] == 4
    sent = sim.admin.sent()
    assert sent["duplicates"] == 0 and len(sent["campaigns"]) == 1
    item = sent["campaigns"][0]
    assert (item["campId"], item["name"], item["templateObjId"], item["listId"], item["sendCount"]) == (
        camp_id, "Winter 1", "1001", list_id, 1)
    assert item["sentAt"] == item["startTime"] == "2026-03-02T10:00:00Z"
    assert sorted(r["identifier"] for r in item["recipients"]) == sorted(
        ["late@x.io", "p0@example.com", "p1@example.com", "p2@example.com"])
    assert {"identifier": "p1@example.com", "fields": {"FNAME": "P1", "CITY": "Town1"}} in item["recipients"]
    assert api.get(CAMPAIGN_PATH, name="Winter 1").json()["campId"] == camp_id
    assert api.call("DELETE", CAMPAIGN_PATH, params={"id": camp_id}).status_code == 409
    sim.admin.advance(dt.timedelta(days=3))  # moving on never sends it again
    assert [c["sendCount"] for c in sim.admin.sent(recipients=False)["campaigns"]] == [1]


def test_campaign_create_validation(api, sim):
    list_id = api.make_list(2)
    start = T0 + dt.timedelta(hours=2)
    assert api.create("Dup", list_id, start).status_code == 200
    r = api.create("Dup", list_id, start)
    assert r.status_code == 400 and r.json()["message"] == NAME_EXISTS_MESSAGE
    sim.admin.add_account(consumerKey="bu2-key", folder={"id": 4343, "name": "Other BU", "parentId": 1},
                          templates=[])
    other_folder = api.create("Dup", list_id, start, Obj={"display_name": "Dup", "type_id": "CampaignEmail",
                                                          "parent_obj_id": 4343})
    assert other_folder.status_code == 200  # unique per folder only
    r = api.create("X", list_id, start, template="9999")
    assert r.status_code == 404 and "TemplateObjId" in r.json()["message"]
    r = api.create("X", 123456, start)
    assert r.status_code == 404 and "ToFilterId" in r.json()["message"]
    r = api.create("X", list_id, start, CustId=999)
    assert r.status_code == 400 and r.json()["message"] == "Unknown CustId"
    r = api.create("X", list_id, T0 - dt.timedelta(seconds=1))
    assert r.status_code == 422 and r.json()["message"]
    assert api.create("Now", list_id, T0).status_code == 200  # the start may be the current instant
    for override, named in [({"CampName": None}, "CampName"), ({"ToFilterId": "9001"}, "ToFilterId"),
                            ({"CustId": True}, "CustId"), ({"Obj": {"display_name": "X"}}, "Obj.parent_obj_id"),
                            ({"CampParam": {"sendSchedule": {"timeZone": "UTC"}}}, "startTime"),
                            ({"CampParam": {"sendSchedule": {"startTime": "soon"}}}, "startTime"),
                            ({"CampParam": {"sendSchedule": {"startTime": "2026-03-02T12:00:00", "timeZone": "Mars/Base"}}},
                             "timeZone")]:
        r = api.create("X", list_id, start, **override)
        assert r.status_code == 400 and named in r.json()["message"], (override, r.text)
    assert api.get(CAMPAIGN_PATH, name="X").status_code == 404
    r = api.get(CAMPAIGN_PATH)
    assert r.status_code == 400 and "'name'" in r.json()["message"]


def test_start_time_in_another_time_zone(api):
    list_id = api.make_list(1)
    sched = {"sendSchedule": {"startTime": "2026-03-02T10:30:00", "timeZone": "Europe/Berlin"}}  # 09:30Z
    r = api.create("Berlin", list_id, T0, CampParam=sched)
    assert r.status_code == 200
    assert api.get(CAMPAIGN_PATH, id=r.json()["campId"]).json()["startTime"] == "2026-03-02T09:30:00Z"
    sched = {"sendSchedule": {"startTime": "2026-03-02T09:30:00", "timeZone": "Europe/Berlin"}}  # 08:30Z
    assert api.create("Berlin early", list_id, T0, CampParam=sched).status_code == 422


def test_campaigns_are_scoped_to_the_account(api, sim):
    list_id = api.make_list(1)
    camp_id = api.approved("Mine", list_id, T0 + dt.timedelta(hours=1))
    sim.admin.add_account(consumerKey="k2", custId=5678)
    other = api.fetch_token(key="k2")
    assert api.call("GET", CAMPAIGN_PATH, token=other, params={"id": camp_id}).status_code == 404
    assert api.call("GET", CAMPAIGN_PATH, token=other, params={"name": "Mine"}).status_code == 404
    body = campaign_request(name="Theirs", cust_id=5678, template_obj_id="1001", list_id=list_id, prop_map_id=MAP,
                            folder_id=FOLDER, start_time=T0 + dt.timedelta(hours=1))
    assert api.call("POST", CAMPAIGN_PATH, token=other, json=body).status_code == 404  # not their list


def test_delete_cancels_and_a_cancelled_campaign_never_goes_out(api, sim):
    list_id = api.make_list(2)
    camp_id = api.approved("Doomed", list_id, T0 + dt.timedelta(hours=1))
    r = api.call("DELETE", CAMPAIGN_PATH, params={"id": camp_id})
    assert r.status_code == 200 and r.json()["status"] == "CANCELLED"
    assert api.call("DELETE", CAMPAIGN_PATH, params={"id": camp_id}).status_code == 200  # repeatable
    assert api.action(camp_id, "LAUNCH").status_code == 400
    sim.admin.advance(dt.timedelta(hours=2))
    assert api.get(CAMPAIGN_PATH, name="Doomed").json()["status"] == "CANCELLED"
    assert sim.admin.sent()["campaigns"] == []
    assert api.create("Doomed", list_id, T0 + dt.timedelta(hours=3)).status_code == 400  # name still taken
    assert api.call("DELETE", CAMPAIGN_PATH, params={"id": 1}).status_code == 404


def test_pause_holds_the_send_and_resume_releases_it(api, sim):
    list_id = api.make_list(2)
    camp_id = api.approved("Held", list_id, T0 + dt.timedelta(hours=1))
    assert api.action(camp_id, "RESUME").status_code == 400  # not paused
    assert api.action(camp_id, "PAUSE").json()["paused"] is True
    assert api.action(camp_id, "PAUSE").status_code == 400
    sim.admin.advance(dt.timedelta(hours=3))
    assert api.get(CAMPAIGN_PATH, id=camp_id).json()["status"] == "APPROVED"
    resumed = api.action(camp_id, "RESUME").json()
    assert resumed["status"] == "SENT" and resumed["sentAt"] == "2026-03-02T12:00:00Z"
    assert api.action(camp_id, "BOGUS").status_code == 400


def test_duplicates_counts_campaigns_sharing_template_list_and_start(api, sim):
    list_id = api.make_list(2)
    start = T0 + dt.timedelta(hours=1)
    api.approved("A", list_id, start)
    api.approved("A again", list_id, start)
    api.approved("B", list_id, start, template="1002")
    sim.admin.advance(dt.timedelta(hours=1))
    sent = sim.admin.sent()
    assert len(sent["campaigns"]) == 3 and sent["duplicates"] == 2


def test_clock_moves_and_never_before_a_send(api, sim):
    assert sim.admin.now() == T0
    assert sim.admin.advance(90) == T0 + dt.timedelta(seconds=90)
    assert sim.admin.set_now(T0 + dt.timedelta(days=1)) == T0 + dt.timedelta(days=1)
    assert sim.admin.set_now(T0) == T0  # nothing was sent: it may go back
    list_id = api.make_list(1)
    api.approved("Out", list_id, T0 + dt.timedelta(hours=1))
    sim.admin.advance(dt.timedelta(hours=2))
    with pytest.raises(SimulatorAdminError) as err:
        sim.admin.set_now(T0 + dt.timedelta(minutes=59))
    assert err.value.status == 400 and "2026-03-02T10:00:00Z" in str(err.value)
    assert sim.admin.set_now(T0 + dt.timedelta(hours=1)) == T0 + dt.timedelta(hours=1)  # the send instant itself
    with pytest.raises(SimulatorAdminError):
        sim.admin.advance(-1)


# ================================================================================= metrics
def test_reports_follow_metrics_at_over_the_week(api, sim):
    list_id = api.make_list(300)
    camp_id = api.approved("Metrics", list_id, T0 + dt.timedelta(minutes=10))
    sent_at = T0 + dt.timedelta(minutes=10)
    previous = None
    for hours in (0, 1, 5, 12, 24, 49, 75, 101, 130, 167, 168, 200):
        now = sim.admin.set_now(sent_at + dt.timedelta(hours=hours))
        report = api.get(REPORT_PATH, id=camp_id).json()
        expected = metrics_at("demo", camp_id, 300, dt.timedelta(hours=hours))
        assert {k: report[k] for k in METRICS} == expected
        assert report["campId"] == camp_id
        assert dt.datetime.fromisoformat(report["asOf"].replace("Z", "+00:00")) == now
        assert report["Sent"] == 300
        previous = report
    final = metrics_at("demo", camp_id, 300, HORIZON)
    assert {k: previous[k] for k in METRICS} == final
    assert 0.94 * 300 - 1 <= final["Received"] <= 0.99 * 300 + 1
    assert 0 < final["MessageClicks"] < final["MessageOpens"] < final["Received"]


def test_metric_curves_bounded_monotonic_and_occasionally_restated():
    restating = 0
    hours = range(0, 24 * 8 + 1, 3)
    for camp_id in range(5001, 5301):
        p = curve_params("demo", camp_id)
        series = [metrics_at("demo", camp_id, 1000, dt.timedelta(hours=h)) for h in hours]
        for m in series:
            assert m["Sent"] == 1000
            assert m["MessageClicks"] <= m["MessageOpens"] <= m["Received"] <= m["Sent"]
            assert 0 <= m["Unsubs"] <= m["Received"]
        downs = [(h, k) for (h, a, b) in zip(hours[1:], series, series[1:]) for k in METRICS if b[k] < a[k]]
        if p.restatement is None:
            assert downs == [], camp_id
            continue
        restating += 1
        r = p.restatement
        assert 2 <= r.day <= 4 and 0.9 < r.factor < 1
        # every drop happens on the restatement day (entering it) and the day after resumes the trend
        assert all(h == r.day * 24 for h, _ in downs), (camp_id, downs)
        before = metrics_at("demo", camp_id, 1000, dt.timedelta(days=r.day - 1, hours=23))[r.metric]
        during = metrics_at("demo", camp_id, 1000, dt.timedelta(days=r.day, hours=12))[r.metric]
        if before >= 1:
            assert during < before
    assert 60 <= restating <= 140  # about one in three
    assert metrics_at("demo", 5001, 1000, dt.timedelta(days=2)) == metrics_at("demo", 5001, 1000, dt.timedelta(days=2))
    assert any(metrics_at("demo", c, 1000, dt.timedelta(days=2)) != metrics_at("other", c, 1000, dt.timedelta(days=2))
               for c in range(5001, 5004))
    assert metrics_at("demo", 5001, 0, dt.timedelta(days=3)) == dict.fromkeys(METRICS, 0)
    with pytest.raises(ValueError):
        metrics_at("demo", 5001, 10, dt.timedelta(seconds=-1))


def test_a_restatement_is_reported_downwards_over_http(api, sim):
    seed = next(s for s in (f"s{i}" for i in range(500))
                if (r := curve_params(s, 5001).restatement) and r.metric == "MessageOpens")
    sim.admin.reset(seed, now=T0, rate_limit=0)
    api.token = api.fetch_token()
    list_id = api.make_list(400)
    camp_id = api.approved("Restated", list_id, T0)
    assert camp_id == 5001
    day = curve_params(seed, camp_id).restatement.day
    sim.admin.set_now(T0 + dt.timedelta(days=day - 1, hours=12))
    before = api.get(REPORT_PATH, id=camp_id).json()["MessageOpens"]
    sim.admin.set_now(T0 + dt.timedelta(days=day, hours=12))
    during = api.get(REPORT_PATH, id=camp_id).json()
    sim.admin.set_now(T0 + dt.timedelta(days=day + 1, hours=12))
    after = api.get(REPORT_PATH, id=camp_id).json()["MessageOpens"]
    assert during["MessageOpens"] < before <= after  # restated down for a day, then back on the trend
    assert during["MessageClicks"] <= during["MessageOpens"]


# ================================================================================== faults
def test_drop_closes_the_connection_without_applying(api, sim):
    list_id = api.make_list(1)
    sim.admin.add_fault(kind="drop", method="POST", path=CAMPAIGN_PATH)
    with pytest.raises(requests.exceptions.ConnectionError):
        api.create("Dropped", list_id, T0 + dt.timedelta(hours=1))
    assert api.get(CAMPAIGN_PATH, name="Dropped").status_code == 404
    assert api.create("Dropped", list_id, T0 + dt.timedelta(hours=1)).status_code == 200  # fault used up
    (fault,) = sim.admin.faults()
    assert (fault["fired"], fault["armed"]) == (1, False)
    log = sim.admin.requests()
    dropped = [x for x in log if x["dropped"]]
    assert len(dropped) == 1 and dropped[0]["status"] is None and dropped[0]["fault"] == "drop"


def test_apply_then_drop_applies_the_request_but_loses_the_reply(api, sim):
    list_id = api.make_list(1)
    sim.admin.add_fault(kind="apply_then_drop", method="POST", path=CAMPAIGN_PATH)
    with pytest.raises(requests.exceptions.ConnectionError):
        api.create("Ghost", list_id, T0 + dt.timedelta(hours=1))
    assert api.get(CAMPAIGN_PATH, name="Ghost").json()["status"] == "DRAFT"
    r = api.create("Ghost", list_id, T0 + dt.timedelta(hours=1))  # the naive retry
    assert r.status_code == 400 and r.json()["message"] == NAME_EXISTS_MESSAGE
    assert sim.admin.stats()["requests"]["POST " + CAMPAIGN_PATH] == {"dropped": 1, "400": 1}


def test_string_id_variant_serves_ids_and_counts_as_strings_with_extra_fields(api, sim):
    """The string-id variant (reset ``stringIds``): what a second implementation of the contract
    may serve. Ids and counts are strings, every reply object has extra fields and its keys in
    another order; an id it handed out must come back as the string it was."""
    assert sim.admin.reset("demo", now=T0, rate_limit=0, string_ids=True)["stringIds"] is True
    api.token = api.fetch_token()
    dm = api.get(DATA_MAP_PATH, id=MAP).json()
    assert dm["id"] == "77" and dm["x_implementation"] == "second" and "x_implementation" in dm["fields"][0]
    plain_order = ["id", "name", "fields"]
    assert [k for k in dm if k in plain_order] == plain_order[::-1]
    assert api.get(FOLDER_PATH, id=FOLDER).json()["id"] == "4242"
    page = api.get(FOLDER_OBJECTS_PATH, id=FOLDER).json()
    assert page["totalCount"] == "6" and page["objects"][0]["objId"] == "1001"
    r = api.post_import(f"{HEADER}\na@x.io,A,T\nnot-an-address,B,T\n", propMapId="77")  # a configured id as text
    import_id = r.json()["importId"]
    assert isinstance(import_id, str)
    for _ in range(3):
        reply = api.get(IMPORT_PATH, id=import_id).json()
    assert (reply["status"], reply["rowsRead"], reply["rowsAccepted"]) == ("COMPLETED", "2", "1")
    assert reply["rejected"][0]["row"] == "2" and reply["listId"].startswith("list-")  # not even numeric
    assert import_id.startswith("import-")
    list_id = reply["listId"]
    start = T0 + dt.timedelta(hours=1)
    r = api.create("As a number", int(list_id.removeprefix("list-")), start)  # not passed back as received
    assert r.status_code == 400 and "'ToFilterId' must be the id as it was handed out (a string)" in r.json()["message"]
    r = api.create("Kept", list_id, start, CustId="1234")
    assert r.status_code == 200, r.text
    camp_id = r.json()["campId"]
    assert isinstance(camp_id, str) and camp_id.isdigit()
    assert api.create("Unknown list", "list-1", start).status_code == 404
    got = api.get(CAMPAIGN_PATH, id=camp_id).json()
    assert (got["campId"], got["custId"], got["recipientCount"], got["ToFilterId"], got["Obj"]["parent_obj_id"]) == (
        camp_id, "1234", "1", list_id, "4242")
    assert got["CampParam"] == {"sendSchedule": {"startTime": "2026-03-02T10:00:00", "timeZone": "UTC"}}
    for action in ("LAUNCH", "APPROVE"):
        assert api.action(camp_id, action).status_code == 200
    sim.admin.advance(dt.timedelta(hours=2))
    report = api.get(REPORT_PATH, id=camp_id).json()
    assert report["campId"] == camp_id and report["Sent"] == "1" and report["x_version"] == 2
    # a reset without stringIds returns to the server's default: numbers
    assert sim.admin.reset("demo", now=T0, rate_limit=0)["stringIds"] is False
    api.token = api.fetch_token()
    assert api.get(FOLDER_PATH, id=FOLDER).json() == {"id": FOLDER, "name": "Optimove", "parentId": 1}


def test_unapplied_fault_replies_as_if_done_but_changes_nothing(api, sim):
    list_id = api.make_list(1)
    camp_id = api.create("Liar", list_id, T0 + dt.timedelta(hours=1)).json()["campId"]
    sim.admin.add_fault(kind="unapplied", method="PUT", path=CAMPAIGN_PATH, times=2)
    r = api.action(camp_id, "LAUNCH")
    assert r.status_code == 200 and r.json()["status"] == "LAUNCHED"  # a normal-looking reply
    assert api.get(CAMPAIGN_PATH, id=camp_id).json()["status"] == "DRAFT"  # ...but nothing applied
    assert api.action(camp_id, "LAUNCH").json()["status"] == "LAUNCHED"
    assert api.get(CAMPAIGN_PATH, id=camp_id).json()["status"] == "DRAFT"
    assert api.action(camp_id, "LAUNCH").json()["status"] == "LAUNCHED"  # fault used up: applied
    assert api.get(CAMPAIGN_PATH, id=camp_id).json()["status"] == "LAUNCHED"
    sim.admin.add_fault(kind="unapplied", method="PUT", path=CAMPAIGN_PATH)
    assert api.action(camp_id, "APPROVE").json()["status"] == "APPROVED"
    sim.admin.advance(dt.timedelta(hours=2))
    assert api.get(CAMPAIGN_PATH, id=camp_id).json()["status"] == "LAUNCHED"
    assert sim.admin.sent()["campaigns"] == []
    sim.admin.add_fault(kind="unapplied", method="DELETE", path=CAMPAIGN_PATH, body='{"status": "CANCELLED"}')
    r = api.call("DELETE", CAMPAIGN_PATH, params={"id": camp_id})
    assert r.status_code == 200 and r.json() == {"status": "CANCELLED"}
    assert api.get(CAMPAIGN_PATH, id=camp_id).json()["status"] == "LAUNCHED"


def test_campaign_reply_echoes_template_list_and_folder_as_created(api, sim):
    list_id = api.make_list(1)
    camp_id = api.create("Echo", list_id, T0 + dt.timedelta(hours=1), template="1002").json()["campId"]
    got = api.get(CAMPAIGN_PATH, id=camp_id).json()
    assert (got["TemplateObjId"], got["ToFilterId"], got["Obj"]["parent_obj_id"]) == ("1002", list_id, FOLDER)
    assert api.get(CAMPAIGN_PATH, name="Echo").json()["Obj"] == {
        "display_name": "Echo", "type_id": "CampaignEmail", "parent_obj_id": FOLDER}


def test_status_fault_with_retry_after_is_not_applied(api, sim):
    list_id = api.make_list(1)
    sim.admin.add_fault(kind="status", method="POST", path=CAMPAIGN_PATH, status=503, retry_after=2)
    r = api.create("Busy", list_id, T0 + dt.timedelta(hours=1))
    assert r.status_code == 503 and r.headers["Retry-After"] == "2" and r.json()["message"]
    assert api.get(CAMPAIGN_PATH, name="Busy").status_code == 404
    sim.admin.add_fault(kind="status", path=FOLDER_PATH, status=500)
    r = api.get(FOLDER_PATH, id=FOLDER)
    assert r.status_code == 500 and "Retry-After" not in r.headers


def test_fault_after_times_and_wildcards(api, sim):
    sim.admin.add_fault(kind="status", method="GET", path="/services2/api/Folder*", status=502, after=1, times=2)
    codes = [api.get(FOLDER_PATH, id=FOLDER).status_code for _ in range(4)]
    assert codes == [200, 502, 502, 200]
    assert api.get(DATA_MAP_PATH, id=MAP).status_code == 200  # other paths untouched
    sim.admin.clear_faults()
    sim.admin.add_fault(kind="status", status=504, times=None)  # every API call until cleared
    assert api.get(DATA_MAP_PATH, id=MAP).status_code == 504
    assert api.call("PUT", CAMPAIGN_PATH, params={"id": 1}, json={}).status_code == 504
    assert sim.admin.now() == T0  # admin routes are never faulted
    (fault,) = sim.admin.faults()
    assert fault["fired"] == 2 and fault["armed"] is True
    sim.admin.clear_faults()
    assert sim.admin.faults() == [] and api.get(DATA_MAP_PATH, id=MAP).status_code == 200


def test_delay_fault_slows_the_reply_then_handles_it(api, sim):
    sim.admin.add_fault(kind="delay", path=DATA_MAP_PATH, delay=0.4, times=2)
    started = time.monotonic()
    assert api.get(DATA_MAP_PATH, id=MAP).status_code == 200
    assert time.monotonic() - started >= 0.4
    with pytest.raises(requests.exceptions.ReadTimeout):
        api.call("GET", DATA_MAP_PATH, params={"id": MAP}, timeout=0.1)
    time.sleep(0.4)  # the server still handles the request the client gave up on
    log = sim.admin.requests()
    assert [x["status"] for x in log if x["path"] == DATA_MAP_PATH] == [200, 200]
    assert [x["fault"] for x in log if x["path"] == DATA_MAP_PATH] == ["delay", "delay"]


def test_a_request_delayed_across_a_reset_is_not_applied(api, sim):
    list_id = api.make_list(1)
    sim.admin.add_fault(kind="delay", method="POST", path=CAMPAIGN_PATH, delay=0.3)
    with pytest.raises(requests.exceptions.ReadTimeout):
        api.create("Late", list_id, T0 + dt.timedelta(hours=1), timeout=0.1)
    sim.admin.reset("demo", now=T0, rate_limit=0)
    api.token = api.fetch_token()
    time.sleep(0.4)
    assert api.get(CAMPAIGN_PATH, name="Late").status_code == 404
    assert [x["path"] for x in sim.admin.requests()] == [TOKEN_PATH, CAMPAIGN_PATH]


def test_drop_of_a_large_unread_body_is_a_connection_error(api, sim):
    sim.admin.add_fault(kind="drop", path=IMPORT_PATH)
    rows = "\n".join(f"u{i}@x.io" for i in range(50_000))
    with pytest.raises(requests.exceptions.ConnectionError):
        api.post_import(f"EMAIL_ADDR\n{rows}\n")
    assert sim.admin.lists() == []


def test_malformed_fault_applies_the_request_and_replies_the_given_body(api, sim):
    list_id = api.make_list(1)
    sim.admin.add_fault(kind="malformed", method="POST", path=CAMPAIGN_PATH, body="<html>oops</html>")
    r = api.create("Hidden", list_id, T0 + dt.timedelta(hours=1))
    assert r.status_code == 200 and r.text == "<html>oops</html>"
    assert api.get(CAMPAIGN_PATH, name="Hidden").json()["status"] == "DRAFT"  # it was applied
    assert sim.admin.requests()[-2]["fault"] == "malformed"


def test_fault_validation(sim, api):
    for bad in ({"kind": "explode"}, {"kind": "status", "status": 42}, {"kind": "delay", "delay": -1},
                {"kind": "drop", "times": 0}, {"kind": "malformed"}):
        r = requests.post(api.url + "/_sim/faults", json=bad, timeout=5)
        assert r.status_code == 400 and r.json()["message"]


# ============================================================================ admin read-back
def test_request_log_and_stats_hold_no_secrets(api, sim):
    token = api.token
    api.get(DATA_MAP_PATH, id=MAP)
    api.get(FOLDER_PATH, id=999)
    requests.post(api.url + TOKEN_PATH, params={"username": KEY}, data={"grant_type": "password", "username": KEY,
                                                                        "password": SECRET, "client_id": CLIENT})
    log = sim.admin.requests()
    stats = sim.admin.stats()
    dumped = json.dumps([log, stats])
    for secret in (token, SECRET, KEY):
        assert secret not in dumped
    assert [(x["method"], x["path"], x["query"], x["status"], x["account"]) for x in log[:3]] == [
        ("POST", TOKEN_PATH, "", 200, CUST), ("GET", DATA_MAP_PATH, f"id={MAP}", 200, CUST),
        ("GET", FOLDER_PATH, "id=999", 404, CUST)]
    assert log[3]["query"] == "username=***"
    assert stats["requests"]["GET " + FOLDER_PATH] == {"404": 1}
    assert stats["total"] == 4 and stats["dropped"] == 0


def test_request_log_keeps_the_last_thousand(api, sim):
    for i in range(1010):
        api.get(FOLDER_PATH, id=i)
    log = sim.admin.requests()
    assert len(log) == 1000 and log[-1]["query"] == "id=1009" and log[0]["query"] == "id=10"
    assert sim.admin.stats()["total"] == 1011


def test_admin_accounts_and_templates_validation(api, sim):
    with pytest.raises(SimulatorAdminError) as err:
        sim.admin.add_account()  # the demo consumer key exists already
    assert err.value.status == 400
    with pytest.raises(SimulatorAdminError) as err:
        sim.admin.add_templates(1, [{"objId": "1", "displayName": "x"}])
    assert err.value.status == 404
    with pytest.raises(SimulatorAdminError) as err:
        sim.admin.add_templates(FOLDER, [{"objId": "1"}])
    assert "displayName" in str(err.value)
    with pytest.raises(SimulatorAdminError) as err:
        sim.admin.add_account(consumerKey="k3", dataMap={"id": 5, "fields": [{"name": "A", "mapTo": "a"}]},
                              propMapId=5)
    assert "identifier" in str(err.value)


def test_reset_drops_state_and_reseeds(api, sim):
    api.make_list(1)
    sim.admin.add_fault(kind="drop")
    sim.admin.set_whitelist(False)
    sim.admin.reset("demo", now=T0 + dt.timedelta(days=5))
    assert sim.admin.now() == T0 + dt.timedelta(days=5)
    assert sim.admin.faults() == [] and sim.admin.lists() == [] and sim.admin.requests() == []
    assert api.get(DATA_MAP_PATH, id=MAP).status_code == 401  # tokens are gone too
    api.token = api.fetch_token()
    assert api.get(DATA_MAP_PATH, id=MAP).status_code == 200


def test_live_clock_runs_with_real_time_and_sends_when_due(api, sim):
    sim.admin.reset("demo", now=T0, rate_limit=0, live_clock=True)
    api.token = api.fetch_token()
    list_id = api.make_list(2)
    start = T0 + dt.timedelta(seconds=1)  # whole seconds: the contract's start times have no fraction
    camp_id = api.approved("Live", list_id, start)
    assert api.get(CAMPAIGN_PATH, id=camp_id).json()["status"] == "APPROVED"
    time.sleep(1.1)
    assert sim.admin.now() >= T0 + dt.timedelta(seconds=1.1)
    got = api.get(CAMPAIGN_PATH, id=camp_id).json()  # sent on the first request after its start time
    assert got["status"] == "SENT" and got["sentAt"] == "2026-03-02T09:00:01Z"
    moved = sim.admin.advance(dt.timedelta(hours=1))  # still movable, and keeps running from there
    time.sleep(0.1)
    assert sim.admin.now() > moved >= T0 + dt.timedelta(hours=1)


# ===================================================================================== CLI
@pytest.mark.parametrize("string_ids", [False, True], ids=["numbers", "string-ids"])
def test_cli_serves_the_demo_account(string_ids):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    flags = ["--string-ids"] if string_ids else []
    proc = subprocess.Popen([sys.executable, "-m", "cheetah_assets.simulator", "--port", str(port), "--seed", "demo",
                             "--now", "2026-03-02T09:00:00Z", *flags], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                r = requests.get(f"http://127.0.0.1:{port}/_sim/clock", timeout=1)
                break
            except requests.ConnectionError:
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline, "the simulator CLI did not start"
                time.sleep(0.1)
        assert r.json() == {"now": "2026-03-02T09:00:00Z", "live": False}
        form = {"grant_type": "password", "username": KEY, "password": SECRET, "client_id": CLIENT}
        r = requests.post(f"http://127.0.0.1:{port}{TOKEN_PATH}", data=form, timeout=5)
        assert r.status_code == 200
        headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
        got = requests.get(f"http://127.0.0.1:{port}{FOLDER_PATH}", params={"id": FOLDER}, headers=headers, timeout=5)
        assert got.json()["id"] == (str(FOLDER) if string_ids else FOLDER)
        # a reset that does not say otherwise keeps the mode the server was started in
        reset = requests.post(f"http://127.0.0.1:{port}/_sim/reset", json={"seed": "demo"}, timeout=5).json()
        assert reset["stringIds"] is string_ids
    finally:
        proc.terminate()
        proc.wait(timeout=10)
