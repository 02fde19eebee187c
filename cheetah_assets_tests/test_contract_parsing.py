"""The contract's parsers and the id codec, property-based (Hypothesis): ids are opaque (a number
or a string, kept and passed back exactly as received, stored losslessly as text); extra fields
and any key order are ignored; counts are non-negative whole numbers (a numeric string or a whole
float is the same number) and nothing else; statuses are known values (in any ASCII case and
spacing); names are exact strings."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cheetah_assets.cheetah import contract
from cheetah_assets.cheetah.contract import (
    CAMPAIGN_STATUSES,
    IMPORT_DONE,
    IMPORT_PENDING,
    METRIC_NAMES,
    id_from_db,
    id_to_db,
    parse_campaign,
    parse_import,
)
from cheetah_assets.cheetah.errors import MalformedResponse
from cheetah_assets.simulator.variants import vary_reply

EXAMPLES = settings(max_examples=150, deadline=None)

# --- strategies ---------------------------------------------------------------------------------
ids = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63),
    st.text(min_size=1, max_size=20).filter(lambda s: s.strip()),
    st.integers(min_value=0, max_value=10**9).map(str),  # numeric strings stay strings
)
counts = st.integers(min_value=0, max_value=10**12)
count_spellings = counts.flatmap(lambda n: st.sampled_from([n, str(n)]).map(lambda v: (v, n)))
bad_counts = st.one_of(
    st.integers(max_value=-1),
    st.integers(max_value=-1).map(str),
    st.floats(allow_nan=True, allow_infinity=True).filter(lambda f: not (f.is_integer() and f >= 0)),
    st.booleans(),
    st.sampled_from(["1.5", "12k", "", " 12", "12 ", "+3", "1e3", "0x10", "１２", "²", "-0", "12_000"]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
bad_ids = st.one_of(
    st.booleans(), st.floats().filter(lambda f: not (f.is_integer() and abs(f) <= 2**53)), st.sampled_from(["", " ", "\t\n"]), st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
# extra keys that the contract does not name (prefixed so they never collide with a real one)
extras = st.dictionaries(
    st.text(min_size=1, max_size=8).map(lambda k: "x_" + k),
    st.one_of(st.none(), st.integers(), st.text(max_size=8), st.lists(st.integers(), max_size=3)),
    max_size=4,
)


def shuffled(data: st.DataObject, body: dict, extra: dict) -> dict:
    """``body`` plus ``extra`` keys, in an order Hypothesis picks."""
    items = list({**extra, **body}.items())
    return dict(data.draw(st.permutations(items)))


def campaign_body(camp_id, list_id, template_id, folder_id, status="DRAFT", recipients=3) -> dict:
    return {
        "campId": camp_id, "custId": 1234, "CampName": "Winter", "status": status,
        "recipientCount": recipients,
        "CampParam": {"sendSchedule": {"startTime": "2026-03-02T10:00:00", "timeZone": "UTC"}},
        "TemplateObjId": template_id, "ToFilterId": list_id,
        "Obj": {"display_name": "Winter", "type_id": "CampaignEmail", "parent_obj_id": folder_id},
    }


# --- the id codec -------------------------------------------------------------------------------
@EXAMPLES
@given(ids)
def test_ids_round_trip_through_the_database_text_exactly(value):
    text = id_to_db(value)
    assert isinstance(text, str)
    back = id_from_db(text)
    assert back == value and type(back) is type(value)


def test_id_codec_examples_and_refusals():
    assert (id_to_db(5001), id_to_db("5001")) == ("5001", '"5001"')
    assert id_from_db("5001") == 5001 and id_from_db('"5001"') == "5001"
    assert id_from_db(5001) == 5001  # a value read from an integer column
    for bad in (True, None, "", "  ", 1.5, [1]):
        with pytest.raises(ValueError):
            id_to_db(bad)
    for bad in ("", "abc", "1.5", "true", "null", '""', "[1]"):
        with pytest.raises(ValueError):
            id_from_db(bad)


def test_same_id_compares_the_spellings_of_one_id():
    assert contract.same_id(4242, "4242") and contract.same_id("L-1", "L-1")
    assert not contract.same_id(4242, "4243") and not contract.same_id(None, 0)
    assert contract.same_id(None, None)


# --- ids in replies -----------------------------------------------------------------------------
@EXAMPLES
@given(st.data(), ids, ids, ids, ids, extras)
def test_campaign_ids_are_kept_as_received_whatever_extra_fields_and_order(data, camp, lst, tpl, folder, extra):
    body = shuffled(data, campaign_body(camp, lst, tpl, folder), extra)
    c = parse_campaign(json.loads(json.dumps(body)))
    for got, want in ((c.camp_id, camp), (c.list_id, lst), (c.template_obj_id, tpl), (c.folder_id, folder)):
        assert got == want and type(got) is type(want)
    # ...and passed back exactly as received, in query strings and JSON bodies
    assert contract.id_query(c.camp_id) == {"id": camp}
    request = contract.campaign_request(
        name="Winter", cust_id=1234, template_obj_id=c.template_obj_id, list_id=c.list_id, prop_map_id=77,
        folder_id=c.folder_id, start_time=dt.datetime(2026, 3, 2, 10, tzinfo=dt.timezone.utc),
    )
    assert request["ToFilterId"] == lst and type(request["ToFilterId"]) is type(lst)
    assert request["TemplateObjId"] == tpl and request["Obj"]["parent_obj_id"] == folder


@EXAMPLES
@given(st.data(), ids, ids, st.sampled_from(IMPORT_PENDING + IMPORT_DONE), count_spellings, count_spellings, extras)
def test_import_status_ids_kept_and_counts_parsed(data, import_id, list_id, status, read, accepted, extra):
    body = {"importId": import_id, "status": status, "listId": list_id, "rowsRead": read[0],
            "rowsAccepted": accepted[0], "rejected": [{"row": "2", "reason": "invalid identifier"}]}
    got = parse_import(json.loads(json.dumps(shuffled(data, body, extra))))
    assert got.import_id == import_id and type(got.import_id) is type(import_id)
    assert got.list_id == list_id and type(got.list_id) is type(list_id)
    assert (got.rows_read, got.rows_accepted) == (read[1], accepted[1])
    assert got.rejected == (contract.Rejection(2, "invalid identifier"),)


def test_the_import_reply_with_list_id_as_a_string_is_accepted():
    """Issue 8, item 8: a second implementation's ``"listId": "9001"`` failed every send."""
    got = parse_import({"importId": 1, "status": "COMPLETED", "listId": "9001", "rowsRead": 2, "rowsAccepted": 2})
    assert got.list_id == "9001"
    assert contract.parse_import_id({"importId": "imp-77"}) == "imp-77"
    assert contract.parse_campaign_id({"campId": "5001"}) == "5001"


@EXAMPLES
@given(bad_ids)
def test_a_bad_id_is_malformed(value):
    with pytest.raises(MalformedResponse, match="campId"):
        contract.parse_campaign_id({"campId": value})
    with pytest.raises(MalformedResponse, match="listId"):
        parse_import({"importId": 1, "status": "QUEUED", "listId": value})


def test_a_campaign_reply_without_the_echoes_has_them_as_none_and_folder_id_is_a_fallback():
    body = campaign_body(5001, 9001, "1001", 4242)
    for key in ("TemplateObjId", "ToFilterId", "Obj"):
        del body[key]
    c = parse_campaign(body)
    assert (c.template_obj_id, c.list_id, c.folder_id) == (None, None, None)
    assert parse_campaign({**body, "folderId": 4242}).folder_id == 4242


# --- counts -------------------------------------------------------------------------------------
@EXAMPLES
@given(st.data(), count_spellings, extras)
def test_metric_counts_accept_integers_and_numeric_strings(data, spelled, extra):
    value, n = spelled
    body = {"campId": 5001, "asOf": "2026-03-03T10:00:00Z", **{k: value for k in METRIC_NAMES}}
    got = contract.parse_metrics(json.loads(json.dumps(shuffled(data, body, extra))))
    assert dict(got.counts) == {k: n for k in METRIC_NAMES}


@EXAMPLES
@given(bad_counts, st.sampled_from(sorted(METRIC_NAMES)))
def test_metric_counts_reject_everything_else(value, key):
    body = {"campId": 5001, "asOf": "2026-03-03T10:00:00Z", **{k: 1 for k in METRIC_NAMES}, key: value}
    with pytest.raises(MalformedResponse, match=key):
        contract.parse_metrics(body)


@EXAMPLES
@given(bad_counts, st.sampled_from(["rowsRead", "rowsAccepted"]))
def test_import_counts_reject_everything_else(value, key):
    with pytest.raises(MalformedResponse, match=key):
        parse_import({"importId": 1, "status": "COMPLETED", "listId": 9001, key: value})


@EXAMPLES
@given(bad_counts)
def test_recipient_count_rejects_everything_else(value):
    with pytest.raises(MalformedResponse, match="recipientCount"):
        parse_campaign(campaign_body(5001, 9001, "1001", 4242, recipients=value))


@pytest.mark.parametrize("key", sorted(METRIC_NAMES))
def test_a_missing_or_null_metric_is_malformed(key):
    body = {"campId": 5001, "asOf": "2026-03-03T10:00:00Z", **{k: 1 for k in METRIC_NAMES}}
    with pytest.raises(MalformedResponse, match=key):
        contract.parse_metrics({**body, key: None})
    del body[key]
    with pytest.raises(MalformedResponse, match=key):
        contract.parse_metrics(body)


# --- statuses and names -------------------------------------------------------------------------
def _known(status: str, vocabulary: tuple[str, ...]) -> bool:
    """Whether the parsers read ``status`` as one of ``vocabulary`` (ASCII case and spacing aside)."""
    trimmed = status.strip()
    return trimmed.isascii() and trimmed.upper() in vocabulary


@EXAMPLES
@given(st.text(max_size=12).filter(lambda s: not _known(s, CAMPAIGN_STATUSES)))
def test_unknown_campaign_statuses_are_rejected(status):
    with pytest.raises(MalformedResponse, match="status"):
        parse_campaign(campaign_body(5001, 9001, "1001", 4242, status=status))


@EXAMPLES
@given(st.text(max_size=12).filter(lambda s: not _known(s, IMPORT_PENDING + IMPORT_DONE)))
def test_unknown_import_statuses_are_rejected(status):
    with pytest.raises(MalformedResponse, match="status"):
        parse_import({"importId": 1, "status": status, "listId": 9001})


@pytest.mark.parametrize("status", ["CANCELED", "PAUSED", "SENT!", "S ENT", "\u017fENT", "DRAFTS", ""])
def test_statuses_are_known_values_only(status):
    with pytest.raises(MalformedResponse, match="status"):
        parse_campaign(campaign_body(5001, 9001, "1001", 4242, status=status))


@pytest.mark.parametrize("name", [5001, True, None, ["Winter"]])
def test_a_campaign_name_must_be_a_string(name):
    with pytest.raises(MalformedResponse, match="CampName"):
        parse_campaign({**campaign_body(5001, 9001, "1001", 4242), "CampName": name})


def test_an_import_failed_carries_cheetah_s_reason_verbatim():
    got = parse_import({"importId": 1, "status": "FAILED", "listId": 9001, "reason": "line contains NUL"})
    assert got.reason == "line contains NUL"
    assert parse_import({"importId": 1, "status": "COMPLETED", "listId": 9001, "reason": "x"}).reason is None


# --- the simulator's string-id variant reads the same --------------------------------------------
@EXAMPLES
@given(st.integers(1, 10**9), st.integers(1, 10**9), st.integers(0, 10**6), st.sampled_from(CAMPAIGN_STATUSES))
def test_a_string_id_variant_reply_parses_to_the_same_values_with_ids_as_served(camp, lst, n, status):
    """What the simulator's string-id variant serves (ids and counts as strings, extra fields,
    keys reversed) parses to the same campaign, import and report, each id as it was served."""
    plain = campaign_body(camp, lst, "1001", 4242, status=status, recipients=n)
    a, b = parse_campaign(plain), parse_campaign(vary_reply(plain))
    assert (b.camp_id, b.list_id, b.folder_id, b.cust_id) == (str(camp), f"list-{lst}", "4242", "1234")
    assert (b.name, b.status, b.recipient_count, b.camp_param, b.start_time) == (
        a.name, a.status, a.recipient_count, a.camp_param, a.start_time)
    imp = {"importId": 3, "status": "COMPLETED", "listId": lst, "rowsRead": n + 1, "rowsAccepted": n,
           "rejected": [{"row": 1, "reason": "invalid identifier"}]}
    got = parse_import(vary_reply(imp))
    assert (got.import_id, got.list_id, got.rows_read, got.rows_accepted, got.rejected) == (
        "import-3", f"list-{lst}", n + 1, n, parse_import(imp).rejected)
    report = {"campId": camp, "asOf": "2026-03-03T10:00:00Z", **{k: n for k in METRIC_NAMES}}
    varied = contract.parse_metrics(vary_reply(report))
    assert varied.camp_id == str(camp) and varied.counts == contract.parse_metrics(report).counts


# --- liberal where the meaning is unchanged --------------------------------------------------------
@pytest.mark.parametrize("spelled, status", [("draft", "DRAFT"), ("Sent", "SENT"), (" SENT", "SENT"),
                                             ("Approved\n", "APPROVED"), ("\tcancelled ", "CANCELLED")])
def test_a_known_campaign_status_is_read_in_any_case_and_spacing(spelled, status):
    assert parse_campaign(campaign_body(5001, 9001, "1001", 4242, status=spelled)).status == status


@pytest.mark.parametrize("spelled, status", [("Completed", "COMPLETED"), (" COMPLETED ", "COMPLETED"),
                                             ("queued", "QUEUED"), ("Failed", "FAILED")])
def test_a_known_import_status_is_read_in_any_case_and_spacing(spelled, status):
    assert parse_import({"importId": 1, "status": spelled, "listId": 9001}).status == status


@pytest.mark.parametrize("value, n", [(12000.0, 12000), (0.0, 0), (12000, 12000), ("12000", 12000)])
def test_a_whole_float_count_is_that_count(value, n):
    body = {"campId": 5001, "asOf": "2026-03-03T10:00:00Z", **{k: value for k in METRIC_NAMES}}
    assert set(contract.parse_metrics(body).counts.values()) == {n}
    got = parse_import({"importId": 1, "status": "COMPLETED", "listId": 9001, "rowsRead": value, "rowsAccepted": value})
    assert (got.rows_read, got.rows_accepted) == (n, n)
    assert parse_campaign(campaign_body(5001, 9001, "1001", 4242, recipients=value)).recipient_count == n


@pytest.mark.parametrize("value, kept", [(77.0, 77), (-3.0, -3), (77, 77), ("77", "77")])
def test_a_whole_float_id_is_that_number(value, kept):
    got = contract.parse_campaign_id({"campId": value})
    assert got == kept and type(got) is type(kept)
    assert parse_import({"importId": value, "status": "QUEUED"}).import_id == kept


@pytest.mark.parametrize("value", [77.5, True, False, float("nan"), float("inf"), 2.0**60])
def test_a_float_id_that_is_not_an_exact_whole_number_is_malformed(value):
    with pytest.raises(MalformedResponse, match="campId"):
        contract.parse_campaign_id({"campId": value})


def test_a_missing_or_null_recipient_count_is_unknown_not_zero():
    body = campaign_body(5001, 9001, "1001", 4242)
    assert parse_campaign({**body, "recipientCount": None}).recipient_count is None
    del body["recipientCount"]
    assert parse_campaign(body).recipient_count is None


def data_map(*fields: dict) -> dict:
    return {"id": 77, "name": "Optimove", "fields": [
        {"name": "EMAIL_ADDR", "mapTo": "email", "type": "string", "isIdentifier": True}, *fields]}


@pytest.mark.parametrize("raw, flag", [(True, True), (False, False), ("true", True), ("FALSE", False),
                                       ("True", True), (1, True), (0, False), (None, False)])
def test_is_identifier_accepts_the_spellings_of_a_boolean(raw, flag):
    body = data_map({"name": "FNAME", "mapTo": "first_name", "isIdentifier": raw})
    parsed = contract.parse_data_map(body)
    assert parsed.by_name()["FNAME"].is_identifier is flag


@pytest.mark.parametrize("raw", ["yes", "1", 2, -1, 1.0, [], "t"])
def test_is_identifier_refuses_anything_else(raw):
    with pytest.raises(MalformedResponse, match="isIdentifier"):
        contract.parse_data_map(data_map({"name": "FNAME", "mapTo": "first_name", "isIdentifier": raw}))


@pytest.mark.parametrize("map_to", [None, "", "  "])
def test_an_unmapped_field_other_than_the_identifier_is_skipped(map_to):
    body = data_map({"name": "NICKNAME", "mapTo": map_to}, {"name": "FNAME", "mapTo": "first_name"})
    parsed = contract.parse_data_map(body)
    assert [f.name for f in parsed.fields] == ["EMAIL_ADDR", "FNAME"] and parsed.identifier.map_to == "email"
    without = data_map({"name": "NICKNAME"})
    assert [f.name for f in contract.parse_data_map(without).fields] == ["EMAIL_ADDR"]


@pytest.mark.parametrize("map_to", [None, "", " "])
def test_the_identifier_must_be_mapped(map_to):
    body = data_map()
    body["fields"][0]["mapTo"] = map_to
    with pytest.raises(MalformedResponse, match="mapTo"):
        contract.parse_data_map(body)
    del body["fields"][0]["mapTo"]
    with pytest.raises(MalformedResponse, match="mapTo"):
        contract.parse_data_map(body)


@pytest.mark.parametrize("map_to", [5, ["email"], True])
def test_a_map_to_that_is_not_text_is_malformed(map_to):
    with pytest.raises(MalformedResponse, match="mapTo"):
        contract.parse_data_map(data_map({"name": "FNAME", "mapTo": map_to}))


@pytest.mark.parametrize(
    "schedule, expected",
    [
        ({"startTime": "2026-11-23T15:00:00", "timeZone": "UTC"}, dt.datetime(2026, 11, 23, 15, tzinfo=dt.timezone.utc)),
        ({"startTime": "2026-11-23T15:00:00", "timeZone": "utc"}, dt.datetime(2026, 11, 23, 15, tzinfo=dt.timezone.utc)),
        ({"startTime": "2026-11-23T15:00:00", "timeZone": " Utc "}, dt.datetime(2026, 11, 23, 15, tzinfo=dt.timezone.utc)),
        ({"startTime": "2026-11-23T15:00:00", "timeZone": None}, dt.datetime(2026, 11, 23, 15, tzinfo=dt.timezone.utc)),
        ({"startTime": "2026-11-23T15:00:00"}, dt.datetime(2026, 11, 23, 15, tzinfo=dt.timezone.utc)),
        ({"startTime": "2026-11-23T16:00:00", "timeZone": "Europe/Paris"}, dt.datetime(2026, 11, 23, 15, tzinfo=dt.timezone.utc)),
        ({"startTime": "2026-11-23T15:00:00Z", "timeZone": "Europe/Paris"}, dt.datetime(2026, 11, 23, 15, tzinfo=dt.timezone.utc)),
        ({}, None),
        (None, None),
    ],
)
def test_a_campaigns_start_time_is_read_in_every_harmless_shape(schedule, expected):
    """Regression: an echoed time zone "utc" or null raised ZoneInfoNotFoundError/TypeError."""
    from cheetah_assets.cheetah.records import Campaign

    param = {} if schedule is None else {"sendSchedule": schedule}
    campaign = Campaign(camp_id=1, cust_id=2, name="n", status="DRAFT", recipient_count=1, camp_param=param)
    assert campaign.start_time == expected


@pytest.mark.parametrize(
    "schedule",
    [
        "2026-11-23T15:00:00",
        ["2026-11-23T15:00:00"],
        {"startTime": 1763910000},
        {"startTime": "23/11/2026 15:00"},
        {"startTime": "2026-11-23T15:00:00", "timeZone": "Mars/Olympus"},
        {"startTime": "2026-11-23T15:00:00", "timeZone": 0},
    ],
)
def test_a_start_time_that_cannot_be_read_is_a_value_error_and_never_adopted(schedule):
    """Regression: a sendSchedule that is a string, or a numeric startTime, raised AttributeError or
    TypeError through the adoption check (a traceback instead of "no start time to compare")."""
    from cheetah_assets.cheetah.records import Campaign
    from cheetah_assets.sending.adoption import ownership_problem

    campaign = Campaign(camp_id=1, cust_id=2, name="OPT-X", status="DRAFT", recipient_count=1,
                        camp_param={"sendSchedule": schedule})
    with pytest.raises(ValueError):
        campaign.start_time
    row = type("Row", (), {"cheetah_name": "OPT-X", "send_at": dt.datetime(2026, 11, 23, 15, tzinfo=dt.timezone.utc),
                           "template_id": "1", "list_id": None, "rows_accepted": 1})()
    assert ownership_problem(campaign, row, cust_id=2, folder_id=3) == "its reply shows no start time to compare with ours"
