"""Tables of the customer database (SQLAlchemy Core).

Two families live here:

* **The Optimove side** (the customer's own data, which a real deployment already has):
  ``customers``, ``target_group_members``, ``campaign_schedule`` and ``suppression``. The
  ``customers`` table's columns beyond ``customer_pk`` are the customer's: the identifier column
  named by the Data Map "Map To" of the identifier field, and the personalisation columns. The
  demo seed creates the shape below; the send path *reflects* the real table and checks that the
  columns it needs exist (set-up steps 1-3).
* **What this integration remembers** (all prefixed ``cheetah_``): the template catalog per day,
  the day's validated campaign plan, frozen recipient lists, the send ledger that makes sends
  exactly-once, import rejections, metric snapshots and the campaign analysis. ``create_all``
  only ever creates these and the demo tables; it never alters an existing customer table.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    inspect,
    literal,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError

metadata = MetaData()

# ------------------------------------------------------------------------------------------------
# Optimove side (demo shape; a real deployment already has these)
# ------------------------------------------------------------------------------------------------
customers = Table(
    "customers",
    metadata,
    Column("customer_pk", Integer, primary_key=True, autoincrement=True),
    Column("email", String(320)),  # the demo identifier (Data Map EMAIL_ADDR -> "email")
    Column("first_name", String(100)),
    Column("last_name", String(100)),
    Column("fav_dept", String(100)),
    Column("city", String(100)),
    Column("updated_at", DateTime(timezone=True)),
)

target_group_members = Table(
    "target_group_members",
    metadata,
    Column("target_group", String(100), primary_key=True),
    Column("customer_pk", Integer, primary_key=True),
)

#: One row per campaign scheduled on the Cheetah Messaging channel.
#: ``template_ids`` is a comma-separated list of Cheetah template objIds ("1001,1002"): a campaign
#: with several templates splits its recipients deterministically between them.
#: ``send_time`` is local wall time "HH:MM" in ``time_zone`` (an IANA name such as
#: "Europe/Paris"); ``status`` is SCHEDULED or CANCELLED.
campaign_schedule = Table(
    "campaign_schedule",
    metadata,
    Column("campaign_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("send_date", Date, nullable=False, index=True),
    Column("send_time", String(8), nullable=False),
    Column("time_zone", String(64)),
    Column("template_ids", String(400), nullable=False),
    Column("target_group", String(100), nullable=False),
    Column("status", String(16), nullable=False, server_default="SCHEDULED"),
)

#: Unsubscribed or bounced customers: never sent to. Matched case-insensitively on identifier.
suppression = Table(
    "suppression",
    metadata,
    Column("identifier", String(320), primary_key=True),
    Column("reason", String(32), nullable=False),
    Column("added_at", DateTime(timezone=True)),
)

OPTIMOVE_TABLES = (customers, target_group_members, campaign_schedule, suppression)

# ------------------------------------------------------------------------------------------------
# What the integration remembers
# ------------------------------------------------------------------------------------------------
#: The template catalog, one snapshot per day (partition).
template_catalog = Table(
    "cheetah_template_catalog",
    metadata,
    Column("catalog_date", Date, primary_key=True),
    Column("obj_id", String(64), primary_key=True),
    Column("display_name", String(400), nullable=False),
    Column("subject", String(1000)),
    Column("fields", Text, nullable=False),  # JSON list of Data Map field names
    Column("modified", String(64)),
    Column("fetched_at", DateTime(timezone=True), nullable=False),
)

#: The day's validated plan: one row per (day, campaign, template) that the schedule holds.
#: ``status``: READY, INVALID (reason says why), MISSED (send time passed), CANCELLED.
campaign_plan = Table(
    "cheetah_campaign_plan",
    metadata,
    Column("send_date", Date, primary_key=True),
    Column("campaign_id", String(64), primary_key=True),
    Column("template_id", String(64), primary_key=True),
    Column("template_index", Integer, nullable=False),
    Column("template_count", Integer, nullable=False),
    Column("campaign_name", String(200), nullable=False),
    Column("target_group", String(100), nullable=False),
    Column("send_at", DateTime(timezone=True)),  # UTC
    Column("status", String(16), nullable=False),
    Column("reason", Text),
    Column("planned_at", DateTime(timezone=True), nullable=False),
)

#: A frozen recipient list: one per (campaign, day). Once any of its sends has started, the list
#: is never re-derived: the send uses exactly what was materialized.
recipient_list = Table(
    "cheetah_recipient_list",
    metadata,
    Column("list_key", String(200), primary_key=True),  # "{campaign_id}/{send_date}"
    Column("campaign_id", String(64), nullable=False),
    Column("send_date", Date, nullable=False, index=True),
    Column("identifier_column", String(100), nullable=False),
    Column("fields", Text, nullable=False),  # JSON: {cheetah field name: customer column}
    Column("row_count", Integer, nullable=False),
    Column("in_target_group", Integer, nullable=False),
    Column("excluded_missing_identifier", Integer, nullable=False),
    Column("excluded_suppressed", Integer, nullable=False),
    Column("collapsed_duplicates", Integer, nullable=False),
    Column("frozen_at", DateTime(timezone=True), nullable=False),
)

#: One row per recipient of a frozen list. The primary key is its only index, so a freeze writes
#: each recipient into two structures on PostgreSQL (heap and key) and one on SQLite (a WITHOUT
#: ROWID table is its key's b-tree); a template's recipients are read along the key, by
#: identifier, with the template as a filter. On PostgreSQL both key columns are ordered bytewise
#: (collation "C", as on SQLite): key comparisons are memcmp, not the database's locale (every
#: insert compares the list key with its neighbours'; under C.UTF-8 that made a million-row write
#: 1.5 times slower), and the freeze writes in that order.
recipient = Table(
    "cheetah_recipient",
    metadata,
    Column("list_key", String(200).with_variant(String(200, collation="C"), "postgresql"), primary_key=True),
    Column("identifier", String(320).with_variant(String(320, collation="C"), "postgresql"), primary_key=True),
    Column("template_id", String(64), nullable=False),
    Column("attrs", Text, nullable=False),  # JSON: {cheetah field name: value}
    # What is sent to Cheetah (identifiers.address_of: the customer's own value, stripped) when it
    # differs from ``identifier`` (normalised: only ever compared); NULL when the two are the same.
    Column("address", Text),
    sqlite_with_rowid=False,
)

#: The send ledger: one row per (campaign, template, day). It is the single source of truth for
#: what was prepared and sent, advanced one state at a time *after* each Cheetah call succeeds:
#: PENDING -> IMPORTED -> CREATED -> LAUNCHED -> APPROVED (terminal: sent at send_at), or
#: MISSED, EMPTY (no recipients), CANCELLED, FAILED (reason in ``error``; retried next run).
#: The Cheetah campaign name is derived from the key, so it is the same on every attempt: the
#: API's unique-name rule is the guard that no second campaign can ever be created.
send_ledger = Table(
    "cheetah_send_ledger",
    metadata,
    Column("send_key", String(250), primary_key=True),  # "{campaign_id}/{template_id}/{send_date}"
    Column("campaign_id", String(64), nullable=False, index=True),
    Column("template_id", String(64), nullable=False),
    Column("send_date", Date, nullable=False, index=True),
    Column("list_key", String(200), nullable=False),
    Column("cheetah_name", String(200), nullable=False, unique=True),
    Column("state", String(16), nullable=False),
    Column("send_at", DateTime(timezone=True)),
    Column("rows_in_list", Integer),
    # Cheetah ids are opaque (a number or a string): stored as contract.id_to_db writes them.
    Column("list_id", String(64)),
    Column("rows_accepted", Integer),
    Column("rows_rejected", Integer),
    Column("camp_id", String(64), index=True),
    # The account the send went to (set when it first touches Cheetah): the client's endpoint
    # and Cust_ID. A send recorded against another account is never counted as done, nor sent
    # again while its campaign may go out there (sending/elsewhere.py).
    Column("endpoint", String(500)),
    Column("cust_id", String(64)),
    # What happened to the row beyond its current state (e.g. the other account it went to
    # before it was re-based), one line per event; ``error`` says only why it stopped last.
    Column("history", Text),
    # How many times the send was re-created after a change to its schedule (the Cheetah name
    # then ends in "-r{revision}"), and what was handed over to Cheetah (send time, templates,
    # target group: sending/fingerprint.py), recorded when the send leaves PENDING.
    Column("revision", Integer, nullable=False, server_default="0", default=0),
    Column("fingerprint", Text),
    Column("claimed_by", String(100)),
    Column("claim_expires_at", DateTime(timezone=True)),
    Column("error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
#: The metric path's sensors select sent campaigns by send time (which snapshot days fall due)
#: and by last change (a send recorded as APPROVED late), each tick a bounded range scan.
Index("ix_cheetah_send_ledger_send_at", send_ledger.c.send_at)
Index("ix_cheetah_send_ledger_updated_at", send_ledger.c.updated_at)
#: The MISSED alert's tick reads the MISSED sends changed in its look-back window: an exact range.
Index("ix_cheetah_send_ledger_state_updated_at", send_ledger.c.state, send_ledger.c.updated_at)

import_rejection = Table(
    "cheetah_import_rejection",
    metadata,
    Column("send_key", String(250), primary_key=True),
    Column("identifier", String(320), primary_key=True),
    Column("reason", Text, nullable=False),
)

#: Suppression after the freeze (sending/late_suppression.py). Whom a send's import left out, and
#: whom a check found suppressed in the list of a send already handed over, by normalised
#: identifier (as its frozen list holds it) and revision. ``stage``: ``left_out`` (by the import),
#: ``found`` (in the revision's list in Cheetah: to be re-created), ``recreated`` (its campaign was
#: deleted and sent again without them), ``mailed`` (found too late: the campaign goes to them).
send_suppression = Table(
    "cheetah_send_suppression",
    metadata,
    Column("send_key", String(250), primary_key=True),
    Column("revision", Integer, primary_key=True),
    Column("identifier", String(320), primary_key=True),
    Column("stage", String(16), nullable=False),
    Column("found_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
Index("ix_cheetah_send_suppression_stage_updated_at", send_suppression.c.stage, send_suppression.c.updated_at)

#: The suppression list as the late-suppression check last read it, each entry normalised once:
#: ``gen`` is the check that first saw it (an entry that leaves the suppression table leaves this
#: one). ``norm`` has the database's collation, so a comparison with the list's key takes the key's.
suppression_seen = Table(
    "cheetah_suppression_seen",
    metadata,
    Column("identifier", Text, primary_key=True),  # as the suppression table holds it
    Column("norm", Text, nullable=False),
    Column("gen", Integer, nullable=False, index=True),
)

#: Per handed-over send: the revision checked and the last ``gen`` of suppression_seen checked against it.
suppression_check = Table(
    "cheetah_suppression_check",
    metadata,
    Column("send_key", String(250), primary_key=True),
    Column("revision", Integer, nullable=False),
    Column("gen", Integer, nullable=False),
)

#: One snapshot per (Cheetah campaign, day 1..7 after the send). A later fetch of the same day
#: replaces that day's row (a backfill); other days are never touched, so a restatement shows as
#: a lower count on a later day, next to the higher one the earlier day recorded.
metric_snapshot = Table(
    "cheetah_metric_snapshot",
    metadata,
    Column("cheetah_name", String(200), primary_key=True),
    Column("day", Integer, primary_key=True),
    Column("camp_id", String(64), nullable=False),  # contract.id_to_db text, as in the ledger
    Column("as_of", DateTime(timezone=True), nullable=False),
    Column("fetched_at", DateTime(timezone=True), nullable=False),
    Column("sent", Integer, nullable=False),
    Column("received", Integer, nullable=False),
    Column("message_opens", Integer, nullable=False),
    Column("message_clicks", Integer, nullable=False),
    Column("unsubs", Integer, nullable=False),
)

#: The campaign analysis a campaign-analysis page reads: latest metrics under Optimove names.
campaign_analysis = Table(
    "cheetah_campaign_analysis",
    metadata,
    Column("cheetah_name", String(200), primary_key=True),
    Column("camp_id", String(64), nullable=False),  # contract.id_to_db text, as in the ledger
    Column("campaign_id", String(64)),
    Column("template_id", String(64)),
    Column("send_date", Date),
    Column("days_reported", Integer, nullable=False),
    Column("latest_day", Integer, nullable=False),
    Column("sent", Integer, nullable=False),
    Column("delivered", Integer, nullable=False),
    Column("unique_opens", Integer, nullable=False),
    Column("unique_clicks", Integer, nullable=False),
    Column("unique_unsubscribes", Integer, nullable=False),
    Column("delivery_rate", Float),
    Column("open_rate", Float),
    Column("click_rate", Float),
    Column("unsubscribe_rate", Float),
    Column("restated", Boolean, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

INTEGRATION_TABLES = (
    template_catalog,
    campaign_plan,
    recipient_list,
    recipient,
    send_ledger,
    import_rejection,
    send_suppression,
    suppression_seen,
    suppression_check,
    metric_snapshot,
    campaign_analysis,
)

class OutdatedTableError(ValueError):
    """A table of this integration was made by an older version and lacks what this one needs."""


#: Columns of cheetah_send_ledger added or changed (to text) after its first version.
_LEDGER_UPGRADES = ("list_id", "camp_id", "endpoint", "cust_id", "history")


#: Columns added later that an older ledger table gets in place (nullable or with a default, so
#: existing rows stay valid: revision 0, no fingerprint recorded).
_LEDGER_ADDED = {"revision": "INTEGER NOT NULL DEFAULT 0", "fingerprint": "TEXT"}


def upgrade_send_ledger(engine) -> list[str]:
    """Add the columns of :data:`_LEDGER_ADDED` an existing ledger table lacks; the names added."""
    present = {c["name"] for c in inspect(engine).get_columns(send_ledger.name)}
    added = [n for n in _LEDGER_ADDED if n not in present]
    if added:
        with engine.begin() as conn:
            for name in added:
                conn.exec_driver_sql(f"ALTER TABLE {send_ledger.name} ADD COLUMN {name} {_LEDGER_ADDED[name]}")
    return added


def upgrade_recipient_table(engine) -> bool:
    """Add ``address`` to a recipient table made before it (its lists' rows keep NULL: they are
    sent as they were frozen, normalised); True if added."""
    if "address" in {c["name"] for c in inspect(engine).get_columns(recipient.name)}:
        return False
    if_missing = "IF NOT EXISTS " if engine.dialect.name == "postgresql" else ""
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"ALTER TABLE {recipient.name} ADD COLUMN {if_missing}address TEXT")
    except DBAPIError:  # another run added it meanwhile (SQLite has no IF NOT EXISTS here)
        if "address" not in {c["name"] for c in inspect(engine).get_columns(recipient.name)}:
            raise
    return True


def check_send_ledger(engine) -> None:
    """Fail with :class:`OutdatedTableError` naming the fix if the ledger table is an older one."""
    columns = {c["name"]: c["type"] for c in inspect(engine).get_columns(send_ledger.name)}
    missing = [n for n in _LEDGER_UPGRADES if n not in columns]
    numeric = [n for n in ("list_id", "camp_id") if n in columns and not isinstance(columns[n], String)]
    if missing or numeric:
        problems = ([f"it lacks the columns {', '.join(missing)}"] if missing else []) + (
            [f"{', '.join(numeric)} should be text (Cheetah ids may be strings)"] if numeric else []
        )
        raise OutdatedTableError(
            f"The table {send_ledger.name} was made by an older version of this integration: "
            f"{'; '.join(problems)}. Upgrade it before running: add endpoint VARCHAR(500), cust_id "
            "VARCHAR(64) and history TEXT, and make list_id and camp_id VARCHAR(64) (existing numbers stay "
            "valid); a demo database can instead be deleted and seeded again."
        )


#: Two-key PostgreSQL advisory lock serialising this integration's table creation ("CHET", "DDL ").
_PG_DDL_LOCK = (0x43484554, 0x44444C20)


def create_tables(engine, tables) -> None:
    """``metadata.create_all`` of ``tables`` (those missing), safe when several runs do it at once.

    PostgreSQL: under a transaction-level advisory lock, so a second creator waits and then finds
    the tables (two concurrent ``CREATE TABLE`` of one name fail on ``pg_type``'s unique index).
    SQLite: in a ``BEGIN IMMEDIATE`` transaction (the database's write lock from the start), so
    the check and the creation are one step. Elsewhere a creator that loses a race checks again.
    """
    tables = list(tables)
    dialect = engine.dialect.name
    if dialect == "postgresql":
        with engine.begin() as conn:
            conn.execute(select(func.pg_advisory_xact_lock(*[literal(k) for k in _PG_DDL_LOCK])))
            metadata.create_all(conn, tables=tables)
        return
    if dialect == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                metadata.create_all(conn, tables=tables)
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
        return
    for attempt in range(len(tables) + 1):
        try:
            metadata.create_all(engine, tables=tables)
            return
        except DBAPIError:
            if attempt == len(tables):
                raise  # not a race: each retry would have found one more table made


def create_integration_tables(engine) -> None:
    """Create this integration's own tables if missing (never touches the customer's tables),
    and refuse a send ledger made by an older version (:class:`OutdatedTableError`)."""
    create_tables(engine, INTEGRATION_TABLES)
    check_send_ledger(engine)
    upgrade_send_ledger(engine)
    upgrade_recipient_table(engine)


def create_demo_tables(engine) -> None:
    """Create the Optimove-side tables of the demo shape (seeding and tests only)."""
    metadata.create_all(engine, tables=list(OPTIMOVE_TABLES))


def insert_new(engine, table: Table, rows: list[dict]) -> None:
    """Insert ``rows`` into ``table`` in one transaction, leaving alone those whose key is there
    already (another run recorded them too): ``ON CONFLICT DO NOTHING`` on SQLite and PostgreSQL,
    elsewhere a savepoint per row."""
    if not rows:
        return
    dialect = engine.dialect.name
    with engine.begin() as conn:
        if dialect in ("sqlite", "postgresql"):
            conn.execute((sqlite.insert if dialect == "sqlite" else postgresql.insert)(table).on_conflict_do_nothing(), rows)
            return
        for row in rows:
            try:
                with conn.begin_nested():
                    conn.execute(table.insert(), [row])
            except IntegrityError:
                pass
