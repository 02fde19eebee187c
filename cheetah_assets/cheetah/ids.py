"""Cheetah ids: opaque values (../shared/cheetah-messaging-api.md, "Conventions").

Every id the API hands out (list, import, campaign, template, folder, Data Map) may come as a JSON
number or a string. It is kept exactly as received, passed back exactly as received (query strings
and JSON bodies), and stored as text with :func:`id_to_db`, which :func:`id_from_db` reads back to
the very same value. Re-exported by :mod:`.contract`.
"""

from __future__ import annotations

import json
from typing import Any, Union

#: An id the API hands out (list, import, campaign, template, folder, Data Map): opaque. It may
#: come as a JSON number or a string; it is kept exactly as received and passed back as received
#: (in query strings and JSON bodies), never converted.
ObjId = Union[int, str]


def is_id(value: Any) -> bool:
    """Whether ``value`` can be an id: an int (not a bool) or a non-blank string."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, str) and bool(value.strip())


def same_id(a: ObjId | None, b: ObjId | None) -> bool:
    """Whether two ids name the same object: ``5001`` and ``"5001"`` do (an account may spell
    one id both ways, e.g. our configured folder id and the folder id a reply echoes)."""
    if a is None or b is None:
        return a is b
    return str(a) == str(b)


def id_to_db(value: ObjId) -> str:
    """The text an id is stored as: JSON, so :func:`id_from_db` gives back exactly the value
    received (``5001`` -> ``'5001'``, ``"5001"`` -> ``'"5001"'``)."""
    if not is_id(value):
        raise ValueError(f"A Cheetah id must be an integer or a non-empty string, got {value!r}.")
    return json.dumps(value, ensure_ascii=False)


def id_from_db(text: str | int) -> ObjId:
    """The id stored by :func:`id_to_db` (an integer column's plain ``int`` is accepted as is)."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    if not isinstance(text, str):
        raise ValueError(f"A stored Cheetah id must be text, got {type(text).__name__}.")
    try:
        value = json.loads(text)
    except ValueError:
        raise ValueError(f"The stored Cheetah id {text!r} is not one id_to_db wrote.") from None
    if not is_id(value):
        raise ValueError(f"The stored Cheetah id {text!r} is not one id_to_db wrote.")
    return value
