"""The one normalisation of customer identifiers, in Python and in SQL.

Definition (the only one; everything that compares, de-duplicates, hashes or sends an identifier
uses it)::

    normalise_identifier(s) = strip(NFKC(casefold(NFKC(casefold(NFD(s))))))

* ``NFD``, ``NFKC``: ``unicodedata.normalize`` (full-width letters, ligatures, no-break and
  other compatibility spaces become their plain forms);
* ``casefold``: Python's ``str.casefold``, Unicode *full* case folding, one code point at a time
  (``"ß"`` -> ``"ss"``, ``"É"`` -> ``"é"``, ``"ﬁ"`` -> ``"fi"``);
* the nesting is Unicode's compatibility caseless match (definition D146, with NFKC for NFKD):
  the result is the same for canonically equivalent spellings (precomposed or not), and
  normalising it again changes nothing, so a suppression entry holding the very identifier a
  list stored still matches it. (A single ``casefold(NFKC(s))`` is neither: ``"ß\u0301"`` became
  ``"ss\u0301"``, which normalises to ``"sś"``.)
* ``strip``: removes every leading and trailing code point ``c`` for which ``c.isspace()`` is true
  or whose general category is ``Cf`` (format: zero-width space/joiners U+200B..U+200D, word
  joiner U+2060, byte-order mark U+FEFF, soft hyphen U+00AD, bidi marks, ...). Code points inside
  the identifier are kept.

The Unicode version is Python's (``unicodedata.unidata_version``). An identifier that normalises
to ``""`` counts as missing; so does one that no mailbox can have, which normalises to ``""``:
one whose normalised form is longer than :data:`MAX_LENGTH` characters (the width of the list's
key; RFC 5321 allows 254) or holds a control character (general category ``Cc``: NUL, DEL, a
tab inside it, ...; those at the ends are whitespace, stripped). Both depend only on the
normalised form, so every spelling of an identifier, and its suppression, agree. The freeze
also counts as missing a customer whose address as sent (:func:`address_of`) is longer than
:data:`MAX_LENGTH` (:func:`frozen_identifier`).

It is applied identically to suppression matching, de-duplication, the template assignment hash
and the identifier stored in a frozen list (its key; what is sent to Cheetah is the customer's
own value, stripped: :func:`address_of`), inside the
database, as the SQL function ``cheetah_norm(text)``:

* **SQLite**: :func:`normalise_identifier` itself, registered as a deterministic function on every
  connection (:func:`.sqlite_norm.register_sqlite_function`, from the engine's "connect" event).
* **PostgreSQL**: ``IMMUTABLE`` functions generated here from Python's ``unicodedata``
  (:func:`postgres_function_sql`). ``cheetah_norm(text)`` is a SQL function the planner inlines:
  ASCII text of at most :data:`MAX_LENGTH` characters without a control character takes the
  equivalent short path ``btrim(lower($1 COLLATE "C"))``; anything else goes to
  ``cheetah_norm_unicode(text)`` (PL/pgSQL):
  ``normalize(s, NFD)``, the case folding as a per-code-point mapping (ASCII letters by
  ``lower()`` under "C", the other 1:1 pairs by ``translate()``, the 1:many ones by nested
  ``replace()``, each run only when a regular expression finds one of its code points),
  ``normalize(s, NFKC)``, the case folding again, ``normalize(s, NFKC)``; then ``btrim`` with
  the exact strip set, and ``""`` if that is too long or holds a control character. It needs a
  UTF8 database. :func:`ensure_sql_function` installs them when missing or different, and checks
  on probe strings that they agree with Python before committing them.
"""

from __future__ import annotations

import functools
import hashlib
import re
import sys
import unicodedata
from typing import Any, Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

#: The SQL function's name, the same on SQLite and PostgreSQL.
SQL_FUNCTION = "cheetah_norm"

#: ``str.isspace`` within ASCII (no ASCII code point is in category Cf).
_ASCII_STRIP = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f "
_ASCII_STRIP_BYTES = _ASCII_STRIP.encode("ascii")

#: The longest identifier a list holds, normalised or as sent (``cheetah_recipient.identifier``
#: is VARCHAR(320)); a longer one counts as missing.
MAX_LENGTH = 320

#: General category Cc is U+0000..U+001F and U+007F..U+009F (as ranges of a regular expression's
#: class, less NUL: database text never holds it, PostgreSQL's cannot, and SQLite's holding it
#: takes the Python path). A normalised identifier holding one normalises to "" (missing).
_ASCII_CONTROLS = "\x01-\x1f\x7f"
_CONTROLS = _ASCII_CONTROLS + "-\x9f"
_CONTROL = re.compile(f"[\x00{_CONTROLS}]")

#: Two-key advisory lock serialising installs of the PostgreSQL function ("CHET", "NORM").
_PG_LOCK = (0x43484554, 0x4E4F524D)


class IdentifierNormalisationError(RuntimeError):
    """The database cannot normalise identifiers exactly as Python does (the message says why)."""


@functools.cache
def strip_chars() -> str:
    """Every code point :func:`normalise_identifier` strips from both ends, in code point order."""
    return "".join(
        ch
        for ch in map(chr, range(sys.maxunicode + 1))
        if ch.isspace() or unicodedata.category(ch) == "Cf"
    )


def normalise_identifier(value: str) -> str:
    """``strip(NFKC(casefold(NFKC(casefold(NFD(value))))))``, or ``""`` when that is longer than
    :data:`MAX_LENGTH` or holds a control character: see the module docstring."""
    if value.isascii():  # NFD and NFKC are the identity on ASCII, and casefold is lower()
        out = value.lower().strip(_ASCII_STRIP)
        return out if len(out) <= MAX_LENGTH and out.isprintable() else ""  # ASCII: Cc = not printable
    out = normal_form(value)
    return out if len(out) <= MAX_LENGTH and _CONTROL.search(out) is None else ""


def normal_form(value: str) -> str:
    """The normalisation alone, ``strip(NFKC(casefold(NFKC(casefold(NFD(value))))))``, whatever
    its length or characters (:func:`normalise_identifier` is this, or ``""``)."""
    folded = unicodedata.normalize("NFD", value).casefold()
    folded = unicodedata.normalize("NFKC", folded).casefold()
    return unicodedata.normalize("NFKC", folded).strip(strip_chars())


def frozen_identifier(value: str) -> str:
    """The identifier a customer's ``value`` is frozen under: :func:`normalise_identifier`, or
    ``""`` (missing) when its address as sent (:func:`address_of`) is longer than
    :data:`MAX_LENGTH`. The freeze computes it in SQL (:mod:`.freeze_sql`); this is its reference."""
    return normalise_identifier(value) if len(address_of(value)) <= MAX_LENGTH else ""


def address_of(value: str) -> str:
    """The identifier sent to Cheetah for a customer's ``value``: the value itself, less leading and
    trailing whitespace and format characters (the strip of :func:`normalise_identifier`), its
    letters, case and spelling kept. The normalised form is only ever compared: ``info@straße.de``
    and ``info@strasse.de`` match each other's suppression, but they are two mailboxes, and a
    customer id may be case-sensitive."""
    return value.strip(_ASCII_STRIP) if value.isascii() else value.strip(strip_chars())


def template_index(identifier: str, count: int) -> int:
    """Which of ``count`` templates an identifier gets: the first 48 bits of the SHA-256 of its
    normalised UTF-8 form, modulo ``count`` (SQL: :func:`template_index_sql`)."""
    digest = hashlib.sha256(normalise_identifier(identifier).encode("utf-8")).digest()
    return int.from_bytes(digest[:6], "big") % count  # the first 12 hex digits


def norm(expr: Any) -> sa.sql.ColumnElement:
    """``cheetah_norm(expr)`` as a SQLAlchemy expression (text in, text out)."""
    return sa.func.cheetah_norm(expr, type_=sa.Text)


def norm_sql(expr: Any, dialect: str) -> sa.sql.ColumnElement:
    """``cheetah_norm(expr)`` as the cheapest equal expression of ``dialect``.

    SQLite: ASCII text (as many bytes as characters; a NUL ends SQLite's character count, so text
    holding one never passes) of at most :data:`MAX_LENGTH` bytes without a control character is
    normalised by the builtins ``trim(lower(x))``, exactly :func:`normalise_identifier`'s ASCII
    path (NFKC is the identity on ASCII, SQLite's ``lower`` folds A-Z only, as ``str.lower`` does
    on ASCII, and the only whitespace left to strip is the space); anything else (other text,
    longer or with a control character, numbers, blobs) calls the registered Python function.
    The controls are found in C, in one pass: ``json_quote`` escapes every byte below 0x20 (and
    ``"`` and ``\\``, which then take the Python path too), so its byte length is the text's plus
    the two quotes only when there is none; DEL by ``instr`` (a GLOB of the class cost three
    times as much). PostgreSQL: ``cheetah_norm``, whose ASCII path the planner inlines.
    """
    if dialect != "sqlite":
        return norm(expr)
    n_bytes = sa.func.length(sa.cast(expr, sa.LargeBinary))
    plain_ascii = sa.and_(
        sa.func.typeof(expr) == "text",
        n_bytes == sa.func.length(expr),
        n_bytes <= MAX_LENGTH,
        sa.func.length(sa.cast(sa.func.json_quote(expr), sa.LargeBinary)) == n_bytes + 2,
        sa.func.instr(expr, sa.func.char(0x7F)) == 0,
    )
    return sa.case((plain_ascii, sa.func.trim(sa.func.lower(expr))), else_=norm(expr))


def address_sql(expr: Any, dialect: str) -> sa.sql.ColumnElement:
    """:func:`address_of` in SQL: ASCII text by ``trim``/``btrim`` of the ASCII whitespace; other
    values by the registered function (SQLite) or ``btrim`` of the whole strip set (PostgreSQL)."""
    if dialect == "postgresql":
        ascii_text = sa.func.octet_length(expr) == sa.func.length(expr)
        return sa.case(
            (ascii_text, sa.func.btrim(expr, _ASCII_STRIP)), else_=sa.func.btrim(expr, strip_chars())
        )
    if dialect == "sqlite":
        ascii_text = sa.and_(
            sa.func.typeof(expr) == "text", sa.func.length(sa.cast(expr, sa.LargeBinary)) == sa.func.length(expr)
        )
        return sa.case(
            (ascii_text, sa.func.trim(expr, _ASCII_STRIP)),
            else_=sa.func.cheetah_norm_address(expr, type_=sa.Text),
        )
    raise IdentifierNormalisationError(f"no address_sql for the {dialect} dialect")


def template_index_sql(
    normalised: Any, count: int, dialect: str, *, sqlite_utf8: bool = False
) -> sa.sql.ColumnElement:
    """:func:`template_index` of an identifier that is already normalised, in SQL.

    The identifier is hashed as :func:`template_index` hashes it, normalised (again): that is the
    identity on normalised ASCII, so only other text pays for it. PostgreSQL: ``sha256`` of its
    UTF-8 bytes, the first 6 bytes read as a 48-bit integer, modulo ``count``. SQLite has no
    SHA-256 builtin: the registered function ``cheetah_norm_template`` (:func:`template_index`
    itself) computes it, given the identifier's bytes when ``sqlite_utf8`` says the database
    stores text as UTF-8 (:func:`.sqlite_norm.sqlite_text_is_utf8`; a UTF-16 file's bytes are not), else its text.
    """
    if count == 1:
        return sa.literal(0, sa.Integer)
    if dialect != "postgresql":
        arg = sa.cast(normalised, sa.LargeBinary) if sqlite_utf8 else normalised
        return sa.func.cheetah_norm_template(arg, count, type_=sa.Integer)
    from sqlalchemy.dialects.postgresql import BIT

    ascii_text = sa.func.octet_length(normalised) == sa.func.length(normalised)
    hashed = sa.case((ascii_text, normalised), else_=norm(normalised))
    first6 = sa.func.substring(sa.func.sha256(sa.func.convert_to(hashed, "UTF8")), 1, 6)
    bits = sa.cast(sa.literal("x", sa.Text).concat(sa.func.encode(first6, "hex", type_=sa.Text)), BIT(48))
    return sa.cast(bits, sa.BigInteger) % count


# ------------------------------------------------------------------------------------------------
# PostgreSQL
# ------------------------------------------------------------------------------------------------
def _literal(text: str) -> str:
    """``text`` as a PostgreSQL escape-string literal made of printable ASCII only."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch == "'":
            out.append("''")
        elif ch == "\\":
            out.append("\\\\")
        elif 0x20 <= code < 0x7F:
            out.append(ch)
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04X}")
        else:
            out.append(f"\\U{code:08X}")
    return "E'" + "".join(out) + "'"


@functools.cache
def case_fold_mapping() -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
    """Python's case folding as ``(one_to_one, one_to_many)`` pairs ``(code point, folded)``.

    Checked here: every folded output is made of fixed points of the folding, so applying the
    pairs once, in any order, is exactly ``str.casefold``.
    """
    one, many = [], []
    for ch in map(chr, range(sys.maxunicode + 1)):
        folded = ch.casefold()
        if folded == ch:
            continue
        if folded.casefold() != folded or any(c.casefold() != c for c in folded):
            raise IdentifierNormalisationError(
                f"Case folding of U+{ord(ch):04X} is not idempotent; the SQL function cannot be generated."
            )
        (one if len(folded) == 1 else many).append((ch, folded))
    return tuple(one), tuple(many)


#: 1:1 foldings are applied by translate() in groups of this many code points, each only when a
#: regular expression finds one of them in the identifier: translate() costs its from-string's
#: length per character, and most identifiers need none of them.
_TRANSLATE_GROUP = 96


def _class(chars: str) -> str:
    return _literal("[" + chars + "]")


@functools.cache
def postgres_function_bodies() -> dict[str, str]:
    """The bodies (``prosrc``) of ``cheetah_norm(text)`` (SQL, inlined by the planner: the ASCII
    short path) and of the helper ``cheetah_norm_unicode(text)`` (PL/pgSQL: the full path, the
    case folding applied twice as in :func:`normalise_identifier`)."""
    one, many = case_fold_mapping()
    one = tuple((a, b) for a, b in one if not a.isascii())  # ASCII A-Z: lower() under "C"
    fold = []  # s := casefold(s)
    for start in range(0, len(one), _TRANSLATE_GROUP):
        group = one[start : start + _TRANSLATE_GROUP]
        src, dst = "".join(a for a, _ in group), "".join(b for _, b in group)
        fold.append(f"  IF s ~ {_class(src)} THEN s := translate(s, {_literal(src)}, {_literal(dst)}); END IF;")
    nested = "s"
    for src, dst in many:
        nested = f"replace({nested}, {_literal(src)}, {_literal(dst)})"
    fold.append(f"  IF s ~ {_class(''.join(a for a, _ in many))} THEN s := {nested}; END IF;")
    steps = ["  s := lower(normalize(s, NFD) COLLATE \"C\");", *fold]
    steps += ["  s := lower(normalize(s, NFKC) COLLATE \"C\");", *fold]
    steps.append(f"  s := btrim(normalize(s, NFKC), {_literal(strip_chars())});")
    steps.append(f"  RETURN CASE WHEN length(s) > {MAX_LENGTH} OR s ~ {_class(_CONTROLS)} THEN '' ELSE s END;")
    plain_ascii = (f"octet_length($1) = length($1) AND octet_length($1) <= {MAX_LENGTH} "
                   f"AND $1 COLLATE \"C\" !~ {_class(_ASCII_CONTROLS)}")
    return {
        SQL_FUNCTION: (
            "\nSELECT CASE\n"
            f"  WHEN {plain_ascii} THEN btrim(lower($1 COLLATE \"C\"))\n"
            f"  ELSE {SQL_FUNCTION}_unicode($1)\nEND\n"
        ),
        f"{SQL_FUNCTION}_unicode": "\nBEGIN\n" + "\n".join(steps) + "\nEND\n",
    }


def postgres_function_sql() -> list[str]:
    """The ``CREATE OR REPLACE FUNCTION`` statements, generated from Python's ``unicodedata``."""
    bodies = postgres_function_bodies()
    helper = f"{SQL_FUNCTION}_unicode"
    return [
        f"CREATE OR REPLACE FUNCTION {helper}(s text) RETURNS text LANGUAGE plpgsql IMMUTABLE STRICT "
        f"PARALLEL SAFE AS $cheetah_norm${bodies[helper]}$cheetah_norm$",
        f"CREATE OR REPLACE FUNCTION {SQL_FUNCTION}(text) RETURNS text LANGUAGE sql IMMUTABLE "
        f"PARALLEL SAFE AS $cheetah_norm${bodies[SQL_FUNCTION]}$cheetah_norm$",
    ]


def probe_strings() -> list[str]:
    """Strings that exercise every code point the normalisation changes (for the install check)."""
    one, many = case_fold_mapping()
    interesting = [a for a, _ in one] + [a for a, _ in many] + list(strip_chars())
    interesting += [
        ch for ch in map(chr, range(0x80, 0x30000)) if unicodedata.normalize("NFKC", ch) != ch
    ]
    out = ["", " ", "Plain@Example.COM", " \t a@b \u00a0\u200b", "\uff21\uff22@\uff45x.com\u3000", "Stra\u00dfe@x"]
    # too long, normalised or as stored; control characters inside (missing) and at the ends
    out += ["a" * MAX_LENGTH, " A" + "b" * (MAX_LENGTH - 1) + "\t", "a" * (MAX_LENGTH + 1), "\ufb03" * 107,
            "\ufb03" * 106 + "Ab", "\ufb03" * 162 + "@x", "a\x01b", "a@b\x7f", "\x1fa@b\x85", "\x7f", "a\tb",
            "\u00e9\x9f", "\u00e9\t\u00a0"]
    # canonically equivalent spellings, and the normalised forms normalised again (one result)
    out += ["\u0390lia@x.gr", "\u0390lia@x.gr".upper(), "stra\u00df\u0301e@x.de", "strass\u0301e@x.de",
            "\u1fb7\u0324@x", unicodedata.normalize("NFD", "\u1fb7\u0324\u00c5\u1e9e@x"), "\u0345\u0301\u0313a"]
    # chunks whose normal form is short enough to be compared, without control characters inside
    chunk = ""
    for ch in [c for c in interesting if _CONTROL.match(c) is None]:
        if len(normal_form(chunk + ch)) > MAX_LENGTH - 4 or len(chunk) == 48:
            out += [chunk, f"\u2003\u200b{chunk}A@b\ufeff\n"]
            chunk = ""
        chunk += ch
    return out + [chunk, f"\u2003\u200b{chunk}A@b\ufeff\n"]


@functools.cache
def _generator_tag() -> str:
    """What the generated bodies depend on: this module's source and Python's Unicode version."""
    with open(__file__, "rb") as fh:
        source = hashlib.sha256(fh.read()).hexdigest()[:16]
    return f"generated by {__name__} {source} from Unicode {unicodedata.unidata_version}"


def _installed_tag_matches(conn: Connection) -> bool:
    """True if the installed functions are the ones this code generates, known without generating
    them (that takes seconds): the main function's comment names this generator and the md5 of
    both bodies as installed (so a body replaced by hand since then does not match)."""
    stmt = sa.text(
        "SELECT obj_description(p.oid, 'pg_proc'), md5(p.prosrc) FROM pg_proc p WHERE p.oid = to_regprocedure(:sig)"
    )
    main = conn.execute(stmt, {"sig": f"{SQL_FUNCTION}(text)"}).first()
    helper = conn.execute(stmt, {"sig": f"{SQL_FUNCTION}_unicode(text)"}).first()
    return main is not None and helper is not None and main[0] == f"{_generator_tag()} {main[1]} {helper[1]}"


def _tag_installed(conn: Connection) -> None:
    bodies = postgres_function_bodies()
    md5 = {name: hashlib.md5(body.encode("utf-8")).hexdigest() for name, body in bodies.items()}
    tag = f"{_generator_tag()} {md5[SQL_FUNCTION]} {md5[SQL_FUNCTION + '_unicode']}"
    conn.exec_driver_sql(f"COMMENT ON FUNCTION {SQL_FUNCTION}(text) IS {_literal(tag)}")


def _installed_bodies(conn: Connection) -> dict[str, str | None]:
    stmt = sa.text("SELECT p.prosrc FROM pg_proc p WHERE p.oid = to_regprocedure(:sig)")
    return {name: conn.execute(stmt, {"sig": f"{name}(text)"}).scalar() for name in postgres_function_bodies()}


def _check_utf8(conn: Connection) -> None:
    encoding = conn.execute(sa.text("SHOW server_encoding")).scalar()
    if str(encoding).upper() not in ("UTF8", "UTF-8"):
        raise IdentifierNormalisationError(
            f"The customer database's server_encoding is {encoding}, but identifiers can only be "
            "normalised in a UTF8 database; create the database with ENCODING 'UTF8'."
        )


def disagreements(conn: Connection, probes: Iterable[str]) -> list[tuple[str, str, str]]:
    """``(probe, python, sql)`` for every probe on which the database's function differs."""
    probes = list(probes)
    stmt = sa.text(
        f"SELECT {SQL_FUNCTION}(p) FROM unnest(CAST(:probes AS text[])) WITH ORDINALITY AS t(p, n) ORDER BY n"
    )
    got = conn.execute(stmt, {"probes": probes}).scalars().all()
    return [(p, normalise_identifier(p), g) for p, g in zip(probes, got) if normalise_identifier(p) != g]


def ensure_sql_function(engine: Engine) -> None:
    """Make ``cheetah_norm(text)`` available to ``engine``'s database.

    SQLite: nothing to do (the engine registers it on every connection). PostgreSQL: install the
    generated function unless exactly that body is already installed, under an advisory lock (so
    concurrent installers do not collide), checked against Python on :func:`probe_strings` in the
    same transaction: on any difference nothing is installed and
    :class:`IdentifierNormalisationError` says why. Generating the bodies takes seconds, so a
    comment on the installed function records which generator (this module's source, Python's
    Unicode version) made which bodies (their md5): when it matches, nothing is generated.
    """
    if engine.dialect.name != "postgresql":
        return
    with engine.connect() as conn:
        if _installed_tag_matches(conn):
            return
        bodies = postgres_function_bodies()
        conn.rollback()
        with conn.begin():
            _check_utf8(conn)
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(*[sa.literal(k, sa.Integer) for k in _PG_LOCK])))
            if _installed_bodies(conn) == bodies:
                try:  # remember it for the next check; a role that does not own them cannot
                    with conn.begin_nested():
                        _tag_installed(conn)
                except sa.exc.DBAPIError:
                    pass
                return
            for statement in postgres_function_sql():
                conn.exec_driver_sql(statement)
            _tag_installed(conn)
            wrong = disagreements(conn, probe_strings())
            if wrong:
                probe, want, got = wrong[0]
                raise IdentifierNormalisationError(
                    f"PostgreSQL's normalize(NFKC) disagrees with Python's Unicode "
                    f"{unicodedata.unidata_version} on {len(wrong)} probe string(s) (first: {probe!r} -> "
                    f"{got!r}, Python {want!r}); run the integration with a Python whose Unicode "
                    "version matches the database server's."
                )
