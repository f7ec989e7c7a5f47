"""A verified mirror of another node's log.

Entries reach the mirror only after they, together with what it already
holds, give the root of a checkpoint the caller verified; each is then
re-checked, its signatures verified and its transaction re-executed as
``log verify`` would, before it and the state it derives are stored.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping, Sequence

from ..contracts import ContractSet, Overlay
from ..contracts.state import LEDGER_KEY
from ..core.checkpoint import Checkpoint
from ..core.identity import VerifierKey
from ..core.merkle import leaf_hash
from ..errors import AuditError, ProofError
from ..storage.sqlite import IndexRow, SqliteStore
from .audit import SignatureChecks, replay_checks, replay_execution
from .verifier import InlineVerifier, SignatureVerifier

__all__ = ["apply_checkpoint"]

_CHUNK = 2048  # entries executed and stored per SQLite transaction


class _StoreNonces(MutableMapping[str, int]):
    """The nonces the mirror holds plus those of the chunk being applied."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self.new: dict[str, int] = {}

    def __getitem__(self, nonce: str) -> int:
        if nonce in self.new:
            return self.new[nonce]
        found = self._store.nonce_index(nonce)
        if found is None:
            raise KeyError(nonce)
        return found

    def __contains__(self, nonce: object) -> bool:
        return isinstance(nonce, str) and (
            nonce in self.new or self._store.nonce_index(nonce) is not None
        )

    def __setitem__(self, nonce: str, index: int) -> None:
        self.new[nonce] = index

    def __delitem__(self, nonce: str) -> None:
        del self.new[nonce]

    def __iter__(self) -> Iterator[str]:
        return iter(self.new)

    def __len__(self) -> int:
        return len(self.new)


def apply_checkpoint(
    store: SqliteStore,
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
    first = store.size
    if first + len(entries) != checkpoint.size:
        raise ProofError(
            f"the checkpoint is for {checkpoint.size} entries; the mirror holds {first} "
            f"and got {len(entries)}"
        )
    if store.root_after([leaf_hash(e) for e in entries]) != checkpoint.root:
        raise ProofError(
            f"entries {first} to {checkpoint.size - 1} from the server do not give the root "
            f"its signed checkpoint of size {checkpoint.size} claims: an entry was forged or "
            "altered, or the log forked; nothing was stored"
        )
    origin = store.meta("origin")
    checks = verifier or InlineVerifier()
    # Verified against the root first, executed in chunks: a chunk that fails to
    # re-execute leaves the earlier (valid, root-checked) chunks stored.
    for start in range(0, len(entries), _CHUNK):
        chunk = entries[start : start + _CHUNK]
        state = Overlay(store)
        nonces = _StoreNonces(store)
        sigs = SignatureChecks(checks)
        rows = []
        for offset, data in enumerate(chunk):
            index = first + start + offset
            entry = replay_checks(index, index, data, nonces, origin, contracts)
            state.writes.update(replay_execution(state, index, entry, contracts, sigs))
            if index == 0:
                _check_genesis_key(state, log_key)
            rows.append(IndexRow.of(entry.transaction, entry.outcome.accepted))
        sigs.settle()
        store.append(chunk, list(nonces.new), state.writes, rows)
    store.put_checkpoint(checkpoint.size, checkpoint.root, note)


def _check_genesis_key(state: Overlay, log_key: VerifierKey) -> None:
    record = state.get_state(LEDGER_KEY)
    if not isinstance(record, dict) or record.get("log_key") != log_key.to_string():
        raise AuditError("the genesis entry names another log key than the one trusted", 0)
