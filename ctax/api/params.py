"""The bounded types every route declares its numbers and texts with, so an out-of-range value is a 422 naming the
field and the limit instead of reaching the database.

A Python int above 2^63 - 1 bound to a query raised OverflowError on SQLite (a 500) in about twenty routes, and the
id columns are INTEGER, which PostgreSQL holds in 32 bits: there anything above 2^31 - 1 was a DataError (a 500).
Ages and scores must be finite and small enough for datetime arithmetic (`min_age_s=3.5e16` overflowed a
timedelta). Lists a client sends are capped, since every item becomes a bound parameter. A label reference is a
path or an id, and an id written as digits is bounded like any other id. Text must be storable: PostgreSQL refuses
NUL, and no UTF-8 encoder takes a lone surrogate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import annotated_types as at
from pydantic import (
    AfterValidator,
    AllowInfNan,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

# The largest value of an INTEGER column on both databases (PostgreSQL: 32 bits; SQLite: 64).
MAX_DB_INT = 2**31 - 1
# Far beyond any age a queue item can have, and far below what datetime arithmetic overflows at (year 1).
MAX_AGE_S = 100 * 365.25 * 24 * 3600
# Scores are similarities and their blends: small numbers. The bound only keeps them finite and sane.
MAX_ABS_SCORE = 1e6
MAX_LIST_ITEMS = 1000
MAX_PAGE_OFFSET = 10**9
MAX_REF_CHARS = 1800  # a label path of many levels, as the review page's filters allow

def _storable(value: str) -> str:
    """Text any database stores: PostgreSQL refuses NUL in text, and no UTF-8 encoder takes a lone surrogate."""
    if "\x00" in value:
        raise PydanticCustomError("text_nul", "text must not contain NUL characters")
    if any("\ud800" <= ch <= "\udfff" for ch in value):
        raise PydanticCustomError("text_surrogate", "text must not contain unpaired surrogates (not valid Unicode)")
    return value


Text = Annotated[str, AfterValidator(_storable)]
"""Free text a client sends (a note, a description, a search): anything but NUL and lone surrogates."""

# Bounded text. The bound is on the string as sent (StringConstraints before the validator): a Field(max_length)
# beside Text is checked after it, and pydantic then says "Value should have at most 2000 items after validation".
ShortText = Annotated[str, StringConstraints(max_length=200), AfterValidator(_storable)]
"""A label or proposal name, a filter's search words."""
Name = Annotated[str, StringConstraints(min_length=1, max_length=200), AfterValidator(_storable)]
LongText = Annotated[str, StringConstraints(max_length=2000), AfterValidator(_storable)]
"""A description, a search query."""

CreativeId = Annotated[str, at.MaxLen(64), AfterValidator(_storable)]
VersionId = Annotated[str, at.MaxLen(100), AfterValidator(_storable)]

Id = Annotated[int, at.Ge(1), at.Le(MAX_DB_INT)]
"""A database id (every table's ids start at 1)."""

Offset = Annotated[int, at.Ge(0), at.Le(MAX_PAGE_OFFSET)]
Version = Annotated[int, at.Ge(0), at.Le(MAX_DB_INT)]
Seed = Annotated[int, at.Ge(0), at.Le(2**32 - 1)]  # what numpy and torch accept as a seed
AgeSeconds = Annotated[float, at.Ge(0), at.Le(MAX_AGE_S), AllowInfNan(False)]
Score = Annotated[float, at.Ge(-MAX_ABS_SCORE), at.Le(MAX_ABS_SCORE), AllowInfNan(False)]
IdList = Annotated[list[Id], Field(max_length=MAX_LIST_ITEMS)]


def _bounded_reference(value: Any) -> Any:
    """A label reference written as digits is an id: it must fit the database like any id. Digits that are not
    ASCII 0-9 ('²', '٣') are neither an id nor a path segment anyone types, and int() of some of them fails.
    One check before the str | int union parses, so a refusal is one message, not one per member of the union."""
    if isinstance(value, bool):
        raise PydanticCustomError("label_reference", "a label is named by its path or its id")
    if isinstance(value, str):
        _storable(value)
        if len(value) > MAX_REF_CHARS:
            raise PydanticCustomError("label_reference", "a label path has at most {maximum} characters",
                                      {"maximum": MAX_REF_CHARS})
        if not value.isdigit():
            return value
        if not (value.isascii() and value.isdecimal()):
            raise PydanticCustomError("label_reference", "a label id is written with the digits 0-9")
        number = int(value)
    elif isinstance(value, int):
        number = value
    else:
        raise PydanticCustomError("label_reference", "a label is named by its path or its id")
    if not 1 <= number <= MAX_DB_INT:
        raise PydanticCustomError("label_reference", "a label id is between 1 and {maximum}", {"maximum": MAX_DB_INT})
    return value


_REFERENCE_SCHEMA = {"anyOf": [{"type": "string", "maxLength": MAX_REF_CHARS},
                               {"type": "integer", "minimum": 1, "maximum": MAX_DB_INT}]}

LabelRef = Annotated[str | int, BeforeValidator(_bounded_reference), WithJsonSchema(_REFERENCE_SCHEMA)]
"""A label named by its path or its id, in a JSON body."""

LabelRefText = Annotated[str, BeforeValidator(_bounded_reference),
                         WithJsonSchema({"type": "string", "maxLength": MAX_REF_CHARS})]
"""A label named by its path or its id, in a query string or a form field (always text there)."""


class RequestBody(BaseModel):
    """A JSON body a client sends. A field the route does not know is refused (a 422 naming it), not ignored: a
    misspelt `asserted_lable` silently dropped the poster's claim, and a misspelt `versoin` the stale-decision check."""

    model_config = ConfigDict(extra="forbid")


def problem(error: Mapping[str, Any]) -> str:
    """What one of pydantic's errors says, in the client's terms (not "Value error, Expected UploadFile, received:
    <class 'str'>")."""
    kind, message = error.get("type"), str(error.get("msg")).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        return "unknown field (the request's fields are listed at /docs)"
    if kind == "value_error" and message.startswith("Expected UploadFile"):
        return "must be a file upload (a multipart part with a file name), not a text field"
    return message
