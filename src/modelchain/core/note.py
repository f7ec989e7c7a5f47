"""C2SP signed notes (c2sp.org/signed-note): parse, sign and verify.

Owns the byte format of a note (text, blank line, ``— name base64`` lines) and
the rule for which signatures count. Only Ed25519 (type 0x01) signatures verify here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import MalformedError, SignatureError
from .b64 import b64, unb64_canonical
from .identity import ED25519, Signer, VerifierKey, check_key_name, key_id

__all__ = [
    "MAX_SIGNATURES",
    "Note",
    "NoteSignature",
    "add_signatures",
    "parse_note",
    "sign_note",
    "verify_note",
]

# The spec asks verifiers to cap signatures and to accept at least 16; 100 is
# the cap of golang.org/x/mod/sumdb/note, the reference implementation.
MAX_SIGNATURES = 100

_EM_DASH_PREFIX = "— "


def _check_text(text: str, what: str) -> None:
    """Raise MalformedError unless ``text`` may appear in a signed note."""
    for ch in text:
        if ord(ch) < 0x20 and ch != "\n":
            raise MalformedError(f"{what}: control character U+{ord(ch):04X}")
        if 0xD800 <= ord(ch) <= 0xDFFF:
            # A lone surrogate cannot be encoded as UTF-8.
            raise MalformedError(f"{what}: not valid UTF-8")


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, 4-byte key id and the signature proper."""

    name: str
    key_id: bytes
    signature: bytes

    def __post_init__(self) -> None:
        check_key_name(self.name)
        _check_text(self.name, "signature key name")
        if len(self.key_id) != 4:
            raise MalformedError(f"signature by {self.name!r}: key id must be 4 bytes")
        if not self.signature:
            raise MalformedError(f"signature by {self.name!r}: empty signature")

    def line(self) -> str:
        blob = b64(self.key_id + self.signature)
        return f"{_EM_DASH_PREFIX}{self.name} {blob}\n"


@dataclass(frozen=True)
class Note:
    """A note text (ending in a newline) and its signatures, in order."""

    text: str
    signatures: tuple[NoteSignature, ...]

    def __post_init__(self) -> None:
        if not self.text.endswith("\n"):
            raise MalformedError("note text must end with a newline")
        _check_text(self.text, "note text")
        # A note without signatures has no valid encoding.
        if not self.signatures:
            raise MalformedError("a signed note needs at least one signature")
        if len(self.signatures) > MAX_SIGNATURES:
            raise MalformedError(f"note has more than {MAX_SIGNATURES} signatures")

    def to_bytes(self) -> bytes:
        lines = "".join(sig.line() for sig in self.signatures)
        return (self.text + "\n" + lines).encode("utf-8")


def _parse_signature_line(line: str) -> NoteSignature:
    if not line.startswith(_EM_DASH_PREFIX):
        raise MalformedError("signature line must start with an em dash and a space")
    name, sep, blob = line[len(_EM_DASH_PREFIX) :].partition(" ")
    if not sep or not blob:
        raise MalformedError("signature line must be '— <name> <base64>'")
    raw = unb64_canonical(blob, f"signature by {name!r}")
    # Four bytes of key id and at least one byte of signature.
    if len(raw) < 5:
        raise MalformedError(f"signature by {name!r} is too short")
    return NoteSignature(name=name, key_id=raw[:4], signature=raw[4:])


def parse_note(data: bytes | str) -> Note:
    """Parse a signed note strictly, without verifying anything."""
    if isinstance(data, str):
        try:
            raw = data.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise MalformedError("note is not valid UTF-8") from exc
    else:
        raw = bytes(data)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedError("note is not valid UTF-8") from exc
    _check_text(text, "note")
    # Signature lines are never empty, so the last blank line is the separator.
    split = text.rfind("\n\n")
    if split < 0:
        raise MalformedError("note has no blank line before its signatures")
    body, sig_block = text[: split + 1], text[split + 2 :]
    if not sig_block or not sig_block.endswith("\n"):
        raise MalformedError("note signatures must end with a newline")
    lines = sig_block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedError(f"note has more than {MAX_SIGNATURES} signatures")
    return Note(text=body, signatures=tuple(_parse_signature_line(line) for line in lines))


def sign_note(text: str, signer: Signer) -> Note:
    """Sign ``text`` with an Ed25519 (type 0x01) note signature."""
    if not text.endswith("\n"):
        raise MalformedError("note text must end with a newline")
    _check_text(text, "note text")
    signature = signer.sign(text.encode("utf-8"))
    sig = NoteSignature(
        name=signer.name,
        key_id=key_id(signer.name, ED25519, signer.public_key),
        signature=signature,
    )
    return Note(text=text, signatures=(sig,))


def add_signatures(note: Note, *sigs: NoteSignature) -> Note:
    """Append signatures; one with the same name and key id as an existing one replaces it.

    Replacing (as golang.org/x/mod/sumdb/note does) keeps one signature per key,
    so a re-cosigned checkpoint carries only the newest cosignature.
    """
    new_keys = {(s.name, s.key_id) for s in sigs}
    kept = [s for s in note.signatures if (s.name, s.key_id) not in new_keys]
    added: dict[tuple[str, bytes], NoteSignature] = {}
    for s in sigs:
        added[(s.name, s.key_id)] = s
    return Note(text=note.text, signatures=(*kept, *added.values()))


def verify_note(
    data: bytes | str | Note, verifiers: Sequence[VerifierKey]
) -> tuple[Note, tuple[VerifierKey, ...]]:
    """Verify a note against known Ed25519 keys; return it and the keys that signed it.

    Signatures whose (name, key id) match no known key are ignored. Every
    signature by a known key must verify, and at least one must be present.
    Keys of other types (e.g. cosignature keys, 0x04) are not used here.
    """
    note = data if isinstance(data, Note) else parse_note(data)
    known: dict[tuple[str, bytes], VerifierKey] = {}
    for v in verifiers:
        if v.type_byte != ED25519:
            continue
        ident = (v.name, v.key_id)
        if ident in known and known[ident] != v:
            # Two trusted keys sharing name and id make every signature ambiguous.
            raise MalformedError(f"ambiguous verifier keys for {v.name}+{v.key_id_hex}")
        known[ident] = v
    message = note.text.encode("utf-8")
    verified: list[VerifierKey] = []
    for sig in note.signatures:
        key = known.get((sig.name, sig.key_id))
        if key is None:
            continue
        key.verify(message, sig.signature)
        if key not in verified:
            verified.append(key)
    if not verified:
        names = ", ".join(sorted({v.name for v in known.values()})) or "none given"
        raise SignatureError(f"note has no signature from a trusted key ({names})")
    return note, tuple(verified)
