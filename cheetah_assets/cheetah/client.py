"""The Cheetah Messaging client: one method per endpoint the project uses.

Each method builds its request from :mod:`.contract`, sends it through :class:`~.transport.Transport`
(authentication, retries, the statuses every call shares) with the errors its own statuses mean,
and parses the reply into the values of :mod:`.records`. Settings: :mod:`.settings`; secrets in
logs: :mod:`.redaction`.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import logging
import tempfile
import time
from typing import IO, Any, Callable, Iterator, Mapping

from . import contract
from .contract import (
    CAMPAIGN_PATH,
    DATA_MAP_PATH,
    FOLDER_OBJECTS_PATH,
    FOLDER_PATH,
    IMPORT_PATH,
    REPORT_PATH,
    Campaign,
    CampaignMetrics,
    DataMap,
    Folder,
    ImportStatus,
    ObjId,
    Template,
)
from . import errors
from .error_mapping import ErrorFactory, sentence
from .redaction import DEFAULT_LOGGER_NAME
from .settings import CheetahSettings, setting_label
from .transport import Transport

__all__ = ["CheetahClient", "CheetahSettings"]

#: Where the Base64 file data goes in the import body's JSON (replaced while it is written).
_B64_MARK = "\x00file data\x00"
#: Bytes of CSV encoded at a time (a multiple of 3: the Base64 blocks join without padding).
B64_BLOCK = 3 * 64 * 1024


def write_import_body(out: IO[bytes], csv_file: IO[bytes], request: Mapping[str, Any]) -> int:
    """Write ``request`` as JSON to ``out``, its ``_B64_MARK`` value replaced by the Base64 of
    ``csv_file`` (read from its start in :data:`B64_BLOCK` blocks); returns the bytes written."""
    prefix, suffix = json.dumps(request).split(json.dumps(_B64_MARK))
    written = out.write(prefix.encode("utf-8") + b'"')
    csv_file.seek(0)
    carry = b""
    while block := csv_file.read(B64_BLOCK):
        block = carry + block
        cut = len(block) - len(block) % 3  # a short read must not put padding mid-stream
        written += out.write(base64.b64encode(block[:cut]))
        carry = block[cut:]
    written += out.write(base64.b64encode(carry))
    written += out.write(b'"' + suffix.encode("utf-8"))
    out.flush()
    return written


#: A look-up's "there is none": logged at DEBUG, not as a failure.
_NOT_FOUND = frozenset({404})


class CheetahClient:
    """A session with one Cheetah Messaging account. Use as a context manager, or call close()."""

    def __init__(self, settings: CheetahSettings, *, logger: logging.Logger | None = None):
        if not isinstance(settings, CheetahSettings):
            raise TypeError("CheetahClient needs a CheetahSettings (see CheetahSettings.from_raw).")
        self.settings = settings
        self._log = logger if logger is not None else logging.getLogger(DEFAULT_LOGGER_NAME)
        self.transport = Transport(settings, self._log)

    # --- life cycle ------------------------------------------------------------------------------
    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> "CheetahClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        settings = self.settings
        return (
            f"CheetahClient(endpoint={settings.endpoint!r}, cust_id={settings.cust_id}, "
            f"folder_id={settings.folder_id}, prop_map_id={settings.prop_map_id})"
        )

    def check_access(self) -> None:
        """Fetch a token now: raises InvalidCredentials / IpNotWhitelisted / transport errors."""
        self.transport.check_access()

    # --- account ---------------------------------------------------------------------------------
    def _unknown_folder(self, _message: str) -> errors.CheetahError:
        return errors.UnknownFolder(
            f"Cheetah Messaging has no folder with {setting_label('folder_id')} {self.settings.folder_id}."
        )

    def get_data_map(self) -> DataMap:
        pid = self.settings.prop_map_id
        body = self.transport.call(
            "GET",
            DATA_MAP_PATH,
            params=contract.id_query(pid),
            errors={404: lambda m: errors.UnknownDataMap(
                f"Cheetah Messaging has no Data Map with {setting_label('prop_map_id')} {pid}."
            )},
        )
        return contract.parse_data_map(body)

    def get_folder(self) -> Folder:
        body = self.transport.call(
            "GET", FOLDER_PATH, params=contract.id_query(self.settings.folder_id), errors={404: self._unknown_folder}
        )
        return contract.parse_folder(body)

    def iter_templates(self, page_size: int = contract.DEFAULT_PAGE_SIZE) -> Iterator[Template]:
        """Every template of the folder, fetched a page at a time as the iterator is consumed.

        Complete or an error: a listing that ends, or stops adding templates, short of its
        ``totalCount`` raises :class:`~.errors.MalformedResponse` (a short catalog would read as
        "no such template"). A ``totalCount`` that changes between pages (a template added or
        deleted: the pages shift) restarts the listing from page 1, once; templates already
        yielded are not repeated (one deleted meanwhile may have been)."""
        if not isinstance(page_size, int) or not 1 <= page_size <= contract.MAX_PAGE_SIZE:
            raise ValueError(
                f"page_size must be a whole number from 1 to {contract.MAX_PAGE_SIZE}, got {page_size!r}."
            )
        return self._template_pages(page_size)

    def _template_pages(self, page_size: int) -> Iterator[Template]:
        what = f"The template listing of folder {self.settings.folder_id}"
        yielded: set[str] = set()
        for last_pass in (False, True):
            listed: set[str] = set()  # this pass's unique objIds
            first_total: int | None = None
            page = 1
            while True:
                body = self.transport.call(
                    "GET",
                    FOLDER_OBJECTS_PATH,
                    params=contract.folder_objects_query(self.settings.folder_id, page, page_size),
                    errors={404: self._unknown_folder},
                )
                objects, total = contract.parse_folder_page(body)
                if first_total is None:
                    first_total = total
                elif total != first_total:
                    if last_pass:
                        raise errors.MalformedResponse(
                            f"{what} changed while it was read, twice ({first_total} templates, then {total}): "
                            "run it again once the folder is not being edited."
                        )
                    self._log.info("%s changed while it was read (%d templates, then %d): listing it again",
                                   what, first_total, total)
                    break
                new = [t for t in objects if t.obj_id not in listed]
                listed.update(t.obj_id for t in new)
                for template in new:
                    if template.obj_id not in yielded:  # a restarted listing must not repeat one
                        yielded.add(template.obj_id)
                        yield template
                if len(listed) >= total:
                    return
                if not objects:
                    raise errors.MalformedResponse(
                        f"{what} ended at {len(listed)} of its {total} templates: page {page} was empty "
                        "(does pageNumber start at 1?)."
                    )
                if not new:
                    raise errors.MalformedResponse(
                        f"{what} stopped at {len(listed)} of its {total} templates: page {page} listed none "
                        "that earlier pages had not (is pageNumber ignored?)."
                    )
                page += 1

    # --- imports ---------------------------------------------------------------------------------
    def start_import(
        self, *, list_name: str, file_name: str, csv_bytes: bytes | None = None, csv_file: IO[bytes] | None = None
    ) -> ObjId:
        """Queue a CSV (header = Data Map field names) for import into ``list_name``: given as
        ``csv_bytes``, or as ``csv_file``, a seekable binary file read from its start. The request
        body (the CSV in Base64, inside the JSON) is written to a temporary file in blocks and
        streamed from there: neither is ever whole in memory."""
        if (csv_bytes is None) == (csv_file is None):
            raise TypeError("start_import takes csv_bytes or csv_file, not both or neither.")
        if csv_file is None:
            csv_file = io.BytesIO(csv_bytes)
        with tempfile.TemporaryFile(prefix="cheetah-import-") as body:
            write_import_body(
                body, csv_file,
                contract.import_request(file_name=file_name, file_data_b64=_B64_MARK,
                                        prop_map_id=self.settings.prop_map_id, list_name=list_name),
            )
            reply = self.transport.call(
                "POST",
                IMPORT_PATH,
                body_file=body,
                errors={
                    400: lambda m: errors.BadRequest(
                        sentence(f"Import of {file_name} into list {list_name!r} was refused", m)
                    ),
                    413: lambda m: errors.ImportTooLarge(
                        f"Import of {file_name} was refused as too large (413): split it into files of at most "
                        f"{contract.MAX_IMPORT_ROWS:,} rows and {contract.MAX_IMPORT_BYTES // (1024 * 1024)} MB."
                    ),
                },
            )
        return contract.parse_import_id(reply)

    def get_import(self, import_id: ObjId) -> ImportStatus:
        body = self.transport.call(
            "GET",
            IMPORT_PATH,
            params=contract.id_query(import_id),
            errors={404: lambda m: errors.UnknownImport(f"Cheetah Messaging has no import {import_id}.")},
        )
        status = contract.parse_import(body)
        if not contract.same_id(status.import_id, import_id):  # never poll one import by another's reply
            raise errors.MalformedResponse(f"The Import reply for import {import_id} is about import {status.import_id}.")
        return status

    def wait_for_import(
        self, import_id: ObjId, *, on_poll: Callable[[ImportStatus], None] | None = None
    ) -> ImportStatus:
        """Poll until the import is COMPLETED (returned, rejected rows included); FAILED or no
        end within ``import_timeout_seconds`` raise :class:`~.errors.ImportFailed`."""
        settings = self.settings
        deadline = time.monotonic() + settings.import_timeout_seconds
        while True:
            status = self.get_import(import_id)
            if on_poll is not None:
                on_poll(status)
            if status.status == "COMPLETED":
                self._log.debug(
                    "Cheetah import %s completed into list %s: %d rows read, %d accepted, %d rejected",
                    import_id, status.list_id, status.rows_read, status.rows_accepted, len(status.rejected),
                )
                return status
            if status.status == "FAILED":
                raise errors.ImportFailed(sentence(
                    f"Import {import_id} ended FAILED after reading {status.rows_read} rows",
                    f"Cheetah's reason: {status.reason}" if status.reason else "Cheetah gave no reason",
                ))
            if time.monotonic() + settings.import_poll_interval_seconds > deadline:
                raise errors.ImportFailed(
                    f"Import {import_id} did not finish within {settings.import_timeout_seconds:g} s "
                    f"(last status {status.status})."
                )
            time.sleep(settings.import_poll_interval_seconds)

    # --- campaigns -------------------------------------------------------------------------------
    def create_campaign(
        self, *, name: str, template_obj_id: ObjId, list_id: ObjId, start_time: dt.datetime
    ) -> ObjId:
        """Create a DRAFT campaign. Not repeated at transport level: after a TransportError or
        ServerError the campaign may exist; look it up with :meth:`find_campaign`."""
        settings = self.settings
        body = contract.campaign_request(
            name=name,
            cust_id=settings.cust_id,
            template_obj_id=template_obj_id,
            list_id=list_id,
            prop_map_id=settings.prop_map_id,
            folder_id=settings.folder_id,
            start_time=start_time,
        )

        def bad_request(message: str) -> errors.CheetahError:
            if contract.NAME_EXISTS_MESSAGE.lower().rstrip(".") in message.lower():
                return errors.NameAlreadyExists(
                    f"A campaign named {name!r} already exists in folder {settings.folder_id}."
                )
            return errors.BadRequest(sentence(f"Campaign {name!r} was refused", message))

        def not_found(message: str) -> errors.CheetahError:
            lowered = message.lower()
            if "template" in lowered:
                return errors.UnknownTemplate(sentence(f"Template {template_obj_id} was not found", message))
            if "list" in lowered or "filter" in lowered:
                return errors.UnknownList(sentence(f"List {list_id} was not found", message))
            return errors.NotFound(sentence(f"Campaign {name!r} refers to something that was not found", message))

        when = contract.format_start_time(start_time)["startTime"]
        reply = self.transport.call(
            "POST",
            CAMPAIGN_PATH,
            body=body,
            errors={
                400: bad_request,
                404: not_found,
                422: lambda m: errors.StartTimeInPast(
                    f"Campaign {name!r} was refused because its start time {when} UTC has already passed."
                ),
            },
        )
        return contract.parse_campaign_id(reply)

    def _unknown_campaign(self, camp_id: ObjId) -> ErrorFactory:
        return lambda m: errors.UnknownCampaign(f"Cheetah Messaging has no campaign {camp_id}.")

    def get_campaign(self, camp_id: ObjId) -> Campaign:
        body = self.transport.call(
            "GET", CAMPAIGN_PATH, params=contract.id_query(camp_id), errors={404: self._unknown_campaign(camp_id)}
        )
        return contract.parse_campaign(body)

    def find_campaign(self, name: str) -> Campaign | None:
        """The campaign of that name, or None when there is none."""
        try:
            body = self.transport.call(
                "GET", CAMPAIGN_PATH, params=contract.campaign_name_query(name), expected=_NOT_FOUND
            )
        except errors.NotFound:
            return None
        return contract.parse_campaign(body)

    def _action(self, camp_id: ObjId, action: str, extra: Mapping[int, ErrorFactory] | None = None) -> None:
        by_status: dict[int, ErrorFactory] = {
            404: self._unknown_campaign(camp_id),
            400: lambda m: errors.BadRequest(sentence(f"{action} of campaign {camp_id} was refused", m)),
        }
        by_status.update(extra or {})
        self.transport.call(
            "PUT",
            CAMPAIGN_PATH,
            params=contract.id_query(camp_id),
            body=contract.campaign_action_request(action),
            errors=by_status,
            expect_json=False,
        )
        self._log.debug("Cheetah campaign %s: %s accepted", camp_id, action)

    def launch_campaign(self, camp_id: ObjId) -> None:
        def bad_request(message: str) -> errors.CheetahError:
            if contract.ALREADY_LAUNCHED_MESSAGE.lower().rstrip(".") in message.lower():
                return errors.AlreadyLaunched(f"Campaign {camp_id} has been launched already.")
            return errors.BadRequest(sentence(f"LAUNCH of campaign {camp_id} was refused", message))

        self._action(camp_id, contract.ACTION_LAUNCH, {400: bad_request})

    def approve_campaign(self, camp_id: ObjId) -> None:
        self._action(camp_id, contract.ACTION_APPROVE)

    def delete_campaign(self, camp_id: ObjId) -> None:
        """Cancel the campaign (status CANCELLED); CampaignAlreadySent once it went out."""
        self._campaign_call(
            "DELETE", CAMPAIGN_PATH, camp_id, expect_json=False,
            conflict=lambda m: errors.CampaignAlreadySent(
                f"Campaign {camp_id} has already been sent and can no longer be cancelled."
            ),
        )

    def _campaign_call(
        self, method: str, path: str, camp_id: ObjId, *, conflict: ErrorFactory, **options: Any
    ) -> Any:
        """A call on one campaign by id: a 404 is an unknown campaign, a 409 is ``conflict``."""
        return self.transport.call(
            method, path, params=contract.id_query(camp_id),
            errors={404: self._unknown_campaign(camp_id), 409: conflict}, **options,
        )

    # --- metrics ---------------------------------------------------------------------------------
    def get_metrics(self, camp_id: ObjId) -> CampaignMetrics:
        body = self._campaign_call(
            "GET", REPORT_PATH, camp_id,
            conflict=lambda m: errors.MetricsNotReady(
                f"Campaign {camp_id} has no metrics yet: it has not been sent."
            ),
        )
        return contract.parse_metrics(body)
