"""The C2SP tlog-witness decision, pure: the add-checkpoint request body, its
strict parser, and what a witness answers given the latest checkpoint it
cosigned for that origin (c2sp.org/tlog-witness). Storage and HTTP are elsewhere.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from ..errors import MalformedError, NotFoundError, ProofError, SizeConflictError
from .b64 import unb64_canonical
from .checkpoint import Checkpoint, cosign_note
from .identity import Cosigner
from .merkle import verify_consistency
from .note import Note, parse_note, verify_note
from .policy import CheckpointPolicy

__all__ = [
    "EMPTY_ROOT",
    "MAX_PROOF_LINES",
    "AddCheckpoint",
    "check_add_checkpoint",
    "origin_hash",
    "witness_checkpoint",
]

MAX_PROOF_LINES = 63  # the spec's bound: a client MUST NOT send more
EMPTY_ROOT = hashlib.sha256(b"").digest()  # RFC 6962's hash of the empty tree
_OLD = re.compile(r"old (0|[1-9][0-9]*)")
_MAX_SIZE = 2**64 - 1
_HASH_LEN = 32


def origin_hash(origin: str) -> str:
    """Lowercase hex SHA-256 of ``origin``: the monitoring path's name for a log."""
    return hashlib.sha256(origin.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class AddCheckpoint:
    """An add-checkpoint request: the size the client believes the witness holds,
    a consistency proof from it, and the signed checkpoint (as a note and parsed)."""

    old: int
    proof: tuple[bytes, ...]
    note: Note
    checkpoint: Checkpoint

    @classmethod
    def parse(cls, body: bytes) -> AddCheckpoint:
        """Parse a request body strictly; MalformedError names what is wrong."""
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedError("request body is not valid UTF-8") from exc
        head, sep, rest = text.partition("\n")
        if not sep:
            raise MalformedError("request body has no old size line")
        match = _OLD.fullmatch(head)
        if match is None:
            raise MalformedError("first line must be 'old <size>' (decimal, no leading zeros)")
        digits = match.group(1)
        # int() refuses over 4,300 digits; anything past 20 is out of range anyway.
        if len(digits) > 20 or int(digits) > _MAX_SIZE:
            raise MalformedError(f"old size {digits[:24]} is out of range")
        old = int(digits)
        proof: list[bytes] = []
        while True:
            line, sep, rest = rest.partition("\n")
            if not sep:
                raise MalformedError("request body has no empty line before the checkpoint")
            if not line:
                break
            if len(proof) == MAX_PROOF_LINES:
                raise MalformedError(f"more than {MAX_PROOF_LINES} consistency proof lines")
            raw = unb64_canonical(line, f"consistency proof line {len(proof) + 1}")
            if len(raw) != _HASH_LEN:
                raise MalformedError(
                    f"consistency proof line {len(proof) + 1} is {len(raw)} bytes, not {_HASH_LEN}"
                )
            proof.append(raw)
        note = parse_note(rest)
        return cls(old, tuple(proof), note, Checkpoint.from_text(note.text))


def check_add_checkpoint(
    request: AddCheckpoint, policy: CheckpointPolicy, latest: Checkpoint | None
) -> Note:
    """Check ``request`` against the logs ``policy`` names and ``latest``, the
    last checkpoint cosigned for its origin (None: never); return the note with
    only the signatures that verified (the log's), ready to be cosigned.

    Raises, in the spec's order: NotFoundError (unknown origin, 404),
    SignatureError (no good signature by the log, 403), MalformedError (old
    size past the checkpoint's, 400), SizeConflictError (old is not the latest
    cosigned size, 409), ProofError (the new tree is not an extension of the
    old one, 422).
    """
    cp = request.checkpoint
    keys = [log.key for log in policy.logs if log.key.name == cp.origin]
    if not keys:
        raise NotFoundError(f"unknown log origin {cp.origin!r}")
    _, signed = verify_note(request.note, keys)
    verified = Note(
        request.note.text,
        tuple(
            s
            for s in request.note.signatures
            if any((s.name, s.key_id) == (k.name, k.key_id) for k in signed)
        ),
    )
    if request.old > cp.size:
        raise MalformedError(f"old size {request.old} is past the checkpoint's {cp.size}")
    held = 0 if latest is None else latest.size
    if request.old != held:
        raise SizeConflictError(held, f"the latest checkpoint cosigned has size {held}")
    if cp.size == 0 and cp.root != EMPTY_ROOT:
        raise ProofError("a checkpoint of size 0 must have the empty tree's root")
    if request.old == 0:
        if request.proof:
            raise ProofError("a consistency proof from size 0 must be empty")
    elif request.old == cp.size:
        assert latest is not None  # held == old > 0
        if request.proof:
            raise ProofError("sizes are equal but the consistency proof is not empty")
        if latest.root != cp.root:
            raise ProofError(f"a different root for the cosigned size {cp.size}: the log forked")
    else:
        assert latest is not None
        verify_consistency(latest.size, cp.size, latest.root, cp.root, request.proof)
    return verified


def witness_checkpoint(
    request: AddCheckpoint,
    policy: CheckpointPolicy,
    latest: Checkpoint | None,
    signer: Cosigner,
    now: int,
) -> Note:
    """The note a witness keeps and serves after ``request`` passes
    ``check_add_checkpoint``: the log's verified signatures and ``signer``'s
    cosignature (Ed25519 or ML-DSA-44) dated ``now`` (POSIX seconds, not 0:
    a witness states that this is the largest tree it has seen at that time)."""
    if now <= 0:
        raise MalformedError("a witness cosignature's timestamp must not be zero")
    return cosign_note(check_add_checkpoint(request, policy, latest), signer, now)
