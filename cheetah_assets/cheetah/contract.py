"""The Cheetah Messaging API as this project speaks it (../shared/cheetah-messaging-api.md).

Every path, field name, limit and reply shape the client depends on lives here, and nowhere
else, so that a real account's differences from an **[assumed]** shape are one edit away. The
client (``client.py``) does transport; this module does meaning: it builds request bodies and
parses replies into typed values, raising :class:`MalformedResponse` with the offending key when
a reply does not have the documented shape.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any, Mapping
from zoneinfo import ZoneInfo

from .errors import MalformedResponse
from .ids import ObjId, id_from_db, id_to_db, is_id, same_id  # noqa: F401 - the id codec, re-exported

# --- paths ---------------------------------------------------------------------------------------
TOKEN_PATH = "/services2/authorization/oAuth2/Token"  # [documented]
DATA_MAP_PATH = "/services2/api/DataMap"  # [assumed path]
FOLDER_PATH = "/services2/api/Folder"  # [documented]
FOLDER_OBJECTS_PATH = "/services2/api/Folder/Objects"  # [assumed listing]
IMPORT_PATH = "/services2/api/Import"  # [documented]
CAMPAIGN_PATH = "/services2/api/EmailCampaign"  # [documented]
REPORT_PATH = "/services2/api/Reports/EmailCampaign"  # [assumed path]

# --- limits --------------------------------------------------------------------------------------
MAX_PAGE_SIZE = 200  # [assumed]
DEFAULT_PAGE_SIZE = 100
MAX_IMPORT_ROWS = 100_000  # [assumed]
MAX_IMPORT_BYTES = 25 * 1024 * 1024  # [assumed]
DEFAULT_TOKEN_LIFETIME_S = 28_800  # [documented] eight hours unless the account says otherwise

# --- enumerations --------------------------------------------------------------------------------
IMPORT_PENDING = ("QUEUED", "PROCESSING")
IMPORT_DONE = ("COMPLETED", "FAILED")
CAMPAIGN_STATUSES = ("DRAFT", "LAUNCHED", "APPROVED", "SENT", "CANCELLED")
ACTION_LAUNCH, ACTION_APPROVE, ACTION_PAUSE, ACTION_RESUME = "LAUNCH", "APPROVE", "PAUSE", "RESUME"

#: Cheetah Messaging metric name -> Optimove metric name (seed guide, "Campaign Metrics").
METRIC_NAMES: dict[str, str] = {
    "Sent": "Sent",
    "Received": "Delivered",
    "MessageOpens": "Unique Opens",
    "MessageClicks": "Unique Clicks",
    "Unsubs": "Unique Unsubscribes",
}

# --- error replies -------------------------------------------------------------------------------
NAME_EXISTS_MESSAGE = "An Obj with this name already exists"  # [documented]
ALREADY_LAUNCHED_MESSAGE = "Campaign has been launched already."  # [documented]
IP_NOT_WHITELISTED_ERROR = "ip_not_whitelisted"  # [assumed shape]
INVALID_GRANT_ERROR = "invalid_grant"  # [documented]


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
    recipient_count: int
    camp_param: Mapping[str, Any] = field(default_factory=dict)
    #: As the reply echoes them (None when it does not): the template, the list (``ToFilterId``)
    #: and the folder (``Obj.parent_obj_id``, or ``folderId``) the campaign was created with.
    template_obj_id: ObjId | None = None
    list_id: ObjId | None = None
    folder_id: ObjId | None = None

    @property
    def start_time(self) -> dt.datetime | None:
        sched = (self.camp_param or {}).get("sendSchedule") or {}
        raw = sched.get("startTime")
        return parse_start_time(raw, sched.get("timeZone", "UTC")) if raw else None


@dataclass(frozen=True)
class CampaignMetrics:
    camp_id: ObjId
    as_of: dt.datetime
    counts: Mapping[str, int]  # keyed by Cheetah name (METRIC_NAMES keys)

    def optimove(self) -> dict[str, int]:
        return {METRIC_NAMES[k]: v for k, v in self.counts.items()}


# --- parsing helpers -----------------------------------------------------------------------------
_COUNT_TEXT = re.compile(r"[0-9]+")


def _type_name(typ: type | tuple[type, ...]) -> str:
    return typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)


def _req(obj: Any, key: str, typ: type | tuple[type, ...], what: str) -> Any:
    """``obj[key]``, exactly of type ``typ`` (a bool is never an int; nothing is converted)."""
    if not isinstance(obj, Mapping):
        raise MalformedResponse(f"The {what} reply is not a JSON object.")
    if key not in obj or obj[key] is None:
        raise MalformedResponse(f"The {what} reply has no '{key}'.")
    val = obj[key]
    types = typ if isinstance(typ, tuple) else (typ,)
    if not isinstance(val, types) or (isinstance(val, bool) and bool not in types):
        raise MalformedResponse(f"The {what} reply's '{key}' should be {_type_name(typ)}, got {type(val).__name__}.")
    return val


def _opt(obj: Mapping, key: str, typ: type | tuple[type, ...], what: str, default: Any = None) -> Any:
    if not isinstance(obj, Mapping):
        raise MalformedResponse(f"The {what} reply is not a JSON object.")
    if obj.get(key) is None:
        return default
    return _req(obj, key, typ, what)


def parse_id(value: Any, what: str, key: str) -> ObjId:
    """An id as received: a JSON number or a non-blank string (never a bool, float or null)."""
    if not is_id(value):
        raise MalformedResponse(
            f"The {what} reply's '{key}' should be an id (a number or a non-empty string), got {value!r}."
        )
    return value


def _req_id(obj: Any, key: str, what: str) -> ObjId:
    if not isinstance(obj, Mapping):
        raise MalformedResponse(f"The {what} reply is not a JSON object.")
    if obj.get(key) is None:
        raise MalformedResponse(f"The {what} reply has no '{key}'.")
    return parse_id(obj[key], what, key)


def _opt_id(obj: Any, key: str, what: str) -> ObjId | None:
    if not isinstance(obj, Mapping):
        raise MalformedResponse(f"The {what} reply is not a JSON object.")
    return None if obj.get(key) is None else parse_id(obj[key], what, key)


def parse_count(value: Any, what: str, key: str) -> int:
    """A count: a non-negative JSON integer, or the same number as a string of digits
    (``"12000"``); anything else (``"1.5"``, ``"-3"``, ``"12k"``, a bool, a float) is malformed."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and _COUNT_TEXT.fullmatch(value):
        return int(value)
    raise MalformedResponse(f"The {what} reply's '{key}' should be a non-negative whole number, got {value!r}.")


def _req_count(obj: Any, key: str, what: str) -> int:
    if not isinstance(obj, Mapping):
        raise MalformedResponse(f"The {what} reply is not a JSON object.")
    if obj.get(key) is None:
        raise MalformedResponse(f"The {what} reply has no '{key}'.")
    return parse_count(obj[key], what, key)


def _opt_count(obj: Any, key: str, what: str, default: int = 0) -> int:
    if not isinstance(obj, Mapping):
        raise MalformedResponse(f"The {what} reply is not a JSON object.")
    return default if obj.get(key) is None else parse_count(obj[key], what, key)


def format_start_time(when: dt.datetime) -> dict[str, str]:
    """The ``sendSchedule`` of a campaign: start time in UTC, no offset in the string."""
    if when.tzinfo is None:
        raise ValueError("a campaign start time must be timezone-aware")
    utc = when.astimezone(dt.timezone.utc).replace(microsecond=0, tzinfo=None)
    return {"startTime": utc.isoformat(), "timeZone": "UTC"}


def parse_start_time(raw: str, tz: str = "UTC") -> dt.datetime:
    value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(tz))
    return value.astimezone(dt.timezone.utc)


def parse_time(raw: Any, what: str, key: str) -> dt.datetime:
    if not isinstance(raw, str):
        raise MalformedResponse(f"The {what} reply's '{key}' should be an ISO time string.")
    try:
        return parse_start_time(raw)
    except ValueError as exc:
        raise MalformedResponse(f"The {what} reply's '{key}' is not an ISO time: {raw!r}.") from exc


def parse_token(body: Any) -> tuple[str, int]:
    token = _req(body, "access_token", str, "token")
    expires_in = _opt_count(body, "expires_in", "token", DEFAULT_TOKEN_LIFETIME_S)
    return token, expires_in


def parse_data_map(body: Any) -> DataMap:
    what = "Data Map"
    fields = []
    for raw in _req(body, "fields", list, what):
        fields.append(
            DataMapField(
                name=_req(raw, "name", str, what),
                map_to=_req(raw, "mapTo", str, what),
                type=_opt(raw, "type", str, what, "string"),
                is_identifier=_opt(raw, "isIdentifier", bool, what, False),
            )
        )
    return DataMap(id=_req_id(body, "id", what), name=_opt(body, "name", str, what, ""), fields=tuple(fields))


def parse_folder(body: Any) -> Folder:
    what = "Folder"
    return Folder(
        id=_req_id(body, "id", what),
        name=_req(body, "name", str, what),
        parent_id=_opt_id(body, "parentId", what),
    )


def parse_template(raw: Any) -> Template:
    """One template of a folder listing. Its ``objId`` is kept as text: the marketing platform
    names templates by that text (a numeric objId ``1001`` is the template ``"1001"``)."""
    what = "Folder/Objects"
    fields = _opt(raw, "fields", list, what, [])
    if not all(isinstance(f, str) for f in fields):
        raise MalformedResponse("The Folder/Objects reply's 'fields' should be a list of field names.")
    return Template(
        obj_id=str(_req_id(raw, "objId", what)),
        display_name=_req(raw, "displayName", str, what),
        type_id=_opt(raw, "typeId", str, what, ""),
        subject=_opt(raw, "subject", str, what, ""),
        fields=tuple(fields),
        modified=_opt(raw, "modified", str, what, ""),
    )


def parse_folder_page(body: Any) -> tuple[list[Template], int]:
    what = "Folder/Objects"
    objects = [parse_template(o) for o in _req(body, "objects", list, what)]
    return objects, _req_count(body, "totalCount", what)


def import_request(*, file_name: str, file_data_b64: str, prop_map_id: ObjId, list_name: str) -> dict:
    return {"fileName": file_name, "fileData": file_data_b64, "propMapId": prop_map_id, "listName": list_name}


def parse_import_id(body: Any) -> ObjId:
    return _req_id(body, "importId", "Import")


def parse_import(body: Any) -> ImportStatus:
    what = "Import"
    rejected = tuple(
        Rejection(row=_req_count(r, "row", what), reason=_req(r, "reason", str, what))
        for r in _opt(body, "rejected", list, what, [])
    )
    status = _req(body, "status", str, what)
    if status not in IMPORT_PENDING + IMPORT_DONE:
        raise MalformedResponse(f"The Import reply's 'status' is not one the contract knows: {status!r}.")
    reason = None
    if status == "FAILED":
        raw = body.get("reason", body.get("message"))
        reason = raw if isinstance(raw, str) and raw.strip() else None
    return ImportStatus(
        import_id=_req_id(body, "importId", what),
        status=status,
        list_id=_opt_id(body, "listId", what),
        rows_read=_opt_count(body, "rowsRead", what),
        rows_accepted=_opt_count(body, "rowsAccepted", what),
        rejected=rejected,
        reason=reason,
    )


def campaign_request(
    *,
    name: str,
    cust_id: int,
    template_obj_id: ObjId,
    list_id: ObjId,
    prop_map_id: ObjId,
    folder_id: ObjId,
    start_time: dt.datetime,
) -> dict:
    """Body of ``POST EmailCampaign``: every id exactly as received (never converted)."""
    return {
        "CampName": name,
        "CustId": cust_id,
        "TypeId": "REGULAR",
        "TemplateObjId": template_obj_id,  # [assumed]
        "ToFilterId": list_id,
        "PropMapId": prop_map_id,
        "CampParam": {"sendSchedule": format_start_time(start_time)},
        "Obj": {"display_name": name, "type_id": "CampaignEmail", "parent_obj_id": folder_id},
    }


def campaign_action_request(action: str) -> dict:
    """Body of ``PUT EmailCampaign?id=`` [documented]: one of the ``ACTION_*`` values."""
    return {"CampAction": action}


# --- query strings -------------------------------------------------------------------------------
def id_query(obj_id: ObjId) -> dict:
    """Query of every read/update by id (``?id=``) [documented for Folder; assumed elsewhere]."""
    return {"id": obj_id}


def campaign_name_query(name: str) -> dict:
    """Query of the campaign look-up by name (``EmailCampaign?name=``) [assumed]."""
    return {"name": name}


def folder_objects_query(folder_id: ObjId, page_number: int, page_size: int) -> dict:
    """Query of one page of a folder's listing (1-based ``pageNumber``) [assumed]."""
    return {"id": folder_id, "pageNumber": page_number, "pageSize": page_size}


def parse_campaign_id(body: Any) -> ObjId:
    return _req_id(body, "campId", "EmailCampaign")


def parse_campaign(body: Any) -> Campaign:
    what = "EmailCampaign"
    status = _req(body, "status", str, what)
    if status not in CAMPAIGN_STATUSES:
        raise MalformedResponse(f"The EmailCampaign reply's 'status' is not one the contract knows: {status!r}.")
    obj = _opt(body, "Obj", dict, what, {})
    folder_id = _opt_id(obj, "parent_obj_id", what)
    if folder_id is None:
        folder_id = _opt_id(body, "folderId", what)
    return Campaign(
        camp_id=_req_id(body, "campId", what),
        cust_id=_req_id(body, "custId", what),
        name=_req(body, "CampName", str, what),
        status=status,
        recipient_count=_opt_count(body, "recipientCount", what),
        camp_param=_opt(body, "CampParam", dict, what, {}),
        template_obj_id=_opt_id(body, "TemplateObjId", what),
        list_id=_opt_id(body, "ToFilterId", what),
        folder_id=folder_id,
    )


def parse_metrics(body: Any) -> CampaignMetrics:
    what = "Reports/EmailCampaign"
    counts = {key: _req_count(body, key, what) for key in METRIC_NAMES}
    return CampaignMetrics(
        camp_id=_req_id(body, "campId", what),
        as_of=parse_time(body.get("asOf"), what, "asOf"),
        counts=counts,
    )


def error_message(body: Any) -> str:
    """The human ``message`` of an error reply (or its ``error`` code), never the request."""
    if isinstance(body, Mapping):
        for key in ("message", "error_description", "error"):
            if isinstance(body.get(key), str) and body[key]:
                return body[key]
    return ""
