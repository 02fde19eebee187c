"""The client against replies a contract-honouring server may give that the simulator never does:
redirects, error messages in other shapes, odd encodings, token replies, ``Retry-After`` values,
listings that shift or ignore paging, and looser spellings of the same meaning.

Real HTTP on loopback: :class:`Scripted` is a tiny server answering each ``(method, path)`` from a
script (replies consumed in order, the last one repeating) and logging every request it received,
so a test can prove what went over the wire (and what did not).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import dagster as dg
import pytest

from cheetah_assets.cheetah import contract
from cheetah_assets.cheetah.client import CheetahClient
from cheetah_assets.cheetah.contract import CAMPAIGN_PATH, FOLDER_OBJECTS_PATH, FOLDER_PATH, IMPORT_PATH, TOKEN_PATH
from cheetah_assets.cheetah.errors import AlreadyLaunched, BadRequest, CheetahError, MalformedResponse, NameAlreadyExists, RateLimited
from cheetah_assets.cheetah.settings import CheetahSettings
from cheetah_assets.cheetah.transport import RetryAlsoOn429
from cheetah_assets.sending import ledger as sending_ledger
from cheetah_assets.sending.adoption import ownership_problem
from cheetah_assets.sending.errors import ListSizeMismatch
from cheetah_assets.sending.protocol import Sender

from .conftest import DEMO_CREDENTIALS, make_resources
from .helpers import TWO_CAMPAIGNS, assert_exactly_once, demo_database, failure_texts, run_cycle

TOKEN = {"access_token": "scripted-token", "token_type": "bearer", "expires_in": 28800}
CAMPAIGN = {
    "campId": 5001, "custId": 1234, "CampName": "Winter", "status": "DRAFT", "recipientCount": 3,
    "CampParam": {"sendSchedule": {"startTime": "2026-11-23T15:00:00", "timeZone": "UTC"}},
}
CSV = b"EMAIL_ADDR\r\nalice@example.com\r\n"
#: A reply: ``(status, headers, body)`` (a body that is not bytes is sent as JSON), or ``"DROP"``
#: (the connection is closed without a reply), or a function of the request returning either.
Reply = Any


class Scripted:
    """A loopback HTTP server answering from ``routes`` and logging what it received."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], list[Reply] | Reply] = {("POST", TOKEN_PATH): (200, {}, TOKEN)}
        self.log: list[dict] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def _answer(self) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                request = {"method": self.command, "path": url.path, "query": parse_qs(url.query),
                           "body": self.rfile.read(length) if length else b""}
                out = server._next(request)
                if out == "DROP":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                status, headers, data = out
                if not isinstance(data, bytes):
                    data = json.dumps(data).encode()
                    headers = {"Content-Type": "application/json", **headers}
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def _next(self, request: dict) -> Reply:
        with self._lock:
            self.log.append(request)
            script = self.routes.get((request["method"], request["path"]), (404, {}, {"message": "no route"}))
            out = (script.pop(0) if len(script) > 1 else script[0]) if isinstance(script, list) else script
        return out(request) if callable(out) else out

    def count(self, method: str, path: str) -> int:
        return sum(1 for r in self.log if r["method"] == method and r["path"] == path)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers():
    """``servers()`` starts a :class:`Scripted` server; all are stopped after the test."""
    started: list[Scripted] = []

    def start() -> Scripted:
        started.append(Scripted())
        return started[-1]

    yield start
    for server in started:
        server.close()


def client(server: Scripted, **overrides) -> CheetahClient:
    raw = dict(endpoint=server.url, **DEMO_CREDENTIALS, max_retries="2", backoff_factor="0.01",
               backoff_max_seconds="0.05", timeout_seconds="2", connect_timeout_seconds="1",
               import_poll_interval_seconds="0.01", import_timeout_seconds="5")
    raw.update(overrides)
    return CheetahClient(CheetahSettings.from_raw(**raw))


def raised(error: type[Exception], call: Callable[[], Any]) -> Exception:
    with pytest.raises(error) as err:
        call()
    return err.value


# --- 1. redirects are never followed ---------------------------------------------------------------
def _start_time() -> dt.datetime:
    return dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize(
    "status, method, path, call, name",
    [
        (307, "POST", TOKEN_PATH, lambda c: c.check_access(), "POST Token"),
        (308, "POST", IMPORT_PATH, lambda c: c.start_import(list_name="L", file_name="f.csv", csv_bytes=CSV),
         "POST Import"),
        (302, "GET", CAMPAIGN_PATH, lambda c: c.get_campaign(5001), "GET EmailCampaign"),
        (307, "PUT", CAMPAIGN_PATH, lambda c: c.launch_campaign(5001), "PUT EmailCampaign"),
        (303, "POST", CAMPAIGN_PATH, lambda c: c.create_campaign(
            name="n", template_obj_id="1001", list_id=9001, start_time=_start_time()), "POST EmailCampaign"),
    ],
)
def test_a_redirect_is_never_followed_and_names_its_target_host(servers, status, method, path, call, name):
    """The credentials, the recipients' CSV and our trust in a reply never go to another host: the
    redirect is an error naming the status and the target host (not its query, which may carry
    anything), and it is not repeated."""
    ours, other = servers(), servers()
    for route in (("POST", TOKEN_PATH), (method, path)):
        other.routes[route] = (200, {}, {**TOKEN, **CAMPAIGN, "importId": 1})
    target = f"http://localhost:{other.port}{path}?id=5001&secret=s3cr3t"
    ours.routes[(method, path)] = (status, {"Location": target}, b"")
    with client(ours) as c:
        failure = raised(CheetahError, lambda: call(c))
    assert other.log == []
    assert ours.count(method, path) == 1
    message = str(failure)
    assert message.startswith(f"{name} was redirected") and str(status) in message and "localhost" in message
    assert "s3cr3t" not in message and "?" not in message
    assert failure.status == status


@pytest.mark.parametrize(
    "headers, where",
    [({}, "to no location"), ({"Location": "/elsewhere?token=s3cr3t"}, "to another path of the same host"),
     ({"Location": "http://user:s3cr3t@evil.example:8443/x?y=s3cr3t"}, "to host evil.example:8443")],
)
def test_a_redirect_without_a_location_or_to_a_path_is_an_error_too(servers, headers, where):
    ours = servers()
    ours.routes[("GET", FOLDER_PATH)] = (301, headers, b"")
    with client(ours) as c:
        failure = raised(CheetahError, c.get_folder)
    assert f"GET Folder was redirected (301 Moved Permanently) {where}," in str(failure)
    assert "s3cr3t" not in str(failure) and ours.count("GET", FOLDER_PATH) == 1


# --- 2. the API's message, in whatever shape it comes ------------------------------------------------
def _message_shapes(text: str) -> list[tuple[dict, bytes | dict]]:
    """``text`` as ``message``, ``Message``, ``ERROR_DESCRIPTION``, a nested error object, and
    plain text."""
    return [
        ({}, {"message": text}), ({}, {"Message": text}), ({}, {"ERROR_DESCRIPTION": text}),
        ({}, {"error": {"code": 400, "Message": text}}), ({}, {"Error": text}),
        ({"Content-Type": "text/plain; charset=utf-8"}, f"  {text}\r\n".encode()),
        ({}, text.encode()),
    ]


@pytest.mark.parametrize("headers, body", _message_shapes(contract.ALREADY_LAUNCHED_MESSAGE))
def test_already_launched_is_recognised_in_every_message_shape(servers, headers, body):
    ours = servers()
    ours.routes[("PUT", CAMPAIGN_PATH)] = (400, headers, body)
    with client(ours) as c:
        failure = raised(AlreadyLaunched, lambda: c.launch_campaign(5001))
    assert str(failure) == "Campaign 5001 has been launched already."


@pytest.mark.parametrize("headers, body", _message_shapes(contract.NAME_EXISTS_MESSAGE))
def test_name_already_exists_is_recognised_in_every_message_shape(servers, headers, body):
    ours = servers()
    ours.routes[("POST", CAMPAIGN_PATH)] = (400, headers, body)
    with client(ours) as c:
        failure = raised(NameAlreadyExists, lambda: c.create_campaign(
            name="n", template_obj_id="1001", list_id=9001, start_time=_start_time()))
    assert str(failure) == "A campaign named 'n' already exists in folder 4242."


@pytest.mark.parametrize(
    "headers, body, message",
    [
        ({"Content-Type": "text/plain"}, b"  Bad\n   id  \n", "GET Folder was refused with 400 Bad Request: Bad id."),
        ({"Content-Type": "text/html"}, b"Bad id", "GET Folder was refused with 400 Bad Request."),
        ({"Content-Type": "text/plain"}, b"<html><body>Bad id</body></html>",
         "GET Folder was refused with 400 Bad Request."),
        ({"Content-Type": "text/plain"}, b"x" * 5000, "GET Folder was refused with 400 Bad Request."),
        ({"Content-Type": "text/plain"}, b"y" * 400, "GET Folder was refused with 400 Bad Request: " + "y" * 200 + "\u2026."),
        ({}, {"error": {"detail": "no message here"}}, "GET Folder was refused with 400 Bad Request."),
    ],
)
def test_a_plain_text_message_is_trimmed_and_capped_and_html_is_never_echoed(servers, headers, body, message):
    ours = servers()
    ours.routes[("GET", FOLDER_PATH)] = (400, headers, body)
    with client(ours) as c:
        assert str(raised(BadRequest, c.get_folder)) == message


@pytest.mark.parametrize("token_status, phrase", [(418, "418 I'm a Teapot"), (403, "403 Forbidden")])
def test_a_plain_text_message_never_echoes_a_credential(servers, token_status, phrase):
    secret = DEMO_CREDENTIALS["consumer_secret"]
    ours = servers()
    ours.routes[("GET", FOLDER_PATH)] = (400, {"Content-Type": "text/plain"}, f"bad password={secret}".encode())
    ours.routes[("POST", TOKEN_PATH)] = [(200, {}, TOKEN), (token_status, {"Content-Type": "text/plain"},
                                                            b"grant_type=password&username=someone")]
    with client(ours) as c:
        assert str(raised(BadRequest, c.get_folder)) == "GET Folder was refused with 400 Bad Request: bad password=[redacted]."
        failure = raised(CheetahError, c.check_access)  # the token endpoint's text is never echoed
    assert str(failure) == f"POST Token was refused with {phrase}."


# --- 3. JSON is decoded from the bytes ---------------------------------------------------------------
ACCENTED = [{"objId": "1001", "displayName": "Soldes d'été", "subject": "Prêt ? Ça commence"}]


@pytest.mark.parametrize("content_type", ["text/plain", "text/plain; charset=ISO-8859-1", "application/json"])
def test_utf8_json_with_a_wrong_or_missing_charset_label_is_decoded_as_utf8(servers, content_type):
    """A wrong label must not turn "été" into "Ã©tÃ©" in the template catalog."""
    ours = servers()
    page = json.dumps({"objects": ACCENTED, "totalCount": 1}, ensure_ascii=False).encode("utf-8")
    ours.routes[("GET", FOLDER_OBJECTS_PATH)] = (200, {"Content-Type": content_type}, page)
    with client(ours) as c:
        (template,) = list(c.iter_templates())
    assert (template.display_name, template.subject) == ("Soldes d'été", "Prêt ? Ça commence")


def test_a_reply_with_a_utf8_byte_order_mark_is_parsed(servers):
    ours = servers()
    bom = b"\xef\xbb\xbf"
    ours.routes[("POST", TOKEN_PATH)] = (200, {"Content-Type": "application/json; charset=utf-8"},
                                         bom + json.dumps(TOKEN).encode())
    ours.routes[("GET", CAMPAIGN_PATH)] = (200, {"Content-Type": "application/json; charset=utf-8"},
                                           bom + json.dumps({**CAMPAIGN, "CampName": "Été"}, ensure_ascii=False).encode())
    with client(ours) as c:
        campaign = c.get_campaign(5001)
    assert (campaign.camp_id, campaign.name) == (5001, "Été")
    assert ours.count("GET", CAMPAIGN_PATH) == 1


# --- 4. the token reply --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "extra",
    [{}, {"token_type": "bearer"}, {"token_type": "Bearer"}, {"token_type": "BEARER"},
     {"token_type": "bearer", "expires_in": 28800.0}, {"token_type": "Bearer", "expires_in": "28800"}],
)
def test_a_bearer_token_in_any_spelling_is_used(servers, extra):
    ours = servers()
    ours.routes[("POST", TOKEN_PATH)] = (200, {}, {"access_token": "scripted-token", **extra})
    ours.routes[("GET", FOLDER_PATH)] = (200, {}, {"id": 4242, "name": "Optimove"})
    with client(ours) as c:
        assert c.get_folder().name == "Optimove"
        assert c.get_folder().name == "Optimove"
    assert ours.count("POST", TOKEN_PATH) == 1  # the lifetime was read: the token is reused


@pytest.mark.parametrize("token_type", [None, "JWT", "mac", "", 1, "bearer "])
def test_a_token_of_another_type_is_refused_at_token_time(servers, token_type):
    ours = servers()
    ours.routes[("POST", TOKEN_PATH)] = (200, {}, {**TOKEN, "token_type": token_type})
    with client(ours) as c:
        failure = raised(MalformedResponse, c.check_access)
    assert str(failure) == (
        f"The token reply's 'token_type' should be 'bearer' (or absent), got {token_type!r}: "
        "the client only speaks bearer tokens."
    )
    assert ours.count("POST", TOKEN_PATH) == 1 and failure.__context__ is None


@pytest.mark.parametrize("expires_in", [28800.5, -1.0, float("inf"), "28800.0", True])
def test_a_token_lifetime_that_is_not_a_whole_number_is_refused(expires_in):
    with pytest.raises(MalformedResponse, match="expires_in"):
        contract.parse_token({"access_token": "t", "expires_in": expires_in})
    assert contract.parse_token({"access_token": "t", "expires_in": 28800.0}) == ("t", 28800)


# --- 5. Retry-After ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "header, seconds",
    [("0.5", 0.5), ("1.5", 1.5), (" 2 ", 2.0), ("0", 0.0), ("100000", 300.0), ("100000.5", 300.0),
     ("-1", 0.0), ("-0.5", 0.0), ("soon", 0.0), ("", 0.0), ("nan", 0.0), ("inf", 0.0), ("1e3", 0.0),
     ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)],
)
def test_retry_after_is_read_as_seconds_fractions_included_and_junk_is_absent(header, seconds):
    """0 means "as if absent": urllib3 then waits the normal backoff."""
    assert RetryAlsoOn429(retry_after_max=300).parse_retry_after(header) == seconds


def test_retry_after_as_an_http_date_is_still_honoured():
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    assert 100 <= RetryAlsoOn429(retry_after_max=300).parse_retry_after(when) <= 120


@pytest.mark.parametrize("header", ["0.05", "-1", "soon", "1e3"])
@pytest.mark.parametrize("status", [429, 503])
def test_a_get_answered_with_an_odd_retry_after_is_repeated(servers, status, header):
    ours = servers()
    ours.routes[("GET", CAMPAIGN_PATH)] = [(status, {"Retry-After": header}, {"message": "slow down"}),
                                           (200, {}, CAMPAIGN)]
    with client(ours) as c:
        assert c.get_campaign(5001).status == "DRAFT"
    assert ours.count("GET", CAMPAIGN_PATH) == 2


@pytest.mark.parametrize("header", ["0.05", "-1", "soon"])
def test_a_campaign_create_answered_429_is_repeated_and_never_said_to_have_taken_effect(servers, header):
    """A 429 applied nothing: it is repeated even for the create, and when it persists it is
    RateLimited, not "it may have taken effect"."""
    ours = servers()
    create = lambda c: c.create_campaign(name="n", template_obj_id="1001", list_id=9001, start_time=_start_time())
    ours.routes[("POST", CAMPAIGN_PATH)] = [(429, {"Retry-After": header}, {}), (200, {}, {"campId": 5001})]
    with client(ours) as c:
        assert create(c) == 5001
    assert ours.count("POST", CAMPAIGN_PATH) == 2
    ours.routes[("POST", CAMPAIGN_PATH)] = (429, {"Retry-After": header}, {})
    with client(ours) as c:
        failure = raised(RateLimited, lambda: create(c))
    assert str(failure) == "POST EmailCampaign was still rate-limited (429 Too Many Requests) after 2 retries."


# --- 6. the template listing is complete or an error ---------------------------------------------------
TEMPLATES = [{"objId": str(1000 + i), "displayName": f"Template {i}"} for i in range(1, 251)]


def pager(templates: Callable[[int], list[dict]] = lambda _n: TEMPLATES, *, cap: int | None = None,
          zero_based: bool = False, ignore_page: bool = False) -> Callable[[dict], Reply]:
    """A Folder/Objects handler over ``templates(n)`` (the folder as it is at the n-th request)."""
    served = [0]

    def answer(request: dict) -> Reply:
        served[0] += 1
        items = templates(served[0])
        number, size = int(request["query"]["pageNumber"][0]), int(request["query"]["pageSize"][0])
        size = min(size, cap) if cap else size
        number = 1 if ignore_page else number
        start = (number if zero_based else number - 1) * size
        return 200, {}, {"objects": items[start:start + size], "totalCount": len(items)}

    return answer


@pytest.mark.parametrize("options, pages", [({}, 3), ({"cap": 50}, 5)])
def test_a_short_last_page_and_a_capped_page_size_still_list_everything(servers, options, pages):
    ours = servers()
    ours.routes[("GET", FOLDER_OBJECTS_PATH)] = pager(**options)
    with client(ours) as c:
        ids = [t.obj_id for t in c.iter_templates()]
    assert ids == [t["objId"] for t in TEMPLATES] and ours.count("GET", FOLDER_OBJECTS_PATH) == pages


@pytest.mark.parametrize(
    "options, message",
    [
        ({"ignore_page": True}, "The template listing of folder 4242 stopped at 100 of its 250 templates: page 2 "
                                "listed none that earlier pages had not (is pageNumber ignored?)."),
        ({"zero_based": True}, "The template listing of folder 4242 ended at 150 of its 250 templates: page 3 "
                               "was empty (does pageNumber start at 1?)."),
    ],
)
def test_a_listing_that_cannot_be_complete_is_an_error_not_a_short_catalog(servers, options, message):
    ours = servers()
    ours.routes[("GET", FOLDER_OBJECTS_PATH)] = pager(**options)
    with client(ours) as c:
        assert str(raised(MalformedResponse, lambda: list(c.iter_templates()))) == message


def test_a_template_deleted_between_pages_restarts_the_listing_once(servers):
    """Template 1001 goes after page 1 was read: every page after it shifts by one, so 1101
    would be skipped. The changed totalCount restarts the listing, which then lists them all."""
    ours = servers()
    ours.routes[("GET", FOLDER_OBJECTS_PATH)] = pager(lambda n: TEMPLATES if n == 1 else TEMPLATES[1:])
    with client(ours) as c:
        ids = [t.obj_id for t in c.iter_templates()]
    assert len(ids) == len(set(ids)) and set(ids) >= {t["objId"] for t in TEMPLATES[1:]}
    assert ours.count("GET", FOLDER_OBJECTS_PATH) == 2 + 3  # pages 1-2, then 1-3 again


def test_a_listing_whose_count_keeps_changing_is_an_error(servers):
    ours = servers()
    ours.routes[("GET", FOLDER_OBJECTS_PATH)] = pager(lambda n: TEMPLATES[n - 1:])  # one fewer each time
    with client(ours) as c:
        failure = raised(MalformedResponse, lambda: list(c.iter_templates()))
    assert str(failure) == (
        "The template listing of folder 4242 changed while it was read, twice (248 templates, then 247): "
        "run it again once the folder is not being edited."
    )


# --- 7. an import reply about another import ---------------------------------------------------------
IMPORT = {"importId": 77, "status": "COMPLETED", "listId": 9001, "rowsRead": 1, "rowsAccepted": 1}


@pytest.mark.parametrize("asked, answered", [(77, 77), (77, "77"), ("77", 77), ("import-7", "import-7")])
def test_an_import_reply_about_the_import_asked_for_is_read(servers, asked, answered):
    ours = servers()
    ours.routes[("GET", IMPORT_PATH)] = (200, {}, {**IMPORT, "importId": answered})
    with client(ours) as c:
        assert c.get_import(asked).import_id == answered
        assert c.wait_for_import(asked).status == "COMPLETED"


@pytest.mark.parametrize("answered", [78, "78", "import-77"])
def test_an_import_reply_about_another_import_is_malformed(servers, answered):
    ours = servers()
    ours.routes[("GET", IMPORT_PATH)] = (200, {}, {**IMPORT, "importId": answered})
    with client(ours) as c:
        failure = raised(MalformedResponse, lambda: c.wait_for_import(77))
    assert str(failure) == f"The Import reply for import 77 is about import {answered}."


# --- 8. an unknown recipient count is never a match ----------------------------------------------------
def _ledger_row(accepted: int | None):
    day = dt.date(2030, 1, 1)
    return sending_ledger.LedgerRow(
        send_key=sending_ledger.send_key("A", "1001", day), campaign_id="A", template_id="1001", send_date=day,
        list_key=f"A/{day}", cheetah_name=sending_ledger.cheetah_name("A", "1001", day), state=sending_ledger.CREATED,
        send_at=_start_time(), rows_in_list=accepted, list_id=9001, rows_accepted=accepted, rows_rejected=0,
        camp_id=5001, claimed_by="run", claim_expires_at=None, error=None,
    )


@pytest.mark.parametrize("accepted", [0, 3, None])
def test_a_campaign_reply_without_recipient_count_never_passes_the_size_check(accepted):
    """The launch's size check (Sender._check_list_size uses nothing of the Sender) and the
    adoption rule both fail closed on an unknown count, and say it is unknown."""
    row = _ledger_row(accepted)
    body = {**CAMPAIGN, "CampName": row.cheetah_name, "CustId": 1234,
            "CampParam": {"sendSchedule": contract.format_start_time(row.send_at)}}
    del body["recipientCount"]
    campaign = contract.parse_campaign(body)
    assert campaign.recipient_count is None
    with pytest.raises(ListSizeMismatch) as err:
        Sender._check_list_size(None, row, campaign.recipient_count)
    assert "None" not in str(err.value)
    if accepted is not None:
        assert "would go to an unknown number of recipients" in str(err.value)
        assert "its reply gives no recipientCount" in str(err.value)
    problem = ownership_problem(campaign, row, cust_id=1234, folder_id=4242)
    assert problem is not None and "None" not in problem and "unknown number of recipients" in problem


# --- 9. a LAUNCH whose reply was lost: repeated by the transport, confirmed by reading back -----------
@pytest.mark.slow(seconds=15)
@pytest.mark.parametrize(
    "refusal",
    [json.dumps({"Message": contract.ALREADY_LAUNCHED_MESSAGE}),
     json.dumps({"error": {"message": contract.ALREADY_LAUNCHED_MESSAGE}}),
     contract.ALREADY_LAUNCHED_MESSAGE],
    ids=["Message", "nested", "plain text"],
)
def test_a_lost_launch_reply_is_repeated_and_the_send_confirmed_by_reading_it_back(sim, db_url, day, refusal):
    """The first LAUNCH is applied and its reply lost; the transport repeats the PUT, which is
    refused as "already launched" (in another message shape than the simulator's). The protocol
    recovers within the run: it reads the campaign back before recording LAUNCHED, and every
    campaign goes out exactly once."""
    engine = demo_database(db_url, sim, day, customers=40, campaigns=TWO_CAMPAIGNS)
    sim.admin.add_fault(method="PUT", path=CAMPAIGN_PATH, kind="apply_then_drop", times=1)
    sim.admin.add_fault(method="PUT", path=CAMPAIGN_PATH, kind="malformed", status=400, body=refusal, after=1, times=1)
    with dg.DagsterInstance.ephemeral() as instance:
        result = run_cycle(make_resources(sim, db_url), day, instance, concurrency=1)
    assert result.success, failure_texts(result)
    assert [f["fired"] for f in sim.admin.faults()] == [1, 1]
    puts = [r for r in sim.admin.requests() if r["method"] == "PUT" and r["path"] == CAMPAIGN_PATH]
    assert len(puts) == 3 * 2 + 1  # LAUNCH and APPROVE of each send, and the one repeat
    assert_exactly_once(sim, engine)
