"""The columns of the tables the send path's assets and the cancellation job show in the Dagster UI
(``tables.table``: name, kind, description)."""

from __future__ import annotations

CAMPAIGN = ("campaign", "string", "Optimove campaign id")
NAME = ("name", "string", "Campaign name")
TEMPLATE = ("template", "string", "Cheetah template objId")
CHEETAH_NAME = ("cheetah_name", "string", "The campaign's name in Cheetah Messaging")
CAMP_ID = ("camp_id", "string", "Cheetah campaign id")
RECIPIENTS = ("recipients", "int", "Rows in the frozen list")

TEMPLATE_COLUMNS = [
    ("objId", "string", "Cheetah template objId"),
    ("name", "string", "Template name"),
    ("fields", "string", "Data Map fields it personalises with"),
]
FINDING_COLUMNS = [("check", "string", "Set-up check"), ("ok", "bool", "Passed"), ("message", "string", "What it found")]
PROBLEM_COLUMNS = [TEMPLATE, ("problem", "string", "What is not mapped")]
PLAN_COLUMNS = [
    CAMPAIGN,
    NAME,
    TEMPLATE,
    ("send at", "datetime", "Execution time (UTC)"),
    ("status", "string", "READY, WAITING, SENT, MISSED, OVERDUE, INVALID or CANCELLED"),
    ("reason", "string", "Why it is not READY"),
]
INVALID_COLUMNS = [CAMPAIGN, NAME, TEMPLATE, ("reason", "string", "Why it is invalid")]
MISSED_COLUMNS = [
    CAMPAIGN,
    NAME,
    TEMPLATE,
    ("send at", "datetime", "Its send time (UTC)"),
    ("status", "string", "MISSED (first seen after its send time) or OVERDUE (known in time, not handed over)"),
    ("reason", "string", "What happened and what to do"),
]
LIST_COLUMNS = [
    CAMPAIGN,
    NAME,
    RECIPIENTS,
    ("per template", "string", "Rows per template"),
    ("in target group", "int", "Customers in the target group"),
    ("no identifier", "int", "Left out: no identifier"),
    ("suppressed", "int", "Left out: suppressed"),
    ("duplicates", "int", "Rows collapsed into one per identifier"),
    ("frozen", "string", "new, or kept (send started)"),
]
SEND_COLUMNS = [
    CAMPAIGN,
    NAME,
    TEMPLATE,
    CHEETAH_NAME,
    ("state", "string", "Send ledger state"),
    CAMP_ID,
    RECIPIENTS,
    ("accepted", "int", "Rows accepted at import"),
    ("rejected", "int", "Rows rejected at import"),
    ("send_at", "string", "Execution time (ISO, UTC)"),
    ("note", "string", "What happened"),
]
CANCEL_COLUMNS = [
    ("send_key", "string", "The send (campaign/template/day)"),
    CHEETAH_NAME,
    ("action", "string", "deleted, nothing in Cheetah, already cancelled or never prepared"),
    CAMP_ID,
]
