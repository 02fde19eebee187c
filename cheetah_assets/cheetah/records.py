"""The values the Cheetah Messaging API hands back, as this project reads them, and the
vocabularies they draw on (import and campaign statuses, metric names).

Plain frozen dataclasses; :mod:`.parsers` builds them from replies, :mod:`.contract` re-exports
them. Ids are kept exactly as received (:mod:`.ids`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import MalformedResponse
from .ids import ObjId

# --- vocabularies --------------------------------------------------------------------------------
IMPORT_PENDING = ("QUEUED", "PROCESSING")
IMPORT_DONE = ("COMPLETED", "FAILED")
CAMPAIGN_STATUSES = ("DRAFT", "LAUNCHED", "APPROVED", "SENT", "CANCELLED")

#: Cheetah Messaging metric name -> Optimove metric name (seed guide, "Campaign Metrics").
METRIC_NAMES: dict[str, str] = {
    "Sent": "Sent",
    "Received": "Delivered",
    "MessageOpens": "Unique Opens",
    "MessageClicks": "Unique Clicks",
    "Unsubs": "Unique Unsubscribes",
}


# --- values --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DataMapField:
    name: str  # the Cheetah field name, used in import CSV headers and in templates
    map_to: str  # the "Map To" column: the customer database's column name
    type: str
    is_identifier: bool


@dataclass(frozen=True)
class DataMap:
    id: ObjId
    name: str
    fields: tuple[DataMapField, ...]

    @property
    def identifier(self) -> DataMapField:
        ids = [f for f in self.fields if f.is_identifier]
        if len(ids) != 1:
            raise MalformedResponse(
                f"Data Map {self.id} must mark exactly one field as the identifier; it marks {len(ids)}."
            )
        return ids[0]

    def by_name(self) -> dict[str, DataMapField]:
        return {f.name: f for f in self.fields}


@dataclass(frozen=True)
class Folder:
    id: ObjId
    name: str
    parent_id: ObjId | None


@dataclass(frozen=True)
class Template:
    obj_id: str
    display_name: str
    type_id: str
    subject: str
    fields: tuple[str, ...]  # Data Map field *names* the template personalises with
    modified: str


@dataclass(frozen=True)
class Rejection:
    row: int  # 1-based data row of the imported file (the header is row 0)
    reason: str


@dataclass(frozen=True)
class ImportStatus:
    import_id: ObjId
    status: str
    list_id: ObjId | None
    rows_read: int
    rows_accepted: int
    rejected: tuple[Rejection, ...] = ()
    #: Cheetah's own reason when the import ended FAILED (passed through verbatim), else None.
    reason: str | None = None

    @property
    def done(self) -> bool:
        return self.status in IMPORT_DONE


@dataclass(frozen=True)
class Campaign:
    camp_id: ObjId
    cust_id: ObjId
    name: str
    status: str
    #: None when the reply does not say (unknown, never taken for 0: a size check then fails closed).
    recipient_count: int | None
    camp_param: Mapping[str, Any] = field(default_factory=dict)
    #: As the reply echoes them (None when it does not): the template, the list (``ToFilterId``)
    #: and the folder (``Obj.parent_obj_id``, or ``folderId``) the campaign was created with.
    template_obj_id: ObjId | None = None
    list_id: ObjId | None = None
    folder_id: ObjId | None = None

    @property
    def start_time(self) -> dt.datetime | None:
        """The start time the reply shows (None when it shows none); :class:`ValueError` when it
        shows one that cannot be read (then nothing is adopted on it)."""
        sched = self.camp_param.get("sendSchedule") if isinstance(self.camp_param, Mapping) else None
        if not sched:
            return None
        if not isinstance(sched, Mapping):
            raise ValueError(f"sendSchedule is not an object: {sched!r:.60}")
        raw = sched.get("startTime")
        if raw is None or raw == "":
            return None
        if not isinstance(raw, str):
            raise ValueError(f"startTime is not a string: {raw!r:.60}")
        return parse_start_time(raw, sched.get("timeZone"))


@dataclass(frozen=True)
class CampaignMetrics:
    camp_id: ObjId
    as_of: dt.datetime
    counts: Mapping[str, int]  # keyed by Cheetah name (METRIC_NAMES keys)

    def optimove(self) -> dict[str, int]:
        return {METRIC_NAMES[k]: v for k, v in self.counts.items()}


# --- the send schedule's start time ---------------------------------------------------------------
def format_start_time(when: dt.datetime) -> dict[str, str]:
    """The ``sendSchedule`` of a campaign: start time in UTC, no offset in the string."""
    if when.tzinfo is None:
        raise ValueError("a campaign start time must be timezone-aware")
    utc = when.astimezone(dt.timezone.utc).replace(microsecond=0, tzinfo=None)
    return {"startTime": utc.isoformat(), "timeZone": "UTC"}


def parse_start_time(raw: str, tz: Any = "UTC") -> dt.datetime:
    """A start time as an aware UTC datetime; one without an offset is in ``tz`` (an IANA name;
    "UTC" in any case, or none, is UTC). :class:`ValueError` for anything else."""
    value = dt.datetime.fromisoformat(raw)
    if value.tzinfo is None:
        value = value.replace(tzinfo=_zone(tz))
    return value.astimezone(dt.timezone.utc)


def _zone(tz: Any) -> dt.tzinfo:
    if tz is None or (isinstance(tz, str) and tz.strip().upper() in ("", "UTC")):
        return dt.timezone.utc
    if not isinstance(tz, str):
        raise ValueError(f"timeZone is not a name: {tz!r:.40}")
    try:
        return ZoneInfo(tz.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError):  # a directory ("America") is an OSError
        raise ValueError(f"timeZone {tz!r:.40} is not an IANA time zone") from None
