"""Salted commitments to personal fields: SD-JWT disclosures (RFC 9901, section 4.2).

A field that may hold personal data is written into a transaction body as
``{"_sd": DIGEST}``, never as its value. The value lives off the ledger in a
*disclosure*: the base64url (no padding) encoding of the UTF-8 JSON array
``[salt, field name, value]``, the salt 128 random bits in base64url. DIGEST is
the base64url SHA-256 of the disclosure's ASCII text, exactly as RFC 9901
computes it, so any SD-JWT library checks our disclosures. Destroying the
disclosure (its salt and value) leaves a digest nobody can open or guess: the
salt makes a dictionary of likely values useless.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any, TypeGuard

from ..errors import IntegrityError, MalformedError

__all__ = [
    "COMMITMENT_KEY",
    "MAX_DISCLOSURE",
    "Disclosure",
    "commitment",
    "digest_of",
    "disclose",
    "is_commitment",
    "open_disclosure",
]

COMMITMENT_KEY = "_sd"
MAX_DISCLOSURE = 8192  # characters of one disclosure: a 2,000-character field, salted
_DIGEST = re.compile(r"[A-Za-z0-9_-]{43}\Z")
_B64URL = re.compile(r"[A-Za-z0-9_-]+\Z")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def digest_of(disclosure: str) -> str:
    """The SHA-256 digest of a disclosure, base64url (RFC 9901, section 4.2.3)."""
    return _b64url(hashlib.sha256(disclosure.encode("ascii")).digest())


def commitment(digest: str) -> dict[str, str]:
    """What a body holds in place of a committed field."""
    return {COMMITMENT_KEY: digest}


def is_commitment(value: object) -> TypeGuard[dict[str, str]]:
    """``{"_sd": DIGEST}`` with a well-formed SHA-256 digest, and nothing else."""
    if not isinstance(value, dict) or len(value) != 1:
        return False
    found = value.get(COMMITMENT_KEY)
    return isinstance(found, str) and bool(_DIGEST.match(found))


@dataclass(frozen=True)
class Disclosure:
    """One opened disclosure: its text, digest, salt, field name and value."""

    text: str
    digest: str
    salt: str
    field: str
    value: Any


def disclose(field: str, value: Any, salt: bytes) -> Disclosure:
    """The disclosure of ``value`` for ``field`` with ``salt`` (the caller's 16 fresh
    random bytes: core draws no randomness)."""
    if len(salt) < 16:
        raise MalformedError("a disclosure's salt is at least 128 random bits")
    salt_text = _b64url(salt)
    array = json.dumps([salt_text, field, value], ensure_ascii=False, separators=(",", ":"))
    text = _b64url(array.encode("utf-8"))
    if len(text) > MAX_DISCLOSURE:
        raise MalformedError(f"{field} is too long to commit to ({len(text)} characters encoded)")
    return Disclosure(text, digest_of(text), salt_text, field, value)


def open_disclosure(text: object, digest: str | None = None) -> Disclosure:
    """The disclosure ``text`` opened: MalformedError unless it is a base64url JSON
    array ``[salt, field, value]``; IntegrityError if ``digest`` is given and the
    text does not hash to it."""
    if not isinstance(text, str) or not text or len(text) > MAX_DISCLOSURE:
        raise MalformedError(f"a disclosure is base64url text of 1-{MAX_DISCLOSURE} characters")
    if not _B64URL.match(text):
        raise MalformedError("a disclosure is base64url text without padding")
    found = digest_of(text)
    if digest is not None and not hmac.compare_digest(found, digest):
        raise IntegrityError(f"the disclosure hashes to {found}, not to the commitment {digest}")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        array = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError) as exc:
        raise MalformedError(f"a disclosure is base64url of a UTF-8 JSON array: {exc}") from exc
    if (
        not isinstance(array, list)
        or len(array) != 3
        or not isinstance(array[0], str)
        or not isinstance(array[1], str)
    ):
        raise MalformedError("a disclosure of a field is the JSON array [salt, name, value]")
    return Disclosure(text, found, array[0], array[1], array[2])
