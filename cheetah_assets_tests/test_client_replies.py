"""Odd replies the simulator never gives, mocked with ``responses`` (no server needed): non-JSON
bodies, odd shapes, and how every status maps to a typed error with its one sentence.

The real-HTTP tests of the same paths (the simulator, and a tiny loopback server for an HTML page
or a malformed token) stay in ``test_client.py``: they prove the wire; these prove the mapping.
"""

from __future__ import annotations

import datetime as dt

import pytest
import responses

from cheetah_assets.cheetah import contract
from cheetah_assets.cheetah.client import CheetahClient
from cheetah_assets.cheetah.error_mapping import INVALID_CREDENTIALS_MESSAGE, IP_NOT_WHITELISTED_MESSAGE
from cheetah_assets.cheetah.errors import (
    BadRequest,
    CheetahError,
    InvalidCredentials,
    IpNotWhitelisted,
    MalformedResponse,
    RateLimited,
    ServerError,
    Unauthorized,
    UnknownFolder,
)
from cheetah_assets.cheetah.settings import CheetahSettings, demo_account

ENDPOINT = "https://api.example.com"
TOKEN_URL = ENDPOINT + contract.TOKEN_PATH
FOLDER_URL = ENDPOINT + contract.FOLDER_PATH
CAMPAIGN_URL = ENDPOINT + contract.CAMPAIGN_PATH
TOKEN = {"access_token": "mock-token", "token_type": "bearer", "expires_in": 3600}


def client(**overrides) -> CheetahClient:
    raw = dict(endpoint=ENDPOINT, **demo_account(), max_retries="0", backoff_factor="0")
    raw.update(overrides)
    return CheetahClient(CheetahSettings(**raw))


@pytest.fixture
def api():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def reply(api, method: str, url: str, status: int, body) -> None:
    """Answer ``method url`` with ``status`` and ``body``: JSON, or text when it is a string."""
    if isinstance(body, str):
        api.add(method, url, status=status, body=body, content_type="text/html")
    else:
        api.add(method, url, status=status, json=body)


def raised(error: type[Exception], call) -> Exception:
    """What ``call()`` raised: exactly an ``error`` (not a subclass of it)."""
    with pytest.raises(error) as err:
        call()
    assert type(err.value) is error
    return err.value


def calls(api, url: str) -> int:
    return sum(1 for call in api.calls if call.request.url.split("?", 1)[0] == url)


# --- statuses of an API call -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "status, body, error, message",
    [
        (400, {"message": "Bad id."}, BadRequest, "GET Folder was refused with 400 Bad Request: Bad id."),
        (404, {"message": "No such folder"}, UnknownFolder,
         "Cheetah Messaging has no folder with Folder ID (folder_id, env CHEETAH_FOLDER_ID) 4242."),
        (403, {"error": "ip_not_whitelisted"}, IpNotWhitelisted, IP_NOT_WHITELISTED_MESSAGE),
        (403, {"message": "Not for you"}, CheetahError, "GET Folder was refused with 403 Forbidden: Not for you."),
        (409, {"error_description": "busy"}, CheetahError, "GET Folder was refused with 409 Conflict: busy."),
        (409, "<html>oops</html>", CheetahError, "GET Folder was refused with 409 Conflict."),
        (429, "", RateLimited, "GET Folder was still rate-limited (429 Too Many Requests) after 0 retries."),
        (503, "<html>oops</html>", ServerError, "GET Folder failed: 503 Service Unavailable."),
        (599, "", ServerError, "GET Folder failed: 599."),
    ],
)
def test_each_status_of_an_api_call_maps_to_its_error(api, status, body, error, message):
    api.post(TOKEN_URL, json=TOKEN)
    reply(api, "GET", FOLDER_URL, status, body)
    with client() as c:
        failure = raised(error, c.get_folder)
    assert str(failure) == message and failure.status == status


def test_a_second_401_is_unauthorized_after_one_renewal(api):
    api.post(TOKEN_URL, json=TOKEN)
    api.get(FOLDER_URL, status=401, json={"error": "invalid_token"})
    with client() as c, pytest.raises(Unauthorized) as err:
        c.get_folder()
    assert str(err.value) == "GET Folder was refused with 401 Unauthorized even with a newly issued token."
    assert (calls(api, TOKEN_URL), calls(api, FOLDER_URL)) == (2, 2)


# --- the token reply -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "status, body, error, message",
    [
        (200, "<html>login</html>", MalformedResponse, "The token reply is not JSON."),
        (200, {"token_type": "bearer"}, MalformedResponse, "The token reply has no 'access_token'."),
        (200, {"access_token": 7}, MalformedResponse, "The token reply's 'access_token' should be str, got int."),
        (400, {"error": "invalid_client"}, InvalidCredentials, INVALID_CREDENTIALS_MESSAGE),
        (400, {"error": "invalid_grant"}, InvalidCredentials, INVALID_CREDENTIALS_MESSAGE),
        (401, {}, InvalidCredentials, INVALID_CREDENTIALS_MESSAGE),
        (403, {"error": "ip_not_whitelisted"}, IpNotWhitelisted, IP_NOT_WHITELISTED_MESSAGE),
        (400, {"error": "unsupported_grant_type"}, CheetahError,
         "POST Token was refused with 400 Bad Request: unsupported_grant_type."),
        (500, {}, ServerError, "POST Token failed: 500 Internal Server Error."),
    ],
)
def test_each_token_reply_maps_to_its_error(api, status, body, error, message):
    reply(api, "POST", TOKEN_URL, status, body)
    with client() as c:
        failure = raised(error, c.check_access)
    assert str(failure) == message
    assert failure.__context__ is None and failure.__cause__ is None  # nothing holding the request
    assert calls(api, FOLDER_URL) == 0


# --- bodies that are not JSON, or not the documented shape ---------------------------------------
def test_a_get_whose_reply_stays_non_json_is_repeated_then_malformed(api):
    api.post(TOKEN_URL, json=TOKEN)
    api.get(FOLDER_URL, body="<html>maintenance</html>", content_type="text/html")
    with client(max_retries="2") as c, pytest.raises(MalformedResponse) as err:
        c.get_folder()
    assert str(err.value) == "The GET Folder reply is not JSON after 2 retries."
    assert err.value.__context__ is None  # the decode error (which holds the body) is not attached
    assert calls(api, FOLDER_URL) == 3


def test_a_get_that_turns_json_on_a_repeat_succeeds(api):
    api.post(TOKEN_URL, json=TOKEN)
    api.get(FOLDER_URL, body="<html>busy</html>", content_type="text/html")
    api.get(FOLDER_URL, json={"id": 4242, "name": "Optimove", "parentId": 1})
    with client(max_retries="2") as c:
        assert c.get_folder().name == "Optimove"
    assert calls(api, FOLDER_URL) == 2


def test_a_campaign_create_whose_reply_is_not_json_is_not_repeated(api):
    api.post(TOKEN_URL, json=TOKEN)
    api.post(CAMPAIGN_URL, body="<html>busy</html>", content_type="text/html")
    start = dt.datetime(2030, 1, 1, 12, tzinfo=dt.timezone.utc)
    not_json = r"^The POST EmailCampaign reply is not JSON\.$"
    with client(max_retries="2") as c, pytest.raises(MalformedResponse, match=not_json):
        c.create_campaign(name="x", template_obj_id="1001", list_id=9, start_time=start)
    assert calls(api, CAMPAIGN_URL) == 1


@pytest.mark.parametrize(
    "body, message",
    [
        ("null", "The Folder reply is not a JSON object."),
        ("[]", "The Folder reply is not a JSON object."),
        ('{"name": "Optimove"}', "The Folder reply has no 'id'."),
        ('{"id": true, "name": "Optimove"}', "The Folder reply's 'id' should be an id (a number or a non-empty "
                                              "string), got True."),
        ('{"id": 4242, "name": 7}', "The Folder reply's 'name' should be str, got int."),
        ('{"id": 4242, "name": "Optimove", "parentId": 1.5}', "The Folder reply's 'parentId' should be an id (a number "
                                                              "or a non-empty string), got 1.5."),
    ],
)
def test_odd_shapes_of_a_reply_are_malformed_naming_the_key(api, body, message):
    api.post(TOKEN_URL, json=TOKEN)
    api.get(FOLDER_URL, body=body, content_type="application/json")
    with client() as c, pytest.raises(MalformedResponse) as err:
        c.get_folder()
    assert str(err.value) == message
