"""C2SP checkpoints (c2sp.org/tlog-checkpoint) and their cosignatures (tlog-cosignature).

Owns the checkpoint note text, the log's signature on it and the timestamped
cosignatures that witnesses and other nodes add to it: Ed25519 (key type 0x04)
and ML-DSA-44 (type 0x06). Which signatures make a checkpoint count is
``policy``'s business.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import MalformedError, SignatureError
from .b64 import b64, unb64_canonical
from .identity import (
    COSIGNATURE_V1,
    ED25519,
    ML_DSA_44_COSIGNATURE,
    Cosigner,
    MlDsa44Signer,
    Signer,
    VerifierKey,
    cosigner_of,
    verify_ed25519,
    verify_ml_dsa_44,
)
from .note import (
    Note,
    NoteSignature,
    _check_text,
    add_signatures,
    parse_note,
    sign_note,
    verify_note,
)

__all__ = [
    "MAX_TIMESTAMP",
    "Checkpoint",
    "cosign",
    "cosign_note",
    "cosignature_message",
    "cosignatures",
    "ml_dsa_44_cosignature_message",
    "open_checkpoint",
    "sign_checkpoint",
    "verify_cosignature",
]

# tlog-cosignature: the timestamp "MUST NOT exceed 2^63 - 1".
MAX_TIMESTAMP = 2**63 - 1
# Tree sizes are uint64 everywhere else (tiles, witnesses), so refuse larger ones.
_MAX_SIZE = 2**64 - 1
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_HASH_LEN = 32
_COSIG_LEN = 8 + 64
_ML_DSA_44_SIG_LEN = 2420
_ML_DSA_44_COSIG_LEN = 8 + _ML_DSA_44_SIG_LEN
_SUBTREE_LABEL = b"subtree/v1\n\0"


def _parse_decimal(text: str, what: str, limit: int) -> int:
    # fullmatch with an explicit [0-9] class: int() would also take "+1", " 1", "1_0" and "١".
    if not _DECIMAL.fullmatch(text):
        raise MalformedError(f"{what} {text!r} is not a decimal without leading zeros")
    # Past 20 digits it is out of range anyway, and int() refuses over 4,300 (ValueError).
    if len(text) > len(str(limit)):
        raise MalformedError(f"{what} {text[:24]}... is out of range")
    value = int(text)
    if value > limit:
        raise MalformedError(f"{what} {value} is out of range")
    return value


@dataclass(frozen=True)
class Checkpoint:
    """A log's tree head: origin, tree size, root hash and opaque extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for what, line in (
            ("origin", self.origin),
            *(("extension line", e) for e in self.extensions),
        ):
            if not line:
                raise MalformedError(f"checkpoint {what} must be non-empty")
            if "\n" in line:
                raise MalformedError(f"checkpoint {what} must be a single line")
            _check_text(line, f"checkpoint {what}")
        if not 0 <= self.size <= _MAX_SIZE:
            raise MalformedError(f"checkpoint size {self.size} is out of range")
        if len(self.root) != _HASH_LEN:
            raise MalformedError(f"checkpoint root is {len(self.root)} bytes, want {_HASH_LEN}")

    def text(self) -> str:
        root = b64(self.root)
        lines = [self.origin, str(self.size), root, *self.extensions]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def from_text(cls, text: str) -> Checkpoint:
        """Parse a checkpoint note text (the part a log signs)."""
        if not text.endswith("\n"):
            raise MalformedError("checkpoint text must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise MalformedError("checkpoint needs origin, size and root hash lines")
        origin, size_line, root_line, *extensions = lines
        size = _parse_decimal(size_line, "checkpoint size", _MAX_SIZE)
        root = unb64_canonical(root_line, "checkpoint root hash")
        return cls(origin=origin, size=size, root=root, extensions=tuple(extensions))


def sign_checkpoint(cp: Checkpoint, signer: Signer) -> Note:
    """The log's signed note for ``cp``; the log's key name must be the origin."""
    if signer.name != cp.origin:
        raise MalformedError(
            f"log key name {signer.name!r} must equal the checkpoint origin {cp.origin!r}"
        )
    return sign_note(cp.text(), signer)


def open_checkpoint(data: bytes | str | Note, log_key: VerifierKey) -> tuple[Checkpoint, Note]:
    """Verify the log's signature on a checkpoint note and parse it."""
    if log_key.type_byte != ED25519:
        raise MalformedError(f"log key {log_key.name!r} must be an Ed25519 (0x01) note key")
    note, _ = verify_note(data, [log_key])
    cp = Checkpoint.from_text(note.text)
    if cp.origin != log_key.name:
        raise SignatureError(
            f"checkpoint origin {cp.origin!r} is not the log {log_key.name!r} that signed it"
        )
    return cp, note


def cosignature_message(cp: Checkpoint, timestamp: int) -> bytes:
    """The bytes a tlog-cosignature/v1 Ed25519 cosigner signs."""
    return f"cosignature/v1\ntime {timestamp}\n{cp.text()}".encode()


def ml_dsa_44_cosignature_message(cp: Checkpoint, cosigner: str, timestamp: int) -> bytes:
    """The bytes an ML-DSA-44 (type 0x06) cosigner signs for the whole checkpoint.

    tlog-cosignature's ``cosigned_message`` with start 0 and end the tree size;
    extension lines are not part of it.
    """
    name, origin = cosigner.encode("utf-8"), cp.origin.encode("utf-8")
    if not 0 < len(name) < 256 or not 0 < len(origin) < 256:
        raise MalformedError("an ML-DSA-44 cosigner name and origin are 1 to 255 bytes")
    return b"".join(
        (
            _SUBTREE_LABEL,
            bytes([len(name)]),
            name,
            timestamp.to_bytes(8, "big"),
            bytes([len(origin)]),
            origin,
            (0).to_bytes(8, "big"),
            cp.size.to_bytes(8, "big"),
            cp.root,
        )
    )


def _cosigner_key(cosigner: VerifierKey) -> VerifierKey:
    # The same Ed25519 key is named with type 0x01 in many configs; cosignatures use 0x04.
    if cosigner.type_byte == ED25519:
        return cosigner.with_type(COSIGNATURE_V1)
    if cosigner.type_byte not in (COSIGNATURE_V1, ML_DSA_44_COSIGNATURE):
        raise MalformedError(
            f"cosigner {cosigner.name!r}: key type 0x{cosigner.type_byte:02x} is not supported"
        )
    return cosigner


def cosign(cp: Checkpoint, signer: Cosigner, timestamp: int) -> NoteSignature:
    """A tlog-cosignature signature line on ``cp`` at ``timestamp`` (POSIX seconds).

    An ``MlDsa44Signer`` makes a type 0x06 cosignature (the ``subtree/v1``
    message over origin, 0, size and root; extension lines unsigned); any
    other signer an Ed25519 ``cosignature/v1`` one (type 0x04). Either way the
    line carries ``key_id[4] || timestamp (u64 BE) || signature``.
    """
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise MalformedError(f"cosignature timestamp {timestamp} is out of range")
    if isinstance(signer, MlDsa44Signer):
        message = ml_dsa_44_cosignature_message(cp, signer.name, timestamp)
        sig = signer.sign_ml_dsa_44(message)
    else:
        sig = signer.sign(cosignature_message(cp, timestamp))
    return NoteSignature(
        name=signer.name,
        key_id=cosigner_of(signer).key_id,
        signature=timestamp.to_bytes(8, "big") + sig,
    )


def cosign_note(note: bytes | str | Note, signer: Cosigner, timestamp: int) -> Note:
    """``note`` (a signed checkpoint) with ``signer``'s cosignature added
    (Ed25519 or ML-DSA-44, as ``cosign`` makes it).

    The cosigner vouches for the checkpoint text as it stands; nothing else in
    the note is checked here (a witness checks consistency before it cosigns).
    A cosignature by the same key already present is replaced.
    """
    if not isinstance(note, Note):
        note = parse_note(note)
    cp = Checkpoint.from_text(note.text)
    return add_signatures(note, cosign(cp, signer, timestamp))


def verify_cosignature(cp: Checkpoint, sig: NoteSignature, cosigner: VerifierKey) -> int:
    """Verify one cosignature on ``cp`` by ``cosigner``; return its timestamp.

    ``cosigner`` is an Ed25519 (0x04, or 0x01 taken as 0x04) or ML-DSA-44
    (0x06) cosigner key.
    """
    key = _cosigner_key(cosigner)
    if sig.name != key.name or sig.key_id != key.key_id:
        raise SignatureError(f"signature is not by cosigner {key.name}+{key.key_id_hex}")
    want = _ML_DSA_44_COSIG_LEN if key.type_byte == ML_DSA_44_COSIGNATURE else _COSIG_LEN
    if len(sig.signature) != want:
        raise SignatureError(
            f"cosignature by {key.name!r} is {len(sig.signature)} bytes, want {want}"
        )
    timestamp = int.from_bytes(sig.signature[:8], "big")
    if timestamp > MAX_TIMESTAMP:
        raise SignatureError(f"cosignature by {key.name!r} has an out-of-range timestamp")
    if key.type_byte == ML_DSA_44_COSIGNATURE:
        message = ml_dsa_44_cosignature_message(cp, key.name, timestamp)
        verify_ml_dsa_44(key.public_key, message, sig.signature[8:], key.name)
    else:
        message = cosignature_message(cp, timestamp)
        verify_ed25519(key.public_key, message, sig.signature[8:], key.name)
    return timestamp


def cosignatures(
    note: Note | bytes | str, cp: Checkpoint, cosigners: Sequence[VerifierKey]
) -> dict[str, int]:
    """Timestamps of the cosignatures in ``note`` by known cosigners, by cosigner name.

    Unknown signatures (the log's own among them) are ignored; a signature by a
    known cosigner that fails raises SignatureError. No signature is required.
    """
    if not isinstance(note, Note):
        note = parse_note(note)
    if note.text != cp.text():
        raise MalformedError("note text is not this checkpoint")
    known = {(k.name, k.key_id): k for k in map(_cosigner_key, cosigners)}
    found: dict[str, int] = {}
    for sig in note.signatures:
        key = known.get((sig.name, sig.key_id))
        if key is not None:
            # A repeated cosigner counts once, with its newest statement.
            timestamp = verify_cosignature(cp, sig, key)
            found[key.name] = max(timestamp, found.get(key.name, timestamp))
    return found
