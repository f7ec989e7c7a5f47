"""Inclusion proofs in the C2SP tlog-proof format (c2sp.org/tlog-proof@v1).

A tlog-proof proves offline that an entry is in the log: index, inclusion path and
the log's signed checkpoint (with any witness cosignatures), plus opaque extra data.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import MalformedError, ProofError
from .b64 import b64, unb64_canonical
from .checkpoint import Checkpoint, _parse_decimal
from .identity import VerifierKey
from .merkle import verify_inclusion
from .note import parse_note
from .policy import CheckpointPolicy, as_policy, verify_checkpoint

__all__ = ["MAX_PROOF_HASHES", "PROOF_HEADER", "TlogProof", "verify_tlog_proof"]

PROOF_HEADER = "c2sp.org/tlog-proof@v1"
# A tree of fewer than 2^64 leaves has an inclusion path of at most 64 hashes.
MAX_PROOF_HASHES = 64
_MAX_INDEX = 2**64 - 1
_HASH_LEN = 32


@dataclass(frozen=True)
class TlogProof:
    """A tlog-proof: entry index, inclusion path, signed checkpoint and optional extra data.

    ``extra`` is unauthenticated: ``None`` means the ``extra`` line is absent,
    ``b""`` that it is present and empty. ``checkpoint`` holds the signed note
    bytes verbatim, so the log's and witnesses' signatures stay checkable.
    """

    index: int
    proof: tuple[bytes, ...]
    checkpoint: bytes
    extra: bytes | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.index <= _MAX_INDEX:
            raise MalformedError(f"tlog-proof index {self.index} is out of range")
        if len(self.proof) > MAX_PROOF_HASHES:
            raise MalformedError(f"inclusion path has more than {MAX_PROOF_HASHES} hashes")
        for i, h in enumerate(self.proof):
            if len(h) != _HASH_LEN:
                raise MalformedError(f"inclusion path hash {i} is {len(h)} bytes, want 32")
        # Refuse at construction what could not be written or read back.
        Checkpoint.from_text(parse_note(self.checkpoint).text)

    def to_text(self) -> str:
        lines = [PROOF_HEADER]
        if self.extra is not None:
            lines.append("extra " + b64(self.extra))
        lines.append(f"index {self.index}")
        lines.extend(b64(h) for h in self.proof)
        head = "".join(line + "\n" for line in lines)
        return head + "\n" + self.checkpoint.decode("utf-8")

    @classmethod
    def from_text(cls, text: str | bytes) -> TlogProof:
        """Parse a tlog-proof strictly; nothing is verified."""
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise MalformedError("tlog-proof is not valid UTF-8") from exc
        # Header, extra, index and path lines are never empty: the first blank
        # line ends them and the checkpoint note follows verbatim.
        split = text.find("\n\n")
        if split < 0:
            raise MalformedError("tlog-proof has no blank line before its checkpoint")
        lines = text[:split].split("\n")
        try:
            checkpoint = text[split + 2 :].encode("utf-8")
        except UnicodeEncodeError as exc:
            raise MalformedError("tlog-proof is not valid UTF-8") from exc
        if lines[0] != PROOF_HEADER:
            raise MalformedError(f"tlog-proof must start with {PROOF_HEADER!r}")
        pos = 1
        extra: bytes | None = None
        if pos < len(lines) and lines[pos].startswith("extra "):
            extra = unb64_canonical(lines[pos][len("extra ") :], "tlog-proof extra data")
            pos += 1
        if pos >= len(lines) or not lines[pos].startswith("index "):
            raise MalformedError("tlog-proof needs an 'index <n>' line")
        index = _parse_decimal(lines[pos][len("index ") :], "tlog-proof index", _MAX_INDEX)
        path = lines[pos + 1 :]
        if len(path) > MAX_PROOF_HASHES:
            raise MalformedError(f"inclusion path has more than {MAX_PROOF_HASHES} hashes")
        proof = tuple(
            unb64_canonical(line, f"inclusion path hash {i}") for i, line in enumerate(path)
        )
        return cls(index=index, proof=proof, checkpoint=checkpoint, extra=extra)


def verify_tlog_proof(
    tlog: TlogProof,
    leaf_hash: bytes,
    policy: CheckpointPolicy | VerifierKey,
    *,
    now: int | None = None,
) -> Checkpoint:
    """Check the checkpoint under ``policy`` (the log's signature and the quorum
    of cosignatures it carries) and the inclusion of ``leaf_hash``; return the
    checkpoint. A bare log key means the single-node policy; ``now`` (POSIX
    seconds) refuses cosignatures dated after it."""
    cp, _ = verify_checkpoint(tlog.checkpoint, as_policy(policy), now=now)
    if tlog.index >= cp.size:
        raise ProofError(f"index {tlog.index} is not below the tree size {cp.size}")
    verify_inclusion(tlog.index, cp.size, leaf_hash, list(tlog.proof), cp.root)
    return cp
