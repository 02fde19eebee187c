"""The pure timing functions of issue 9 (prepare time, due, the sensor's window, the partitions),
checked for every zone from UTC-12 to UTC+14 and across DST changes both ways (Hypothesis), and
the timing settings (CHEETAH_ACCOUNT_TIME_ZONE, CHEETAH_LEAD_TIME_MINUTES, CHEETAH_PARTITION_START)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cheetah_assets.cheetah.errors import ConfigurationError
from cheetah_assets.configuration import account_time_zone, lead_time_minutes, partition_start
from cheetah_assets.sending import preparation
from cheetah_assets.sending.partitions import build_daily_partitions
from cheetah_assets.sending.plan import PlanProblem, resolve_send_at
from cheetah_assets.sending.timing import MAX_DAYS_BEHIND, days_ahead, is_due, prepare_at, window

UTC = dt.timezone.utc
#: UTC-12 and UTC+14 (the extremes), half and quarter hours, and zones with DST both ways.
ZONES = [
    "Etc/GMT+12", "Pacific/Pago_Pago", "Pacific/Honolulu", "America/Los_Angeles", "America/New_York",
    "America/St_Johns", "America/Sao_Paulo", "UTC", "Europe/London", "Europe/Paris", "Asia/Kolkata",
    "Asia/Kathmandu", "Asia/Tokyo", "Australia/Sydney", "Australia/Lord_Howe", "Pacific/Auckland",
    "Pacific/Chatham", "Pacific/Tongatapu", "Pacific/Kiritimati",
]
dates = st.dates(min_value=dt.date(2026, 11, 1), max_value=dt.date(2028, 12, 31))
times = st.tuples(st.integers(0, 23), st.integers(0, 59)).map(lambda hm: f"{hm[0]:02d}:{hm[1]:02d}")
leads = st.one_of(st.just(dt.timedelta(minutes=120)), st.integers(1, 7 * 24 * 60).map(lambda m: dt.timedelta(minutes=m)))


def _send_at(day, at, zone):
    try:
        return resolve_send_at(day, at, zone)
    except PlanProblem as exc:
        assert "daylight-saving gap" in str(exc), exc
        return None


#: The extremes: the latest send of a day (UTC-12) seen from UTC+14, and the earliest (UTC+14) from UTC-12.
LATEST_SEEN_FROM_UTC_PLUS_14 = dict(
    day=dt.date(2027, 1, 5), at="23:30", zone="Etc/GMT+12", account="Pacific/Kiritimati", lead=dt.timedelta(hours=2)
)
EARLIEST_SEEN_FROM_UTC_MINUS_12 = dict(
    day=dt.date(2027, 1, 5), at="00:00", zone="Pacific/Kiritimati", account="Etc/GMT+12", lead=dt.timedelta(hours=22)
)
#: A campaign's send (its local day, time and zone) and the account's zone and lead time.
campaign_sends = given(day=dates, at=times, zone=st.sampled_from(ZONES), account=st.sampled_from(ZONES), lead=leads)


@settings(max_examples=400, deadline=None)
@campaign_sends
@example(**LATEST_SEEN_FROM_UTC_PLUS_14)
@example(**EARLIEST_SEEN_FROM_UTC_MINUS_12)
def test_from_its_prepare_time_to_its_send_time_a_campaigns_day_is_in_the_sensor_window(day, at, zone, account, lead):
    send_at = _send_at(day, at, zone)
    if send_at is None:
        return
    start = prepare_at(send_at, lead)
    assert start == send_at - lead
    for now in (start, send_at):  # both ends move forward with time, so every instant between is covered
        first, last = window(now, account, lead)
        assert first <= day <= last, (now, first, last)
    assert not is_due(send_at, start - dt.timedelta(seconds=1), lead)
    assert is_due(send_at, start, lead) and is_due(send_at, send_at, lead)


@settings(max_examples=60, deadline=None)
@campaign_sends
@example(**EARLIEST_SEEN_FROM_UTC_MINUS_12)
@example(**{**EARLIEST_SEEN_FROM_UTC_MINUS_12, "lead": dt.timedelta(days=7)})
def test_a_campaigns_partition_exists_when_it_is_prepared(day, at, zone, account, lead):
    send_at = _send_at(day, at, zone)
    if send_at is None:
        return
    env = {"CHEETAH_ACCOUNT_TIME_ZONE": account, "CHEETAH_LEAD_TIME_MINUTES": str(lead // dt.timedelta(minutes=1))}
    keys = build_daily_partitions(env).get_partition_keys(current_time=send_at - lead)
    assert day.isoformat() in keys


@settings(max_examples=300, deadline=None)
@given(day=dates, at=times, zone=st.sampled_from(ZONES))
def test_a_local_time_is_its_wall_time_or_a_dst_gap_and_an_ambiguous_time_is_its_first_occurrence(day, at, zone):
    tz = ZoneInfo(zone)
    send_at = _send_at(day, at, zone)
    h, m = map(int, at.split(":"))
    if send_at is None:  # a gap: no instant of the day shows that wall time
        wall = dt.datetime.combine(day, dt.time(h, m))
        assert wall.replace(tzinfo=tz).astimezone(UTC).astimezone(tz).replace(tzinfo=None) != wall
        return
    local = send_at.astimezone(tz)
    assert (local.date(), local.hour, local.minute) == (day, h, m)
    # first occurrence: no earlier instant within the previous 3 hours shows the same wall time
    for back in range(1, 181):
        earlier = (send_at - dt.timedelta(minutes=back)).astimezone(tz)
        assert (earlier.date(), earlier.hour, earlier.minute) != (day, h, m)


def test_dst_both_ways_in_paris():
    # spring forward: 02:30 does not exist; fall back: 02:30 is the first one (CEST, 00:30 UTC)
    assert _send_at(dt.date(2027, 3, 28), "02:30", "Europe/Paris") is None
    assert resolve_send_at(dt.date(2027, 10, 31), "02:30", "Europe/Paris") == dt.datetime(2027, 10, 31, 0, 30, tzinfo=UTC)


def test_the_window_reaches_two_days_ahead_for_a_lead_of_up_to_22_hours_and_further_beyond():
    assert days_ahead(None) == days_ahead(dt.timedelta(hours=2)) == days_ahead(dt.timedelta(hours=22)) == 2
    assert days_ahead(dt.timedelta(hours=22, minutes=1)) == 3 and days_ahead(dt.timedelta(days=7)) == 9


def test_after_an_outage_the_window_starts_where_the_last_tick_did_but_at_most_14_days_back():
    now = dt.datetime(2026, 12, 20, 6, tzinfo=UTC)
    today, lead = now.date(), dt.timedelta(hours=2)
    usual = window(now, "UTC", lead)
    assert usual[0] == today - dt.timedelta(days=2)
    assert window(now, "UTC", lead, last_first=today - dt.timedelta(days=1)) == usual  # the usual tick
    assert window(now, "UTC", lead, last_first=today - dt.timedelta(days=7)) == (today - dt.timedelta(days=7), usual[1])
    assert window(now, "UTC", lead, last_first=today - dt.timedelta(days=60))[0] == today - dt.timedelta(days=MAX_DAYS_BEHIND) == today - dt.timedelta(days=14)


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.sampled_from(["A", "B", "C", "D"]), dates, times, st.sampled_from(ZONES), st.sampled_from(["SCHEDULED", "CANCELLED"])),
        max_size=8, unique_by=lambda r: r[0],
    ),
    now=st.datetimes(min_value=dt.datetime(2026, 11, 1), max_value=dt.datetime(2029, 1, 1), timezones=st.just(UTC)),
    lead=leads,
)
def test_a_day_is_requested_exactly_when_its_due_set_changes(rows, now, lead):
    sched = [preparation.ScheduleRow(c, d, t, z, "1002", "g", s, c) for c, d, t, z, s in rows]
    due = preparation.due_digests(sched, now, lead)
    assert preparation.changed_days(due, due) == []  # nothing changed: nothing requested
    assert preparation.changed_days({}, due) == list(due)
    expected = {r.send_date.isoformat() for r in sched if is_due(r.send_at(), now, lead)}
    assert set(due) == expected
    if sched:  # one campaign's time changes once it is due: its day (only) is requested again
        r = sched[0]
        moved = [preparation.ScheduleRow(r.campaign_id, r.send_date, "23:59" if r.send_time != "23:59" else "23:58", r.time_zone,
                                         r.template_ids, r.target_group, r.status, r.name), *sched[1:]]
        after = preparation.due_digests(moved, now, lead)
        changed = set(preparation.changed_days(due, after))
        assert changed <= {r.send_date.isoformat()}


def test_timing_settings_default_and_refuse_bad_values_in_one_sentence():
    assert (account_time_zone({}), lead_time_minutes({}), partition_start({})) == ("UTC", 120, "2026-11-01")
    assert account_time_zone({"CHEETAH_ACCOUNT_TIME_ZONE": " Asia/Tokyo "}) == "Asia/Tokyo"
    assert lead_time_minutes({"CHEETAH_LEAD_TIME_MINUTES": "30"}) == 30
    for env, call, name in [
        ({"CHEETAH_ACCOUNT_TIME_ZONE": "Mars/Olympus"}, account_time_zone, "CHEETAH_ACCOUNT_TIME_ZONE"),
        ({"CHEETAH_LEAD_TIME_MINUTES": "0"}, lead_time_minutes, "CHEETAH_LEAD_TIME_MINUTES"),
        ({"CHEETAH_LEAD_TIME_MINUTES": "10081"}, lead_time_minutes, "CHEETAH_LEAD_TIME_MINUTES"),
        ({"CHEETAH_LEAD_TIME_MINUTES": "2h"}, lead_time_minutes, "CHEETAH_LEAD_TIME_MINUTES"),
        ({"CHEETAH_PARTITION_START": "yesterday"}, partition_start, "CHEETAH_PARTITION_START"),
    ]:
        with pytest.raises(ConfigurationError, match=name) as err:
            call(env)
        assert str(err.value).count(". ") == 0 and str(err.value).endswith(".")


def test_the_definitions_follow_the_account_zone_and_the_lead_time():
    parts = build_daily_partitions({"CHEETAH_ACCOUNT_TIME_ZONE": "Asia/Tokyo", "CHEETAH_PARTITION_START": "2026-12-01"})
    assert parts.timezone == "Asia/Tokyo" and parts.start.date() == dt.date(2026, 12, 1)
    # 2026-12-10 20:00 UTC is 2026-12-11 in Tokyo: that day and two more exist, no further
    keys = parts.get_partition_keys(current_time=dt.datetime(2026, 12, 10, 20, tzinfo=UTC))
    assert keys[-1] == "2026-12-13"
    from cheetah_assets.resources import build_resources

    clock = build_resources({"CHEETAH_ACCOUNT_TIME_ZONE": "Asia/Tokyo", "CHEETAH_LEAD_TIME_MINUTES": "45"})["clock"]
    assert clock.account_time_zone == "Asia/Tokyo" and clock.lead_time() == dt.timedelta(minutes=45)


def test_the_code_location_loaded_with_an_account_zone_partitions_and_schedules_by_it(tmp_path):
    """Read at definitions load, in a process of its own (the zone is part of the definitions)."""
    import json
    import os
    import subprocess
    import sys

    code = (
        "import json; from cheetah_assets.definitions import defs; r = defs.get_repository_def();"
        "s = r.get_schedule_def('daily_campaign_cycle_schedule'); c = r.get_schedule_def('template_catalog_schedule');"
        "p = r.get_job('daily_campaign_cycle').partitions_def;"
        "print(json.dumps([s.execution_timezone, c.execution_timezone, p.timezone, s.cron_schedule]))"
    )
    env = {**os.environ, "CHEETAH_ACCOUNT_TIME_ZONE": "Pacific/Kiritimati", "CHEETAH_DEMO": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["Pacific/Kiritimati"] * 3 + ["15 0 * * *"]
    bad = subprocess.run(
        [sys.executable, "-c", "import cheetah_assets.definitions"], env={**env, "CHEETAH_ACCOUNT_TIME_ZONE": "Nowhere/Land"},
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert bad.returncode != 0 and "CHEETAH_ACCOUNT_TIME_ZONE must be an IANA time zone name" in bad.stderr
