"""Replies of the Cheetah Messaging API into the values of :mod:`.records`.

Each ``parse_*`` takes a decoded JSON body and returns typed values, or raises
:class:`MalformedResponse` naming the reply and the offending key when the body does not have the
documented shape. Nothing is converted silently: a bool is never an int, an id stays as received
(:mod:`.ids`), a count is a whole number (or the same number as digits). :mod:`.contract`
re-exports every parser.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Mapping

from . import records
from .errors import MalformedResponse
from .ids import ObjId, is_id

#: A token's lifetime when its reply does not say ([documented]: eight hours).
DEFAULT_TOKEN_LIFETIME_S = 28_800


# --- shapes --------------------------------------------------------------------------------------
_COUNT_TEXT = re.compile(r"[0-9]+")


def _type_name(typ: type | tuple[type, ...]) -> str:
    return typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)


def _value(obj: Any, key: str, what: str) -> Any:
    """``obj[key]``, None when absent; ``obj`` must be a JSON object."""
    if not isinstance(obj, Mapping):
        raise MalformedResponse(f"The {what} reply is not a JSON object.")
    return obj.get(key)


def _present(obj: Any, key: str, what: str) -> Any:
    """``obj[key]``, which must be there (and not null)."""
    value = _value(obj, key, what)
    if value is None:
        raise MalformedResponse(f"The {what} reply has no '{key}'.")
    return value


def _req(obj: Any, key: str, typ: type | tuple[type, ...], what: str) -> Any:
    """``obj[key]``, exactly of type ``typ`` (a bool is never an int; nothing is converted)."""
    val = _present(obj, key, what)
    types = typ if isinstance(typ, tuple) else (typ,)
    if not isinstance(val, types) or (isinstance(val, bool) and bool not in types):
        raise MalformedResponse(f"The {what} reply's '{key}' should be {_type_name(typ)}, got {type(val).__name__}.")
    return val


def _opt(obj: Any, key: str, typ: type | tuple[type, ...], what: str, default: Any = None) -> Any:
    return default if _value(obj, key, what) is None else _req(obj, key, typ, what)


#: The largest whole float that is exactly one integer (beyond it, ``77.0`` may not be 77).
_EXACT_FLOAT = 2**53


def parse_id(value: Any, what: str, key: str) -> ObjId:
    """An id as received: a JSON number or a non-blank string (never a bool or null). A number
    written as a whole float (``77.0``, what some serialisers write) is that integer; any other
    float is malformed."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= _EXACT_FLOAT:
        return int(value)
    if not is_id(value):
        raise MalformedResponse(
            f"The {what} reply's '{key}' should be an id (a number or a non-empty string), got {value!r}."
        )
    return value


def _req_id(obj: Any, key: str, what: str) -> ObjId:
    return parse_id(_present(obj, key, what), what, key)


def _opt_id(obj: Any, key: str, what: str) -> ObjId | None:
    value = _value(obj, key, what)
    return None if value is None else parse_id(value, what, key)


def parse_count(value: Any, what: str, key: str) -> int:
    """A count: a non-negative JSON integer, the same number as a string of digits (``"12000"``)
    or as a whole float (``12000.0``, what some serialisers write); anything else (``12000.5``,
    ``"1.5"``, ``"-3"``, ``"12k"``, a bool, NaN or infinity) is malformed."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    if isinstance(value, str) and _COUNT_TEXT.fullmatch(value):
        return int(value)
    raise MalformedResponse(f"The {what} reply's '{key}' should be a non-negative whole number, got {value!r}.")


def _req_count(obj: Any, key: str, what: str) -> int:
    return parse_count(_present(obj, key, what), what, key)


def _opt_count(obj: Any, key: str, what: str, default: int | None = 0) -> Any:
    value = _value(obj, key, what)
    return default if value is None else parse_count(value, what, key)


def _status(obj: Any, vocabulary: tuple[str, ...], what: str) -> str:
    """``obj["status"]``, one of ``vocabulary`` in any ASCII case and spacing (``" Completed"``);
    a value the contract does not know is malformed."""
    raw = _req(obj, "status", str, what)
    status = raw.strip()
    status = status.upper() if status.isascii() else status
    if status not in vocabulary:
        raise MalformedResponse(f"The {what} reply's 'status' is not one the contract knows: {raw!r}.")
    return status


def _flag(obj: Any, key: str, what: str) -> bool:
    """A yes/no: ``true``/``false``, the same as text in any case, or ``1``/``0``; absent is no."""
    value = _value(obj, key, what)
    if value is None or isinstance(value, bool):
        return bool(value)
    if type(value) is int and value in (0, 1):
        return value == 1
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise MalformedResponse(f"The {what} reply's '{key}' should be true or false, got {value!r:.40}.")


# --- replies -------------------------------------------------------------------------------------
def parse_time(raw: Any, what: str, key: str) -> dt.datetime:
    if not isinstance(raw, str):
        raise MalformedResponse(f"The {what} reply's '{key}' should be an ISO time string.")
    try:
        return records.parse_start_time(raw)
    except ValueError as exc:
        raise MalformedResponse(f"The {what} reply's '{key}' is not an ISO time: {raw!r}.") from exc


def parse_token(body: Any) -> tuple[str, int]:
    """The access token and its lifetime in seconds. ``token_type`` may be absent or ``bearer`` in
    any case (what oauthlib then uses); anything else is refused here rather than failing every
    later call inside oauthlib."""
    token = _req(body, "access_token", str, "token")
    token_type = body.get("token_type", "bearer")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise MalformedResponse(
            f"The token reply's 'token_type' should be 'bearer' (or absent), got {token_type!r:.40}: "
            "the client only speaks bearer tokens."
        )
    expires_in = _opt_count(body, "expires_in", "token", DEFAULT_TOKEN_LIFETIME_S)
    return token, expires_in


def parse_data_map(body: Any) -> records.DataMap:
    """The Data Map. A field other than the identifier with no ``mapTo`` (null, absent or blank)
    maps to no customer column: it is left out (a template using it is then refused by name, as
    one using a field not in the Data Map). The identifier must be mapped."""
    what = "Data Map"
    fields = []
    for raw in _req(body, "fields", list, what):
        name = _req(raw, "name", str, what)
        is_identifier = _flag(raw, "isIdentifier", what)
        map_to = _opt(raw, "mapTo", str, what, "")
        if not map_to.strip():
            if is_identifier:
                raise MalformedResponse(f"The {what} reply's identifier field {name!r} has no 'mapTo' column.")
            continue
        fields.append(records.DataMapField(
            name=name, map_to=map_to, type=_opt(raw, "type", str, what, "string"), is_identifier=is_identifier,
        ))
    return records.DataMap(id=_req_id(body, "id", what), name=_opt(body, "name", str, what, ""), fields=tuple(fields))


def parse_folder(body: Any) -> records.Folder:
    what = "Folder"
    return records.Folder(
        id=_req_id(body, "id", what),
        name=_req(body, "name", str, what),
        parent_id=_opt_id(body, "parentId", what),
    )


def parse_template(raw: Any) -> records.Template:
    """One template of a folder listing. Its ``objId`` is kept as text: the marketing platform
    names templates by that text (a numeric objId ``1001`` is the template ``"1001"``)."""
    what = "Folder/Objects"
    fields = _opt(raw, "fields", list, what, [])
    if not all(isinstance(f, str) for f in fields):
        raise MalformedResponse("The Folder/Objects reply's 'fields' should be a list of field names.")
    return records.Template(
        obj_id=str(_req_id(raw, "objId", what)),
        display_name=_req(raw, "displayName", str, what),
        type_id=_opt(raw, "typeId", str, what, ""),
        subject=_opt(raw, "subject", str, what, ""),
        fields=tuple(fields),
        modified=_opt(raw, "modified", str, what, ""),
    )


def parse_folder_page(body: Any) -> tuple[list[records.Template], int]:
    what = "Folder/Objects"
    objects = [parse_template(o) for o in _req(body, "objects", list, what)]
    return objects, _req_count(body, "totalCount", what)


def parse_import_id(body: Any) -> ObjId:
    return _req_id(body, "importId", "Import")


def parse_import(body: Any) -> records.ImportStatus:
    what = "Import"
    rejected = tuple(
        records.Rejection(row=_req_count(r, "row", what), reason=_req(r, "reason", str, what))
        for r in _opt(body, "rejected", list, what, [])
    )
    status = _status(body, records.IMPORT_PENDING + records.IMPORT_DONE, what)
    reason = None
    if status == "FAILED":
        raw = body.get("reason", body.get("message"))
        reason = raw if isinstance(raw, str) and raw.strip() else None
    return records.ImportStatus(
        import_id=_req_id(body, "importId", what),
        status=status,
        list_id=_opt_id(body, "listId", what),
        rows_read=_opt_count(body, "rowsRead", what),
        rows_accepted=_opt_count(body, "rowsAccepted", what),
        rejected=rejected,
        reason=reason,
    )


def parse_campaign_id(body: Any) -> ObjId:
    return _req_id(body, "campId", "EmailCampaign")


def parse_campaign(body: Any) -> records.Campaign:
    what = "EmailCampaign"
    status = _status(body, records.CAMPAIGN_STATUSES, what)
    obj = _opt(body, "Obj", dict, what, {})
    folder_id = _opt_id(obj, "parent_obj_id", what)
    if folder_id is None:
        folder_id = _opt_id(body, "folderId", what)
    return records.Campaign(
        camp_id=_req_id(body, "campId", what),
        cust_id=_req_id(body, "custId", what),
        name=_req(body, "CampName", str, what),
        status=status,
        recipient_count=_opt_count(body, "recipientCount", what, None),  # absent: unknown, not 0
        camp_param=_opt(body, "CampParam", dict, what, {}),
        template_obj_id=_opt_id(body, "TemplateObjId", what),
        list_id=_opt_id(body, "ToFilterId", what),
        folder_id=folder_id,
    )


def parse_metrics(body: Any) -> records.CampaignMetrics:
    what = "Reports/EmailCampaign"
    counts = {key: _req_count(body, key, what) for key in records.METRIC_NAMES}
    return records.CampaignMetrics(
        camp_id=_req_id(body, "campId", what),
        as_of=parse_time(body.get("asOf"), what, "asOf"),
        counts=counts,
    )


#: Where an error reply carries its human message, by preference (keys compared in any case).
_MESSAGE_KEYS = ("message", "error_description", "error")


def error_message(body: Any, *, nested: bool = True) -> str:
    """The human message of an error reply, never the request: ``message``, ``error_description``
    or the ``error`` code, keys in any case (``Message``), or the same inside an ``error`` object
    (``{"error": {"message": ...}}``); "" when there is none."""
    if not isinstance(body, Mapping):
        return ""
    by_key: dict[str, Any] = {}
    for key, value in body.items():
        if isinstance(key, str):
            by_key.setdefault(key.lower(), value)
    for key in _MESSAGE_KEYS:
        value = by_key.get(key)
        if nested and isinstance(value, Mapping):
            value = error_message(value, nested=False)
        if isinstance(value, str) and value.strip():
            return value
    return ""
