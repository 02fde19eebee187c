"""Request bodies read with pydantic: :class:`Body`, the base of every body model of the
simulator (one per route, next to the part of the world that uses it), and :func:`read`, which
turns a refused body into the API's reply, a 400 whose ``message`` names the first bad key::

    'CampParam.sendSchedule.startTime' is required.
    'propMapId' must be an integer, got str.
    'listName' must not be empty.

Types are strict, as the API's are (``"77"`` is not an integer, ``true`` is not a number), and a
``null`` value counts as a missing key (the key's default applies) unless a model lists the key
in ``null_is_a_value``. Keys a model does not name are ignored. A validator's ``ValueError`` is
the reply's whole message, so it names its key itself.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from ..timeutil import parse_iso
from .errors import SimError

#: What each pydantic type error says a key must be.
EXPECTED = {
    "int_type": "an integer",
    "string_type": "a string",
    "bool_type": "a boolean",
    "float_type": "a number",
    "dict_type": "an object",
    "model_type": "an object",
    "list_type": "a list",
}


class Body(BaseModel):
    """A request body: strict types, ``null`` = missing, unknown keys ignored."""

    model_config = ConfigDict(strict=True)
    #: Keys (as sent) whose ``null`` means something other than "missing".
    null_is_a_value: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _null_is_missing(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        return {k: v for k, v in data.items() if v is not None or k in cls.null_is_a_value}


BodyModel = TypeVar("BodyModel", bound=Body)


def read(model: type[BodyModel], raw: Any, what: str) -> BodyModel:
    """``raw`` (a parsed JSON body) as ``model``; ``SimError`` 400 naming the first bad key
    (``what`` names the body when it is not an object at all)."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise SimError(400, refusal(exc.errors(include_url=False), what)) from None


def label(loc: tuple[str | int, ...]) -> str:
    """``("dataMap", "fields", 0, "name")`` -> ``dataMap.fields[0].name``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def refusal(errors: list[Any], what: str) -> str:
    """The one-sentence message of the first of pydantic's ``errors``."""
    first = errors[0]
    kind, loc, value = first["type"], tuple(first["loc"]), first.get("input")
    if kind == "value_error":
        return str(first["ctx"]["error"])
    if not loc:
        return f"The {what} body must be a JSON object."
    name = label(loc)
    if kind == "missing":
        return f"'{name}' is required."
    if kind == "empty":
        return f"'{name}' must not be empty."
    if kind == "not_an_iso_time":
        return f"'{name}' is not an ISO time: {value!r}."
    expected = first["ctx"]["expected"] if kind == "wrong_type" else EXPECTED.get(kind)
    if expected:
        return f"'{name}' must be {expected}, got {type(value).__name__}."
    return f"'{name}' is not valid: {first['msg']}."


def _text_id(value: Any) -> Any:
    """An id given as a string or an integer, kept as its text."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise PydanticCustomError("wrong_type", "must be {expected}", {"expected": "a string or an integer"})
    return value


def _instant(value: Any) -> Any:
    """An ISO time string as an aware UTC datetime (no offset = UTC)."""
    if not isinstance(value, str):
        raise PydanticCustomError("wrong_type", "must be {expected}", {"expected": "an ISO time string"})
    try:
        return parse_iso(value)
    except ValueError:
        raise PydanticCustomError("not_an_iso_time", "is not an ISO time") from None


def _stripped_not_empty(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("empty", "must not be empty")
    return value.strip()


def bounded(message: str, minimum: float, maximum: float | None = None) -> AfterValidator:
    """A check that a number is at least ``minimum`` (and at most ``maximum``); ``message`` is
    the reply's whole message otherwise (it names the key)."""
    def check(value: Any) -> Any:
        if value is not None and (value < minimum or (maximum is not None and value > maximum)):
            raise ValueError(message)
        return value

    return AfterValidator(check)


#: A name: surrounding spaces removed, not empty.
Name = Annotated[str, AfterValidator(_stripped_not_empty)]
#: An id that may come as a string or an integer (a template's ``objId``); always text.
TextId = Annotated[str, BeforeValidator(_text_id)]
#: An ISO time (``Z``, an offset, or none: UTC), read as an aware UTC datetime.
IsoInstant = Annotated[dt.datetime, BeforeValidator(_instant)]
