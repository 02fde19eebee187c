"""Campaigns: ``EmailCampaign`` of the contract (create, read by id or name, LAUNCH / APPROVE /
PAUSE / RESUME, DELETE) and the send of every approved campaign whose start time has come."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import threading
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, PrivateAttr, field_validator, model_validator

from ..cheetah.contract import (
    ACTION_APPROVE,
    ACTION_LAUNCH,
    ACTION_PAUSE,
    ACTION_RESUME,
    ALREADY_LAUNCHED_MESSAGE,
    NAME_EXISTS_MESSAGE,
)
from .accounts import Account, Directory
from .bodies import Body, Name, read
from .clock import UTC, SimClock, iso
from .errors import SimError
from .imports import Imports

FIRST_CAMP_ID = 5001


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
    #: How many recipients its last send went to (who they were: the row store's ``sent_rows``).
    recipient_count: int = 0


# --- request bodies -------------------------------------------------------------------------------
class SendScheduleBody(Body):
    start_time: str = Field(alias="startTime")
    time_zone: str = Field("UTC", alias="timeZone")


class CampParamBody(Body):
    send_schedule: SendScheduleBody = Field(alias="sendSchedule")


class CampaignObjBody(Body):
    parent_obj_id: int
    display_name: str | None = None  # default: the campaign's name
    type_id: str = "CampaignEmail"


class CampaignBody(Body):
    """``POST EmailCampaign``. ``start`` is the schedule's start time in UTC (a time without an
    offset is read in the schedule's ``timeZone``)."""

    name: Name = Field(alias="CampName")
    cust_id: int = Field(alias="CustId")
    type_id: str = Field("REGULAR", alias="TypeId")
    template_obj_id: str = Field(alias="TemplateObjId")
    list_id: int = Field(alias="ToFilterId")
    prop_map_id: int = Field(alias="PropMapId")
    camp_param: CampParamBody = Field(alias="CampParam")
    obj: CampaignObjBody = Field(alias="Obj")
    _start: dt.datetime = PrivateAttr()

    @model_validator(mode="after")
    def _start_in_utc(self) -> "CampaignBody":
        schedule = self.camp_param.send_schedule
        try:
            zone = ZoneInfo(schedule.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"'CampParam.sendSchedule.timeZone' is not a known time zone: "
                             f"{schedule.time_zone!r}.") from None
        try:
            start = dt.datetime.fromisoformat(schedule.start_time.strip())
        except ValueError:
            raise ValueError(f"'CampParam.sendSchedule.startTime' is not an ISO time: "
                             f"{schedule.start_time!r}.") from None
        self._start = (start if start.tzinfo else start.replace(tzinfo=zone)).astimezone(UTC)
        return self

    @property
    def start(self) -> dt.datetime:
        return self._start


class CampaignActionBody(Body):
    """``PUT EmailCampaign?id=``: ``{"CampAction": "LAUNCH"}`` (any case)."""

    action: str = Field(alias="CampAction")

    @field_validator("action")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()


# --- the campaigns ----------------------------------------------------------------------------------
class Campaigns:
    """The campaigns of the simulated world."""

    def __init__(self, lock: threading.RLock, clock: SimClock, directory: Directory, imports: Imports):
        #: The world's lock and clock (shared with :mod:`.reports`).
        self.lock = lock
        self.clock = clock
        self._directory = directory
        self._imports = imports
        self.by_id: dict[int, Campaign] = {}
        self._camp_ids = itertools.count(FIRST_CAMP_ID)

    def create(self, account: Account, body: Any) -> dict[str, Any]:
        """``POST EmailCampaign``: a DRAFT campaign (validation order: body, CustId, folder, name,
        template, list, Data Map, start time)."""
        request = read(CampaignBody, body, "EmailCampaign")
        name, folder_id, list_id, prop_map_id = (request.name, request.obj.parent_obj_id, request.list_id,
                                                 request.prop_map_id)
        with self.lock:
            if request.cust_id != account.cust_id:
                raise SimError(400, "Unknown CustId")
            self._directory.folder(folder_id)
            if any(c.folder_id == folder_id and c.name == name for c in self.by_id.values()):
                raise SimError(400, NAME_EXISTS_MESSAGE)
            if not self._directory.has_template(request.template_obj_id):
                raise SimError(404, f"Unknown TemplateObjId {request.template_obj_id}.")
            found = self._imports.lists.get(list_id)
            if found is None or found.cust_id != account.cust_id:
                raise SimError(404, f"Unknown ToFilterId {list_id}: no such list.")
            if prop_map_id not in self._directory.data_maps:
                raise SimError(404, f"Unknown PropMapId {prop_map_id}.")
            if prop_map_id != found.prop_map_id:
                raise SimError(400, f"PropMapId {prop_map_id} is not the Data Map of list {list_id} "
                                    f"({found.prop_map_id}).")
            now = self.clock.now()
            if request.start < now:
                raise SimError(422, f"The start time {iso(request.start)} is before the current time {iso(now)}.")
            campaign = Campaign(
                camp_id=next(self._camp_ids), cust_id=request.cust_id, name=name, folder_id=folder_id,
                template_obj_id=request.template_obj_id, list_id=list_id, prop_map_id=prop_map_id,
                type_id=request.type_id, camp_param=dict(body["CampParam"]), obj=dict(body["Obj"]),
                start_time=request.start, created_at=now,
            )
            self.by_id[campaign.camp_id] = campaign
            return {"campId": campaign.camp_id}

    @property
    def rows(self):
        """The row store (who each sent campaign went to)."""
        return self._imports.store

    def reply(self, c: Campaign) -> dict[str, Any]:
        """The campaign as ``GET EmailCampaign`` shows it."""
        count = c.recipient_count if c.send_count else self._imports.lists[c.list_id].count
        return {
            "campId": c.camp_id, "custId": c.cust_id, "CampName": c.name, "status": c.status,
            "recipientCount": count, "CampParam": c.camp_param, "TypeId": c.type_id,
            "TemplateObjId": c.template_obj_id, "ToFilterId": c.list_id, "PropMapId": c.prop_map_id,
            "folderId": c.folder_id, "Obj": dict(c.obj), "paused": c.paused, "startTime": iso(c.start_time),
            "sentAt": iso(c.sent_at), "created": iso(c.created_at),
        }

    def find(self, account: Account, camp_id: int) -> Campaign:
        """The account's campaign of this id; 404 if none."""
        with self.lock:
            found = self.by_id.get(camp_id)
            if found is None or found.cust_id != account.cust_id:
                raise SimError(404, f"Unknown campaign {camp_id}.")
            return found

    def get(self, account: Account, camp_id: int) -> dict[str, Any]:
        """``GET EmailCampaign?id=``."""
        with self.lock:
            return self.reply(self.find(account, camp_id))

    def by_name(self, account: Account, name: str, folder_id: int | None = None) -> dict[str, Any]:
        """``GET EmailCampaign?name=[&folderId=]``: the campaign of that name in any status (the
        newest, should several folders hold one); 404 if none."""
        with self.lock:
            found = [c for c in self.by_id.values()
                     if c.cust_id == account.cust_id and c.name == name
                     and (folder_id is None or c.folder_id == folder_id)]
            if not found:
                raise SimError(404, f"No campaign is named {name!r}.")
            return self.reply(max(found, key=lambda c: c.camp_id))

    def act(self, account: Account, camp_id: int, body: Any, *, apply: bool = True) -> dict[str, Any]:
        """``PUT EmailCampaign?id= {"CampAction": LAUNCH|APPROVE|PAUSE|RESUME}``. ``apply=False``
        (the ``unapplied`` fault): the reply shows the action done, but the campaign is unchanged."""
        action = read(CampaignActionBody, body, "EmailCampaign").action
        with self.lock:
            c = self.find(account, camp_id)
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
                c.eligible_at = self.clock.now()
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
                c.eligible_at = self.clock.now()
            else:
                raise SimError(400, f"'CampAction' must be LAUNCH, APPROVE, PAUSE or RESUME, not {action!r}.")
            if apply:
                self.process_due()
            return self.reply(c)

    def delete(self, account: Account, camp_id: int) -> dict[str, Any]:
        """``DELETE EmailCampaign?id=``: CANCELLED (repeatable); 409 once sent."""
        with self.lock:
            c = self.find(account, camp_id)
            if c.status == "SENT":
                raise SimError(409, "Campaign has been sent already; it cannot be cancelled.")
            c.status = "CANCELLED"
            return self.reply(c)

    # ------------------------------------------------------------------------------- the send
    def process_due(self) -> list[int]:
        """Send every APPROVED, unpaused campaign whose start time has come (returns their ids).

        Called when the clock moves and before every request. ``sentAt`` is the later of the
        start time and the moment the campaign became eligible (approved or resumed); the
        recipients are the rows of the campaign's list at this moment.
        """
        with self.lock:
            now = self.clock.now()
            due = sorted(
                (c for c in self.by_id.values()
                 if c.status == "APPROVED" and not c.paused and c.start_time <= now),
                key=lambda c: (c.start_time, c.camp_id),
            )
            for c in due:
                c.recipient_count = self._imports.store.snapshot(c.camp_id, c.list_id)
                c.status = "SENT"
                c.send_count += 1
                c.sent_at = max(c.start_time, c.eligible_at or c.start_time)
            return [c.camp_id for c in due]

    def last_send(self) -> dt.datetime | None:
        """When the latest send happened, if any."""
        with self.lock:
            return max((c.sent_at for c in self.by_id.values() if c.sent_at), default=None)
