"""The Cheetah Messaging API as this project speaks it (../shared/cheetah-messaging-api.md).

Every path, field name, limit and reply shape the client depends on is in this module or the two
it re-exports, and nowhere else, so that a real account's differences from an **[assumed]** shape
are one edit away:

* here: paths, limits, actions, the error replies the client recognises, request bodies and
  query strings;
* :mod:`.records`: the values replies are read into (and the status and metric vocabularies);
* :mod:`.parsers`: reading replies into those values, raising :class:`MalformedResponse` with the
  offending key when a reply does not have the documented shape;
* :mod:`.ids`: ids, kept as received.

The client (``client.py``) calls; this module says what the calls mean.
"""

from __future__ import annotations

import datetime as dt

# The values, the parsers and the id codec, re-exported: ``contract.X`` is the one way in.
from .ids import ObjId, id_from_db, id_to_db, is_id, same_id  # noqa: F401
from .parsers import (  # noqa: F401
    DEFAULT_TOKEN_LIFETIME_S,
    error_message,
    parse_campaign,
    parse_campaign_id,
    parse_count,
    parse_data_map,
    parse_folder,
    parse_folder_page,
    parse_id,
    parse_import,
    parse_import_id,
    parse_metrics,
    parse_template,
    parse_time,
    parse_token,
)
from .records import (  # noqa: F401
    CAMPAIGN_STATUSES,
    IMPORT_DONE,
    IMPORT_PENDING,
    METRIC_NAMES,
    Campaign,
    CampaignMetrics,
    DataMap,
    DataMapField,
    Folder,
    ImportStatus,
    Rejection,
    Template,
    format_start_time,
    parse_start_time,
)

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

# --- campaign actions (``PUT EmailCampaign?id=``) ------------------------------------------------
ACTION_LAUNCH, ACTION_APPROVE, ACTION_PAUSE, ACTION_RESUME = "LAUNCH", "APPROVE", "PAUSE", "RESUME"

# --- error replies -------------------------------------------------------------------------------
NAME_EXISTS_MESSAGE = "An Obj with this name already exists"  # [documented]
ALREADY_LAUNCHED_MESSAGE = "Campaign has been launched already."  # [documented]
IP_NOT_WHITELISTED_ERROR = "ip_not_whitelisted"  # [assumed shape]
INVALID_GRANT_ERROR = "invalid_grant"  # [documented]


# --- request bodies ------------------------------------------------------------------------------
def import_request(*, file_name: str, file_data_b64: str, prop_map_id: ObjId, list_name: str) -> dict:
    return {"fileName": file_name, "fileData": file_data_b64, "propMapId": prop_map_id, "listName": list_name}


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
