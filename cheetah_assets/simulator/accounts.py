"""Accounts, Data Maps, folders and templates: the demo account (docs/simulator.md), the admin
routes that add more (``POST /_sim/accounts``, ``POST /_sim/templates``) and the contract's
read-only routes over them (``DataMap``, ``Folder``, ``Folder/Objects``)."""

from __future__ import annotations

import collections
import hmac
import itertools
import threading
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import Field, model_validator

from ..cheetah.contract import DEFAULT_TOKEN_LIFETIME_S, MAX_PAGE_SIZE
from .bodies import Body, TextId, bounded, read
from .clock import SimClock, iso
from .errors import SimError

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
class Folder:
    id: int
    name: str
    parent_id: int | None
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)


# --- request bodies -------------------------------------------------------------------------------
class DataMapFieldBody(Body):
    name: str
    map_to: str = Field(alias="mapTo")
    type: str = "string"
    is_identifier: bool = Field(False, alias="isIdentifier")


class DataMapBody(Body):
    id: int
    fields: list[DataMapFieldBody]
    name: str = ""

    @model_validator(mode="after")
    def _one_identifier_and_no_name_twice(self) -> "DataMapBody":
        if sum(f.is_identifier for f in self.fields) != 1:
            raise ValueError("'dataMap.fields' must mark exactly one field as the identifier.")
        if len({f.name for f in self.fields}) != len(self.fields):
            raise ValueError("'dataMap.fields' names a field twice.")
        return self

    def stored(self) -> dict[str, Any]:
        """The Data Map as the world keeps it (``id``, ``name``, ``fields`` with the API's keys)."""
        return {"id": self.id, "name": self.name, "fields": [f.model_dump(by_alias=True) for f in self.fields]}


class FolderBody(Body):
    id: int
    name: str
    parent_id: int | None = Field(None, alias="parentId")


class TemplateBody(Body):
    obj_id: TextId = Field(alias="objId")
    display_name: str = Field(alias="displayName")
    type_id: str = Field("CampaignEmail", alias="typeId")
    subject: str = ""
    fields: list[str] = []


class AccountBody(Body):
    """``POST /_sim/accounts``: every key defaults to the demo account's value."""

    consumer_key: str = Field(DEMO_ACCOUNT["consumerKey"], alias="consumerKey")
    data_map: DataMapBody = Field(default_factory=lambda: DataMapBody.model_validate(DEMO_DATA_MAP),
                                  alias="dataMap")
    prop_map_id: int | None = Field(None, alias="propMapId")  # default: the Data Map's id
    folder: FolderBody = Field(default_factory=lambda: FolderBody.model_validate(DEMO_FOLDER))
    templates: list[TemplateBody] = Field(
        default_factory=lambda: [TemplateBody.model_validate(t) for t in DEMO_TEMPLATES])
    token_ttl: Annotated[int, bounded("'tokenTtl' must be at least 1 second.", 1)] = Field(
        DEMO_ACCOUNT["tokenTtl"], alias="tokenTtl")
    rate_limit: Annotated[int, bounded("'rateLimit' must be >= 0 (0 = unlimited).", 0)] = Field(
        DEMO_ACCOUNT["rateLimit"], alias="rateLimit")
    consumer_secret: str = Field(DEMO_ACCOUNT["consumerSecret"], alias="consumerSecret")
    client_id: str = Field(DEMO_ACCOUNT["clientId"], alias="clientId")
    cust_id: int = Field(DEMO_ACCOUNT["custId"], alias="custId")

    @model_validator(mode="after")
    def _prop_map_is_the_data_map(self) -> "AccountBody":
        if self.prop_map_id is None:
            self.prop_map_id = self.data_map.id
        elif self.prop_map_id != self.data_map.id:
            raise ValueError("'propMapId' must be the id of 'dataMap'.")
        return self


class TemplatesBody(Body):
    """``POST /_sim/templates``."""

    folder_id: int = Field(alias="folderId")
    templates: list[TemplateBody]


# --- the directory ----------------------------------------------------------------------------------
class Directory:
    """The accounts, Data Maps and folders (with their templates) of the simulated world."""

    def __init__(self, lock: threading.RLock, clock: SimClock):
        self._lock = lock
        self._clock = clock
        self.accounts: dict[int, Account] = {}
        self.data_maps: dict[int, dict[str, Any]] = {}
        self.folders: dict[int, Folder] = {}
        self._account_ids = itertools.count(1)

    # ------------------------------------------------------------------------------ admin routes
    def add_account(self, body: Any) -> dict[str, Any]:
        """``POST /_sim/accounts``: an account; every key defaults to the demo account's value.

        The Data Map and folder are registered by id (an existing one is updated; a folder keeps
        its templates), and the templates (default: the demo templates) are added to the folder.
        """
        request = read(AccountBody, body, "account")
        with self._lock:
            if any(a.consumer_key == request.consumer_key for a in self.accounts.values()):
                raise SimError(400, "An account with this consumer key exists already.")
            folder_id = request.folder.id
            account = Account(
                account_id=next(self._account_ids),
                consumer_key=request.consumer_key,
                consumer_secret=request.consumer_secret,
                client_id=request.client_id,
                cust_id=request.cust_id,
                prop_map_id=request.data_map.id,
                folder_id=folder_id,
                token_ttl=request.token_ttl,
                rate_limit=request.rate_limit,
            )
            self.data_maps[request.data_map.id] = request.data_map.stored()
            folder = self.folders.get(folder_id)
            if folder is None:
                folder = self.folders[folder_id] = Folder(folder_id, request.folder.name, request.folder.parent_id)
            else:
                folder.name, folder.parent_id = request.folder.name, request.folder.parent_id
            self._put_templates(folder, request.templates)
            self.accounts[account.account_id] = account
            return {"accountId": account.account_id, "custId": account.cust_id, "propMapId": account.prop_map_id,
                    "folderId": folder_id, "tokenTtl": account.token_ttl, "rateLimit": account.rate_limit}

    def add_templates(self, body: Any) -> dict[str, Any]:
        """``POST /_sim/templates {"folderId", "templates": [...]}`` (same objId = replaced)."""
        request = read(TemplatesBody, body, "templates")
        with self._lock:
            folder = self.folder(request.folder_id)
            self._put_templates(folder, request.templates)
            return {"folderId": request.folder_id, "added": len(request.templates),
                    "totalCount": len(folder.templates)}

    def _put_templates(self, folder: Folder, templates: list[TemplateBody]) -> None:
        modified = iso(self._clock.now())
        for template in templates:
            folder.templates[template.obj_id] = {**template.model_dump(by_alias=True), "modified": modified}

    # ------------------------------------------------------------------------------- look-ups
    def account_with_key(self, consumer_key: str) -> Account | None:
        """The account of this consumer key (compared in constant time), if any."""
        with self._lock:
            return next((a for a in self.accounts.values()
                         if hmac.compare_digest(a.consumer_key.encode(), consumer_key.encode())), None)

    def folder(self, folder_id: int) -> Folder:
        """The folder of this id; 404 if none."""
        with self._lock:
            found = self.folders.get(folder_id)
            if found is None:
                raise SimError(404, f"Unknown folder {folder_id}.")
            return found

    def has_template(self, obj_id: str) -> bool:
        with self._lock:
            return any(obj_id in f.templates for f in self.folders.values())

    # ------------------------------------------------------------------ the contract's routes
    def data_map_reply(self, map_id: int) -> dict[str, Any]:
        """``GET DataMap?id=``."""
        with self._lock:
            found = self.data_maps.get(map_id)
            if found is None:
                raise SimError(404, f"Unknown Data Map {map_id}.")
            return {"id": found["id"], "name": found["name"], "fields": [dict(f) for f in found["fields"]]}

    def folder_reply(self, folder_id: int) -> dict[str, Any]:
        """``GET Folder?id=``."""
        with self._lock:
            found = self.folder(folder_id)
            return {"id": found.id, "name": found.name, "parentId": found.parent_id}

    def folder_objects(self, folder_id: int, page_number: int, page_size: int) -> dict[str, Any]:
        """``GET Folder/Objects?id=&pageNumber=&pageSize=`` (1-based pages, insertion order)."""
        if page_number < 1:
            raise SimError(400, "'pageNumber' must be >= 1.")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise SimError(400, f"'pageSize' must be between 1 and {MAX_PAGE_SIZE}.")
        with self._lock:
            found = self.folder(folder_id)
            start = (page_number - 1) * page_size
            page = list(itertools.islice(found.templates.values(), start, start + page_size))
            return {"objects": [{**t, "fields": list(t["fields"])} for t in page],
                    "totalCount": len(found.templates)}
