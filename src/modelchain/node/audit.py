"""Full audit of a ledger store: trust nothing that was stored, recompute it all.

Replays every entry from genesis through the executor with fresh state:
re-checks canonical bytes, indexes, nonces, the genesis rule and signatures,
re-executes each transaction and compares the outcome, rebuilds every tile,
and checks the stored state, nonces, index and checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from ..contracts import ContractSet
from ..contracts.genesis import checkpoint_policy
from ..contracts.state import LEDGER_KEY
from ..core import canonical
from ..core.canonical import JSONValue
from ..core.identity import VerifierKey
from ..core.merkle import HASH_SIZE, NodeReader, leaf_hash, tree_root
from ..core.policy import CheckpointPolicy, verify_checkpoint
from ..core.tiles import TileWriter, tile_node_reader
from ..errors import AuditError, Error
from ..storage.protocols import IndexRow, LedgerStore
from .executor import Executor, SignatureChecks
from .verifier import InlineVerifier, SignatureVerifier

__all__ = ["AuditReport", "audit"]

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class AuditReport:
    size: int
    root: bytes
    accepted: int
    rejected: int
    signatures: int
    checkpoints: int
    state_keys: int


class _Replayed:
    """What the replay derived so far: state, nonces and size (the executor's
    base), kept in memory and compared with the store's at the end."""

    def __init__(self) -> None:
        self.values: dict[str, JSONValue] = {}
        self.nonces: dict[str, int] = {}
        self.size = 0

    def get_state(self, key: str) -> JSONValue | None:
        return self.values.get(key)

    def used_nonces(self, nonces: Sequence[str]) -> dict[str, int]:
        found = self.nonces
        return {n: found[n] for n in nonces if n in found}


_CHUNK = 4096  # entries re-derived per call of the executor


def _chunks(store: LedgerStore) -> Iterator[list[bytes]]:
    """The stored entries in chunks; AuditError at the first gap."""
    chunk: list[bytes] = []
    for expected, (index, data) in enumerate(store.entries()):
        if index != expected:
            yield chunk
            raise AuditError(f"entry {expected} is missing (next stored is {index})", expected)
        chunk.append(data)
        if len(chunk) >= _CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def audit(
    store: LedgerStore,
    contracts: ContractSet,
    log_key: VerifierKey | None = None,
    progress: Progress | None = None,
    verifier: SignatureVerifier | None = None,
) -> AuditReport:
    """Raise AuditError naming the first bad entry, tile, state key or checkpoint."""
    total = store.size
    replayed = _Replayed()
    executor = Executor(contracts, None, log_key)
    tree = TileWriter()
    tiles: dict[tuple[int, int], bytes] = {}
    accepted = rejected = signatures = 0
    sigs = SignatureChecks(verifier or InlineVerifier())
    rows: list[IndexRow] = []
    chunks = _chunks(store)
    while True:
        try:
            chunk = next(chunks)
        except StopIteration:
            break
        except AuditError:
            sigs.settle()  # an earlier bad signature is the first bad entry
            raise
        applied = executor.replay(replayed, chunk, sigs)
        signatures += applied.signatures
        rows.extend(applied.rows)
        for k, v in applied.writes.items():
            if v is None:
                replayed.values.pop(k, None)
            else:
                replayed.values[k] = v
        replayed.nonces.update((n, applied.first + i) for i, n in enumerate(applied.nonces))
        replayed.size += len(chunk)
        for row in applied.rows:
            if row.accepted:
                accepted += 1
            else:
                rejected += 1
        tiles.update(tree.append([leaf_hash(data) for data in chunk]))
        if progress is not None:
            progress(replayed.size, total)
    sigs.settle()
    if progress is not None:
        progress(replayed.size, total)
    size = replayed.size
    state = replayed
    nonces = replayed.nonces

    latest = store.checkpoint()
    if latest is not None and latest[0] > size:
        raise AuditError(
            f"the log has {size} entries but a checkpoint was signed at size {latest[0]}: "
            f"entries {size} to {latest[0] - 1} are missing",
            size,
        )
    _compare_tiles(store, tiles)
    _compare_state(store, state)
    stored_nonces = dict(store.nonces())
    if stored_nonces != nonces:
        bad = sorted(set(stored_nonces.items()) ^ set(nonces.items()), key=lambda x: x[1])
        raise AuditError(f"the nonce index differs from the log near entry {bad[0][1]}")
    _compare_index(store, rows)

    read = tile_node_reader(lambda level, n: tiles[(level, n)])
    genesis_key = state.get_state(LEDGER_KEY)
    if isinstance(genesis_key, dict):
        recorded = VerifierKey.from_string(genesis_key["log_key"])
        # A cluster node's own key is one of the logs its checkpoint policy names.
        logs = [entry.key for entry in checkpoint_policy(genesis_key).logs]
        if log_key is not None and log_key != recorded and log_key not in logs:
            raise AuditError("the log key differs from the one genesis recorded")
        log_key = recorded
    # Stored checkpoints may predate their cosignatures: the log's signature and
    # every known cosignature must verify, the quorum is the readers' to ask.
    policy = None if log_key is None else CheckpointPolicy.of_log(log_key)
    if isinstance(genesis_key, dict):
        policy = checkpoint_policy(genesis_key)
    count = 0
    for cp_size, note in store.checkpoints():
        if policy is None:
            raise AuditError("checkpoints exist but no log key is known")
        try:
            cp, _ = verify_checkpoint(note, policy, require_quorum=False)
        except Error as exc:
            raise AuditError(f"checkpoint at size {cp_size}: {exc.message}") from exc
        if cp.size != cp_size or cp.size > size:
            raise AuditError(f"checkpoint at size {cp_size} claims size {cp.size} of {size}")
        if cp.root != tree_root(read, cp.size):
            raise AuditError(f"checkpoint at size {cp_size} signs a root the entries do not give")
        count += 1
    _compare_heads(store, size, read, policy)
    return AuditReport(
        size=size,
        root=tree_root(read, size),
        accepted=accepted,
        rejected=rejected,
        signatures=signatures,
        checkpoints=count,
        state_keys=len(state.values),
    )


def _compare_heads(
    store: LedgerStore, size: int, read: NodeReader, policy: CheckpointPolicy | None
) -> None:
    """The store must hold every entry the ledger published a checkpoint of
    or acknowledged, with the same roots (kept outside SQLite, so that a lost
    WAL cannot take them along)."""
    try:
        published = store.published_head()
        acked = store.acked_head()
    except Error as exc:
        raise AuditError(exc.message) from exc
    for what, head in (
        ("published a checkpoint of", None if published is None else published[0]),
        ("acknowledged", acked),
    ):
        if head is None:
            continue
        if head.size > size:
            raise AuditError(
                f"the log has {size} entries but the ledger {what} {head.size}: "
                f"entries {size} to {head.size - 1} are lost (see README, 'Recovering a store')",
                size,
            )
        if head.size and tree_root(read, head.size) != head.root:
            raise AuditError(
                f"the ledger {what} {head.size} entries with another root than the log gives"
            )
    if published is not None:
        if policy is None:
            raise AuditError("a checkpoint was published but no log key is known")
        try:
            verify_checkpoint(published[1], policy, require_quorum=False)
        except Error as exc:
            raise AuditError(f"the published checkpoint: {exc.message}") from exc


def _compare_tiles(store: LedgerStore, tiles: dict[tuple[int, int], bytes]) -> None:
    stored = {(level, n): h for level, n, h in store.tiles()}
    for key in sorted(set(stored) | set(tiles)):
        want, got = tiles.get(key), stored.get(key)
        if want == got:
            continue
        level, n = key
        if want is None or got is None:
            raise AuditError(f"tile {level}/{n} is {'extra' if want is None else 'missing'}")
        first_bad = (
            next(
                (
                    i
                    for i in range(0, max(len(want), len(got)), HASH_SIZE)
                    if want[i : i + HASH_SIZE] != got[i : i + HASH_SIZE]
                ),
                0,
            )
            // HASH_SIZE
        )
        if level == 0:
            idx = n * 256 + first_bad
            raise AuditError(f"tile 0/{n}: the stored hash of entry {idx} is wrong", idx)
        raise AuditError(f"tile {level}/{n}: stored hash {first_bad} is wrong")


def _compare_index(store: LedgerStore, rows: list[IndexRow]) -> None:
    """The audit-trail index must say what the entries say: a row changed or
    dropped there would hide an entry from the trail's filters."""
    stored = store.index_rows()
    for index, want in enumerate(rows):
        got = next(stored, None)
        if got is None:
            if store.readonly and index == 0:
                return  # made before the index existed; a writer will build it
            raise AuditError(f"the audit-trail index ends before entry {index}", index)
        if got != (index, want):
            at = min(got[0], index)
            raise AuditError(f"the audit-trail index differs from the log at entry {at}", at)
    extra = next(stored, None)
    if extra is not None:
        raise AuditError(f"the audit-trail index has a row for entry {extra[0]}, beyond the log")


def _compare_state(store: LedgerStore, state: _Replayed) -> None:
    stored = dict(store.state_items())
    for key in sorted(set(stored) | set(state.values)):
        want = state.values.get(key)
        got = stored.get(key)
        if want is None or got is None or canonical.dumps(want) != got:
            raise AuditError(f"stored state {key!r} differs from replaying the log")
