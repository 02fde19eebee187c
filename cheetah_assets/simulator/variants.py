"""The simulator's string-id variant: the same world, served the way a second, independent
implementation of the contract might serve it (``cheetah-sim --string-ids``, reset
``"stringIds": true``, ``SimulatorServer(string_ids=True)``).

Every variation is one the contract allows (../shared/cheetah-messaging-api.md: ids are opaque
and may be strings; replies may carry fields the contract does not name):

* every id the API hands out or echoes (``campId``, ``listId``, ``importId``, ``objId``, folder,
  Data Map and ``custId``, ``ToFilterId``, ``TemplateObjId``, ``parent_obj_id``...) is a string:
  list and import ids are not even numeric (``"list-9001"``, ``"import-1"``: some accounts know a
  list by a name), the others are numeric strings (``"5001"``);
* every count (``rowsRead``, ``rowsAccepted``, ``recipientCount``, ``totalCount``, a rejected
  ``row``, the metric counts) is a numeric string;
* every reply object carries extra fields, and its keys come in another order (reversed).

Requests are read the other way round: an id this variant handed out must come back as the
string it was (a list id passed back as a number is a 400, proving the caller kept it as
received); ids the caller is configured with (``CustId``, ``PropMapId``, the folder) may come as
a number or a numeric string. Pure functions over JSON values; no state.
"""

from __future__ import annotations

from typing import Any, Mapping

from ..cheetah.contract import METRIC_NAMES
from .errors import SimError

#: Keys whose values are ids, wherever they appear in a reply.
ID_KEYS = frozenset({
    "id", "parentId", "objId", "importId", "listId", "campId", "custId", "TemplateObjId", "ToFilterId",
    "PropMapId", "propMapId", "folderId", "parent_obj_id",
})
#: Ids served as non-numeric strings: key -> prefix (``9001`` -> ``"list-9001"``).
PREFIXES: dict[str, str] = {"listId": "list-", "ToFilterId": "list-", "importId": "import-"}
#: Keys whose values are counts, wherever they appear in a reply.
COUNT_KEYS = frozenset({"rowsRead", "rowsAccepted", "recipientCount", "totalCount", "row", *METRIC_NAMES})
#: Keys whose values are passed through untouched (the campaign's own settings, echoed).
OPAQUE_KEYS = frozenset({"CampParam"})
#: The unknown fields every reply object gains.
EXTRA_FIELDS: dict[str, Any] = {"x_implementation": "second", "x_links": [{"rel": "self"}], "x_version": 2}


def vary_reply(value: Any, *, extra: bool = True) -> Any:
    """A reply of the normal simulator as the string-id variant serves it."""
    if isinstance(value, list):
        return [vary_reply(v, extra=extra) for v in value]
    if not isinstance(value, Mapping):
        return value
    out: dict[str, Any] = {}
    for key in reversed(list(value)):
        v = value[key]
        if key in OPAQUE_KEYS:
            out[key] = v
        elif key in ID_KEYS and isinstance(v, int) and not isinstance(v, bool):
            out[key] = PREFIXES.get(key, "") + str(v)
        elif key in COUNT_KEYS and isinstance(v, int) and not isinstance(v, bool):
            out[key] = str(v)
        else:
            out[key] = vary_reply(v, extra=extra)
    if extra:
        out.update(EXTRA_FIELDS)
    return out


def vary_token_reply(value: Mapping[str, Any]) -> dict[str, Any]:
    """The token reply: extra fields and another key order, but the OAuth fields as they are
    (``expires_in`` stays a number: that reply's shape is the OAuth standard's, not Cheetah's)."""
    return {**{k: value[k] for k in reversed(list(value))}, **EXTRA_FIELDS}


def read_id(raw: str, key: str) -> int:
    """The simulator's number behind an id this variant handed out as ``raw``; 404 if none."""
    prefix = PREFIXES.get(key, "")
    digits = raw[len(prefix):] if raw.startswith(prefix) else ""
    if not digits.isdigit():
        raise SimError(404, f"Unknown {key} {raw!r}.")
    return int(digits)


def _handed_out(body: Mapping[str, Any], key: str) -> int:
    """An id this variant handed out (as a string): its number, or 400/404."""
    v = body.get(key)
    if not isinstance(v, str):
        raise SimError(400, f"'{key}' must be the id as it was handed out (a string), got {type(v).__name__}.")
    return read_id(v, key)


def _configured(body: Mapping[str, Any], key: str) -> Any:
    """An id the caller is configured with: a number, or the same number as a string."""
    v = body.get(key)
    if isinstance(v, str) and v.isdigit():
        return int(v)
    return v  # anything else is the normal validation's to refuse


def read_campaign_request(body: Any) -> Any:
    """``POST EmailCampaign``'s body as the normal simulator reads it."""
    if not isinstance(body, Mapping):
        return body
    out = dict(body)
    if "ToFilterId" in out:
        out["ToFilterId"] = _handed_out(out, "ToFilterId")
    for key in ("CustId", "PropMapId"):
        if key in out:
            out[key] = _configured(out, key)
    if isinstance(out.get("Obj"), Mapping) and "parent_obj_id" in out["Obj"]:
        out["Obj"] = {**out["Obj"], "parent_obj_id": _configured(out["Obj"], "parent_obj_id")}
    return out


def read_import_request(body: Any) -> Any:
    """``POST Import``'s body as the normal simulator reads it."""
    if not isinstance(body, Mapping) or "propMapId" not in body:
        return body
    return {**body, "propMapId": _configured(body, "propMapId")}
