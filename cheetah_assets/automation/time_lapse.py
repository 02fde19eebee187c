"""A daemon in a loop: replay simulated time through a code location's schedules and sensors.

``TimeLapse(defs, instance, move_clock, resources=...)`` walks a clock from ``start`` to ``end``
in steps. At each tick T it does what ``dagster-daemon`` would have done by then:

1. moves the outside world's clock to T (``move_clock(T)``: the simulator's, in tests and the
   demo; nothing here imports the simulator) and builds the tick's resources
   (``resources(T)``: typically a :class:`~cheetah_assets.clock.ClockResource` pinned to T), so
   the runs and the world agree on "now";
2. evaluates every running schedule once for each of its cron ticks in ``(previous T, T]``
   (``build_schedule_context(scheduled_execution_time=tick)``), oldest first;
3. evaluates every running sensor whose ``minimum_interval_seconds`` (the daemon's 30 s when
   unset) has elapsed, with the cursor the sensor left last time, and applies its dynamic
   partition requests to the instance;
4. launches each run request in the instance, synchronously (``execute_in_process``), tagged as
   the daemon tags them (``dagster/sensor_name`` or ``dagster/schedule_name``, ``dagster/run_key``),
   unless a run with the same run key was already launched for that sensor or schedule (the
   daemon's de-duplication; for a schedule, per scheduled time as well).

Run-status sensors (``run_failure_sensor`` and the like) are evaluated like the others, after
the runs of the tick, so they see the tick's failures. A sensor or schedule that raises is
recorded as a failed evaluation and the loop goes on, as the daemon does. Not replayed: asset
check-only run requests (``asset_check_keys`` without assets) and the daemon's catch-up of
ticks missed while it was down (a gap between two ``run`` calls is not a gap in the clock:
the next tick covers it).
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import dagster as dg
from dagster._core.definitions.partitions.context import partition_loading_context
from dagster._utils.schedules import schedule_execution_time_iterator

from .run_keys import RUN_KEY_TAG

SENSOR_NAME_TAG = "dagster/sensor_name"
SCHEDULE_NAME_TAG = "dagster/schedule_name"
#: The daemon's default minimum interval of a sensor without one.
DEFAULT_SENSOR_INTERVAL = 30


@dataclass
class LaunchedRun:
    """One run the loop launched: when, by what, and how it ended."""

    at: dt.datetime
    origin: str  # "sensor:<name>" or "schedule:<name>"
    job: str
    run_id: str
    partition_key: str | None
    run_key: str | None
    success: bool


@dataclass
class TimeLapseReport:
    """What the loop did; ``failures`` holds one sentence per failed run or evaluation."""

    ticks: int = 0
    schedule_ticks: Counter = field(default_factory=Counter)
    sensor_evaluations: Counter = field(default_factory=Counter)
    sensor_seconds: Counter = field(default_factory=Counter)
    runs: list[LaunchedRun] = field(default_factory=list)
    skipped_duplicates: Counter = field(default_factory=Counter)
    partitions_added: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    @property
    def runs_by_job(self) -> Counter:
        return Counter(r.job for r in self.runs)

    @property
    def failed_runs(self) -> list[LaunchedRun]:
        return [r for r in self.runs if not r.success]

    def summary(self) -> str:
        jobs = ", ".join(f"{job} {n}" for job, n in sorted(self.runs_by_job.items())) or "none"
        return (f"{self.ticks} ticks, {sum(self.schedule_ticks.values())} schedule ticks, "
                f"{sum(self.sensor_evaluations.values())} sensor evaluations, runs: {jobs}; "
                f"{len(self.failures)} failures")


def _utc(when: dt.datetime) -> dt.datetime:
    if when.tzinfo is None:
        raise ValueError(f"time-lapse times must be timezone-aware, got {when!r}")
    return when.astimezone(dt.timezone.utc)


class TimeLapse:
    """Replays ``defs``'s running schedules and sensors over simulated time (module docstring).

    ``resources(T)`` gives the resources for tick T; they override the definitions' own for the
    sensors and for every run launched at T. ``include`` (names) restricts which schedules and
    sensors run; by default, the ones whose default status is RUNNING, as a fresh daemon would.
    ``intervals`` (name: timedelta) evaluates a sensor less often than its minimum interval, for a
    sensor too costly to evaluate at every tick; ``run_config(job)`` is merged into every run's.
    """

    def __init__(
        self,
        defs: dg.Definitions,
        instance: dg.DagsterInstance,
        move_clock: Callable[[dt.datetime], Any] | None = None,
        *,
        resources: Callable[[dt.datetime], Mapping[str, Any]] | None = None,
        include: set[str] | None = None,
        run_config: Callable[[str], Mapping[str, Any]] | None = None,
        intervals: Mapping[str, dt.timedelta] | None = None,
    ):
        self.defs = defs
        self.instance = instance
        self.move_clock = move_clock or (lambda _when: None)
        self.resources = resources or (lambda _when: {})
        self.extra_run_config = run_config or (lambda _job: {})
        repo = self._repository = defs.get_repository_def()
        self.intervals = {name: every.total_seconds() for name, every in (intervals or {}).items()}
        self.schedules = [s for s in repo.schedule_defs if self._wanted(s, include, dg.DefaultScheduleStatus.RUNNING)]
        self.sensors = [s for s in repo.sensor_defs if self._wanted(s, include, dg.DefaultSensorStatus.RUNNING)]
        self.cursors: dict[str, str | None] = {s.name: None for s in self.sensors}
        self.last_evaluated: dict[str, dt.datetime] = {}
        self.now: dt.datetime | None = None
        self.report = TimeLapseReport()
        self._jobs: dict[str, dg.JobDefinition] = {}

    @staticmethod
    def _wanted(definition, include: set[str] | None, running) -> bool:
        if include is not None:
            return definition.name in include
        return definition.default_status == running

    # ------------------------------------------------------------------------------ the loop
    def run(self, start: dt.datetime, end: dt.datetime, step: dt.timedelta) -> TimeLapseReport:
        """Tick at ``start``, ``start + step``, … up to and including ``end``. The first tick of
        the first call covers schedule ticks at exactly ``start``; a later call continues from
        where the previous one stopped (its first tick covers everything since)."""
        if step <= dt.timedelta(0):
            raise ValueError(f"the time-lapse step must be positive, got {step}")
        when, end = _utc(start), _utc(end)
        while when <= end:
            self.tick(when)
            when += step
        return self.report

    def pause(self, until: dt.datetime) -> None:
        """The daemon is off until ``until``: the clock moves there, and the schedule ticks and sensor
        intervals in between are not replayed (no catch-up); the next tick starts from ``until``."""
        until = _utc(until)
        if self.now is not None and until < self.now:
            raise ValueError(f"the time-lapse clock cannot go back from {self.now} to {until}")
        self.move_clock(until)
        self.now = until

    def tick(self, when: dt.datetime) -> None:
        """One tick at ``when`` (not earlier than the previous one)."""
        when = _utc(when)
        if self.now is not None and when < self.now:
            raise ValueError(f"the time-lapse clock cannot go back from {self.now} to {when}")
        previous = self.now if self.now is not None else when - dt.timedelta(microseconds=1)
        self.now = when
        self.move_clock(when)
        resources = dict(self.resources(when))
        self.report.ticks += 1
        run_status = [s for s in self.sensors if isinstance(s, dg.RunStatusSensorDefinition)]
        for sensor in run_status:
            if sensor.name not in self.last_evaluated:
                # A daemon starts before the runs it watches: the first evaluation sets the cursor.
                self._evaluate_sensor(sensor, when, resources, counts=False)
        for schedule in self.schedules:
            for tick_time in self.schedule_ticks(schedule, previous, when):
                self._evaluate_schedule(schedule, tick_time, resources)
        for sensor in [s for s in self.sensors if s not in run_status] + run_status:
            if self._due(sensor, when):
                self._evaluate_sensor(sensor, when, resources)

    @staticmethod
    def schedule_ticks(schedule: dg.ScheduleDefinition, after: dt.datetime, until: dt.datetime) -> list[dt.datetime]:
        """The schedule's cron ticks in ``(after, until]`` (aware, in its execution time zone)."""
        ticks = []
        start = after.timestamp() + 1e-6
        for tick_time in schedule_execution_time_iterator(start, schedule.cron_schedule, schedule.execution_timezone):
            if tick_time.timestamp() > until.timestamp():
                break
            if tick_time.timestamp() > after.timestamp():
                ticks.append(tick_time)
        return ticks

    def _due(self, sensor: dg.SensorDefinition, when: dt.datetime) -> bool:
        last = self.last_evaluated.get(sensor.name)
        if isinstance(sensor, dg.RunStatusSensorDefinition) and self.report.sensor_evaluations[sensor.name] == 0:
            return True
        interval = self.intervals.get(sensor.name) or sensor.minimum_interval_seconds or DEFAULT_SENSOR_INTERVAL
        return last is None or (when - last).total_seconds() >= interval

    # ------------------------------------------------------------------------- evaluations
    def _evaluate_schedule(self, schedule: dg.ScheduleDefinition, tick_time: dt.datetime, resources: dict) -> None:
        origin = f"schedule:{schedule.name}"
        self.report.schedule_ticks[schedule.name] += 1
        try:
            context = dg.build_schedule_context(instance=self.instance, scheduled_execution_time=tick_time,
                                                resources=resources or None, repository_def=self._repository)
            # As the daemon: partitions loaded from the instance, "now" being the tick's time.
            with partition_loading_context(effective_dt=tick_time, dynamic_partitions_store=self.instance):
                data = schedule.evaluate_tick(context)
        except Exception as error:  # noqa: BLE001 - the daemon records a failed tick and goes on
            self.report.failures.append(f"{origin} failed at {tick_time.isoformat()}: {error}")
            return
        tags = {SCHEDULE_NAME_TAG: schedule.name, "dagster/scheduled_execution_time": tick_time.isoformat()}
        for request in data.run_requests or []:
            self._launch(request, schedule.job_name, origin, tags, resources)

    def _evaluate_sensor(self, sensor: dg.SensorDefinition, when: dt.datetime, resources: dict,
                         counts: bool = True) -> None:
        origin = f"sensor:{sensor.name}"
        self.last_evaluated[sensor.name] = when
        self.report.sensor_evaluations[sensor.name] += int(counts)
        started = time.perf_counter()
        try:
            # Only the resources the sensor asks for: building a resource is most of a light tick.
            needed = {k: v for k, v in resources.items() if k in sensor.required_resource_keys}
            context = dg.build_sensor_context(
                instance=self.instance, cursor=self.cursors[sensor.name], sensor_name=sensor.name,
                definitions=self.defs, resources=needed or None,
            )
            with partition_loading_context(effective_dt=when, dynamic_partitions_store=self.instance):
                data = sensor.evaluate_tick(context)
        except Exception as error:  # noqa: BLE001 - the daemon records a failed tick and goes on
            self.report.failures.append(f"{origin} failed at {when.isoformat()}: {error}")
            return
        finally:
            self.report.sensor_seconds[sensor.name] += time.perf_counter() - started
        if data.cursor is not None:
            self.cursors[sensor.name] = data.cursor
        self._apply_partition_requests(sensor.name, data.dynamic_partitions_requests or [])
        default_job = sensor.job_name if sensor.has_jobs else None
        for request in data.run_requests or []:
            self._launch(request, default_job, origin, {SENSOR_NAME_TAG: sensor.name}, resources)

    def _apply_partition_requests(self, name: str, requests) -> None:
        for request in requests:
            if isinstance(request, dg.AddDynamicPartitionsRequest):
                self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
                self.report.partitions_added[name] += len(request.partition_keys)
            elif isinstance(request, dg.DeleteDynamicPartitionsRequest):
                for key in request.partition_keys:
                    self.instance.delete_dynamic_partition(request.partitions_def_name, key)

    # ------------------------------------------------------------------------------ launches
    def _already_launched(self, origin_tags: dict, run_key: str | None) -> bool:
        if run_key is None:
            return False
        runs = self.instance.get_runs(filters=dg.RunsFilter(tags={**origin_tags, RUN_KEY_TAG: run_key}), limit=1)
        return bool(runs)

    def _job(self, name: str) -> dg.JobDefinition:
        if name not in self._jobs:
            self._jobs[name] = self.defs.resolve_job_def(name)
        return self._jobs[name]

    def _launch(self, request: dg.RunRequest, default_job: str | None, origin: str, origin_tags: dict,
                resources: dict) -> None:
        assert self.now is not None
        if self._already_launched(origin_tags, request.run_key):
            self.report.skipped_duplicates[origin] += 1
            return
        job_name = request.job_name or default_job
        if job_name is None:
            job_name = self.defs.resolve_implicit_global_asset_job_def().name
        tags = {**(request.tags or {}), **origin_tags}
        if request.run_key is not None:
            tags[RUN_KEY_TAG] = request.run_key
        run_config = _merge(dict(request.run_config or {}), dict(self.extra_run_config(job_name)))
        try:
            result = self._job(job_name).execute_in_process(
                run_config=run_config or None, instance=self.instance, partition_key=request.partition_key,
                tags=tags, asset_selection=list(request.asset_selection) if request.asset_selection else None,
                resources=resources or None, raise_on_error=False,
            )
        except Exception as error:  # noqa: BLE001 - a run that cannot start is a failure, not the end
            self.report.failures.append(f"{origin}: {job_name} could not start at {self.now.isoformat()}: {error}")
            return
        launched = LaunchedRun(self.now, origin, job_name, result.run_id, request.partition_key, request.run_key,
                               result.success)
        self.report.runs.append(launched)
        if not result.success:
            self.report.failures.append(
                f"{origin}: run {result.run_id} of {job_name} (partition {request.partition_key}) failed at "
                f"{self.now.isoformat()}"
            )


def with_clock_at(resources: Mapping[str, Any], when: dt.datetime, key: str = "clock") -> dict:
    """``resources`` with the clock resource under ``key`` pinned to ``when`` (its other settings,
    such as a lead time, kept): the usual ``resources`` callback of a :class:`TimeLapse`."""
    clock = resources[key]
    fields = {name: getattr(clock, name) for name in type(clock).model_fields}
    return {**resources, key: type(clock)(**{**fields, "fixed_now": _utc(when).isoformat()})}


def _merge(base: dict, extra: dict) -> dict:
    """``base`` with ``extra`` merged in, nested dictionaries key by key (extra wins)."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out
