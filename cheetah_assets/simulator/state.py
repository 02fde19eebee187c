"""The simulator's in-memory world: accounts, tokens, Data Maps, folders and templates, recipient
lists and their import queue, campaigns, the simulated clock, faults, and what was sent.

Pure model, no HTTP: every operation is a method of :class:`SimState` that takes plain values
(parsed JSON bodies, query values) and returns a JSON-ready ``dict`` or raises :class:`SimError`
carrying the HTTP status and ``message`` the API replies with.  All methods are thread-safe (one
re-entrant lock); the only slow work, decoding and parsing an import file, runs outside it.

Times: the simulated clock (``now``) is frozen unless moved and drives campaign sends and
metrics; token lifetimes and the rate limit use the wall clock (``time.monotonic``).
"""

from __future__ import annotations

import base64
import binascii
import collections
import csv
import dataclasses
import datetime as dt
import hmac
import io
import itertools
import math
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..cheetah.contract import (
    ACTION_APPROVE,
    ACTION_LAUNCH,
    ACTION_PAUSE,
    ACTION_RESUME,
    ALREADY_LAUNCHED_MESSAGE,
    DEFAULT_TOKEN_LIFETIME_S,
    INVALID_GRANT_ERROR,
    IP_NOT_WHITELISTED_ERROR,
    MAX_IMPORT_BYTES,
    MAX_IMPORT_ROWS,
    MAX_PAGE_SIZE,
    NAME_EXISTS_MESSAGE,
)
from .metrics import metrics_at

UTC = dt.timezone.utc

#: Fault kinds of ``POST /_sim/faults``. ``unapplied``: a normal-looking 200 reply (for a
#: campaign action, the campaign as if the action had been applied) but nothing is applied.
FAULT_KINDS = ("status", "delay", "drop", "apply_then_drop", "malformed", "unapplied")
#: How many requests ``/_sim/requests`` keeps.
REQUEST_LOG_SIZE = 1_000
#: Query keys whose values are never recorded in the request log.
_SECRET_QUERY_KEYS = {"username", "password", "client_id", "client_secret", "access_token", "token"}

FIRST_CAMP_ID = 5001
FIRST_LIST_ID = 9001
FIRST_IMPORT_ID = 1

# --- the demo account (docs/simulator.md) -------------------------------------------------------
DEMO_DATA_MAP: dict[str, Any] = {
    "id": 77,
    "name": "Optimove customers",
    "fields": [
        {"name": "EMAIL_ADDR", "mapTo": "email", "type": "email", "isIdentifier": True},
        {"name": "FNAME", "mapTo": "first_name", "type": "string", "isIdentifier": False},
        {"name": "LNAME", "mapTo": "last_name", "type": "string", "isIdentifier": False},
        {"name": "FAV_DEPT", "mapTo": "fav_dept", "type": "string", "isIdentifier": False},
        {"name": "CITY", "mapTo": "city", "type": "string", "isIdentifier": False},
    ],
}
DEMO_FOLDER: dict[str, Any] = {"id": 4242, "name": "Optimove", "parentId": 1}
DEMO_TEMPLATES: list[dict[str, Any]] = [
    {"objId": "1001", "displayName": "Winter sale", "subject": "{FNAME}, the winter sale is on in {FAV_DEPT}",
     "fields": ["FNAME", "FAV_DEPT"]},
    {"objId": "1002", "displayName": "Welcome", "subject": "Welcome aboard, {FNAME}", "fields": ["FNAME"]},
    {"objId": "1003", "displayName": "Newsletter", "subject": "This month's newsletter", "fields": []},
    {"objId": "1004", "displayName": "Thank you", "subject": "Thank you, {FNAME} {LNAME}",
     "fields": ["FNAME", "LNAME"]},
    {"objId": "1005", "displayName": "Department picks", "subject": "New in {FAV_DEPT}", "fields": ["FAV_DEPT"]},
    {"objId": "1006", "displayName": "Local events", "subject": "{FNAME}, what's on in {CITY}",
     "fields": ["FNAME", "CITY"]},
]
DEMO_ACCOUNT: dict[str, Any] = {
    "consumerKey": "demo-consumer-key",
    "consumerSecret": "demo-consumer-secret",
    "clientId": "demo-client-id",
    "custId": 1234,
    "propMapId": 77,
    "tokenTtl": DEFAULT_TOKEN_LIFETIME_S,
    "rateLimit": 20,
}


class SimError(Exception):
    """An API error reply: HTTP ``status``, a one-sentence ``message``, optionally an OAuth
    ``error`` code, extra reply headers and extra body keys."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.error = error
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self) -> dict[str, Any]:
        """The JSON error body: always ``message``, plus ``error`` when set."""
        out: dict[str, Any] = {}
        if self.error:
            out["error"] = self.error
        out["message"] = self.message
        out.update(self.extra)
        return out


# --- small helpers ---------------------------------------------------------------------------------
def iso(when: dt.datetime | None) -> str | None:
    """``2026-11-23T15:00:00Z`` (UTC, second precision unless the time has microseconds)."""
    if when is None:
        return None
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_iso(raw: Any, key: str) -> dt.datetime:
    """An ISO time as an aware UTC datetime (no offset = UTC); 400 naming ``key`` otherwise."""
    if not isinstance(raw, str):
        raise SimError(400, f"'{key}' must be an ISO time string.")
    try:
        value = dt.datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise SimError(400, f"'{key}' is not an ISO time: {raw!r}.") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


_MISSING = object()


def _get(body: Mapping[str, Any], key: str, typ: type | tuple[type, ...], *, where: str = "",
         default: Any = _MISSING) -> Any:
    """``body[key]`` checked against ``typ`` (``bool`` is not an ``int``); 400 naming the key."""
    label = f"{where}.{key}" if where else key
    if key not in body or body[key] is None:
        if default is _MISSING:
            raise SimError(400, f"'{label}' is required.")
        return default
    val = body[key]
    types = typ if isinstance(typ, tuple) else (typ,)
    ok = isinstance(val, types) and not (isinstance(val, bool) and bool not in types)
    if float in types and isinstance(val, int) and not isinstance(val, bool):
        ok = True
    if not ok:
        names = " or ".join({int: "an integer", str: "a string", bool: "a boolean", float: "a number",
                             dict: "an object", list: "a list"}.get(t, t.__name__) for t in types)
        raise SimError(400, f"'{label}' must be {names}, got {type(val).__name__}.")
    return val


def _object(body: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise SimError(400, f"The {what} body must be a JSON object.")
    return body


def _valid_email(value: str) -> bool:
    if value.count("@") != 1 or any(c.isspace() for c in value):
        return False
    local, domain = value.split("@")
    return bool(local) and bool(domain) and not domain.startswith(".") and not domain.endswith(".")


# --- the model ---------------------------------------------------------------------------------------
@dataclass
class Account:
    account_id: int
    consumer_key: str
    consumer_secret: str
    client_id: str
    cust_id: int
    prop_map_id: int
    folder_id: int
    token_ttl: int
    rate_limit: int  # requests per second; 0 = unlimited
    hits: collections.deque = field(default_factory=collections.deque)

    def __repr__(self) -> str:  # never the credentials
        return f"Account(account_id={self.account_id}, cust_id={self.cust_id})"


@dataclass
class Token:
    account_id: int
    expires_at: float  # time.monotonic()


@dataclass
class Folder:
    id: int
    name: str
    parent_id: int | None
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class RecipientList:
    list_id: int
    cust_id: int
    name: str
    prop_map_id: int
    rows: dict[str, dict[str, str]] = field(default_factory=dict)  # identifier -> other fields


@dataclass
class ParsedFile:
    """The outcome of reading an import file (pure; see :func:`parse_import_file`)."""

    rows: dict[str, dict[str, str]]  # identifier -> fields, later rows win
    rows_read: int
    rows_accepted: int
    rejected: list[dict[str, Any]]


@dataclass
class ImportJob:
    import_id: int
    cust_id: int
    list_id: int
    prop_map_id: int
    file_name: str
    status: str = "QUEUED"
    parsed: ParsedFile | None = None
    failure: str | None = None

    def reply(self) -> dict[str, Any]:
        done = self.status == "COMPLETED"
        out: dict[str, Any] = {
            "importId": self.import_id,
            "status": self.status,
            "listId": self.list_id,
            "rowsRead": self.parsed.rows_read if done and self.parsed else 0,
            "rowsAccepted": self.parsed.rows_accepted if done and self.parsed else 0,
            "rejected": list(self.parsed.rejected) if done and self.parsed else [],
        }
        if self.status == "FAILED":
            out["reason"] = self.failure
        return out


@dataclass
class Campaign:
    camp_id: int
    cust_id: int
    name: str
    folder_id: int
    template_obj_id: str
    list_id: int
    prop_map_id: int
    type_id: str
    camp_param: dict[str, Any]
    obj: dict[str, Any]
    start_time: dt.datetime
    created_at: dt.datetime
    status: str = "DRAFT"
    paused: bool = False
    eligible_at: dt.datetime | None = None  # when it last became APPROVED and unpaused
    send_count: int = 0
    sent_at: dt.datetime | None = None
    recipients: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Fault:
    fault_id: int
    method: str
    path: str
    kind: str
    status: int
    retry_after: int | None
    delay: float
    times: int | None  # None = until cleared
    after: int
    body: str | None = None  # the raw reply of a "malformed" fault
    seen: int = 0
    fired: int = 0

    @property
    def armed(self) -> bool:
        return self.times is None or self.fired < self.times

    def matches(self, method: str, path: str) -> bool:
        if self.method != "*" and self.method != method.upper():
            return False
        if self.path == "*":
            return True
        if self.path.endswith("*"):
            return path.startswith(self.path[:-1])
        return self.path == path

    def reply(self) -> dict[str, Any]:
        return {
            "faultId": self.fault_id, "method": self.method, "path": self.path, "kind": self.kind,
            "status": self.status, "retryAfter": self.retry_after, "delay": self.delay,
            "times": self.times, "after": self.after, "body": self.body, "seen": self.seen,
            "fired": self.fired, "armed": self.armed,
        }


@dataclass(frozen=True)
class FiredFault:
    """What the HTTP layer must do for one request (a snapshot, safe outside the lock)."""

    fault_id: int
    kind: str
    status: int
    retry_after: int | None
    delay: float
    body: str | None = None


# --- import files --------------------------------------------------------------------------------
def _check_header(header: list[str], data_map: Mapping[str, Any]) -> list[str]:
    """The header's field names, or 400 naming the first bad header cell."""
    fields = data_map["fields"]
    names = {f["name"] for f in fields}
    by_map_to = {f["mapTo"]: f["name"] for f in fields}
    by_lower = {f["name"].lower(): f["name"] for f in fields}
    ident = next(f["name"] for f in fields if f.get("isIdentifier"))
    cols = [h.strip() for h in header]
    seen: set[str] = set()
    for i, col in enumerate(cols, start=1):
        if not col:
            raise SimError(400, f"Column {i} of the header row is empty; every column needs a Data Map field name.")
        if col not in names:
            if col in by_map_to:
                raise SimError(400, f"Header '{col}' is a Map To name, not a Data Map field name: use "
                                    f"'{by_map_to[col]}'.")
            if col.lower() in by_lower:
                raise SimError(400, f"Header '{col}' is not a Data Map field name (names are case-sensitive): "
                                    f"use '{by_lower[col.lower()]}'.")
            raise SimError(400, f"Header '{col}' is not a field of Data Map {data_map['id']}.")
        if col in seen:
            raise SimError(400, f"Header '{col}' appears more than once.")
        seen.add(col)
    if ident not in seen:
        raise SimError(400, f"The header row has no column for the identifier field '{ident}'.")
    return cols


def parse_import_file(file_data_b64: str, data_map: Mapping[str, Any]) -> ParsedFile | str:
    """Decode and read an import file against ``data_map``.

    Returns the parsed rows, or a failure reason (``str``) when the file is unreadable (the
    import then ends FAILED). Raises ``SimError`` 413 past the size/row limits and 400 for a
    header that does not name Data Map fields (the import is refused outright).
    Rows are numbered from 1 (the first data row); blank lines are skipped and not numbered.
    """
    if (len(file_data_b64) * 3) // 4 - 2 > MAX_IMPORT_BYTES:
        raise SimError(413, f"The import file is larger than {MAX_IMPORT_BYTES} bytes.")
    try:
        raw = base64.b64decode(file_data_b64, validate=True)
    except (binascii.Error, ValueError):
        return "fileData is not valid Base64."
    if len(raw) > MAX_IMPORT_BYTES:
        raise SimError(413, f"The import file is larger than {MAX_IMPORT_BYTES} bytes.")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return "The file is not UTF-8 text."
    try:
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        header = next(reader, None)
        if not header:
            return "The file is empty: it has no header row."
        cols = _check_header(header, data_map)
        data_rows = [row for row in reader if row]
    except csv.Error as exc:
        return f"The file is not readable CSV: {exc}."
    if len(data_rows) > MAX_IMPORT_ROWS:
        raise SimError(413, f"The import file has {len(data_rows)} rows; at most {MAX_IMPORT_ROWS} are allowed.")

    ident = next(f for f in data_map["fields"] if f.get("isIdentifier"))
    id_pos = cols.index(ident["name"])
    is_email = ident.get("type") == "email"
    rows: dict[str, dict[str, str]] = {}
    rejected: list[dict[str, Any]] = []
    accepted = 0
    width = len(cols)
    for n, row in enumerate(data_rows, start=1):
        if len(row) != width:
            rejected.append({"row": n, "reason": f"wrong number of columns ({len(row)}, expected {width})"})
            continue
        identifier = row[id_pos].strip()
        if not identifier or (is_email and not _valid_email(identifier)):
            rejected.append({"row": n, "reason": "invalid identifier"})
            continue
        accepted += 1
        rows.pop(identifier, None)  # a later duplicate wins and moves to the end
        rows[identifier] = {c: v for j, (c, v) in enumerate(zip(cols, row)) if j != id_pos}
    return ParsedFile(rows=rows, rows_read=len(data_rows), rows_accepted=accepted, rejected=rejected)


# --- the state -----------------------------------------------------------------------------------------
class SimState:
    """The whole simulated Cheetah Messaging world (see the module docstring)."""

    def __init__(self, seed: str = "demo", now: dt.datetime | None = None, *,
                 rate_limit: int | None = None, token_ttl: int | None = None, live_clock: bool = False,
                 string_ids: bool = False, monotonic: Callable[[], float] = time.monotonic):
        self._lock = threading.RLock()
        self._monotonic = monotonic
        #: False: the simulated clock is frozen unless moved. True: it also runs with real time
        #: (the embedded demo), still movable forward by the admin routes.
        self.live_clock = live_clock
        #: What a reset without ``string_ids`` returns to (``cheetah-sim --string-ids``).
        self.default_string_ids = string_ids
        self.reset(seed, now, rate_limit=rate_limit, token_ttl=token_ttl)

    @property
    def _now(self) -> dt.datetime:
        if self.live_clock:
            return self._clock_base + dt.timedelta(seconds=self._monotonic() - self._clock_mono)
        return self._clock_base

    def _set_now(self, when: dt.datetime) -> None:
        self._clock_base = when
        self._clock_mono = self._monotonic()

    # ----------------------------------------------------------------- admin: reset and accounts
    def reset(self, seed: str = "demo", now: dt.datetime | None = None, *,
              rate_limit: int | None = None, token_ttl: int | None = None,
              live_clock: bool | None = None, string_ids: bool | None = None) -> dict[str, Any]:
        """Drop all state and re-create the demo account (``rate_limit``/``token_ttl`` override
        its defaults). ``seed`` also seeds the metric curves; ``now`` sets the clock (default:
        the real time, to the second); ``live_clock`` (default: unchanged) lets it run;
        ``string_ids`` (default: the server's) serves the string-id variant (:mod:`.variants`)."""
        with self._lock:
            #: Serve the string-id variant (ids and counts as strings, extra fields, key order).
            self.string_ids = self.default_string_ids if string_ids is None else string_ids
            if live_clock is not None:
                self.live_clock = live_clock
            #: Bumped by every reset (a request delayed across a reset is dropped, not applied).
            self.generation = getattr(self, "generation", 0) + 1
            self.seed = str(seed)
            start = (now or dt.datetime.now(UTC)).astimezone(UTC)
            self._set_now(start if now is not None else start.replace(microsecond=0))
            self.whitelist_open = True
            self.accounts: dict[int, Account] = {}
            self.tokens: dict[str, Token] = {}
            self.data_maps: dict[int, dict[str, Any]] = {}
            self.folders: dict[int, Folder] = {}
            self.lists: dict[int, RecipientList] = {}
            self.imports: dict[int, ImportJob] = {}
            self.campaigns: dict[int, Campaign] = {}
            self.faults: list[Fault] = []
            self.request_log: collections.deque = collections.deque(maxlen=REQUEST_LOG_SIZE)
            self.counts: collections.Counter = collections.Counter()  # (method path, status) -> n
            self.total_requests = 0
            self.dropped_requests = 0
            self.faults_fired = 0
            self._ids = {
                "account": itertools.count(1),
                "camp": itertools.count(FIRST_CAMP_ID),
                "list": itertools.count(FIRST_LIST_ID),
                "import": itertools.count(FIRST_IMPORT_ID),
                "fault": itertools.count(1),
                "request": itertools.count(1),
            }
            demo = dict(DEMO_ACCOUNT)
            if rate_limit is not None:
                demo["rateLimit"] = rate_limit
            if token_ttl is not None:
                demo["tokenTtl"] = token_ttl
            self.add_account(demo)
            return {"seed": self.seed, "now": iso(self._now), "liveClock": self.live_clock,
                    "stringIds": self.string_ids}

    def add_account(self, body: Any) -> dict[str, Any]:
        """``POST /_sim/accounts``: an account; every key defaults to the demo account's value.

        The Data Map and folder are registered by id (an existing one is updated; a folder keeps
        its templates), and the templates (default: the demo templates) are added to the folder.
        """
        body = _object(body, "account")
        with self._lock:
            d = DEMO_ACCOUNT
            key = _get(body, "consumerKey", str, default=d["consumerKey"])
            if any(a.consumer_key == key for a in self.accounts.values()):
                raise SimError(400, "An account with this consumer key exists already.")
            data_map = self._check_data_map(_get(body, "dataMap", dict, default=DEMO_DATA_MAP))
            prop_map_id = _get(body, "propMapId", int, default=data_map["id"])
            if prop_map_id != data_map["id"]:
                raise SimError(400, "'propMapId' must be the id of 'dataMap'.")
            folder_body = _get(body, "folder", dict, default=DEMO_FOLDER)
            folder_id = _get(folder_body, "id", int, where="folder")
            folder_name = _get(folder_body, "name", str, where="folder")
            parent_id = _get(folder_body, "parentId", int, where="folder", default=None)
            templates = [self._check_template(t, i) for i, t in
                         enumerate(_get(body, "templates", list, default=DEMO_TEMPLATES))]
            ttl = _get(body, "tokenTtl", int, default=d["tokenTtl"])
            rate = _get(body, "rateLimit", int, default=d["rateLimit"])
            if ttl < 1:
                raise SimError(400, "'tokenTtl' must be at least 1 second.")
            if rate < 0:
                raise SimError(400, "'rateLimit' must be >= 0 (0 = unlimited).")
            account = Account(
                account_id=next(self._ids["account"]),
                consumer_key=key,
                consumer_secret=_get(body, "consumerSecret", str, default=d["consumerSecret"]),
                client_id=_get(body, "clientId", str, default=d["clientId"]),
                cust_id=_get(body, "custId", int, default=d["custId"]),
                prop_map_id=prop_map_id,
                folder_id=folder_id,
                token_ttl=ttl,
                rate_limit=rate,
            )
            self.data_maps[data_map["id"]] = data_map
            folder = self.folders.get(folder_id)
            if folder is None:
                folder = self.folders[folder_id] = Folder(folder_id, folder_name, parent_id)
            else:
                folder.name, folder.parent_id = folder_name, parent_id
            self._put_templates(folder, templates)
            self.accounts[account.account_id] = account
            return {"accountId": account.account_id, "custId": account.cust_id, "propMapId": prop_map_id,
                    "folderId": folder_id, "tokenTtl": ttl, "rateLimit": rate}

    @staticmethod
    def _check_data_map(raw: Mapping[str, Any]) -> dict[str, Any]:
        dm_id = _get(raw, "id", int, where="dataMap")
        fields = []
        for i, f in enumerate(_get(raw, "fields", list, where="dataMap")):
            where = f"dataMap.fields[{i}]"
            f = _object(f, where)
            fields.append({
                "name": _get(f, "name", str, where=where),
                "mapTo": _get(f, "mapTo", str, where=where),
                "type": _get(f, "type", str, where=where, default="string"),
                "isIdentifier": _get(f, "isIdentifier", bool, where=where, default=False),
            })
        if sum(f["isIdentifier"] for f in fields) != 1:
            raise SimError(400, "'dataMap.fields' must mark exactly one field as the identifier.")
        if len({f["name"] for f in fields}) != len(fields):
            raise SimError(400, "'dataMap.fields' names a field twice.")
        return {"id": dm_id, "name": _get(raw, "name", str, where="dataMap", default=""), "fields": fields}

    @staticmethod
    def _check_template(raw: Any, i: int) -> dict[str, Any]:
        where = f"templates[{i}]"
        raw = _object(raw, where)
        obj_id = _get(raw, "objId", (str, int), where=where)
        fields = _get(raw, "fields", list, where=where, default=[])
        if not all(isinstance(x, str) for x in fields):
            raise SimError(400, f"'{where}.fields' must be a list of field names.")
        return {
            "objId": str(obj_id),
            "displayName": _get(raw, "displayName", str, where=where),
            "typeId": _get(raw, "typeId", str, where=where, default="CampaignEmail"),
            "subject": _get(raw, "subject", str, where=where, default=""),
            "fields": list(fields),
        }

    def _put_templates(self, folder: Folder, templates: list[dict[str, Any]]) -> None:
        for t in templates:
            folder.templates[t["objId"]] = {**t, "modified": iso(self._now)}

    def add_templates(self, body: Any) -> dict[str, Any]:
        """``POST /_sim/templates {"folderId", "templates": [...]}`` (same objId = replaced)."""
        body = _object(body, "templates")
        folder_id = _get(body, "folderId", int)
        templates = [self._check_template(t, i) for i, t in enumerate(_get(body, "templates", list))]
        with self._lock:
            folder = self.folders.get(folder_id)
            if folder is None:
                raise SimError(404, f"Unknown folder {folder_id}.")
            self._put_templates(folder, templates)
            return {"folderId": folder_id, "added": len(templates), "totalCount": len(folder.templates)}

    def set_whitelist(self, body: Any) -> dict[str, Any]:
        """``POST /_sim/whitelist {"open": bool}``."""
        body = _object(body, "whitelist")
        with self._lock:
            self.whitelist_open = _get(body, "open", bool)
            return {"open": self.whitelist_open}

    def expire_tokens(self) -> dict[str, Any]:
        """``POST /_sim/tokens/expire``: every issued token is expired from now on."""
        with self._lock:
            for tok in self.tokens.values():
                tok.expires_at = -math.inf
            return {"expired": len(self.tokens)}

    # ------------------------------------------------------------------------------------ clock
    @property
    def now(self) -> dt.datetime:
        with self._lock:
            return self._now

    def clock(self) -> dict[str, Any]:
        """``GET /_sim/clock``."""
        with self._lock:
            return {"now": iso(self._now), "live": self.live_clock}

    def set_clock(self, body: Any) -> dict[str, Any]:
        """``POST /_sim/clock {"now": ISO} | {"advanceSeconds": N}``: set or move the clock and send
        every campaign now due. It may be set back, but never before a send that happened (400):
        what went out stays out, and its metrics never run backwards."""
        body = _object(body, "clock")
        with self._lock:
            current = self._now
            if "now" in body and "advanceSeconds" in body:
                raise SimError(400, "Give either 'now' or 'advanceSeconds', not both.")
            if "now" in body:
                target = parse_iso(body["now"], "now")
            elif "advanceSeconds" in body:
                seconds = _get(body, "advanceSeconds", float)
                if seconds < 0:
                    raise SimError(400, "'advanceSeconds' must be >= 0: the simulated clock only moves forward.")
                target = current + dt.timedelta(seconds=seconds)
            else:
                raise SimError(400, "'now' or 'advanceSeconds' is required.")
            last_send = max((c.sent_at for c in self.campaigns.values() if c.sent_at), default=None)
            if last_send is not None and target < last_send:
                raise SimError(400, f"The simulated clock cannot be set before {iso(last_send)}: a campaign was "
                                    "sent then.")
            self._set_now(target)
            sent = self.process_due()
            return {"now": iso(target), "sent": sent}

    def process_due(self) -> list[int]:
        """Send every APPROVED, unpaused campaign whose start time has come (returns their ids).

        Called when the clock moves and before every request. ``sentAt`` is the later of the
        start time and the moment the campaign became eligible (approved or resumed); the
        recipients are the rows of the campaign's list at this moment.
        """
        with self._lock:
            now = self._now
            due = sorted(
                (c for c in self.campaigns.values()
                 if c.status == "APPROVED" and not c.paused and c.start_time <= now),
                key=lambda c: (c.start_time, c.camp_id),
            )
            for c in due:
                rows = self.lists[c.list_id].rows
                c.recipients = [{"identifier": k, "fields": dict(v)} for k, v in rows.items()]
                c.status = "SENT"
                c.send_count += 1
                c.sent_at = max(c.start_time, c.eligible_at or c.start_time)
            return [c.camp_id for c in due]

    # ---------------------------------------------------------------------------- auth and limits
    def issue_token(self, form: Mapping[str, str], basic: tuple[str, str] | None) -> tuple[dict[str, Any], Account]:
        """The password grant: the token reply and the account it is for. ``form`` is the decoded form body; ``basic`` the HTTP Basic
        (client id, client secret) if sent -- requests-oauthlib sends the client id that way
        unless told to put it in the body; either is accepted."""
        def bad(message: str, error: str = "invalid_request") -> SimError:
            return SimError(400, message, error=error)

        grant = form.get("grant_type")
        if not grant:
            raise bad("'grant_type' is required.")
        if grant != "password":
            raise bad("Only grant_type=password is supported.", "unsupported_grant_type")
        for key in ("username", "password"):
            if not form.get(key):
                raise bad(f"'{key}' is required.")
        presented = [c for c in (form.get("client_id"), basic[0] if basic else None) if c]
        if not presented:
            raise bad("'client_id' is required (in the form body or as the HTTP Basic user).")
        with self._lock:
            account = next((a for a in self.accounts.values()
                            if hmac.compare_digest(a.consumer_key.encode(), form["username"].encode())), None)
            if account is not None:
                self.check_rate(account)
            if (account is None
                    or not hmac.compare_digest(account.consumer_secret.encode(), form["password"].encode())
                    or not all(hmac.compare_digest(account.client_id.encode(), c.encode()) for c in presented)):
                raise SimError(400, "The consumer key, consumer secret or client identifier is not valid.",
                               error=INVALID_GRANT_ERROR)
            value = secrets.token_urlsafe(32)
            now = self._monotonic()
            self.tokens = {k: t for k, t in self.tokens.items() if t.expires_at > now - 3600}  # prune
            self.tokens[value] = Token(account.account_id, now + account.token_ttl)
            return {"access_token": value, "token_type": "bearer", "expires_in": account.token_ttl}, account

    def whitelist_error(self) -> SimError | None:
        """403 ``ip_not_whitelisted`` when the whitelist is closed, else ``None``."""
        if self.whitelist_open:
            return None
        return SimError(403, "This address is not on the account's IP whitelist.", error=IP_NOT_WHITELISTED_ERROR)

    def authenticate(self, authorization: str | None) -> Account:
        """The account of an ``Authorization: Bearer`` header; 401 when missing/unknown/expired."""
        if not authorization or not authorization.lower().startswith("bearer "):
            raise SimError(401, "An 'Authorization: Bearer <token>' header is required.")
        value = authorization[7:].strip()
        with self._lock:
            tok = self.tokens.get(value)
            if tok is None:
                raise SimError(401, "The access token is not valid.")
            if tok.expires_at <= self._monotonic():
                raise SimError(401, "The access token has expired.")
            return self.accounts[tok.account_id]

    def check_rate(self, account: Account) -> None:
        """Count one request against the account's per-second limit, or 429 with Retry-After."""
        if account.rate_limit <= 0:
            return
        with self._lock:
            now = self._monotonic()
            hits = account.hits
            while hits and hits[0] <= now - 1.0:
                hits.popleft()
            if len(hits) >= account.rate_limit:
                retry = max(1, math.ceil(hits[0] + 1.0 - now))
                raise SimError(429, f"Rate limit of {account.rate_limit} requests per second exceeded; "
                                    f"retry after {retry} s.", headers={"Retry-After": str(retry)})
            hits.append(now)

    # ----------------------------------------------------------------- Data Map, folder, templates
    def data_map(self, account: Account, map_id: int) -> dict[str, Any]:
        """``GET DataMap?id=``."""
        with self._lock:
            dm = self.data_maps.get(map_id)
            if dm is None:
                raise SimError(404, f"Unknown Data Map {map_id}.")
            return {"id": dm["id"], "name": dm["name"], "fields": [dict(f) for f in dm["fields"]]}

    def folder(self, account: Account, folder_id: int) -> dict[str, Any]:
        """``GET Folder?id=``."""
        with self._lock:
            f = self._folder(folder_id)
            return {"id": f.id, "name": f.name, "parentId": f.parent_id}

    def _folder(self, folder_id: int) -> Folder:
        f = self.folders.get(folder_id)
        if f is None:
            raise SimError(404, f"Unknown folder {folder_id}.")
        return f

    def folder_objects(self, account: Account, folder_id: int, page_number: int, page_size: int) -> dict[str, Any]:
        """``GET Folder/Objects?id=&pageNumber=&pageSize=`` (1-based pages, insertion order)."""
        if page_number < 1:
            raise SimError(400, "'pageNumber' must be >= 1.")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise SimError(400, f"'pageSize' must be between 1 and {MAX_PAGE_SIZE}.")
        with self._lock:
            f = self._folder(folder_id)
            start = (page_number - 1) * page_size
            page = list(itertools.islice(f.templates.values(), start, start + page_size))
            return {"objects": [{**t, "fields": list(t["fields"])} for t in page], "totalCount": len(f.templates)}

    # ------------------------------------------------------------------------------------ imports
    def create_import(self, account: Account, body: Any) -> dict[str, Any]:
        """``POST Import``: validate, read the file (outside the lock), queue the job."""
        body = _object(body, "Import")
        file_name = _get(body, "fileName", str)
        file_data = _get(body, "fileData", str)
        prop_map_id = _get(body, "propMapId", int)
        list_name = _get(body, "listName", str).strip()
        if not list_name:
            raise SimError(400, "'listName' must not be empty.")
        with self._lock:
            dm = self.data_maps.get(prop_map_id)
            if dm is None:
                raise SimError(404, f"Unknown Data Map {prop_map_id}.")
        parsed = parse_import_file(file_data, dm)  # slow part, no lock
        with self._lock:
            lst = next((x for x in self.lists.values() if x.cust_id == account.cust_id and x.name == list_name), None)
            if lst is not None and lst.prop_map_id != prop_map_id:
                raise SimError(400, f"List '{list_name}' belongs to Data Map {lst.prop_map_id}, not {prop_map_id}.")
            if lst is None:
                lst = RecipientList(next(self._ids["list"]), account.cust_id, list_name, prop_map_id)
                self.lists[lst.list_id] = lst
            job = ImportJob(next(self._ids["import"]), account.cust_id, lst.list_id, prop_map_id, file_name)
            if isinstance(parsed, str):
                job.failure = parsed
            else:
                job.parsed = parsed
            self.imports[job.import_id] = job
            return {"importId": job.import_id}

    def import_status(self, account: Account, import_id: int) -> dict[str, Any]:
        """``GET Import?id=``: each poll moves the job one step QUEUED→PROCESSING→COMPLETED/FAILED;
        the rows reach the list when it completes."""
        with self._lock:
            job = self.imports.get(import_id)
            if job is None or job.cust_id != account.cust_id:
                raise SimError(404, f"Unknown import {import_id}.")
            if job.status == "QUEUED":
                job.status = "PROCESSING"
            elif job.status == "PROCESSING":
                if job.parsed is None:
                    job.status = "FAILED"
                else:
                    rows = self.lists[job.list_id].rows
                    for k, v in job.parsed.rows.items():
                        rows.pop(k, None)
                        rows[k] = v
                    job.status = "COMPLETED"
            return job.reply()

    def list_reply(self, list_id: int | None = None, rows: bool = True) -> dict[str, Any]:
        """``GET /_sim/lists[?id=]``: the recipient lists and their current rows."""
        with self._lock:
            if list_id is not None and list_id not in self.lists:
                raise SimError(404, f"Unknown list {list_id}.")
            chosen = [self.lists[list_id]] if list_id is not None else list(self.lists.values())
            out = []
            for x in chosen:
                item: dict[str, Any] = {"listId": x.list_id, "listName": x.name, "custId": x.cust_id,
                                        "propMapId": x.prop_map_id, "rowCount": len(x.rows)}
                if rows:
                    item["rows"] = [{"identifier": k, "fields": dict(v)} for k, v in x.rows.items()]
                out.append(item)
            return {"lists": out}

    # ---------------------------------------------------------------------------------- campaigns
    def create_campaign(self, account: Account, body: Any) -> dict[str, Any]:
        """``POST EmailCampaign``: a DRAFT campaign (validation order: body, CustId, folder, name,
        template, list, Data Map, start time)."""
        body = _object(body, "EmailCampaign")
        name = _get(body, "CampName", str).strip()
        if not name:
            raise SimError(400, "'CampName' must not be empty.")
        cust_id = _get(body, "CustId", int)
        type_id = _get(body, "TypeId", str, default="REGULAR")
        template_id = _get(body, "TemplateObjId", str)
        list_id = _get(body, "ToFilterId", int)
        prop_map_id = _get(body, "PropMapId", int)
        camp_param = _get(body, "CampParam", dict)
        schedule = _get(camp_param, "sendSchedule", dict, where="CampParam")
        start_raw = _get(schedule, "startTime", str, where="CampParam.sendSchedule")
        tz_name = _get(schedule, "timeZone", str, where="CampParam.sendSchedule", default="UTC")
        obj = _get(body, "Obj", dict)
        folder_id = _get(obj, "parent_obj_id", int, where="Obj")
        _get(obj, "display_name", str, where="Obj", default=name)
        _get(obj, "type_id", str, where="Obj", default="CampaignEmail")
        try:
            tz = ZoneInfo(tz_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise SimError(400, f"'CampParam.sendSchedule.timeZone' is not a known time zone: {tz_name!r}.") from None
        try:
            start = dt.datetime.fromisoformat(start_raw.strip().replace("Z", "+00:00"))
        except ValueError:
            raise SimError(400, f"'CampParam.sendSchedule.startTime' is not an ISO time: {start_raw!r}.") from None
        if start.tzinfo is None:
            start = start.replace(tzinfo=tz)
        start = start.astimezone(UTC)
        with self._lock:
            if cust_id != account.cust_id:
                raise SimError(400, "Unknown CustId")
            self._folder(folder_id)
            if any(c.folder_id == folder_id and c.name == name for c in self.campaigns.values()):
                raise SimError(400, NAME_EXISTS_MESSAGE)
            if not any(template_id in f.templates for f in self.folders.values()):
                raise SimError(404, f"Unknown TemplateObjId {template_id}.")
            lst = self.lists.get(list_id)
            if lst is None or lst.cust_id != account.cust_id:
                raise SimError(404, f"Unknown ToFilterId {list_id}: no such list.")
            if prop_map_id not in self.data_maps:
                raise SimError(404, f"Unknown PropMapId {prop_map_id}.")
            if prop_map_id != lst.prop_map_id:
                raise SimError(400, f"PropMapId {prop_map_id} is not the Data Map of list {list_id} ({lst.prop_map_id}).")
            now = self._now
            if start < now:
                raise SimError(422, f"The start time {iso(start)} is before the current time {iso(now)}.")
            camp = Campaign(
                camp_id=next(self._ids["camp"]), cust_id=cust_id, name=name, folder_id=folder_id,
                template_obj_id=template_id, list_id=list_id, prop_map_id=prop_map_id, type_id=type_id,
                camp_param=dict(camp_param), obj=dict(obj), start_time=start, created_at=now,
            )
            self.campaigns[camp.camp_id] = camp
            return {"campId": camp.camp_id}

    def _campaign_reply(self, c: Campaign) -> dict[str, Any]:
        count = len(c.recipients) if c.send_count else len(self.lists[c.list_id].rows)
        return {
            "campId": c.camp_id, "custId": c.cust_id, "CampName": c.name, "status": c.status,
            "recipientCount": count, "CampParam": c.camp_param, "TypeId": c.type_id,
            "TemplateObjId": c.template_obj_id, "ToFilterId": c.list_id, "PropMapId": c.prop_map_id,
            "folderId": c.folder_id, "Obj": dict(c.obj), "paused": c.paused, "startTime": iso(c.start_time),
            "sentAt": iso(c.sent_at), "created": iso(c.created_at),
        }

    def _campaign(self, account: Account, camp_id: int) -> Campaign:
        c = self.campaigns.get(camp_id)
        if c is None or c.cust_id != account.cust_id:
            raise SimError(404, f"Unknown campaign {camp_id}.")
        return c

    def campaign(self, account: Account, camp_id: int) -> dict[str, Any]:
        """``GET EmailCampaign?id=``."""
        with self._lock:
            return self._campaign_reply(self._campaign(account, camp_id))

    def campaign_by_name(self, account: Account, name: str, folder_id: int | None = None) -> dict[str, Any]:
        """``GET EmailCampaign?name=[&folderId=]``: the campaign of that name in any status (the
        newest, should several folders hold one); 404 if none."""
        with self._lock:
            found = [c for c in self.campaigns.values()
                     if c.cust_id == account.cust_id and c.name == name
                     and (folder_id is None or c.folder_id == folder_id)]
            if not found:
                raise SimError(404, f"No campaign is named {name!r}.")
            return self._campaign_reply(max(found, key=lambda c: c.camp_id))

    def campaign_action(self, account: Account, camp_id: int, body: Any, *, apply: bool = True) -> dict[str, Any]:
        """``PUT EmailCampaign?id= {"CampAction": LAUNCH|APPROVE|PAUSE|RESUME}``. ``apply=False``
        (the ``unapplied`` fault): the reply shows the action done, but the campaign is unchanged."""
        body = _object(body, "EmailCampaign")
        action = _get(body, "CampAction", str).upper()
        with self._lock:
            c = self._campaign(account, camp_id)
            if not apply:
                c = dataclasses.replace(c, camp_param=dict(c.camp_param), obj=dict(c.obj))
            if c.status == "CANCELLED":
                raise SimError(400, "Campaign has been cancelled.")
            if action == ACTION_LAUNCH:
                if c.status != "DRAFT":
                    raise SimError(400, ALREADY_LAUNCHED_MESSAGE)
                c.status = "LAUNCHED"
            elif action == ACTION_APPROVE:
                if c.status == "DRAFT":
                    raise SimError(400, "Campaign must be launched before it is approved.")
                if c.status != "LAUNCHED":
                    raise SimError(400, "Campaign has been approved already.")
                c.status = "APPROVED"
                c.eligible_at = self._now
            elif action == ACTION_PAUSE:
                if c.status not in ("LAUNCHED", "APPROVED"):
                    raise SimError(400, f"Only a launched or approved campaign can be paused; this one is {c.status}.")
                if c.paused:
                    raise SimError(400, "Campaign is paused already.")
                c.paused = True
            elif action == ACTION_RESUME:
                if not c.paused:
                    raise SimError(400, "Campaign is not paused.")
                c.paused = False
                c.eligible_at = self._now
            else:
                raise SimError(400, f"'CampAction' must be LAUNCH, APPROVE, PAUSE or RESUME, not {action!r}.")
            if apply:
                self.process_due()
            return self._campaign_reply(c)

    def delete_campaign(self, account: Account, camp_id: int) -> dict[str, Any]:
        """``DELETE EmailCampaign?id=``: CANCELLED (repeatable); 409 once sent."""
        with self._lock:
            c = self._campaign(account, camp_id)
            if c.status == "SENT":
                raise SimError(409, "Campaign has been sent already; it cannot be cancelled.")
            c.status = "CANCELLED"
            return self._campaign_reply(c)

    def report(self, account: Account, camp_id: int) -> dict[str, Any]:
        """``GET Reports/EmailCampaign?id=``: the metric curves at the simulated now."""
        with self._lock:
            c = self._campaign(account, camp_id)
            if c.sent_at is None:
                raise SimError(409, "Campaign has not been sent yet.")
            now = self._now
            counts = metrics_at(self.seed, c.camp_id, len(c.recipients), now - c.sent_at)
            return {"campId": c.camp_id, "asOf": iso(now), **counts}

    def sent(self, with_recipients: bool = True) -> dict[str, Any]:
        """``GET /_sim/sent``: every campaign that went out, and how many duplicate sends there
        are (campaigns sharing template, list and start time with another sent campaign)."""
        with self._lock:
            out = []
            groups: collections.Counter = collections.Counter()
            for c in sorted(self.campaigns.values(), key=lambda c: c.camp_id):
                if not c.send_count:
                    continue
                groups[(c.template_obj_id, c.list_id, c.start_time)] += 1
                item = {
                    "campId": c.camp_id, "name": c.name, "templateObjId": c.template_obj_id,
                    "listId": c.list_id, "startTime": iso(c.start_time), "status": c.status,
                    "sendCount": c.send_count, "sentAt": iso(c.sent_at), "recipientCount": len(c.recipients),
                }
                if with_recipients:
                    item["recipients"] = [{"identifier": r["identifier"], "fields": dict(r["fields"])}
                                          for r in c.recipients]
                out.append(item)
            duplicates = sum(n for n in groups.values() if n > 1)
            return {"campaigns": out, "duplicates": duplicates}

    # ------------------------------------------------------------------------------------- faults
    def add_fault(self, body: Any) -> dict[str, Any]:
        """``POST /_sim/faults``; returns ``{"faultId"}``."""
        body = _object(body, "fault")
        kind = _get(body, "kind", str)
        if kind not in FAULT_KINDS:
            raise SimError(400, f"'kind' must be one of {', '.join(FAULT_KINDS)}; got {kind!r}.")
        status = _get(body, "status", int, default=200 if kind in ("malformed", "unapplied") else 503)
        if not 100 <= status <= 599:
            raise SimError(400, "'status' must be an HTTP status code (100-599).")
        retry_after = _get(body, "retryAfter", int, default=None)
        delay = float(_get(body, "delay", float, default=0.0))
        times = None if ("times" in body and body["times"] is None) else _get(body, "times", int, default=1)
        after = _get(body, "after", int, default=0)
        if retry_after is not None and retry_after < 0:
            raise SimError(400, "'retryAfter' must be >= 0.")
        if delay < 0:
            raise SimError(400, "'delay' must be >= 0.")
        if times is not None and times < 1:
            raise SimError(400, "'times' must be >= 1 (or null: until cleared).")
        if after < 0:
            raise SimError(400, "'after' must be >= 0.")
        raw_body = _get(body, "body", str, default=None)
        if kind == "malformed" and raw_body is None:
            raise SimError(400, "'body' (the raw reply text) is required for a malformed fault.")
        method = _get(body, "method", str, default="*").upper()
        path = _get(body, "path", str, default="*")
        with self._lock:
            fault = Fault(next(self._ids["fault"]), method, path, kind, status, retry_after, delay, times, after,
                          raw_body)
            self.faults.append(fault)
            return {"faultId": fault.fault_id}

    def take_fault(self, method: str, path: str) -> FiredFault | None:
        """The fault to apply to this request, if any. Every armed fault that matches counts the
        request as seen; the first one past its ``after`` fires."""
        with self._lock:
            chosen = None
            for f in self.faults:
                if not f.armed or not f.matches(method, path):
                    continue
                f.seen += 1
                if chosen is None and f.seen > f.after:
                    f.fired += 1
                    self.faults_fired += 1
                    chosen = FiredFault(f.fault_id, f.kind, f.status, f.retry_after, f.delay, f.body)
            return chosen

    def clear_faults(self) -> dict[str, Any]:
        with self._lock:
            n = len(self.faults)
            self.faults.clear()
            return {"cleared": n}

    def fault_list(self) -> dict[str, Any]:
        """``GET /_sim/faults``: every fault (``armed`` tells whether it can still fire)."""
        with self._lock:
            return {"faults": [f.reply() for f in self.faults]}

    # ------------------------------------------------------------------------------ request log
    def record_request(self, method: str, path: str, query: str, status: int | None,
                       account: Account | None, fault: FiredFault | None, dropped: bool) -> None:
        """Log one API request (never bodies, headers or secrets; secret-looking query values are
        masked)."""
        if query:
            parts = []
            for part in query.split("&"):
                k, sep, _v = part.partition("=")
                parts.append(f"{k}=***" if sep and k.lower() in _SECRET_QUERY_KEYS else part)
            query = "&".join(parts)
        with self._lock:
            self.total_requests += 1
            self.dropped_requests += dropped
            self.counts[(f"{method} {path}", "dropped" if dropped else str(status))] += 1
            self.request_log.append({
                "seq": next(self._ids["request"]),
                "time": dt.datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "simTime": iso(self._now),
                "method": method, "path": path, "query": query, "status": status,
                "account": account.cust_id if account else None,
                "fault": fault.kind if fault else None, "dropped": dropped,
            })

    def requests(self) -> dict[str, Any]:
        """``GET /_sim/requests``: the last 1,000 API requests, oldest first."""
        with self._lock:
            return {"requests": list(self.request_log)}

    def stats(self) -> dict[str, Any]:
        """``GET /_sim/stats``: counts per ``METHOD path`` and status (``dropped`` for a
        connection closed without a reply), totals and faults fired."""
        with self._lock:
            per: dict[str, dict[str, int]] = {}
            for (route, status), n in sorted(self.counts.items()):
                per.setdefault(route, {})[status] = n
            return {"requests": per, "total": self.total_requests, "dropped": self.dropped_requests,
                    "faultsFired": self.faults_fired,
                    "faults": [{"faultId": f.fault_id, "fired": f.fired} for f in self.faults]}
