"""RFC 8785 (JCS) canonical JSON: the only producer of bytes that get hashed or signed.

Everything that is signed, hashed or put in a log entry is encoded here, so two
parties that agree on a value always agree on its bytes.
"""

from __future__ import annotations

import json
from typing import Any

import rfc8785

from ..errors import MalformedError, NonCanonicalError

__all__ = ["JSONValue", "dumps", "loads", "loads_canonical"]

JSONValue = Any  # dict | list | str | int | float | bool | None, recursively


def dumps(value: JSONValue) -> bytes:
    """Return the RFC 8785 canonical encoding of ``value``.

    Raises MalformedError for values JSON cannot carry exactly: NaN, infinities,
    integers beyond +-(2**53 - 1), non-string keys.
    """
    try:
        return bytes(rfc8785.dumps(value))
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise MalformedError(f"value cannot be written as canonical JSON: {exc}") from exc


def loads(data: bytes | str) -> JSONValue:
    """Parse JSON (not necessarily canonical), translating errors."""
    try:
        return json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedError(f"not valid JSON: {exc}") from exc


def loads_canonical(data: bytes) -> JSONValue:
    """Parse JSON that must already be in canonical form.

    Duplicate keys, insignificant whitespace, unsorted keys, non-shortest
    numbers and unnecessary escapes all make the re-encoding differ, so they
    are all refused with NonCanonicalError.
    """
    value = loads(data)
    if dumps(value) != data:
        raise NonCanonicalError("JSON is not in RFC 8785 canonical form")
    return value
