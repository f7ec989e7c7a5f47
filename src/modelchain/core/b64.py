"""Base64 fields in JSON documents and signed text: the one place bytes become
standard base64 text and text is checked back into bytes (strictly: no stray
characters; in signed text, only the canonical spelling)."""

from __future__ import annotations

import base64
import binascii

from ..errors import Error, MalformedError

__all__ = ["b64", "unb64", "unb64_canonical"]


def b64(data: bytes) -> str:
    """``data`` as standard, padded base64 text."""
    return base64.b64encode(data).decode("ascii")


def unb64(
    text: object,
    what: str,
    error: type[Error] = MalformedError,
    *,
    not_text: type[Error] | None = None,
) -> bytes:
    """The bytes of the base64 field ``what``; ``error`` (by default
    MalformedError) names it when it is not valid base64, ``not_text`` (by
    default the same) when it is not a string at all."""
    if not isinstance(text, str):
        raise (not_text or error)(f"{what} must be base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise error(f"{what} is not valid base64: {exc}") from exc


def unb64_canonical(text: str, what: str) -> bytes:
    """Standard base64 (RFC 4648 section 4), accepting only the canonical encoding,
    for signed text (notes, checkpoints, tlog-proofs, record proofs); raises
    MalformedError naming ``what``.

    Rejecting non-zero padding bits means each value has exactly one text form,
    so nothing can be re-encoded into a different but equally valid line.
    """
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedError(f"{what}: invalid base64") from exc
    if b64(raw) != text:
        raise MalformedError(f"{what}: non-canonical base64")
    return raw
