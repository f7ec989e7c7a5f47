"""A verified mirror of another node's log.

Entries reach the mirror only after they, together with what it already
holds, give the root of a checkpoint the caller verified; each is then
re-derived by the executor as ``log verify`` would (bytes, nonce, genesis
rule, signatures, outcome) before it and the state it derives are stored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..contracts import ContractSet
from ..core.checkpoint import Checkpoint
from ..core.identity import VerifierKey
from ..core.merkle import leaf_hash
from ..errors import ProofError
from ..storage.protocols import LedgerStore
from .executor import Executor, SignatureChecks
from .verifier import InlineVerifier, SignatureVerifier

__all__ = ["apply_checkpoint", "apply_verified"]

_CHUNK = 2048  # entries executed and stored per group commit


def apply_checkpoint(
    store: LedgerStore,
    contracts: ContractSet,
    log_key: VerifierKey,
    checkpoint: Checkpoint,
    note: bytes,
    entries: Sequence[bytes],
    verifier: SignatureVerifier | None = None,
) -> None:
    """Append ``entries`` (the mirror's next ones) and the checkpoint note.

    ``checkpoint`` must already be verified with ``log_key``. Raises ProofError,
    writing nothing, when the entries do not give its root (a forged or altered
    entry, or a checkpoint inconsistent with what the mirror holds); raises
    AuditError when an entry could never have been admitted or executes
    differently, keeping the chunks before it (they are root-checked and valid)
    but not the checkpoint."""
    apply_verified(store, contracts, log_key, checkpoint, entries, checkpoint.size, verifier)
    store.put_checkpoint(checkpoint.size, checkpoint.root, note)


def apply_verified(
    store: LedgerStore,
    contracts: ContractSet,
    log_key: VerifierKey | None,
    checkpoint: Checkpoint,
    entries: Sequence[bytes],
    upto: int,
    verifier: SignatureVerifier | None = None,
    meta: Mapping[str, str] | None = None,
) -> None:
    """Check that ``entries`` (the store's next ones) give ``checkpoint``'s
    root, then execute and store those below index ``upto``, the last commit
    with ``meta``. Errors as ``apply_checkpoint``; the checkpoint is not
    stored (a node that bootstraps to ``upto`` makes its own)."""
    first = store.size
    if first + len(entries) != checkpoint.size:
        raise ProofError(
            f"the checkpoint is for {checkpoint.size} entries; the mirror holds {first} "
            f"and got {len(entries)}"
        )
    if not first <= upto <= checkpoint.size:
        raise ProofError(f"cannot apply up to {upto}: the store holds {first} entries")
    if store.root_after([leaf_hash(e) for e in entries]) != checkpoint.root:
        raise ProofError(
            f"entries {first} to {checkpoint.size - 1} from the server do not give the root "
            f"its signed checkpoint of size {checkpoint.size} claims: an entry was forged or "
            "altered, or the log forked; nothing was stored"
        )
    executor = Executor(contracts, store.meta("origin"), log_key)
    checks = verifier or InlineVerifier()
    todo = entries[: upto - first]
    # Verified against the root first, executed in chunks: a chunk that fails to
    # re-execute leaves the earlier (valid, root-checked) chunks stored.
    for start in range(0, len(todo), _CHUNK):
        sigs = SignatureChecks(checks)
        applied = executor.replay(store, todo[start : start + _CHUNK], sigs)
        sigs.settle()
        last = start + _CHUNK >= len(todo)
        applied.commit(store, meta if last else None)
