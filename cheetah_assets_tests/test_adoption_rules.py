"""The adoption rule (sending/adoption.py), property-based: a campaign whose reply matches the
send in every field it shows is ours; any one field that differs, or a missing start time, or
(without a list id in the reply) a recipient count that is not the accepted rows, makes it
someone else's. Ids compare as opaque values: 5001 and "5001" are the same id."""

from __future__ import annotations

import dataclasses
import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from cheetah_assets.cheetah.contract import Campaign, format_start_time
from cheetah_assets.sending import ledger as sending_ledger
from cheetah_assets.sending.adoption import foreign, ownership_problem

UTC = dt.timezone.utc
CUST, FOLDER = 1234, 4242

ids = st.one_of(st.integers(1, 10**9), st.text("abcdef0123456789-", min_size=1, max_size=12))
times = st.datetimes(dt.datetime(2026, 1, 1), dt.datetime(2030, 1, 1)).map(
    lambda t: t.replace(second=0, microsecond=0, tzinfo=UTC)
)


def _row(list_id, accepted: int | None, send_at: dt.datetime) -> sending_ledger.LedgerRow:
    day = send_at.date()
    return sending_ledger.LedgerRow(
        send_key=sending_ledger.send_key("A", "1001", day), campaign_id="A", template_id="1001", send_date=day,
        list_key=f"A/{day}", cheetah_name=sending_ledger.cheetah_name("A", "1001", day), state=sending_ledger.IMPORTED, send_at=send_at,
        rows_in_list=accepted, list_id=list_id, rows_accepted=accepted, rows_rejected=0, camp_id=None,
        claimed_by="run", claim_expires_at=None, error=None,
    )


def _ours(row: sending_ledger.LedgerRow, camp_id, *, echo: bool, as_text: bool) -> Campaign:
    """The campaign exactly as the send made it; ``echo``: the reply carries template, list and
    folder; ``as_text``: every id as a string."""
    spell = str if as_text else (lambda v: v)
    return Campaign(
        camp_id=camp_id, cust_id=spell(CUST), name=row.cheetah_name, status="DRAFT",
        recipient_count=row.rows_accepted or 0, camp_param={"sendSchedule": format_start_time(row.send_at)},
        template_obj_id=row.template_id if echo else None, list_id=spell(row.list_id) if echo else None,
        folder_id=spell(FOLDER) if echo else None,
    )


@settings(max_examples=150, deadline=None)
@given(list_id=ids, camp_id=ids, accepted=st.integers(1, 10**6), send_at=times, echo=st.booleans(),
       as_text=st.booleans())
def test_our_own_campaign_is_ours(list_id, camp_id, accepted, send_at, echo, as_text):
    row = _row(list_id, accepted, send_at)
    assert ownership_problem(_ours(row, camp_id, echo=echo, as_text=as_text), row, cust_id=CUST, folder_id=FOLDER) is None


CHANGES = {
    "name": lambda c: {"name": c.name + "X"},
    "cust": lambda c: {"cust_id": 999},
    "folder": lambda c: {"folder_id": 1},
    "template": lambda c: {"template_obj_id": "1004"},
    "list": lambda c: {"list_id": "someone-elses-list"},
    "start": lambda c: {"camp_param": {"sendSchedule": format_start_time(c.start_time + dt.timedelta(minutes=1))}},
    "no start": lambda c: {"camp_param": {}},
}


@settings(max_examples=200, deadline=None)
@given(list_id=ids, camp_id=ids, accepted=st.integers(1, 10**6), send_at=times, as_text=st.booleans(),
       change=st.sampled_from(sorted(CHANGES)))
def test_any_one_difference_makes_it_foreign(list_id, camp_id, accepted, send_at, as_text, change):
    row = _row(list_id, accepted, send_at)
    mine = _ours(row, camp_id, echo=True, as_text=as_text)
    theirs = dataclasses.replace(mine, **CHANGES[change](mine))
    problem = ownership_problem(theirs, row, cust_id=CUST, folder_id=FOLDER)
    assert problem is not None
    error = foreign(row, theirs, problem)
    assert "rename or delete it in Cheetah Messaging, then re-execute" in str(error) and error.permanent


@settings(max_examples=150, deadline=None)
@given(list_id=ids, camp_id=ids, accepted=st.one_of(st.none(), st.integers(1, 10**6)), count=st.integers(0, 10**6),
       send_at=times)
def test_without_a_list_in_the_reply_the_count_must_be_the_accepted_rows(list_id, camp_id, accepted, count, send_at):
    row = _row(list_id, accepted, send_at)
    theirs = dataclasses.replace(_ours(row, camp_id, echo=False, as_text=False), recipient_count=count)
    problem = ownership_problem(theirs, row, cust_id=CUST, folder_id=FOLDER)
    assert (problem is None) == (accepted is not None and count == accepted)
