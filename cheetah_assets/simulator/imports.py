"""Recipient lists and their import queue: ``POST Import`` and ``GET Import?id=`` of the
contract, and the admin read-back ``GET /_sim/lists``. The rows live on disk (:mod:`.rowstore`);
an import's body is streamed to a file and read from there (:mod:`.streambody`)."""

from __future__ import annotations

import io
import itertools
import json
import threading
from dataclasses import dataclass
from typing import IO, Any, Callable

from pydantic import Field

from .accounts import Account, Directory
from .bodies import Body, Name, read
from .errors import SimError
from .importfile import FileData, ParsedFile, parse_import_file
from .rowstore import RowStore
from .streambody import read_import_body

FIRST_LIST_ID = 9001
FIRST_IMPORT_ID = 1


@dataclass
class RecipientList:
    list_id: int
    cust_id: int
    name: str
    prop_map_id: int
    #: How many rows it holds (the rows themselves are in the row store, on disk).
    count: int = 0


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


class ImportBody(Body):
    """``POST Import``."""

    file_name: str = Field(alias="fileName")
    file_data: str = Field(alias="fileData")
    prop_map_id: int = Field(alias="propMapId")
    list_name: Name = Field(alias="listName")


class Imports:
    """The recipient lists and import jobs of the simulated world."""

    def __init__(self, lock: threading.RLock, directory: Directory, store: RowStore):
        self._lock = lock
        self._directory = directory
        #: Where the rows of imports, lists and sends are (on disk).
        self.store = store
        self.lists: dict[int, RecipientList] = {}
        self.jobs: dict[int, ImportJob] = {}
        self._list_ids = itertools.count(FIRST_LIST_ID)
        self._import_ids = itertools.count(FIRST_IMPORT_ID)

    def create_streamed(self, account: Account, body: IO[bytes],
                        adapt: Callable[[Any], Any] | None = None) -> dict[str, Any]:
        """``POST Import`` of a body spooled to a file: read without holding it (:mod:`.streambody`);
        ``adapt`` rewrites the small keys first (the string-id variant)."""
        small, data = read_import_body(body)
        try:
            return self.create(account, adapt(small) if adapt else small, data)
        finally:
            if data is not None:
                data.csv.close()

    def create(self, account: Account, body: Any, data: FileData | None = None) -> dict[str, Any]:
        """``POST Import``: validate, read the file (outside the lock, its rows staged on disk),
        queue the job. ``data``: ``fileData`` already decoded to disk (else it is in ``body``)."""
        request = read(ImportBody, body, "Import")
        if data is None:  # a body parsed whole (not streamed): decode it the same way
            small, data = read_import_body(io.BytesIO(json.dumps({"fileData": request.file_data}).encode()))
            try:
                return self.create(account, body, data)
            finally:
                data.csv.close()
        with self._lock:
            data_map = self._directory.data_maps.get(request.prop_map_id)
            if data_map is None:
                raise SimError(404, f"Unknown Data Map {request.prop_map_id}.")
            import_id = next(self._import_ids)
        self.store.start_job(import_id)
        try:
            parsed = parse_import_file(data, data_map, lambda rows: self.store.stage(import_id, rows))  # slow, no lock
        except BaseException:
            self.store.start_job(import_id)  # refused outright: nothing staged stays
            raise
        with self._lock:
            name, prop_map_id = request.list_name, request.prop_map_id
            found = next((x for x in self.lists.values() if x.cust_id == account.cust_id and x.name == name), None)
            if found is not None and found.prop_map_id != prop_map_id:
                self.store.start_job(import_id)
                raise SimError(400, f"List '{name}' belongs to Data Map {found.prop_map_id}, not {prop_map_id}.")
            if found is None:
                found = RecipientList(next(self._list_ids), account.cust_id, name, prop_map_id)
                self.lists[found.list_id] = found
            job = ImportJob(import_id, account.cust_id, found.list_id, prop_map_id, request.file_name)
            if isinstance(parsed, str):
                job.failure = parsed
                self.store.start_job(import_id)
            else:
                job.parsed = parsed
            self.jobs[job.import_id] = job
            return {"importId": job.import_id}

    def status(self, account: Account, import_id: int) -> dict[str, Any]:
        """``GET Import?id=``: each poll moves the job one step QUEUED→PROCESSING→COMPLETED/FAILED;
        the rows reach the list when it completes."""
        with self._lock:
            job = self.jobs.get(import_id)
            if job is None or job.cust_id != account.cust_id:
                raise SimError(404, f"Unknown import {import_id}.")
            if job.status == "QUEUED":
                job.status = "PROCESSING"
            elif job.status == "PROCESSING":
                if job.parsed is None:
                    job.status = "FAILED"
                else:
                    self.lists[job.list_id].count = self.store.complete(job.import_id, job.list_id)
                    job.status = "COMPLETED"
            return job.reply()

    def lists_reply(self, list_id: int | None = None, rows: bool = True) -> dict[str, Any]:
        """``GET /_sim/lists[?id=]``: the recipient lists and their current rows."""
        with self._lock:
            if list_id is not None and list_id not in self.lists:
                raise SimError(404, f"Unknown list {list_id}.")
            chosen = [self.lists[list_id]] if list_id is not None else list(self.lists.values())
            out = []
            for x in chosen:
                item: dict[str, Any] = {"listId": x.list_id, "listName": x.name, "custId": x.cust_id,
                                        "propMapId": x.prop_map_id, "rowCount": x.count}
                if rows:
                    item["rows"] = self.store.list_rows(x.list_id)
                out.append(item)
            return {"lists": out}
