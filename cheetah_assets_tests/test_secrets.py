"""A whole day's cycle with distinctive secrets: zero hits anywhere a person or a log could see."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import dagster as dg

from cheetah_assets.cheetah.error_mapping import INVALID_CREDENTIALS_MESSAGE
from cheetah_assets.cheetah.contract import IMPORT_PATH, TOKEN_PATH
from cheetah_assets.customers import seed
from cheetah_assets.customers.resource import CustomerDatabaseResource

from .conftest import cheetah_resource, make_resources
from .helpers import failure_texts, ledger_rows, run_cycle

KEY = "KEY-q7w3-distinctive-consumer-key"
SECRET = "SECRET-zz9-plural-z-alpha"
CLIENT = "CLIENT-x1y2-distinctive-client"


def _hits(text: str, secrets) -> list[str]:
    return [s for s in secrets if s in text]


def _resources(sim, url, secret_var: str) -> dict:
    """As in production: the credentials come from the environment through ``EnvVar``, so Dagster
    stores only the variables' names (a literal value would be kept in the job snapshot)."""
    res = make_resources(sim, url)
    res["cheetah"] = cheetah_resource(
        sim,
        consumer_key=dg.EnvVar("TEST_CHEETAH_KEY"),
        consumer_secret=dg.EnvVar(secret_var),
        client_id=dg.EnvVar("TEST_CHEETAH_CLIENT"),
    )
    return res


def test_no_secret_in_logs_event_log_run_config_metadata_output_or_errors(sim, tmp_path, caplog, capfd, monkeypatch):
    monkeypatch.setenv("TEST_CHEETAH_KEY", KEY)
    monkeypatch.setenv("TEST_CHEETAH_SECRET", SECRET)
    monkeypatch.setenv("TEST_CHEETAH_SECRET_WRONG", SECRET + "-wrong")
    monkeypatch.setenv("TEST_CHEETAH_CLIENT", CLIENT)
    sim.admin.add_account(consumerKey=KEY, consumerSecret=SECRET, clientId=CLIENT)
    day = sim.admin.now().date()
    url = f"sqlite:///{tmp_path / 'c.db'}"
    engine = CustomerDatabaseResource(url=url).get_engine(create=True)
    seed.seed_demo(engine, customers=80, days=0, today=day, now=sim.admin.now())
    seed.add_campaign(
        engine, campaign_id="S", name="S", send_date=day, send_time="12:00", time_zone="UTC",
        template_ids="1001", target_group="all_customers",
    )
    secrets = [KEY, SECRET]
    caplog.set_level(logging.DEBUG)
    home = tmp_path / "dagster_home"
    home.mkdir()
    texts: list[str] = []
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        good = _resources(sim, url, "TEST_CHEETAH_SECRET")
        # Force a token renewal mid-way: the first import poll is refused once with a 401, so the
        # client must fetch a new token (with the secret) in the middle of the run and repeat it.
        sim.admin.add_fault(method="GET", path=IMPORT_PATH, kind="status", status=401, times=1)
        result = run_cycle(good, day, instance)
        assert result.success
        assert [r["state"] for r in ledger_rows(engine)] == ["APPROVED"]
        good_requests = sim.admin.requests()
        assert [f["fired"] for f in sim.admin.faults()] == [1]
        sim.admin.clear_faults()
        # A failing run, so that error texts are produced too.
        bad = _resources(sim, url, "TEST_CHEETAH_SECRET_WRONG")
        failed = run_cycle(bad, day, instance)
        assert not failed.success
        # It failed because the (wrong) secret went through the token request and was refused.
        messages = failure_texts(failed)
        assert messages
        assert all(INVALID_CREDENTIALS_MESSAGE in m for m in messages), messages
        last_good = good_requests[-1]["seq"]
        assert any(
            r["path"] == TOKEN_PATH and r["status"] in (400, 401) for r in sim.admin.requests() if r["seq"] > last_good
        )
        for run in instance.get_runs():
            texts.append(repr(run.run_config))
            texts.append(repr(run.tags))
            for entry in instance.all_logs(run.run_id):
                texts.append(entry.user_message or "")
                texts.append(repr(entry.dagster_event))
        texts.append(repr(good))
        texts.extend(repr(r) for r in good.values())
    texts.extend(record.getMessage() + " " + repr(record.args) + " " + (record.exc_text or "") for record in caplog.records)
    out, err = capfd.readouterr()
    texts += [out, err]
    secrets_with_wrong = secrets + [SECRET + "-wrong"]
    assert not _hits("\n".join(texts), secrets_with_wrong)
    # And nothing on disk: the instance's event log and run storage (SQLite files) hold no secret.
    for path in Path(home).rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not [s for s in secrets_with_wrong if s.encode() in data], path
    # The good run really authenticated with the distinctive credentials, and renewed its token
    # mid-run: the refused poll was followed by a new token and the same poll, now accepted.
    calls = [(r["method"], r["path"], r["status"]) for r in good_requests]
    assert sum(1 for c in calls if c == ("POST", TOKEN_PATH, 200)) >= 2
    refused = calls.index(("GET", IMPORT_PATH, 401))
    assert calls[refused + 1 : refused + 3] == [("POST", TOKEN_PATH, 200), ("GET", IMPORT_PATH, 200)]
