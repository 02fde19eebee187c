"""The SQLite side of the identifier normalisation (:mod:`.identifiers`): the Python functions
registered on every sqlite3 connection (:func:`register_sqlite_function`, from the engine's
"connect" event), which the freeze's SQL calls where SQLite's builtins do not suffice."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy.engine import Engine

from .identifiers import SQL_FUNCTION, address_of, normalise_identifier, template_index

#: ``str.isspace`` within ASCII, as bytes (what :func:`.identifiers.normalise_identifier` strips).
_ASCII_STRIP = "".join(chr(c) for c in range(128) if chr(c).isspace())
_ASCII_STRIP_BYTES = _ASCII_STRIP.encode("ascii")


def _as_text(value: Any) -> str:
    """A stored SQLite value (text, blob, number) as the text the identifier functions take."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else str(value)


def _sqlite_address(value: Any) -> str | None:
    return None if value is None else address_of(_as_text(value))


def _sqlite_norm(value: Any) -> str | None:
    return None if value is None else normalise_identifier(_as_text(value))


def _sqlite_template_index(
    value: Any, count: int, _sha256=hashlib.sha256, _from_bytes=int.from_bytes
) -> int | None:
    """:func:`template_index` of a SQLite value, with its ASCII path inlined (it runs once per
    recipient). In a UTF-8 database the freeze passes the identifier's bytes (``CAST(ident AS
    BLOB)``), which spares SQLite's conversion to ``str`` and the encoding back; ``bytes.lower``/
    ``strip`` on ASCII are ``str.lower``/``strip``'s ASCII path, byte for byte. Other bytes must be
    UTF-8: text that is not (a TEXT value written as raw bytes) fails the freeze, as it fails the
    streamed one, rather than be written to a list that could not be read back."""
    if isinstance(value, bytes):
        if value.isascii():
            return _from_bytes(_sha256(value.lower().strip(_ASCII_STRIP_BYTES)).digest()[:6], "big") % count
        value = value.decode("utf-8")  # strict: see above
    elif isinstance(value, str) and value.isascii():
        digest = _sha256(value.lower().strip(_ASCII_STRIP).encode()).digest()
        return _from_bytes(digest[:6], "big") % count
    norm_value = _sqlite_norm(value)
    return None if norm_value is None else template_index(norm_value, count)


def _sqlite_text(value: Any) -> str | None:
    """A stored SQLite value as the text the freeze writes (what ``as_text`` makes of it)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def register_sqlite_function(dbapi_connection: Any) -> None:
    """Register ``cheetah_norm`` (and the freeze's two helpers) on one sqlite3 connection
    (idempotent)."""
    dbapi_connection.create_function(SQL_FUNCTION, 1, _sqlite_norm, deterministic=True)
    dbapi_connection.create_function(f"{SQL_FUNCTION}_template", 2, _sqlite_template_index, deterministic=True)
    dbapi_connection.create_function(f"{SQL_FUNCTION}_text", 1, _sqlite_text, deterministic=True)
    dbapi_connection.create_function(f"{SQL_FUNCTION}_address", 1, _sqlite_address, deterministic=True)


def sqlite_text_is_utf8(engine: Engine) -> bool:
    """True if ``engine``'s database is SQLite and stores its text as UTF-8 (``PRAGMA encoding``,
    fixed when the file was created; UTF-16 files exist); False for any other database."""
    if engine.dialect.name != "sqlite":
        return False
    with engine.connect() as conn:
        return str(conn.exec_driver_sql("PRAGMA encoding").scalar()).upper() == "UTF-8"
