"""The set-up check that goes through the whole send path without mailing anyone.

The other set-up checks read settings, the folder and the Data Map; every one of them can pass
while each send fails (an Import reply the client cannot read, a campaign call the account
refuses). This check makes the calls a send makes, on an address of the operator's own
(``CHEETAH_TEST_ADDRESS``), and stops short of launching:

1. import a one-row file (the Data Map's identifier column, the test address) into the list
   :data:`CHECK_LIST_NAME`, and wait until Cheetah accepted that row;
2. create a DRAFT campaign on that list from the folder's first template, named
   ``OPTSETUPCHECK-<UTC time>-<6 hex>``, with a start time :data:`START_AHEAD` ahead;
3. read it back (our name, DRAFT, one recipient), then delete it and read back CANCELLED.

**What it leaves in the account:** the list ``OPTSETUPCHECK-LIST`` holding the one test row
(importing it again replaces that row, so it never grows), and one CANCELLED campaign per check
named ``OPTSETUPCHECK-<UTC time>-<6 hex>`` (deleted, never launched, so nobody is mailed). If the delete
itself fails, the check fails and names the campaign, which stays a DRAFT that never goes out.
The prefix cannot collide with the sends' names (``OPT-<campaign>-…``).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid

from ..cheetah.client import CheetahClient
from ..cheetah.contract import DataMap
from ..cheetah.errors import CheetahError, MalformedResponse
from .findings import Finding

CHECK_PREFIX = "OPTSETUPCHECK"
CHECK_LIST_NAME = f"{CHECK_PREFIX}-LIST"
#: How far ahead the check's campaign is scheduled: it is deleted long before, and never launched.
START_AHEAD = dt.timedelta(days=30)
NAME = "send_path"


def _one_row_file(identifier_field: str, address: str) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow([identifier_field])
    writer.writerow([address])
    return buf.getvalue().encode("utf-8")


def _fail(step: str, detail: str) -> Finding:
    return Finding(
        NAME,
        False,
        f"The send path fails at {step}: {detail} Every send would fail the same way; fix this first "
        "(nothing was launched, nobody was mailed).",
    )


def check_send_path(
    client: CheetahClient, data_map: DataMap, test_address: str, *, now: dt.datetime | None = None
) -> Finding:
    """Import, create, read back and delete, as a send does, on ``test_address`` only."""
    address = (test_address or "").strip()
    if not address:
        return Finding(
            NAME,
            False,
            "CHEETAH_TEST_ADDRESS is not set, so the send path (Import and EmailCampaign calls) was not "
            "checked: set it to an address of your own (it is imported, never mailed).",
            blocking=False,
        )
    now = now or dt.datetime.now(dt.timezone.utc)
    step = "the template listing"
    try:
        template = next(iter(client.iter_templates()), None)
        if template is None:
            return Finding(NAME, False, "The template folder holds no template, so no campaign can be created.")
        step = "the import"
        ident = data_map.identifier.name
        import_id = client.start_import(
            list_name=CHECK_LIST_NAME, csv_bytes=_one_row_file(ident, address), file_name=f"{CHECK_LIST_NAME}.csv"
        )
        status = client.wait_for_import(import_id)
        if status.rows_accepted != 1 or status.list_id is None:
            reasons = "; ".join(r.reason for r in status.rejected) or "no reason given"
            return _fail(step, f"Cheetah accepted {status.rows_accepted} of 1 row ({reasons}).")
        step = "the campaign creation"
        name = f"{CHECK_PREFIX}-{now:%Y%m%d%H%M%S}-{uuid.uuid4().hex[:6]}"
        camp_id = client.create_campaign(
            name=name, template_obj_id=template.obj_id, list_id=status.list_id, start_time=now + START_AHEAD
        )
        step = "the campaign read-back"
        campaign = client.get_campaign(camp_id)
        if campaign.name != name or campaign.status != "DRAFT":
            return _fail(step, f"campaign {camp_id} reads back as {campaign.name!r} in {campaign.status}.")
        step = f"the deletion of the check's campaign {name} (a DRAFT that is never launched)"
        client.delete_campaign(camp_id)
        if client.get_campaign(camp_id).status != "CANCELLED":
            return _fail(step, "it does not read back as CANCELLED.")
    except (CheetahError, MalformedResponse) as exc:
        return _fail(step, str(exc))
    return Finding(
        NAME,
        True,
        f"imported {address!r} into {CHECK_LIST_NAME} (list {status.list_id}), created campaign {name} "
        f"from template {template.obj_id}, read it back and deleted it without launching",
    )
