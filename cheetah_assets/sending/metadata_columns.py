"""The columns of the tables the send path's assets and the cancellation job show in the Dagster UI
(``tables.table``; each table written as ``tables.columns`` reads it: name | kind | description)."""

from __future__ import annotations

from ..tables import columns

#: The columns several tables share (named alone in a table below).
SHARED = columns("""
    campaign     | string | Optimove campaign id
    name         | string | Campaign name
    template     | string | Cheetah template objId
    cheetah_name | string | The campaign's name in Cheetah Messaging
    camp_id      | string | Cheetah campaign id
    recipients   | int    | Rows in the frozen list
""")

TEMPLATE_COLUMNS = columns("""
    objId  | string | Cheetah template objId
    name   | string | Template name
    fields | string | Data Map fields it personalises with
""")
FINDING_COLUMNS = columns("""
    check   | string | Set-up check
    ok      | bool   | Passed
    message | string | What it found
""")
PROBLEM_COLUMNS = columns("""
    template
    problem | string | What is not mapped
""", SHARED)
PLAN_COLUMNS = columns("""
    campaign
    name
    template
    send at | datetime | Execution time (UTC)
    status  | string   | READY, WAITING, SENT, MISSED, OVERDUE, INVALID or CANCELLED
    reason  | string   | Why it is not READY
""", SHARED)
INVALID_COLUMNS = columns("""
    campaign
    name
    template
    reason | string | Why it is invalid
""", SHARED)
MISSED_COLUMNS = columns("""
    campaign
    name
    template
    send at | datetime | Its send time (UTC)
    status  | string   | MISSED (first seen after its send time) or OVERDUE (known in time, not handed over)
    reason  | string   | What happened and what to do
""", SHARED)
LIST_COLUMNS = columns("""
    campaign
    name
    recipients
    per template    | string | Rows per template
    in target group | int    | Customers in the target group
    no identifier   | int    | Left out: no identifier
    suppressed      | int    | Left out: suppressed
    duplicates      | int    | Rows collapsed into one per identifier
    frozen          | string | new, or kept (send started)
""", SHARED)
SEND_COLUMNS = columns("""
    campaign
    name
    template
    cheetah_name
    state    | string | Send ledger state
    camp_id
    recipients
    accepted | int    | Rows accepted at import
    rejected | int    | Rows rejected at import
    send_at  | string | Execution time (ISO, UTC)
    note     | string | What happened
""", SHARED)
CANCEL_COLUMNS = columns("""
    send_key | string | The send (campaign/template/day)
    cheetah_name
    action   | string | deleted, nothing in Cheetah, already cancelled, never prepared, or went out at HH:MM before it was cancelled
    camp_id
""", SHARED)
