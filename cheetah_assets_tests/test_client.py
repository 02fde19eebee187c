"""The Cheetah Messaging client and resource, over real HTTP against the simulator.

Tests of the API talk to a real ``SimulatorServer`` (uvicorn on loopback): faults, the clock, the
IP whitelist and accounts are set through its admin surface, and its request log proves what went
over the wire (how many attempts, how many token requests, whether a POST was repeated). Replies
the simulator never gives (an HTML page, a malformed token) come from a tiny loopback server;
settings validation needs no server at all.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from cheetah_assets.cheetah import contract
from cheetah_assets.cheetah.client import CheetahClient
from cheetah_assets.cheetah.contract import CAMPAIGN_PATH, FOLDER_OBJECTS_PATH, FOLDER_PATH, IMPORT_PATH, TOKEN_PATH
from cheetah_assets.cheetah.errors import (
    AlreadyLaunched,
    BadRequest,
    CampaignAlreadySent,
    ConfigurationError,
    ImportFailed,
    ImportTooLarge,
    InsecureEndpoint,
    InvalidCredentials,
    IpNotWhitelisted,
    MalformedResponse,
    MetricsNotReady,
    NameAlreadyExists,
    RateLimited,
    ServerError,
    StartTimeInPast,
    TransportError,
    Unauthorized,
    UnknownCampaign,
    UnknownDataMap,
    UnknownFolder,
    UnknownImport,
    UnknownList,
    UnknownTemplate,
)
from cheetah_assets.cheetah.resource import CheetahMessagingResource
from cheetah_assets.cheetah.settings import CheetahSettings

from .conftest import DEMO_CREDENTIALS

DEMO = DEMO_CREDENTIALS
FAST = dict(
    timeout_seconds="2",
    connect_timeout_seconds="1",
    max_retries="3",
    backoff_factor="0.01",
    backoff_max_seconds="0.05",
    import_poll_interval_seconds="0.01",
    import_timeout_seconds="10",
)


# --- fixtures ------------------------------------------------------------------------------------
@pytest.fixture
def sim(sim_server):
    """The session's simulator (conftest), reset below with no rate limit."""
    return sim_server


@pytest.fixture(autouse=True)
def fresh(request):
    """Reset the simulator to the demo account (when the test uses it), clear faults afterwards."""
    if "sim" not in request.fixturenames:
        yield
        return
    server = request.getfixturevalue("sim")
    server.admin.reset(seed="demo", rate_limit=0)  # unlimited: request counts stay exact
    yield
    server.admin.clear_faults()


def settings(sim, **overrides) -> CheetahSettings:
    raw = dict(endpoint=sim.url, **DEMO, **FAST)
    raw.update(overrides)
    return CheetahSettings.from_raw(**raw)


def client(sim, **overrides) -> CheetahClient:
    return CheetahClient(settings(sim, **overrides))


def count(sim, method: str, path: str, status: int | None = None) -> int:
    """Requests the simulator received for ``METHOD path`` (optionally with that status)."""
    rows = [r for r in sim.admin.requests() if r["method"] == method and r["path"] == path]
    if status is not None:
        rows = [r for r in rows if r["status"] == status]
    return len(rows)


def in_an_hour(sim) -> dt.datetime:
    return sim.admin.now() + dt.timedelta(hours=1)


def csv(rows: list[tuple[str, str]]) -> bytes:
    return ("EMAIL_ADDR,FNAME\n" + "".join(f"{e},{n}\n" for e, n in rows)).encode()


def imported_list(c: CheetahClient, name: str, rows: list[tuple[str, str]]) -> int:
    status = c.wait_for_import(c.start_import(list_name=name, csv_bytes=csv(rows), file_name=f"{name}.csv"))
    assert status.list_id is not None
    return status.list_id


# --- settings ------------------------------------------------------------------------------------
RAW = dict(endpoint="https://api.example.com/", **DEMO)


def test_settings_parse_and_normalise():
    s = CheetahSettings.from_raw(**RAW)
    assert s.endpoint == "https://api.example.com"
    assert (s.cust_id, s.folder_id, s.prop_map_id) == (1234, 4242, 77)
    assert s.timeout == (5.0, 30.0) and s.max_retries == 5
    for loopback in ("http://127.0.0.1:8765", "http://127.9.9.9", "http://localhost:1/", "http://[::1]:80"):
        assert CheetahSettings.from_raw(**{**RAW, "endpoint": loopback}).endpoint == loopback.rstrip("/")
    assert CheetahSettings.from_raw(**RAW, timeout_seconds="", max_retries="2").max_retries == 2


@pytest.mark.parametrize(
    "name, label",
    [
        ("endpoint", "API endpoint URL (endpoint, env CHEETAH_ENDPOINT)"),
        ("cust_id", "Cust_ID (cust_id, env CHEETAH_CUST_ID)"),
        ("folder_id", "Folder ID (folder_id, env CHEETAH_FOLDER_ID)"),
        ("prop_map_id", "PROP_MAP_ID (prop_map_id, env CHEETAH_PROP_MAP_ID)"),
        ("consumer_key", "Consumer Key (consumer_key, env CHEETAH_CONSUMER_KEY)"),
        ("consumer_secret", "Consumer Secret (consumer_secret, env CHEETAH_CONSUMER_SECRET)"),
        ("client_id", "Client Identifier (client_id, env CHEETAH_CLIENT_ID)"),
    ],
)
@pytest.mark.parametrize("missing", [None, "", "   "])
def test_missing_setting_is_named(name, label, missing):
    raw = {**RAW, name: missing}
    if missing is None:
        del raw[name]
    with pytest.raises(ConfigurationError) as err:
        CheetahSettings.from_raw(**raw)
    assert str(err.value) == f"{label} is missing."


@pytest.mark.parametrize("name", ["cust_id"])  # Folder ID and PROP_MAP_ID are opaque: test_settings.py
def test_ids_must_be_whole_numbers(name):
    with pytest.raises(ConfigurationError, match=rf"^.*\({name}, env CHEETAH_.*must be a whole number, got 'abc'\.$"):
        CheetahSettings.from_raw(**{**RAW, name: "abc"})
    with pytest.raises(ConfigurationError, match=rf"\({name}, .* must be a positive whole number, got 0\."):
        CheetahSettings.from_raw(**{**RAW, name: "0"})


@pytest.mark.parametrize(
    "name, value, fragment",
    [
        ("timeout_seconds", "soon", "Request timeout (timeout_seconds) must be a number, got 'soon'."),
        ("timeout_seconds", "0", "Request timeout (timeout_seconds) must be more than 0"),
        ("max_retries", "-1", "Retry limit (max_retries) must be at least 0"),
        ("max_retries", "2.5", "Retry limit (max_retries) must be a whole number, got '2.5'."),
        ("import_poll_interval_seconds", "0", "Import poll interval (import_poll_interval_seconds) must be more"),
    ],
)
def test_tuning_settings_are_validated(name, value, fragment):
    with pytest.raises(ConfigurationError) as err:
        CheetahSettings.from_raw(**RAW, **{name: value})
    assert fragment in str(err.value)


@pytest.mark.parametrize(
    "endpoint", ["http://example.com", "http://10.0.0.1:8080", "http://127.0.0.1.example.com", "http://localhost.evil"]
)
def test_plain_http_off_loopback_is_refused(endpoint):
    with pytest.raises(InsecureEndpoint) as err:
        CheetahSettings.from_raw(**{**RAW, "endpoint": endpoint})
    assert "must use https://" in str(err.value) and "(endpoint, env CHEETAH_ENDPOINT)" in str(err.value)
    # direct construction validates too
    with pytest.raises(InsecureEndpoint):
        CheetahSettings(endpoint=endpoint, cust_id=1, folder_id=1, prop_map_id=1, consumer_key="k", consumer_secret="s", client_id="c")


@pytest.mark.parametrize(
    "endpoint, fragment",
    [
        ("api.example.com", "must be an https:// URL with a host name"),
        ("ftp://api.example.com", "must be an https:// URL with a host name"),
        ("https://user:pw@api.example.com", "must not contain a user name or password"),
        ("https://api.example.com/services2", "without /services2"),
        ("https://api.example.com/?x=1", "must not have a query"),
    ],
)
def test_malformed_endpoint_is_refused(endpoint, fragment):
    with pytest.raises(ConfigurationError) as err:
        CheetahSettings.from_raw(**{**RAW, "endpoint": endpoint})
    assert fragment in str(err.value)
    assert "pw@" not in str(err.value)


def test_unknown_setting_is_a_type_error():
    with pytest.raises(TypeError, match="verify_tls"):
        CheetahSettings.from_raw(**RAW, verify_tls="false")


def test_settings_and_client_repr_hide_credentials():
    s = CheetahSettings.from_raw(**{**RAW, "consumer_key": "KEY-zz9", "consumer_secret": "SECRET-zz9"})
    for text in (repr(s), str(s), repr(CheetahClient(s))):
        assert "api.example.com" in text and "1234" in text
        assert "KEY-zz9" not in text and "SECRET-zz9" not in text


# --- authentication ------------------------------------------------------------------------------
def test_good_credentials_fetch_one_token_reused(sim):
    with client(sim) as c:
        c.check_access()
        assert c.get_folder().id == 4242
        assert c.get_data_map().identifier.name == "EMAIL_ADDR"
    assert count(sim, "POST", TOKEN_PATH) == 1
    assert "OAUTHLIB_INSECURE_TRANSPORT" not in os.environ  # only set for the duration of a call


def test_simulator_admin_calls_in_other_threads_survive_the_loopback_variable_coming_and_going(sim):
    """Regression (a flaky parallel-send test): a loopback client's calls set and remove
    OAUTHLIB_INSECURE_TRANSPORT, and a requests call in another thread that was iterating the
    environment for proxies at that moment died with KeyError. The simulator's admin client
    talks to loopback and no longer reads proxies or CA bundles from the environment."""
    from cheetah_assets.cheetah.transport import loopback_http_allowed

    stop = threading.Event()

    def toggle():
        while not stop.is_set():
            with loopback_http_allowed():
                pass

    import sys

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns often: the race shows within a few hundred calls
    thread = threading.Thread(target=toggle)
    thread.start()
    try:
        for _ in range(400):
            sim.admin.now()
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(interval)
    assert "OAUTHLIB_INSECURE_TRANSPORT" not in os.environ


@pytest.mark.parametrize("name", ["consumer_key", "consumer_secret", "client_id"])
def test_each_bad_credential_is_invalid_credentials(sim, name):
    with client(sim, **{name: "wrong-" + name}) as c:
        with pytest.raises(InvalidCredentials) as err:
            c.check_access()
        with pytest.raises(InvalidCredentials):
            c.get_folder()  # an API call fetches the token first
    assert str(err.value) == (
        "Cheetah Messaging refused the credentials: check the Consumer Key (consumer_key), "
        "Consumer Secret (consumer_secret) and Client Identifier (client_id)."
    )
    assert count(sim, "GET", FOLDER_PATH) == 0


IP_MESSAGE = (
    "Cheetah Messaging refused this server's IP address: ask Cheetah Digital support to add it to the "
    "account's IP whitelist (set-up step 7)."
)


def test_closed_whitelist_on_token(sim):
    sim.admin.set_whitelist(open=False)
    with client(sim) as c, pytest.raises(IpNotWhitelisted) as err:
        c.check_access()
    assert str(err.value) == IP_MESSAGE and err.value.status == 403


def test_closed_whitelist_mid_sequence(sim):
    with client(sim) as c:
        assert c.get_folder().name == "Optimove"
        sim.admin.set_whitelist(open=False)
        with pytest.raises(IpNotWhitelisted) as err:
            c.get_data_map()
        assert str(err.value) == IP_MESSAGE
        sim.admin.set_whitelist(open=True)
        assert c.get_data_map().id == 77


def test_expired_token_is_renewed_once_transparently(sim):
    with client(sim) as c:
        c.get_folder()
        sim.admin.expire_tokens()
        assert c.get_data_map().id == 77  # 401, renew, repeat
        assert c.get_folder().id == 4242  # the renewed token is reused
    assert count(sim, "POST", TOKEN_PATH) == 2
    assert count(sim, "GET", contract.DATA_MAP_PATH, 401) == 1
    assert count(sim, "GET", contract.DATA_MAP_PATH, 200) == 1


def test_short_lived_token_is_renewed_ahead_of_expiry(sim):
    sim.admin.add_account(
        consumerKey="short-key", consumerSecret="short-secret", clientId="short-client", tokenTtl=2
    )
    with client(sim, consumer_key="short-key", consumer_secret="short-secret", client_id="short-client") as c:
        c.get_folder()
        c.get_folder()  # reused while young
        assert count(sim, "POST", TOKEN_PATH) == 1
        time.sleep(1.1)  # past half its lifetime: renewed before the server would refuse it
        c.get_folder()
    assert count(sim, "POST", TOKEN_PATH) == 2
    assert count(sim, "GET", FOLDER_PATH, 401) == 0


# --- endpoints -----------------------------------------------------------------------------------
def test_data_map_folder_and_templates(sim):
    with client(sim) as c:
        dm = c.get_data_map()
        assert dm.id == 77 and dm.by_name()["FNAME"].map_to == "first_name"
        folder = c.get_folder()
        assert (folder.id, folder.name, folder.parent_id) == (4242, "Optimove", 1)
        templates = list(c.iter_templates())
        assert [t.obj_id for t in templates] == ["1001", "1002", "1003", "1004", "1005", "1006"]
        winter = next(t for t in templates if t.display_name == "Winter sale")
        assert winter.fields == ("FNAME", "FAV_DEPT")


def test_unknown_data_map_and_folder_name_their_setting(sim):
    with client(sim, prop_map_id="999", folder_id="998") as c:
        with pytest.raises(UnknownDataMap) as dm_err:
            c.get_data_map()
        with pytest.raises(UnknownFolder) as folder_err:
            c.get_folder()
        with pytest.raises(UnknownFolder):
            next(c.iter_templates())
    assert "PROP_MAP_ID (prop_map_id, env CHEETAH_PROP_MAP_ID) 999" in str(dm_err.value)
    assert "Folder ID (folder_id, env CHEETAH_FOLDER_ID) 998" in str(folder_err.value)


def test_templates_are_paged_lazily_and_completely(sim):
    sim.admin.add_templates(
        folder_id=4242,
        templates=[
            {"objId": str(5000 + i), "displayName": f"Bulk {i}", "subject": f"S{i}", "fields": ["FNAME"]}
            for i in range(450)
        ],
    )
    with client(sim) as c:
        pages = c.iter_templates(page_size=100)
        assert count(sim, "GET", FOLDER_OBJECTS_PATH) == 0  # nothing fetched before it is consumed
        first = next(pages)
        assert count(sim, "GET", FOLDER_OBJECTS_PATH) == 1
        rest = list(pages)
    ids = [first.obj_id] + [t.obj_id for t in rest]
    assert len(ids) == 456 and len(set(ids)) == 456
    assert count(sim, "GET", FOLDER_OBJECTS_PATH) == 5
    with client(sim) as c, pytest.raises(ValueError, match="page_size"):
        c.iter_templates(page_size=contract.MAX_PAGE_SIZE + 1)


def test_import_polled_to_completion_with_rejections(sim):
    polls = []
    rows = [("ann@example.com", "Ann"), ("not-an-email", "Bob"), ("cy@example.com", "Cy")]
    with client(sim) as c:
        import_id = c.start_import(list_name="import-test", csv_bytes=csv(rows), file_name="import-test.csv")
        status = c.wait_for_import(import_id, on_poll=polls.append)
        assert status.status == "COMPLETED" and status.list_id is not None
        assert (status.rows_read, status.rows_accepted) == (3, 2)
        assert [(r.row, r.reason) for r in status.rejected] == [(2, "invalid identifier")]
        assert [p.status for p in polls][-1] == "COMPLETED" and len(polls) >= 2
        assert c.get_import(import_id).status == "COMPLETED"
        with pytest.raises(UnknownImport):
            c.get_import(987654)


def test_import_refusals(sim):
    with client(sim) as c:
        with pytest.raises(BadRequest) as err:
            c.start_import(list_name="bad", csv_bytes=b"Email,First name\na@example.com,A\n", file_name="bad.csv")
        assert str(err.value) == "Import of bad.csv into list 'bad' was refused: Header 'Email' is not a field of Data Map 77."
        import_id = c.start_import(list_name="garbage", csv_bytes=b"\xff\xfe\x00garbage", file_name="garbage.csv")
        with pytest.raises(ImportFailed) as err:
            c.wait_for_import(import_id)
        assert str(err.value) == (
            f"Import {import_id} ended FAILED after reading 0 rows: Cheetah's reason: The file is not UTF-8 text."
        )


def test_import_over_the_row_limit_is_too_large(sim):
    body = b"EMAIL_ADDR\n" + b"".join(b"u%d@x.io\n" % i for i in range(contract.MAX_IMPORT_ROWS + 1))
    with client(sim) as c, pytest.raises(ImportTooLarge) as err:
        c.start_import(list_name="huge", csv_bytes=body, file_name="huge.csv")
    assert err.value.status == 413 and "split it" in str(err.value)


def test_import_wait_times_out(sim):
    with client(sim, import_timeout_seconds="0.001", import_poll_interval_seconds="0.01") as c:
        import_id = c.start_import(list_name="slow", csv_bytes=csv([("a@example.com", "A")]), file_name="slow.csv")
        with pytest.raises(ImportFailed, match=rf"Import {import_id} did not finish within 0.001 s \(last status"):
            c.wait_for_import(import_id)


def test_campaign_life_cycle(sim):
    with client(sim) as c:
        list_id = imported_list(c, "life", [("ann@example.com", "Ann"), ("bo@example.com", "Bo")])
        start = in_an_hour(sim)
        camp_id = c.create_campaign(name="life-1", template_obj_id="1002", list_id=list_id, start_time=start)
        camp = c.get_campaign(camp_id)
        assert (camp.camp_id, camp.name, camp.status, camp.cust_id) == (camp_id, "life-1", "DRAFT", 1234)
        assert camp.start_time == start.replace(microsecond=0)
        assert c.find_campaign("life-1").camp_id == camp_id
        assert c.find_campaign("no-such-campaign") is None

        with pytest.raises(NameAlreadyExists, match="'life-1' already exists"):
            c.create_campaign(name="life-1", template_obj_id="1002", list_id=list_id, start_time=start)
        with pytest.raises(MetricsNotReady):
            c.get_metrics(camp_id)

        c.launch_campaign(camp_id)
        with pytest.raises(AlreadyLaunched) as err:
            c.launch_campaign(camp_id)
        assert str(err.value) == f"Campaign {camp_id} has been launched already."
        c.approve_campaign(camp_id)
        assert c.get_campaign(camp_id).status == "APPROVED"

        sim.admin.advance(2 * 3600)
        assert c.get_campaign(camp_id).status == "SENT"
        metrics = c.get_metrics(camp_id)
        assert metrics.camp_id == camp_id and metrics.counts["Sent"] == 2
        assert set(metrics.optimove()) == {"Sent", "Delivered", "Unique Opens", "Unique Clicks", "Unique Unsubscribes"}
        with pytest.raises(CampaignAlreadySent):
            c.delete_campaign(camp_id)

        other = c.create_campaign(name="life-2", template_obj_id="1002", list_id=list_id, start_time=in_an_hour(sim))
        c.delete_campaign(other)
        assert c.get_campaign(other).status == "CANCELLED"
        with pytest.raises(UnknownCampaign, match="no campaign 424242"):
            c.get_campaign(424242)
        with pytest.raises(UnknownCampaign):
            c.launch_campaign(424242)


def test_campaign_refusals(sim):
    with client(sim) as c:
        list_id = imported_list(c, "refusals", [("ann@example.com", "Ann")])
        with pytest.raises(UnknownTemplate, match="Template 9999 was not found"):
            c.create_campaign(name="r-1", template_obj_id="9999", list_id=list_id, start_time=in_an_hour(sim))
        with pytest.raises(UnknownList, match="List 999999 was not found"):
            c.create_campaign(name="r-2", template_obj_id="1001", list_id=999999, start_time=in_an_hour(sim))
        past = sim.admin.now() - dt.timedelta(minutes=5)
        with pytest.raises(StartTimeInPast, match="'r-3' was refused because its start time"):
            c.create_campaign(name="r-3", template_obj_id="1001", list_id=list_id, start_time=past)
        with pytest.raises(ValueError):
            c.create_campaign(name="r-4", template_obj_id="1001", list_id=list_id, start_time=dt.datetime(2030, 1, 1))


# --- transient failures --------------------------------------------------------------------------
def test_429_with_retry_after_is_retried_for_get_and_post(sim):
    with client(sim) as c:
        list_id = imported_list(c, "rl", [("ann@example.com", "Ann")])
        sim.admin.add_fault(method="GET", path=FOLDER_PATH, kind="status", status=429, retry_after=1, times=1)
        sim.admin.add_fault(method="POST", path=CAMPAIGN_PATH, kind="status", status=429, retry_after=1, times=1)
        started = time.monotonic()
        assert c.get_folder().id == 4242
        camp_id = c.create_campaign(name="rl-1", template_obj_id="1001", list_id=list_id, start_time=in_an_hour(sim))
        assert time.monotonic() - started >= 2.0  # Retry-After honoured twice
    assert count(sim, "POST", CAMPAIGN_PATH, 429) == 1 and count(sim, "POST", CAMPAIGN_PATH, 200) == 1
    with client(sim) as c2:
        assert c2.get_campaign(camp_id).name == "rl-1"


def test_429_that_persists_is_rate_limited(sim):
    sim.admin.add_fault(method="GET", path=FOLDER_PATH, kind="status", status=429, times=100)
    with client(sim, max_retries="2") as c, pytest.raises(RateLimited) as err:
        c.get_folder()
    assert str(err.value) == "GET Folder was still rate-limited (429 Too Many Requests) after 2 retries."


def test_real_rate_limit_is_absorbed(sim):
    sim.admin.reset(seed="demo", rate_limit=5)
    with client(sim) as c:
        for _ in range(8):
            assert c.get_folder().id == 4242
    assert count(sim, "GET", FOLDER_PATH, 429) >= 1
    assert count(sim, "GET", FOLDER_PATH, 200) == 8


def test_5xx_on_get_is_retried(sim):
    sim.admin.add_fault(method="GET", path=contract.DATA_MAP_PATH, kind="status", status=503, times=2)
    with client(sim) as c:
        assert c.get_data_map().id == 77
    assert count(sim, "GET", contract.DATA_MAP_PATH, 503) == 2
    assert count(sim, "GET", contract.DATA_MAP_PATH, 200) == 1


@pytest.mark.parametrize(
    "status, times, error, message, tokens, gets",
    [
        # a second 401: the token is renewed once, the call repeated once
        (401, 2, Unauthorized, "GET Folder was refused with 401 Unauthorized even with a newly issued token.", 2, 2),
        # a 5xx that persists names the call and the retries
        (503, 100, ServerError, "GET Folder failed after 3 retries: 503 Service Unavailable.", 1, 4),
    ],
)
def test_a_status_that_persists_names_the_call(sim, status, times, error, message, tokens, gets):
    sim.admin.add_fault(method="GET", path=FOLDER_PATH, kind="status", status=status, times=times)
    with client(sim) as c, pytest.raises(error) as err:
        c.get_folder()
    assert str(err.value) == message
    assert count(sim, "POST", TOKEN_PATH) == tokens and count(sim, "GET", FOLDER_PATH) == gets


def test_5xx_on_campaign_create_is_not_retried(sim):
    with client(sim) as c:
        list_id = imported_list(c, "nr", [("ann@example.com", "Ann")])
        sim.admin.add_fault(method="POST", path=CAMPAIGN_PATH, kind="status", status=503, times=1)
        with pytest.raises(ServerError) as err:
            c.create_campaign(name="nr-1", template_obj_id="1001", list_id=list_id, start_time=in_an_hour(sim))
        assert "POST EmailCampaign failed with 503 Service Unavailable; it was not repeated" in str(err.value)
        assert count(sim, "POST", CAMPAIGN_PATH) == 1
        # GET, PUT and DELETE on the same path are still retried
        camp_id = c.create_campaign(name="nr-2", template_obj_id="1001", list_id=list_id, start_time=in_an_hour(sim))
        sim.admin.add_fault(method="GET", path=CAMPAIGN_PATH, kind="status", status=502, times=1)
        sim.admin.add_fault(method="PUT", path=CAMPAIGN_PATH, kind="status", status=500, times=1)
        sim.admin.add_fault(method="DELETE", path=CAMPAIGN_PATH, kind="status", status=504, times=1)
        assert c.get_campaign(camp_id).status == "DRAFT"
        c.launch_campaign(camp_id)
        c.delete_campaign(camp_id)
        assert c.get_campaign(camp_id).status == "CANCELLED"


def test_one_log_line_per_call_on_the_given_logger(sim, caplog):
    """One line per call: routine ones at DEBUG, retried or failed ones at INFO."""
    logger = logging.getLogger("test_client.calls")
    caplog.set_level(logging.DEBUG, logger="test_client.calls")
    sim.admin.add_fault(method="GET", path=FOLDER_PATH, kind="status", status=503, times=1)
    with CheetahClient(settings(sim), logger=logger) as c:
        c.get_folder()
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "test_client.calls"]
    assert lines == [
        ("DEBUG", "Cheetah POST /services2/authorization/oAuth2/Token: 200 OK (attempt 1)"),
        ("INFO", "Cheetah GET /services2/api/Folder: 200 OK (attempt 2)"),
    ]


def test_every_call_works_against_the_string_id_variant_and_passes_ids_back_as_received(sim):
    """Issue 8, item 8: a second implementation serving ids (and counts) as strings, with extra
    fields and another key order. Every id is kept as received and passed back as received."""
    sim.admin.reset(seed="demo", rate_limit=0, string_ids=True)
    with client(sim) as c:
        c.check_access()
        assert c.get_data_map().id == "77" and c.get_data_map().identifier.name == "EMAIL_ADDR"
        folder = c.get_folder()
        assert (folder.id, folder.parent_id) == ("4242", "1")
        assert [t.obj_id for t in c.iter_templates(page_size=4)] == ["1001", "1002", "1003", "1004", "1005", "1006"]
        import_id = c.start_import(list_name="strings", csv_bytes=csv([("a@example.com", "A"), ("bad", "B")]),
                                   file_name="s.csv")
        assert isinstance(import_id, str)
        status = c.wait_for_import(import_id)
        assert (status.import_id, status.rows_read, status.rows_accepted) == (import_id, 2, 1)
        assert isinstance(status.list_id, str) and [r.row for r in status.rejected] == [2]
        start = in_an_hour(sim)
        camp_id = c.create_campaign(name="Strings", template_obj_id="1001", list_id=status.list_id, start_time=start)
        assert isinstance(camp_id, str)
        campaign = c.get_campaign(camp_id)
        assert (campaign.camp_id, campaign.list_id, campaign.template_obj_id, campaign.folder_id) == (
            camp_id, status.list_id, "1001", "4242")
        assert campaign.recipient_count == 1 and campaign.start_time == start.replace(microsecond=0)
        assert c.find_campaign("Strings").camp_id == camp_id
        c.launch_campaign(camp_id)
        c.approve_campaign(camp_id)
        sim.admin.advance(dt.timedelta(hours=2))
        assert c.get_campaign(camp_id).status == "SENT"
        metrics = c.get_metrics(camp_id)
        assert metrics.camp_id == camp_id and metrics.counts["Sent"] == 1
    creates = [r for r in sim.admin.requests() if r["method"] == "POST" and r["path"] == CAMPAIGN_PATH]
    assert [r["status"] for r in creates] == [200]  # ToFilterId went back as the string it was


def test_a_get_whose_reply_is_not_json_is_repeated(sim, caplog):
    """Issue 8, item 10: a malformed reply to a GET was not retried."""
    caplog.set_level(logging.INFO, logger="test_client.malformed")
    for path in (FOLDER_PATH, IMPORT_PATH, CAMPAIGN_PATH):
        sim.admin.add_fault(method="GET", path=path, kind="malformed", body="<html>busy</html>", times=2)
    with CheetahClient(settings(sim), logger=logging.getLogger("test_client.malformed")) as c:
        assert c.get_folder().id == 4242
        import_id = c.start_import(list_name="mal", csv_bytes=csv([("a@example.com", "A")]), file_name="m.csv")
        assert c.wait_for_import(import_id).rows_accepted == 1
        assert c.find_campaign("nothing by this name") is None
    assert count(sim, "GET", FOLDER_PATH) == 3
    retries = [r.getMessage() for r in caplog.records if "not JSON" in r.getMessage()]
    assert retries[:2] == ["Cheetah GET Folder: the reply was not JSON; repeating it (retry 1 of 3)",
                           "Cheetah GET Folder: the reply was not JSON; repeating it (retry 2 of 3)"]


def test_a_post_whose_reply_is_not_json_is_not_repeated(sim):
    sim.admin.add_fault(method="POST", path=CAMPAIGN_PATH, kind="malformed", body="<html>busy</html>", times=1)
    with client(sim) as c:
        list_id = imported_list(c, "malpost", [("ann@example.com", "Ann")])
        with pytest.raises(MalformedResponse, match=r"^The POST EmailCampaign reply is not JSON\.$"):
            c.create_campaign(name="MalPost", template_obj_id="1001", list_id=list_id, start_time=in_an_hour(sim))
    assert count(sim, "POST", CAMPAIGN_PATH) == 1


def test_an_expected_404_is_logged_at_debug(sim, caplog):
    """Issue 8, item 10: every healthy send logged ``GET …/EmailCampaign: 404 Not Found`` at INFO."""
    logger = logging.getLogger("test_client.lookups")
    caplog.set_level(logging.DEBUG, logger="test_client.lookups")
    with CheetahClient(settings(sim), logger=logger) as c:
        assert c.find_campaign("Nobody's") is None
        with pytest.raises(UnknownCampaign):
            c.get_campaign(987654)  # not a look-up: a 404 here is news, at INFO
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if "EmailCampaign" in r.getMessage()]
    assert lines == [
        ("DEBUG", "Cheetah GET /services2/api/EmailCampaign: 404 Not Found (attempt 1)"),
        ("INFO", "Cheetah GET /services2/api/EmailCampaign: 404 Not Found (attempt 1)"),
    ]


def test_an_import_failed_passes_cheetah_s_reason_through(sim):
    """Issue 8, item 10: an Import FAILED with "line contains NUL" was reported as a header problem."""
    reply = '{"importId": 1, "status": "FAILED", "listId": 9001, "rowsRead": 0, "reason": "line contains NUL"}'
    sim.admin.add_fault(method="GET", path=IMPORT_PATH, kind="malformed", body=reply, times=1)
    with client(sim) as c:
        import_id = c.start_import(list_name="nul", csv_bytes=csv([("a@example.com", "A")]), file_name="nul.csv")
        with pytest.raises(ImportFailed) as err:
            c.wait_for_import(import_id)
    assert str(err.value) == f"Import {import_id} ended FAILED after reading 0 rows: Cheetah's reason: line contains NUL."
    assert "header" not in str(err.value)


def test_dropped_reply_on_get_is_retried(sim):
    sim.admin.add_fault(method="GET", path=FOLDER_PATH, kind="drop", times=2)
    with client(sim) as c:
        assert c.get_folder().id == 4242


def test_applied_then_dropped_campaign_create_surfaces_and_exists(sim):
    with client(sim) as c:
        list_id = imported_list(c, "atd", [("ann@example.com", "Ann")])
        sim.admin.add_fault(method="POST", path=CAMPAIGN_PATH, kind="apply_then_drop", times=1)
        with pytest.raises(TransportError) as err:
            c.create_campaign(name="atd-1", template_obj_id="1001", list_id=list_id, start_time=in_an_hour(sim))
        assert str(err.value) == (
            "POST EmailCampaign failed: the connection closed before a reply; "
            "it was not repeated, because it may have taken effect."
        )
        found = c.find_campaign("atd-1")
        assert found is not None and found.status == "DRAFT"
    assert count(sim, "POST", CAMPAIGN_PATH) == 1


def test_applied_then_dropped_import_is_retried_safely(sim):
    rows = [("ann@example.com", "Ann"), ("bo@example.com", "Bo")]
    with client(sim) as c:
        sim.admin.add_fault(method="POST", path=IMPORT_PATH, kind="apply_then_drop", times=1)
        import_id = c.start_import(list_name="atd-import", csv_bytes=csv(rows), file_name="atd.csv")
        status = c.wait_for_import(import_id)
        assert status.status == "COMPLETED" and status.rows_accepted == 2
        camp_id = c.create_campaign(
            name="atd-import-1", template_obj_id="1002", list_id=status.list_id, start_time=in_an_hour(sim)
        )
        c.launch_campaign(camp_id)
        c.approve_campaign(camp_id)
        sim.admin.advance(2 * 3600)
        assert c.get_campaign(camp_id).recipient_count == 2  # the repeated import did not double the list
    assert count(sim, "POST", IMPORT_PATH) == 2


def test_slow_reply_is_retried_for_get_then_gives_up(sim):
    sim.admin.add_fault(method="GET", path=FOLDER_PATH, kind="delay", delay=1.0, times=1)
    with client(sim, timeout_seconds="0.3") as c:
        assert c.get_folder().id == 4242
        sim.admin.add_fault(method="GET", path=contract.DATA_MAP_PATH, kind="delay", delay=1.0, times=100)
        with pytest.raises(TransportError) as err:
            c.get_data_map()
    assert str(err.value) == "GET DataMap failed after 3 retries: no reply within 0.3 s."


def test_slow_reply_to_campaign_create_is_not_retried(sim):
    with client(sim) as c:
        list_id = imported_list(c, "slow", [("ann@example.com", "Ann")])
    sim.admin.add_fault(method="POST", path=CAMPAIGN_PATH, kind="delay", delay=1.0, times=1)
    with client(sim, timeout_seconds="0.3") as c:
        with pytest.raises(TransportError, match="no reply within 0.3 s; it was not repeated"):
            c.create_campaign(name="slow-1", template_obj_id="1001", list_id=list_id, start_time=in_an_hour(sim))
    deadline = time.monotonic() + 3
    while count(sim, "POST", CAMPAIGN_PATH) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)  # the simulator logs the delayed request once its delay is over
    time.sleep(0.1)
    assert count(sim, "POST", CAMPAIGN_PATH) == 1


def test_unreachable_endpoint_is_a_transport_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before the client connects: nothing listens
    s = CheetahSettings.from_raw(endpoint=f"http://127.0.0.1:{port}", **DEMO, max_retries="1", backoff_factor="0")
    with CheetahClient(s) as c, pytest.raises(TransportError) as err:
        c.check_access()
    assert str(err.value) == "POST Token failed after 1 retry: could not connect to 127.0.0.1."


# --- malformed replies (contract functions: the simulator always answers well-formed) -------------
@pytest.mark.parametrize(
    "parse, body, fragment",
    [
        (contract.parse_token, {"token_type": "bearer"}, "'access_token'"),
        (contract.parse_folder, [], "not a JSON object"),
        (contract.parse_folder_page, {"objects": [], "totalCount": "many"}, "'totalCount' should be a non-negative whole number"),
        (contract.parse_import, {"importId": 1, "status": "WEIRD"}, "'status'"),
        (contract.parse_campaign_id, {"id": 5}, "'campId'"),
        (contract.parse_metrics, {"campId": 1, "asOf": "2026-01-01T00:00:00Z", "Sent": 1}, "'Received'"),
    ],
)
def test_malformed_replies(parse, body, fragment):
    with pytest.raises(MalformedResponse, match=fragment):
        parse(body)


class _OddServer(BaseHTTPRequestHandler):
    """A loopback server answering the token request with ``TOKEN_REPLY`` and every API call
    with an HTML page: what a misrouted proxy or a maintenance page looks like."""

    TOKEN_REPLY = b'{"access_token": "odd-token", "token_type": "bearer", "expires_in": 3600}'

    def log_message(self, *args):  # keep test output quiet
        pass

    def _answer(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == TOKEN_PATH:
            self._answer(self.TOKEN_REPLY, "application/json")
        else:
            self._answer(b"<html>maintenance</html>", "text/html")

    do_GET = do_POST


@pytest.fixture
def odd_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OddServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    _OddServer.TOKEN_REPLY = b'{"access_token": "odd-token", "token_type": "bearer", "expires_in": 3600}'


def test_non_json_reply_is_malformed(odd_server):
    """A GET is repeated while its reply is not JSON (it is safe to repeat), then given up on."""
    s = CheetahSettings.from_raw(endpoint=odd_server, **DEMO, max_retries="2", backoff_factor="0")
    with CheetahClient(s) as c:
        with pytest.raises(MalformedResponse) as err:
            c.get_folder()
    assert str(err.value) == "The GET Folder reply is not JSON after 2 retries."
    assert err.value.__context__ is None  # the decode error (which holds the body) is not attached


@pytest.mark.parametrize(
    "reply, message",
    [(b"<html>login</html>", "The token reply is not JSON."), (b'{"token_type": "bearer"}', "The token reply has no 'access_token'.")],
)
def test_malformed_token_reply(odd_server, reply, message):
    _OddServer.TOKEN_REPLY = reply
    with CheetahClient(CheetahSettings.from_raw(endpoint=odd_server, **DEMO)) as c, pytest.raises(MalformedResponse) as err:
        c.check_access()
    assert str(err.value) == message


# --- secrets -------------------------------------------------------------------------------------
SECRET = "SECRET-zz9-plural-z-alpha"
KEY = "KEY-zz9-plural-z-alpha"


def test_secrets_never_reach_logs_errors_or_reprs(sim, caplog):
    sim.admin.add_account(consumerKey=KEY, consumerSecret=SECRET, clientId="leak-client")
    caplog.set_level(logging.DEBUG)  # root: every logger, every library
    texts: list[str] = []
    tokens: set[str] = set()
    with client(sim, consumer_key=KEY, consumer_secret=SECRET, client_id="leak-client") as c:
        texts += [repr(c), repr(c.settings), str(c.settings)]
        c.check_access()
        tokens.add(c.transport.session.access_token)
        c.get_data_map()
        list(c.iter_templates())
        sim.admin.expire_tokens()
        c.get_folder()  # 401 -> renewal
        tokens.add(c.transport.session.access_token)
        list_id = imported_list(c, "leak", [("ann@example.com", "Ann")])
        sim.admin.add_fault(method="GET", path=FOLDER_PATH, kind="status", status=503, times=1)
        c.get_folder()
        camp_id = c.create_campaign(name="leak-1", template_obj_id="1001", list_id=list_id, start_time=in_an_hour(sim))
        failures: list[Exception] = []
        c.launch_campaign(camp_id)
        with pytest.raises(AlreadyLaunched) as err:
            c.launch_campaign(camp_id)
        failures.append(err.value)
        with pytest.raises(MetricsNotReady) as err:  # launched, not sent yet
            c.get_metrics(camp_id)
        failures.append(err.value)
        sim.admin.set_whitelist(open=False)
        with pytest.raises(IpNotWhitelisted) as err:
            c.get_folder()
        failures.append(err.value)
        sim.admin.set_whitelist(open=True)
    with client(sim, consumer_key=KEY, consumer_secret="wrong-" + SECRET, client_id="leak-client") as bad:
        with pytest.raises(InvalidCredentials) as err:
            bad.check_access()
        failures.append(err.value)
    assert [type(f) for f in failures] == [AlreadyLaunched, MetricsNotReady, IpNotWhitelisted, InvalidCredentials]
    texts += [f"{f!s} {f!r}" for f in failures]
    assert len(tokens) == 2 and all(tokens)
    # the raised errors carry neither the request (form body, bearer header) nor frames whose
    # locals hold the secret
    for failure in failures:
        assert failure.__cause__ is None and failure.__context__ is None
        tb = failure.__traceback__
        while tb is not None:
            for value in tb.tb_frame.f_locals.values():
                assert SECRET not in (value if isinstance(value, str) else repr(value))
            tb = tb.tb_next
    records = caplog.records
    assert any(r.name.startswith("requests_oauthlib") for r in records)  # the library did log at DEBUG
    assert any(r.name == "cheetah_assets.cheetah" for r in records)
    texts += [r.getMessage() for r in records] + [caplog.text]
    for needle in (SECRET, KEY, *tokens):
        for text in texts:
            assert needle not in text


def test_redaction_covers_encoded_forms(sim, caplog):
    odd = "s3cr&t +/=plural"
    sim.admin.add_account(consumerKey="odd-key", consumerSecret=odd, clientId="odd-client")
    caplog.set_level(logging.DEBUG)
    from urllib.parse import quote_plus

    with client(sim, consumer_key="odd-key", consumer_secret=odd, client_id="odd-client") as c:
        c.check_access()
        logging.getLogger("urllib3.connectionpool").debug("echo %s", odd)
        logging.getLogger("urllib3.connectionpool").debug("echo encoded %s", quote_plus(odd))
    # The records were captured, and redacted (not dropped).
    echoes = [r.getMessage() for r in caplog.records if r.name == "urllib3.connectionpool" and r.getMessage().startswith("echo")]
    assert echoes == ["echo [redacted]", "echo encoded [redacted]"]
    for needle in (odd, quote_plus(odd)):
        assert needle not in caplog.text


# --- the Dagster resource ------------------------------------------------------------------------
def test_resource_builds_a_working_client(sim):
    resource = CheetahMessagingResource(endpoint=sim.url, **DEMO, timeout_seconds=2.0, max_retries=2, backoff_factor=0.01)
    assert resource.settings().max_retries == 2
    with resource.get_client() as c:
        assert c.get_folder().id == 4242
    with pytest.raises(ConfigurationError, match=r"Cust_ID \(cust_id, env CHEETAH_CUST_ID\) must be a whole number"):
        CheetahMessagingResource(endpoint=sim.url, **{**DEMO, "cust_id": "x"}).settings()


def test_resource_documents_its_fields():
    schema = CheetahMessagingResource.to_config_schema().as_field().config_type
    fields = schema.fields
    assert set(fields) >= {"endpoint", "cust_id", "folder_id", "prop_map_id", "consumer_key", "consumer_secret", "client_id"}
    assert all(f.description for f in fields.values())
    assert "CHEETAH_CONSUMER_SECRET" in fields["consumer_secret"].description


def test_resource_from_env_keeps_the_secret_out_of_repr_config_and_snapshots(tls_sim, monkeypatch):
    sim = tls_sim  # a deployment's settings are https only: the simulator with a test CA
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", sim.tls[2])
    env = {
        "CHEETAH_ENDPOINT": sim.url,
        "CHEETAH_CUST_ID": "1234",
        "CHEETAH_FOLDER_ID": "4242",
        "CHEETAH_PROP_MAP_ID": "77",
        "CHEETAH_CONSUMER_KEY": KEY,
        "CHEETAH_CONSUMER_SECRET": SECRET,
        "CHEETAH_CLIENT_ID": "env-client",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    sim.admin.add_account(consumerKey=KEY, consumerSecret=SECRET, clientId="env-client")

    resource = CheetahMessagingResource.from_env()
    seen: dict[str, str] = {}

    @dg.asset
    def probe(cheetah: CheetahMessagingResource) -> None:
        seen["repr"] = repr(cheetah)
        with cheetah.get_client() as c:
            seen["folder"] = c.get_folder().name

    defs = dg.Definitions(assets=[probe], resources={"cheetah": resource})
    from dagster._core.remote_representation.external_data import RepositorySnap
    from dagster._serdes import serialize_value

    snapshot = serialize_value(RepositorySnap.from_def(defs.get_repository_def()))
    assert "CHEETAH_CONSUMER_SECRET" in snapshot and SECRET not in snapshot and KEY not in snapshot

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([probe], resources={"cheetah": resource}, instance=instance)
    assert result.success and seen["folder"] == "Optimove"
    run_config = repr(result.dagster_run.run_config)
    events = " ".join(repr(e) for e in instance.all_logs(result.run_id))
    for text in (repr(resource), seen["repr"], run_config, events):
        assert SECRET not in text and KEY not in text
