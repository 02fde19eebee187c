"""Demo data for the Optimove-side tables: customers, target groups, suppression, campaigns.

Generation only (no database here; :mod:`.seed` writes it). Deterministic from the random
generator it is given: the same seed gives the same customers and schedule. The customers carry
the data-quality problems the send path must cope with: NULL, blank and malformed e-mail
addresses, and duplicates of an address differing only in case (or surrounding spaces).
"""

from __future__ import annotations

import datetime as dt
import random
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterator
from zoneinfo import ZoneInfo

TARGET_GROUPS = {  # group -> share of customers
    "all_customers": 1.0,
    "vip": 0.10,
    "winter_shoppers": 0.30,
    "new_signups": 0.05,
}
TIME_ZONES = ("UTC", "Europe/London", "America/New_York")
TEMPLATE_IDS = ("1001", "1002", "1003", "1004", "1005", "1006")
LATER_DAY_TIMES = ("09:00", "13:30", "18:00")
TWO_TEMPLATES = "1001,1003"

_THEMES = {
    "1001": "Winter sale",
    "1002": "Welcome",
    "1003": "Winter sale B",
    "1004": "Newsletter",
    "1005": "Weekend offers",
    "1006": "Local events",
}
_GROUP_LABELS = {
    "all_customers": "everyone",
    "vip": "VIP",
    "winter_shoppers": "winter shoppers",
    "new_signups": "new sign-ups",
}
FIRST_NAMES = (
    "Olivia", "Liam", "Emma", "Noah", "Amelia", "Oliver", "Ava", "Elijah", "Sophia", "Lucas",
    "Isabella", "Mateo", "Mia", "Levi", "Charlotte", "Ethan", "Harper", "James", "Evelyn", "Leo",
    "Chloé", "Zoë", "José", "Aoife", "Siobhán", "Björn", "Anaïs", "Renée", "Mohammed", "Fatima",
    "Wei", "Yuki", "Priya", "Arjun", "Kwame", "Amara", "Sven", "Ingrid", "Luca", "Giulia",
    "Hannah", "Jacob", "Grace", "Daniel", "Ella", "Samuel", "Lily", "David", "Nora", "Henry",
)
LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez",
    "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas", "Taylor",
    "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris", "Clark",
    "O'Brien", "McCarthy", "Müller", "Schmidt", "Dubois", "Lefèvre", "Rossi", "Bianchi",
    "Nakamura", "Kim", "Singh", "Patel", "Nguyen", "Okafor", "Kowalski", "Novak", "Jensen",
    "Larsen", "de la Cruz", "van der Berg", "Ó Súilleabháin", "Walker", "Young", "King",
)
DEPARTMENTS = (
    "Womenswear", "Menswear", "Kids", "Shoes", "Home", "Beauty", "Electronics", "Sports",
    "Outdoor", "Toys", "Garden", "Books",
)
CITIES = (
    "London", "Manchester", "Leeds", "Glasgow", "Dublin", "New York", "Boston", "Chicago",
    "Toronto", "Paris", "Lyon", "Berlin", "Munich", "Amsterdam", "Madrid", "Barcelona",
    "Rome", "Milan", "Stockholm", "Copenhagen",
)
DOMAINS = ("example.com", "example.org", "example.net", "mail.example", "shop.example")


# ------------------------------------------------------------------------------------------------
# customers
# ------------------------------------------------------------------------------------------------
#: The flaws of a demo customer's e-mail address, as :attr:`DemoCustomer.flaw` names them.
NULL_EMAIL, BLANK_EMAIL, MALFORMED_EMAIL, CASE_DUPLICATE = "null", "blank", "malformed", "case duplicate"


@dataclass(frozen=True, slots=True)
class DemoCustomer:
    """One generated customer: its ``customers`` row, its target groups, its suppression row."""

    row: dict[str, Any]
    groups: tuple[str, ...]  # every target group it belongs to ("all_customers" first)
    suppression: dict[str, Any] | None  # its ``suppression`` row, if it is suppressed
    flaw: str | None  # NULL_EMAIL, BLANK_EMAIL, MALFORMED_EMAIL, CASE_DUPLICATE or None


def demo_customers(count: int, rng: random.Random, now: dt.datetime) -> Iterator[DemoCustomer]:
    """Customers 1..``count`` (``customer_pk`` = their number), drawn from ``rng`` in order.

    About 1% have a NULL e-mail, 0.5% a blank one, 0.5% a malformed one and 1% repeat a recent
    address in another case; 2% of the good addresses are suppressed (stored in upper case now
    and then: matching is case-insensitive).
    """
    recent: deque[str] = deque(maxlen=500)  # recent good addresses, to make case duplicates from
    suppressed: set[str] = set()
    group_shares = [(g, share) for g, share in TARGET_GROUPS.items() if g != "all_customers"]
    for pk in range(1, count + 1):
        first = rng.choice(FIRST_NAMES)
        last = rng.choice(LAST_NAMES)
        local = "".join(
            ch for ch in f"{first}.{last}".lower() if ch.isascii() and (ch.isalnum() or ch == ".")
        )
        domain = rng.choice(DOMAINS)
        draw = rng.random()
        email: str | None
        flaw: str | None = None
        suppression: dict[str, Any] | None = None
        if draw < 0.010:
            email, flaw = None, NULL_EMAIL
        elif draw < 0.015:
            email, flaw = rng.choice(("", " ", "   ")), BLANK_EMAIL
        elif draw < 0.020:
            email, flaw = f"{local}{pk}.{domain}", MALFORMED_EMAIL
        elif draw < 0.030 and recent:
            base = rng.choice(recent)
            variant = rng.randrange(3)
            if variant == 0:
                email = base.upper()
            elif variant == 1:
                email = base[:1].upper() + base[1:]
            else:
                email = f" {base.title()} "
            flaw = CASE_DUPLICATE
        else:
            email = f"{local}{pk}@{domain}"
            recent.append(email)
            if rng.random() < 0.02 and email.lower() not in suppressed:
                suppressed.add(email.lower())
                suppression = {
                    "identifier": email.upper() if rng.random() < 0.25 else email,
                    "reason": "bounced" if rng.random() < 0.3 else "unsubscribed",
                    "added_at": now,
                }
        row = {
            "customer_pk": pk,
            "email": email,
            "first_name": first,
            "last_name": last,
            "fav_dept": rng.choice(DEPARTMENTS) if rng.random() < 0.95 else None,
            "city": rng.choice(CITIES),
            "updated_at": now,
        }
        groups = ("all_customers", *(group for group, share in group_shares if rng.random() < share))
        yield DemoCustomer(row=row, groups=groups, suppression=suppression, flaw=flaw)


# ------------------------------------------------------------------------------------------------
# campaigns
# ------------------------------------------------------------------------------------------------
def _ceil_minutes(when: dt.datetime, step: int = 5) -> dt.datetime:
    if when.second or when.microsecond:
        when = when.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    extra = (-when.minute) % step
    return when + dt.timedelta(minutes=extra)


def _day_campaigns(
    nominal: dt.date, day_index: int, now: dt.datetime, rng: random.Random, *, first: bool, past: bool = False
) -> list[dict[str, Any]]:
    """One day's 2-4 campaigns (2 on a ``past`` day), one of them with two templates; ``first``: the
    day of ``now`` (sends at least 60 minutes after it)."""
    rows: list[dict[str, Any]] = []
    groups = list(TARGET_GROUPS)
    count = 2 if past else rng.randint(2, 4)
    two_template_slot = rng.randrange(count)
    for n in range(count):
        tz_name = TIME_ZONES[(day_index + n) % len(TIME_ZONES)]
        if first:
            local = _ceil_minutes(now.astimezone(ZoneInfo(tz_name)) + dt.timedelta(minutes=60 + 15 * n))
            send_date, send_time = local.date(), local.strftime("%H:%M")
        else:
            send_date, send_time = nominal, LATER_DAY_TIMES[n % len(LATER_DAY_TIMES)]
        templates = TWO_TEMPLATES if n == two_template_slot else rng.choice(TEMPLATE_IDS)
        group = "all_customers" if n == two_template_slot else rng.choice(groups)
        theme = _THEMES[templates.split(",")[0]]
        if n == two_template_slot:
            theme = "Winter sale A/B"
        rows.append(
            dict(
                campaign_id=f"C{nominal:%Y%m%d}-{n + 1}",
                name=f"{theme} for {_GROUP_LABELS[group]} ({send_date:%d %b})",
                send_date=send_date,
                send_time=send_time,
                time_zone=tz_name,
                template_ids=templates,
                target_group=group,
                status="SCHEDULED",
            )
        )
    return rows


def plan_campaigns(
    *, days: int, today: dt.date, now: dt.datetime, rng: random.Random, past_days: int = 0
) -> list[dict[str, Any]]:
    """The demo schedule: 2-4 campaigns a day over ``days`` days starting ``today``, after
    ``past_days`` days of them before ``today`` (the demo's week of history), oldest first.

    Today's campaigns go out at least 60 minutes after ``now`` (in their own time zone; if that is
    already tomorrow there, ``send_date`` is tomorrow: it is always the local date of the send).
    Other days (earlier and later) send at 09:00, 13:30 and 18:00 local time. One campaign a day
    uses two templates. A past day has two campaigns (the demo replays their week of snapshots, one
    run per campaign-day: fewer keep it quick). The past days are drawn after the others, so ``past_days`` leaves the
    campaigns from ``today`` on as they are without it.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if past_days < 0:
        raise ValueError("past_days must not be negative")
    ahead: list[dict[str, Any]] = []
    for day_index in range(days):
        nominal = today + dt.timedelta(days=day_index)
        ahead.extend(_day_campaigns(nominal, day_index, now, rng, first=day_index == 0))
    past: list[dict[str, Any]] = []
    for back in range(past_days, 0, -1):
        past.extend(_day_campaigns(today - dt.timedelta(days=back), -back, now, rng, first=False, past=True))
    return past + ahead
