"""Identities: Ed25519 and ML-DSA-44 keys named as C2SP signed-note names them.

Owns key ids, verifier-key strings (``name+hex8+base64(type||key)``), the
``Signer`` protocol that every Ed25519 signing backend (memory, key file,
PKCS#11) implements and ``MlDsa44Signer``, a post-quantum key that only
cosigns checkpoints. A signer's private key never leaves it: callers get signatures.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn, Protocol, runtime_checkable

import nacl.exceptions
import nacl.signing

from ..errors import MalformedError, SignatureError
from .b64 import b64

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA44PrivateKey

__all__ = [
    "COSIGNATURE_V1",
    "ED25519",
    "ML_DSA_44_COSIGNATURE",
    "Cosigner",
    "Ed25519Signer",
    "MlDsa44Signer",
    "Signer",
    "VerifierKey",
    "check_key_name",
    "cosigner_of",
    "key_id",
    "verifier_of",
    "verify_batch",
    "verify_ed25519",
    "verify_ml_dsa_44",
]

ED25519 = 0x01
COSIGNATURE_V1 = 0x04
ML_DSA_44_COSIGNATURE = 0x06

_KEY_LENGTHS = {ED25519: 32, COSIGNATURE_V1: 32, ML_DSA_44_COSIGNATURE: 1312}


def check_key_name(name: str) -> None:
    """Raise MalformedError unless ``name`` is a valid signed-note key name."""
    if not name or any(c.isspace() for c in name) or "+" in name:
        raise MalformedError(f"invalid key name {name!r}: must be non-empty, no spaces, no '+'")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise MalformedError(f"invalid key name {name!r}: control characters")


def key_id(name: str, type_byte: int, public_key: bytes) -> bytes:
    """The 4-byte C2SP key id: SHA-256(name || 0x0A || type || key)[:4]."""
    h = hashlib.sha256(name.encode() + b"\n" + bytes([type_byte]) + public_key)
    return h.digest()[:4]


@dataclass(frozen=True)
class VerifierKey:
    """A named public key with its signature type, as in a C2SP verifier key."""

    name: str
    public_key: bytes
    type_byte: int = ED25519

    def __post_init__(self) -> None:
        check_key_name(self.name)
        want = _KEY_LENGTHS.get(self.type_byte)
        if want is not None and len(self.public_key) != want:
            raise MalformedError(
                f"key {self.name!r}: public key is {len(self.public_key)} bytes, want {want}"
            )

    @functools.cached_property
    def key_id(self) -> bytes:
        return key_id(self.name, self.type_byte, self.public_key)

    @functools.cached_property
    def key_id_hex(self) -> str:
        return self.key_id.hex()

    def to_string(self) -> str:
        blob = b64(bytes([self.type_byte]) + self.public_key)
        return f"{self.name}+{self.key_id_hex}+{blob}"

    def __str__(self) -> str:
        return self.to_string()

    @classmethod
    def from_string(cls, text: str) -> VerifierKey:
        """Parse ``name+hex8+base64(type||key)``, checking that the key id matches."""
        key = _parse_verifier(text.strip())
        return key if cls is VerifierKey else cls(key.name, key.public_key, key.type_byte)

    def with_type(self, type_byte: int) -> VerifierKey:
        """The same public key under another signature type (e.g. cosignature)."""
        return VerifierKey(self.name, self.public_key, type_byte)

    @functools.cached_property
    def _nacl_key(self) -> nacl.signing.VerifyKey:
        return nacl.signing.VerifyKey(self.public_key)

    def verify(self, message: bytes, signature: bytes) -> None:
        """Raise SignatureError unless ``signature`` is this key's Ed25519 signature."""
        if self.type_byte not in (ED25519, COSIGNATURE_V1):
            raise SignatureError(f"key {self.name!r}: unsupported signature type")
        if len(signature) != 64:
            raise SignatureError(f"signature by {self.name} has the wrong length")
        try:
            self._nacl_key.verify(message, signature)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError) as exc:
            raise SignatureError(f"signature by {self.name} does not verify") from exc


# Member keys are parsed on every admission and every replayed entry; they are
# immutable values, so parsing each distinct string once is enough.
@functools.lru_cache(maxsize=4096)
def _parse_verifier(text: str) -> VerifierKey:
    # The base64 key may itself contain '+', so split at the first two only.
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise MalformedError("verifier key must be name+keyid+base64key")
    name, hex_id, blob = parts
    try:
        raw = base64.b64decode(blob, validate=True)
        want_id = bytes.fromhex(hex_id)
    except (binascii.Error, ValueError) as exc:
        raise MalformedError(f"verifier key {name!r}: bad encoding: {exc}") from exc
    if len(raw) < 2 or len(want_id) != 4:
        raise MalformedError(f"verifier key {name!r}: too short")
    key = VerifierKey(name=name, public_key=raw[1:], type_byte=raw[0])
    if key.key_id != want_id:
        raise MalformedError(f"verifier key {name!r}: key id does not match the key")
    return key


def verify_ed25519(public_key: bytes, message: bytes, signature: bytes, who: str = "") -> None:
    """Raise SignatureError unless the Ed25519 signature verifies."""
    if len(signature) != 64 or len(public_key) != 32:
        raise SignatureError(f"signature by {who or 'unknown key'} has the wrong length")
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError) as exc:
        raise SignatureError(f"signature by {who or 'unknown key'} does not verify") from exc


def verify_ml_dsa_44(public_key: bytes, message: bytes, signature: bytes, who: str = "") -> None:
    """Raise SignatureError unless the ML-DSA-44 signature (FIPS 204, empty context) verifies."""
    # Imported here: only ML-DSA cosigners need it, and it costs import time.
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA44PublicKey

    if len(signature) != 2420 or len(public_key) != 1312:
        raise SignatureError(f"signature by {who or 'unknown key'} has the wrong length")
    try:
        MLDSA44PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError) as exc:
        raise SignatureError(f"signature by {who or 'unknown key'} does not verify") from exc


def verify_batch(checks: Sequence[tuple[bytes, bytes, bytes]]) -> list[bool]:
    """Check many (public key, message, signature) triples; True where valid.

    A plain function of bytes so that worker processes can run it."""
    results = []
    for public_key, message, signature in checks:
        try:
            nacl.signing.VerifyKey(public_key).verify(message, signature)
            results.append(len(signature) == 64)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, TypeError):
            results.append(False)
    return results


@runtime_checkable
class Signer(Protocol):
    """Anything that can produce Ed25519 signatures under a name.

    Implementations: ``Ed25519Signer`` (memory), ``modelchain.keys.FileSigner``
    and ``modelchain.keys.Pkcs11Signer``.
    """

    @property
    def name(self) -> str: ...

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte Ed25519 public key."""
        ...

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of ``message``."""
        ...


def verifier_of(signer: Signer, type_byte: int = ED25519) -> VerifierKey:
    """The verifier key matching ``signer``."""
    return VerifierKey(signer.name, signer.public_key, type_byte)


class Ed25519Signer:
    """An Ed25519 key held in memory."""

    def __init__(self, name: str, seed: bytes) -> None:
        check_key_name(name)
        if len(seed) != 32:
            raise MalformedError("an Ed25519 private key seed is 32 bytes")
        self._name = name
        self._key = nacl.signing.SigningKey(seed)
        self._public = bytes(self._key.verify_key)

    @property
    def name(self) -> str:
        return self._name

    @property
    def public_key(self) -> bytes:
        return self._public

    def sign(self, message: bytes) -> bytes:
        return bytes(self._key.sign(message).signature)

    def __repr__(self) -> str:
        kid = key_id(self._name, ED25519, self._public).hex()
        return f"Ed25519Signer(name={self._name!r}, key_id={kid})"


class MlDsa44Signer:
    """An ML-DSA-44 (FIPS 204) key held in memory, made from its 32-byte seed.

    It signs only tlog-cosignature type 0x06 messages (``checkpoint.cosign``
    builds them): ML-DSA-44 is not a signed-note or DSSE algorithm here, so
    it is deliberately not a ``Signer``, and its method is not called ``sign``.
    """

    __slots__ = ("_key", "_name", "_public")

    def __init__(self, name: str, seed: bytes) -> None:
        # Imported here: only ML-DSA cosigners need it, and it costs import time.
        from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA44PrivateKey

        check_key_name(name)
        if len(seed) != 32:
            raise MalformedError("an ML-DSA-44 private key seed is 32 bytes")
        self._name = name
        self._key: MLDSA44PrivateKey = MLDSA44PrivateKey.from_seed_bytes(seed)
        self._public = self._key.public_key().public_bytes_raw()

    @property
    def name(self) -> str:
        return self._name

    @property
    def public_key(self) -> bytes:
        """The raw 1,312-byte ML-DSA-44 public key."""
        return self._public

    def sign_ml_dsa_44(self, message: bytes) -> bytes:
        """The 2,420-byte ML-DSA-44 signature of ``message`` (empty context, hedged)."""
        return self._key.sign(message)

    def __repr__(self) -> str:
        kid = key_id(self._name, ML_DSA_44_COSIGNATURE, self._public).hex()
        return f"MlDsa44Signer(name={self._name!r}, key_id={kid})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a signer cannot be pickled or copied: its private key stays in it")


Cosigner = Signer | MlDsa44Signer
"""What can cosign a checkpoint: an Ed25519 signer (type 0x04) or an ML-DSA-44 one (0x06)."""


def cosigner_of(cosigner: Cosigner) -> VerifierKey:
    """The cosigner key matching ``cosigner``: type 0x06 for ML-DSA-44, else 0x04."""
    if isinstance(cosigner, MlDsa44Signer):
        return VerifierKey(cosigner.name, cosigner.public_key, ML_DSA_44_COSIGNATURE)
    return VerifierKey(cosigner.name, cosigner.public_key, COSIGNATURE_V1)
