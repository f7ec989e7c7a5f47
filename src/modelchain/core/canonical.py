"""RFC 8785 (JCS) canonical JSON: the only producer of bytes that get hashed or signed.

Everything that is signed, hashed or put in a log entry is encoded here, so two
parties that agree on a value always agree on its bytes.
"""

from __future__ import annotations

import json
from json import detect_encoding
from typing import Any, NoReturn

import rfc8785

from ..errors import MalformedError, NonCanonicalError

__all__ = ["JSONValue", "dumps", "loads", "loads_canonical"]

JSONValue = Any  # dict | list | str | int | float | bool | None, recursively

# Fast path. For pure-ASCII text whose numbers are all "safe", Python's own
# encoder with sorted keys and no whitespace writes exactly the RFC 8785 bytes:
# ASCII keys sort the same by code point as by UTF-16 unit, its string escapes
# are JCS's, and a safe number prints the same in Python and ECMAScript. Safe
# means an integer of at most 15 digits (inside +-2**53), or a non-integral
# float with 1e-4 <= |x| < 1e16, where repr() and Number.toString() both print
# the shortest round-trip digits without an exponent. Anything else takes the
# reference implementation (the rfc8785 package).
_encode = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode


class _Unsafe(Exception):
    """A number the fast path cannot print the JCS way."""


def _safe_float(text: str) -> float:
    value = float(text)
    if value.is_integer() or not 1e-4 <= abs(value) < 1e16:
        raise _Unsafe
    return value


def _safe_int(text: str) -> int:
    if len(text) > (16 if text[0] == "-" else 15):
        raise _Unsafe
    return int(text)


def _no_constant(name: str) -> NoReturn:
    raise MalformedError(f"{name} is not a JSON number: RFC 8785 cannot write it")


def _check_text(value: JSONValue) -> None:
    """Refuse strings (keys included) holding a lone surrogate: they have no
    UTF-8 form, so RFC 8785 cannot write them."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            stack.extend(v)
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, str):
            try:
                v.encode()
            except UnicodeEncodeError as exc:
                raise MalformedError("a JSON string holds a lone UTF-16 surrogate") from exc


_DECODER = json.JSONDecoder(parse_constant=_no_constant)
_CANONICAL_DECODER = json.JSONDecoder(
    parse_float=_safe_float, parse_int=_safe_int, parse_constant=_no_constant
)


def _reference(value: JSONValue) -> bytes:
    try:
        return bytes(rfc8785.dumps(value))
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise MalformedError(f"value cannot be written as canonical JSON: {exc}") from exc


def dumps(value: JSONValue) -> bytes:
    """Return the RFC 8785 canonical encoding of ``value``.

    Raises MalformedError for values JSON cannot carry exactly: NaN, infinities,
    integers beyond +-(2**53 - 1), non-string keys.
    """
    try:
        text = _encode(value)
    except (TypeError, ValueError):
        return _reference(value)  # raises the precise error
    except RecursionError as exc:
        raise MalformedError("value is nested too deeply to encode") from exc
    if text.isascii():
        try:
            # Re-reading our own output is the cheapest token-aware way to see
            # every number it holds (digits inside strings are not numbers);
            # comparing with the input catches keys json turned into strings.
            if json.loads(text, parse_float=_safe_float, parse_int=_safe_int) == value:
                return text.encode()
        except _Unsafe:
            pass
    return _reference(value)


def loads(data: bytes | str) -> JSONValue:
    """Parse JSON (not necessarily canonical), translating errors. What RFC 8785
    cannot write is refused too: NaN and the infinities, lone surrogates."""
    try:
        # As json.loads reads bytes, with a decoder made once (json.loads makes
        # one per call when given any parse_ hook).
        if isinstance(data, str):
            text = data
        else:
            text = data.decode(detect_encoding(data), "surrogatepass")
        value = _DECODER.decode(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedError(f"not valid JSON: {exc}") from exc
    except RecursionError as exc:  # hostile nesting: an input error, not a crash
        raise MalformedError("JSON is nested too deeply") from exc
    # Only text holding an escape or a non-ASCII character can hold a lone
    # surrogate half; both tests run in C, so most input skips the walk.
    if "\\u" in text or not text.isascii():
        _check_text(value)
    return value


def loads_canonical(data: bytes) -> JSONValue:
    """Parse JSON that must already be in canonical form.

    Duplicate keys, insignificant whitespace, unsorted keys, non-shortest
    numbers and unnecessary escapes all make the re-encoding differ, so they
    are all refused with NonCanonicalError.
    """
    if data.isascii():
        try:
            value = _CANONICAL_DECODER.decode(data.decode("ascii"))
        except _Unsafe:
            pass
        except ValueError as exc:
            raise MalformedError(f"not valid JSON: {exc}") from exc
        except RecursionError as exc:
            raise MalformedError("JSON is nested too deeply") from exc
        else:
            # Parsed values always have string keys, so the fast encoding is exact.
            try:
                text = _encode(value).encode()
            except UnicodeEncodeError as exc:  # an escaped lone surrogate
                raise MalformedError("a JSON string holds a lone UTF-16 surrogate") from exc
            except RecursionError as exc:
                raise MalformedError("JSON is nested too deeply") from exc
            if text != data:
                raise NonCanonicalError("JSON is not in RFC 8785 canonical form")
            return value
    value = loads(data)
    if dumps(value) != data:
        raise NonCanonicalError("JSON is not in RFC 8785 canonical form")
    return value
