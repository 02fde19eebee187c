"""The time-lapse driver itself (cheetah_assets/automation/time_lapse.py) on a toy code location:
schedule tick boundaries, sensor intervals, cursors kept, run keys de-duplicated, dynamic
partitions applied, failures recorded and seen by a run-failure sensor."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from cheetah_assets.automation.time_lapse import TimeLapse

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 3, 28, 0, 0, tzinfo=UTC)

seen_cursors: list[str | None] = []
failure_alerts: list[str] = []


class Now(dg.ConfigurableResource):
    fixed_now: str = ""


@dg.op
def record_now(context, now: Now) -> str:
    context.log.info(f"now {now.fixed_now}")
    return now.fixed_now


@dg.job
def hello_job():
    record_now()


@dg.op
def explode():
    raise RuntimeError("boom")


@dg.job
def failing_job():
    explode()


hourly = dg.ScheduleDefinition(name="hourly", cron_schedule="0 * * * *", job=hello_job,
                               default_status=dg.DefaultScheduleStatus.RUNNING)
#: Daily at 02:30 in New York: its wall time is skipped on the spring-forward day.
new_york = dg.ScheduleDefinition(name="new_york", cron_schedule="30 2 * * *", job=hello_job,
                                 execution_timezone="America/New_York",
                                 default_status=dg.DefaultScheduleStatus.RUNNING)
stopped = dg.ScheduleDefinition(name="stopped", cron_schedule="* * * * *", job=hello_job)


@dg.sensor(job=hello_job, minimum_interval_seconds=600, default_status=dg.DefaultSensorStatus.RUNNING)
def counting_sensor(context: dg.SensorEvaluationContext):
    seen_cursors.append(context.cursor)
    count = int(context.cursor or 0) + 1
    context.update_cursor(str(count))
    # The same run key every time after the first two: the daemon launches it once.
    return [dg.RunRequest(run_key=f"key-{min(count, 2)}")]


@dg.sensor(job=failing_job, minimum_interval_seconds=3600, default_status=dg.DefaultSensorStatus.RUNNING)
def failing_sensor(context):
    return dg.RunRequest(run_key="fail-once")


parts = dg.DynamicPartitionsDefinition(name="toy_parts")


@dg.sensor(minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def partition_sensor(context):
    return dg.SensorResult(dynamic_partitions_requests=[parts.build_add_request(["a", "b"])])


@dg.run_failure_sensor(name="on_failure", default_status=dg.DefaultSensorStatus.RUNNING)
def on_failure(context: dg.RunFailureSensorContext):
    failure_alerts.append(context.dagster_run.job_name)


def toy_defs() -> dg.Definitions:
    return dg.Definitions(
        jobs=[hello_job, failing_job],
        schedules=[hourly, new_york, stopped],
        sensors=[counting_sensor, failing_sensor, partition_sensor, on_failure],
        resources={"now": Now()},
    )


@pytest.fixture
def instance():
    seen_cursors.clear()
    failure_alerts.clear()
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance


def test_schedule_ticks_are_the_cron_ticks_in_the_half_open_interval():
    ticks = TimeLapse.schedule_ticks(hourly, T0, T0 + dt.timedelta(hours=2))
    assert ticks == [T0 + dt.timedelta(hours=1), T0 + dt.timedelta(hours=2)]  # (T0, T0+2h]
    assert TimeLapse.schedule_ticks(hourly, T0, T0 + dt.timedelta(minutes=59)) == []
    # 02:30 New York does not exist on 2026-03-08 (spring forward): Dagster runs it at 03:00 EDT.
    day = dt.datetime(2026, 3, 8, 0, 0, tzinfo=UTC)
    ticks = TimeLapse.schedule_ticks(new_york, day, day + dt.timedelta(days=1))
    assert [t.astimezone(UTC) for t in ticks] == [dt.datetime(2026, 3, 8, 7, 0, tzinfo=UTC)]


def test_the_loop_ticks_like_the_daemon(instance):
    moved: list[dt.datetime] = []
    lapse = TimeLapse(toy_defs(), instance, moved.append,
                      resources=lambda when: {"now": Now(fixed_now=when.isoformat())})
    report = lapse.run(T0, T0 + dt.timedelta(hours=3), dt.timedelta(minutes=5))

    assert report.ticks == 37 and moved[0] == T0 and moved[-1] == T0 + dt.timedelta(hours=3)
    # Hourly ticks at 00:00 (the first tick's own time), 01, 02 and 03; the stopped schedule never.
    assert report.schedule_ticks == {"hourly": 4}
    by_origin = [r.origin for r in report.runs]
    assert by_origin.count("schedule:hourly") == 4
    # Every 10 simulated minutes: 00:00, 00:10, … 03:00.
    assert report.sensor_evaluations["counting_sensor"] == 19
    # The cursor is handed back: None, then 1, 2, 3 …
    assert seen_cursors[:4] == [None, "1", "2", "3"] and lapse.cursors["counting_sensor"] == "19"
    # Run keys key-1 and key-2 launched once each; the 17 repeats of key-2 skipped.
    assert by_origin.count("sensor:counting_sensor") == 2
    assert report.skipped_duplicates["sensor:counting_sensor"] == 17
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/sensor_name": "counting_sensor"}))
    assert sorted(r.tags["dagster/run_key"] for r in runs) == ["key-1", "key-2"]
    # The runs saw the tick's resources (the clock at the tick).
    first = report.runs[0]
    assert first.at == T0
    # Dynamic partitions applied to the instance.
    assert set(instance.get_dynamic_partitions("toy_parts")) == {"a", "b"}
    # The failing run: launched once (hourly interval, same key), recorded, and seen by the
    # run-failure sensor.
    assert [r.job for r in report.failed_runs] == ["failing_job"]
    assert any("failing_job" in f for f in report.failures)
    assert failure_alerts == ["failing_job"]


def test_a_second_run_continues_and_the_clock_never_goes_back(instance):
    lapse = TimeLapse(toy_defs(), instance, None, resources=lambda when: {"now": Now(fixed_now=when.isoformat())},
                      include={"hourly"})
    lapse.run(T0, T0 + dt.timedelta(minutes=30), dt.timedelta(minutes=30))
    report = lapse.run(T0 + dt.timedelta(hours=2, minutes=30), T0 + dt.timedelta(hours=2, minutes=30),
                       dt.timedelta(minutes=30))
    # 00:00 in the first call, 01:00 and 02:00 in the first tick of the second (each once).
    times = sorted(r.tags["dagster/scheduled_execution_time"] for r in instance.get_runs())
    assert report.schedule_ticks == {"hourly": 3} and len(times) == 3
    with pytest.raises(ValueError, match="cannot go back"):
        lapse.tick(T0)


def test_with_clock_at_pins_the_clock_and_keeps_the_rest():
    from cheetah_assets.clock import ClockResource
    from cheetah_assets.automation.time_lapse import with_clock_at

    other = object()
    pinned = with_clock_at({"clock": ClockResource(), "other": other}, T0 + dt.timedelta(minutes=5))
    assert pinned["other"] is other
    assert pinned["clock"].now() == T0 + dt.timedelta(minutes=5)
    with pytest.raises(ValueError, match="timezone-aware"):
        with_clock_at({"clock": ClockResource()}, dt.datetime(2026, 1, 1))
