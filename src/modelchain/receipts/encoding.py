"""What a receipt's record commits to: the canonical encoding of a value and its salted hash.

A salted hash is ``SHA-256(salt || encode_value(value))`` with a fresh 16-byte salt per
value, so revealing one value (with its salt) says nothing about any other.
"""

from __future__ import annotations

import hashlib
from typing import Any

from ..core import canonical
from ..errors import MalformedError

__all__ = [
    "BIG",
    "RECEIPT_VERSION",
    "SALT_SIZE",
    "decode_value",
    "encode_value",
    "salted",
    "salted_hash",
]

RECEIPT_VERSION = 1
"""The ``v`` of a record (a leaf) and of a receipt."""
SALT_SIZE = 16
BIG = 1 << 14
"""Bytes from which a value is hashed in two updates rather than copied after its salt."""

_sha = hashlib.sha256


def _is_array(value: object) -> bool:
    return type(value).__module__ == "numpy" and hasattr(value, "dtype")


_ARRAY_HEADS: dict[tuple[str, tuple[int, ...]], bytes] = {}


def encode_value(value: Any) -> bytes:
    """The bytes a salted hash commits to: a one-byte type tag then the payload.

    ``B`` bytes as-is; ``S`` str as UTF-8; ``N`` a numpy array or scalar as
    canonical ``{"dtype", "shape"}``, a newline and its C-order raw bytes; ``J``
    any other value as RFC 8785 canonical JSON.
    """
    t = type(value)
    if t is bytes:
        return b"B" + bytes(value)
    if t is str:
        return b"S" + str(value).encode("utf-8")
    if t is bytearray or t is memoryview:
        return b"B" + bytes(value)
    if _is_array(value):
        if value.dtype.hasobject:
            raise MalformedError("arrays of Python objects have no canonical bytes")
        spec = (value.dtype.str, value.shape)
        head = _ARRAY_HEADS.get(spec)
        if head is None:
            head = canonical.dumps({"dtype": spec[0], "shape": list(spec[1])})
            if len(_ARRAY_HEADS) > 4096:
                _ARRAY_HEADS.clear()
            _ARRAY_HEADS[spec] = head
        raw: bytes = value.tobytes(order="C")
        return b"N" + head + b"\n" + raw
    return b"J" + canonical.dumps(value)


def decode_value(data: bytes) -> Any:
    """Invert ``encode_value``; an array comes back as {"dtype", "shape", "data" (bytes)}."""
    tag, body = data[:1], data[1:]
    if tag == b"B":
        return body
    if tag == b"S":
        return body.decode("utf-8")
    if tag == b"J":
        return canonical.loads_canonical(body)
    if tag == b"N":
        head, sep, raw = body.partition(b"\n")
        if not sep:
            raise MalformedError("array encoding has no header line")
        meta = canonical.loads_canonical(head)
        return {"dtype": meta["dtype"], "shape": meta["shape"], "data": raw}
    raise MalformedError(f"unknown value encoding tag {tag!r}")


def salted(salt: bytes, value: Any) -> bytes:
    """SHA-256 of ``salt || encode_value(value)``, without copying big bytes or a str."""
    t = type(value)
    if t is bytes:
        if len(value) < BIG:
            return _sha(salt + b"B" + value).digest()
        h = _sha(salt + b"B")
        h.update(value)
        return h.digest()
    if t is str:
        return _sha(salt + b"S" + value.encode("utf-8")).digest()
    return _sha(salt + encode_value(value)).digest()


def salted_hash(salt: bytes, value: Any) -> str:
    """Hex SHA-256 of ``salt || encode_value(value)``."""
    return salted(salt, value).hex()
