"""The settings model is the one home of every Cheetah setting: what derives from it agrees with it.

(Validation messages are pinned in ``test_client.py``.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cheetah_assets import configuration
from cheetah_assets.cheetah.errors import ConfigurationError
from cheetah_assets.cheetah.resource import TEST_ADDRESS_VAR, CheetahMessagingResource
from cheetah_assets.cheetah.settings import (
    ENV_VARS,
    CheetahSettings,
    account_settings,
    demo_account,
    setting_label,
)

README = Path(__file__).resolve().parents[1] / "README.md"
SECRETS = dict(consumer_key="KEY-r1-zz9", consumer_secret="SECRET-r1-zz9", client_id="CLIENT-r1-zz9")


def readme_variable_rows() -> list[tuple[str, str]]:
    """``(variable, meaning)`` of every row of the README's table of variables."""
    text = README.read_text()
    table = text[text.index("| variable |"):].split("\n\n", 1)[0]
    return re.findall(r"^\| `([A-Z_]+)` \| (.*) \|$", table, flags=re.MULTILINE)


def test_the_readme_table_lists_every_account_variable_as_the_model_says():
    rows = readme_variable_rows()
    expected = [(setting.env, setting.meaning) for _name, _info, setting in account_settings() if setting.env]
    assert rows[: len(expected)] == expected
    assert {variable for variable, _ in rows} == {*configuration.REQUIRED_VARIABLES, TEST_ADDRESS_VAR}


def test_environment_variables_and_demo_values_come_from_the_model():
    assert ENV_VARS == {
        "endpoint": "CHEETAH_ENDPOINT",
        "cust_id": "CHEETAH_CUST_ID",
        "folder_id": "CHEETAH_FOLDER_ID",
        "prop_map_id": "CHEETAH_PROP_MAP_ID",
        "consumer_key": "CHEETAH_CONSUMER_KEY",
        "consumer_secret": "CHEETAH_CONSUMER_SECRET",
        "client_id": "CHEETAH_CLIENT_ID",
    }
    assert configuration.REQUIRED_VARIABLES == (*ENV_VARS.values(), configuration.CUSTOMER_DB_VARIABLE)
    assert configuration.DEMO_ACCOUNT == demo_account()
    assert set(demo_account()) == set(ENV_VARS) - {"endpoint"}  # the demo's endpoint is the simulator's


def test_every_setting_has_a_label_and_a_description():
    for name, info, setting in account_settings():
        assert info.description and setting.label
        expected = f"{setting.label} ({name}, env {setting.env})" if setting.env else f"{setting.label} ({name})"
        assert setting_label(name) == expected
    assert set(name for name, _, _ in account_settings()) == set(CheetahSettings.model_fields) - {"require_https"}


def test_the_resource_has_a_field_per_setting_with_its_default_and_description():
    resource_fields = CheetahMessagingResource.model_fields
    assert set(resource_fields) == {*CheetahSettings.model_fields, "test_address"}
    for name, info, setting in account_settings():
        field = resource_fields[name]
        assert " ".join(info.description.split()) in field.description
        if setting.env:
            assert setting.env in field.description and field.is_required()
        else:
            assert field.default == info.default
    for name in ("connect_timeout_seconds", "backoff_max_seconds", "token_renew_margin_seconds"):
        assert name in resource_fields


def test_the_tuning_fields_reach_the_client_settings():
    resource = CheetahMessagingResource(
        endpoint="https://api.example.com", cust_id="1", folder_id="2", prop_map_id="3", **SECRETS,
        connect_timeout_seconds=1.5, backoff_max_seconds=4.0, token_renew_margin_seconds=60.0,
    )
    settings = resource.settings()
    assert (settings.connect_timeout_seconds, settings.backoff_max_seconds, settings.token_renew_margin_seconds) == (
        1.5, 4.0, 60.0)
    assert settings.timeout == (1.5, 30.0)
    with resource.get_client() as client:
        assert type(client).__name__ == "CheetahClient" and client.settings == settings


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("connect_timeout_seconds", "0", "Connect timeout (connect_timeout_seconds) must be more than 0, got 0.0."),
        ("backoff_max_seconds", "-1", "Longest retry backoff (backoff_max_seconds) must be at least 0, got -1.0."),
        ("token_renew_margin_seconds", "soon", "Token renewal margin (token_renew_margin_seconds) must be a number, "
                                               "got 'soon'."),
        ("timeout_seconds", "inf", "Request timeout (timeout_seconds) must be a number, got inf."),
    ],
)
def test_new_resource_fields_are_validated_with_named_messages(name, value, message):
    with pytest.raises(ConfigurationError) as err:
        CheetahSettings(endpoint="https://api.example.com", cust_id=1, folder_id=2, prop_map_id=3, **SECRETS,
                        **{name: value})
    assert str(err.value) == message


def test_credentials_are_secret_strings_never_shown():
    settings = CheetahSettings(endpoint="https://api.example.com", cust_id=1, folder_id=2, prop_map_id=3, **SECRETS)
    assert settings.consumer_secret.get_secret_value() == "SECRET-r1-zz9"
    shown = [repr(settings), str(settings), repr(settings.model_dump()), settings.model_dump_json()]
    for text in shown:
        for secret in SECRETS.values():
            assert secret not in text


@pytest.mark.parametrize(
    "endpoint", ["https://api.example.com/services2/api", "https://api.example.com/services2/", "https://api.example.com/v1"]
)
def test_an_endpoint_with_a_path_is_refused_saying_to_give_the_host_only(endpoint):
    """A path would be prefixed to every call (/v1/services2/...), which then reads as refused
    credentials: it is refused at configuration time."""
    with pytest.raises(ConfigurationError) as err:
        CheetahSettings(endpoint=endpoint, cust_id=1, folder_id=2, prop_map_id=3, **SECRETS)
    assert "host only" in str(err.value) and "(endpoint, env CHEETAH_ENDPOINT)" in str(err.value)


@pytest.mark.parametrize("endpoint", ["https://api.example.com", "https://api.example.com/", "https://api.example.com:8443//"])
def test_an_endpoint_without_a_path_is_kept_as_the_host(endpoint):
    settings = CheetahSettings(endpoint=endpoint, cust_id=1, folder_id=2, prop_map_id=3, **SECRETS)
    assert settings.endpoint == endpoint.rstrip("/")


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://api.example.com/?access_token=TOKEN-q7",
        "https://api.example.com?access_token=TOKEN-q7",
        "https://api.example.com/#TOKEN-q7",
        "http://example.com/?access_token=TOKEN-q7",
        "ftp://api.example.com/?access_token=TOKEN-q7",
        "https://api.example.com/TOKEN-q7/api",
    ],
)
def test_an_endpoint_refused_is_never_echoed_past_its_host(endpoint):
    """A query, fragment or path may hold a token: the message shows the scheme and host only."""
    with pytest.raises(ConfigurationError) as err:
        CheetahSettings(endpoint=endpoint, cust_id=1, folder_id=2, prop_map_id=3, require_https=True, **SECRETS)
    assert "TOKEN-q7" not in str(err.value) and "access_token" not in str(err.value)


@pytest.mark.parametrize("name", ["folder_id", "prop_map_id"])
@pytest.mark.parametrize(
    "given, kept",
    [("004242", "004242"), ("OPTIMOVE-FOLDER", "OPTIMOVE-FOLDER"), ("  pm-77 ", "pm-77"), ("4242", 4242), (4242, 4242)],
    ids=["leading-zeros", "text", "stripped", "digits", "number"],
)
def test_folder_and_data_map_ids_are_opaque_and_sent_as_given(name, given, kept):
    """The contract's folder and Data Map ids are opaque: kept as given (a plain decimal number
    is sent as the JSON number it always was), passed to the API unchanged."""
    import datetime as dt

    from cheetah_assets.cheetah.client import CheetahClient

    settings = CheetahSettings(**{"endpoint": "https://api.example.com", "cust_id": 1, "folder_id": 2,
                                  "prop_map_id": 3, **SECRETS, name: given})
    assert getattr(settings, name) == kept and type(getattr(settings, name)) is type(kept)
    client, calls = CheetahClient(settings), []
    client.transport.call = lambda method, path, **kw: calls.append(kw) or {"campId": 5001}
    client.create_campaign(name="N", template_obj_id="1001", list_id=9001,
                           start_time=dt.datetime(2030, 1, 1, 12, tzinfo=dt.timezone.utc))
    (call,) = calls
    sent = call["body"]["Obj"]["parent_obj_id"] if name == "folder_id" else call["body"]["PropMapId"]
    assert sent == kept and type(sent) is type(kept)


@pytest.mark.parametrize("value", ["abc", "0", "-3", "12.5"])
def test_cust_id_stays_a_positive_whole_number(value):
    """Cust_ID is not among the contract's opaque ids (the campaign body's ``CustId`` is a number)."""
    with pytest.raises(ConfigurationError, match=r"Cust_ID \(cust_id, env CHEETAH_CUST_ID\)"):
        CheetahSettings(endpoint="https://api.example.com", cust_id=value, folder_id=2, prop_map_id=3, **SECRETS)
