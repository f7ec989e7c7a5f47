"""Full audit of a ledger store: trust nothing that was stored, recompute it all.

Replays every entry from genesis with fresh state: re-checks canonical bytes,
indexes, nonces and signatures, re-executes each transaction and compares the
outcome, rebuilds every tile, and checks the stored state and checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from concurrent.futures import Future
from dataclasses import dataclass

from ..contracts import ContractSet
from ..contracts.genesis import checkpoint_policy
from ..contracts.state import LEDGER_KEY, StateReader
from ..core import canonical
from ..core.canonical import JSONValue
from ..core.identity import VerifierKey, verify_batch
from ..core.merkle import HASH_SIZE, NodeReader, leaf_hash, tree_root
from ..core.policy import CheckpointPolicy, verify_checkpoint
from ..core.tiles import TileWriter, tile_node_reader
from ..core.tx import LogEntry, encode_entry
from ..errors import AuditError, Error
from ..storage.sqlite import IndexRow, SqliteStore
from .verifier import InlineVerifier, SignatureVerifier

__all__ = ["AuditReport", "SignatureChecks", "audit", "replay_checks", "replay_execution"]

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


class _MemoryState:
    def __init__(self) -> None:
        self.values: dict[str, JSONValue] = {}

    def get_state(self, key: str) -> JSONValue | None:
        return self.values.get(key)


def replay_checks(
    index: int,
    expected: int,
    data: bytes,
    nonces: MutableMapping[str, int],
    origin: str | None,
    contracts: ContractSet,
) -> LogEntry:
    """The checks of one entry that need no state: position, bytes, schema, nonce."""
    if index != expected:
        raise AuditError(f"entry {expected} is missing (next stored is {index})", expected)
    try:
        entry = LogEntry.decode(data)
    except Error as exc:
        raise AuditError(f"entry {index} is malformed: {exc.message}", index) from exc
    if encode_entry(entry.index, entry.envelope, entry.outcome) != data:
        # e.g. base64 re-spelled in its padding bits: same values, other bytes
        raise AuditError(f"entry {index} is not in its canonical encoding", index)
    tx = entry.transaction
    if entry.index != index:
        raise AuditError(f"entry {index} claims index {entry.index}", index)
    if origin is not None and tx.ledger != origin:
        raise AuditError(f"entry {index} is for ledger {tx.ledger!r}", index)
    if tx.nonce in nonces:
        raise AuditError(f"entry {index} replays the nonce of entry {nonces[tx.nonce]}", index)
    nonces[tx.nonce] = index
    try:
        contracts.check_logged(tx)
    except Error as exc:
        raise AuditError(
            f"entry {index} could never have been admitted: {exc.message}", index
        ) from exc
    return entry


_SIGNATURE_BATCH = 4096


class SignatureChecks:
    """Signature checks gathered during the replay and verified in batches,
    in worker processes when the verifier has them, while the replay goes on."""

    def __init__(self, verifier: SignatureVerifier) -> None:
        self._verifier = verifier
        self._checks: list[tuple[bytes, bytes, bytes]] = []
        self._owners: list[tuple[int, str]] = []
        self._in_flight: list[
            tuple[Future[list[bool]], list[tuple[bytes, bytes, bytes]], list[tuple[int, str]]]
        ] = []

    def add(self, index: int, key: VerifierKey, message: bytes, signature: bytes) -> None:
        self._checks.append((key.public_key, message, signature))
        self._owners.append((index, key.name))
        if len(self._checks) >= _SIGNATURE_BATCH:
            self._in_flight.append(
                (self._verifier.verify_many(self._checks), self._checks, self._owners)
            )
            self._checks, self._owners = [], []
            while len(self._in_flight) > 2:  # bound the memory held by pending batches
                self._settle_one()

    def _settle_one(self) -> None:
        fut, checks, owners = self._in_flight.pop(0)
        try:
            results = fut.result()
        except Exception:  # the workers broke: verify here instead
            results = verify_batch(checks)
        for ok, (index, name) in zip(results, owners, strict=True):
            if not ok:
                raise AuditError(f"entry {index}: signature by {name} does not verify", index)

    def settle(self) -> None:
        """Wait for every check so far; raise for the first that fails."""
        if self._checks:
            # A small remainder is cheaper to check here than to send to a worker
            # (and a small ledger never starts one).
            fut: Future[list[bool]] = Future()
            fut.set_result(verify_batch(self._checks))
            self._in_flight.append((fut, self._checks, self._owners))
            self._checks, self._owners = [], []
        while self._in_flight:
            self._settle_one()


def replay_execution(
    state: StateReader,
    index: int,
    entry: LogEntry,
    contracts: ContractSet,
    sigs: SignatureChecks,
) -> dict[str, JSONValue | None]:
    """Queue the entry's signature checks against the signers' keys in ``state``,
    re-execute it and return its state writes; AuditError if a signer is unknown
    or the outcome differs from the recorded one (earlier bad signatures first)."""
    tx = entry.transaction
    pae = entry.envelope.pae()
    for sig in entry.envelope.signatures:
        found = contracts.signer(state, sig.keyid, tx)
        if found is None:
            sigs.settle()
            raise AuditError(f"entry {index} is signed by unknown key {sig.keyid}", index)
        sigs.add(index, found[1], pae, sig.sig)
    keyids = tuple(s.keyid for s in entry.envelope.signatures)
    outcome, writes = contracts.execute(state, index, tx, keyids)
    if outcome != entry.outcome:
        sigs.settle()
        raise AuditError(
            f"entry {index}: recorded outcome {entry.outcome.to_json()} but re-execution "
            f"gives {outcome.to_json()}",
            index,
        )
    return writes


def audit(
    store: SqliteStore,
    contracts: ContractSet,
    log_key: VerifierKey | None = None,
    progress: Progress | None = None,
    verifier: SignatureVerifier | None = None,
) -> AuditReport:
    """Raise AuditError naming the first bad entry, tile, state key or checkpoint."""
    total = store.size
    state = _MemoryState()
    tree = TileWriter()
    tiles: dict[tuple[int, int], bytes] = {}
    nonces: dict[str, int] = {}
    accepted = rejected = signatures = 0
    origin: str | None = None
    expected = 0
    sigs = SignatureChecks(verifier or InlineVerifier())
    rows: list[IndexRow] = []
    for index, data in store.entries():
        try:
            entry = replay_checks(index, expected, data, nonces, origin, contracts)
        except AuditError:
            sigs.settle()  # an earlier bad signature is the first bad entry
            raise
        expected += 1
        origin = entry.transaction.ledger
        writes = replay_execution(state, index, entry, contracts, sigs)
        signatures += len(entry.envelope.signatures)
        rows.append(IndexRow.of(entry.transaction, entry.outcome.accepted))
        for k, v in writes.items():
            if v is None:
                state.values.pop(k, None)
            else:
                state.values[k] = v
        if entry.outcome.accepted:
            accepted += 1
        else:
            rejected += 1
        tiles.update(tree.append([leaf_hash(data)]))
        if progress is not None and index % 4096 == 0:
            progress(index, total)
    sigs.settle()
    if progress is not None:
        progress(expected, total)
    size = expected

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
        if log_key is not None and log_key != recorded:
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
    store: SqliteStore, size: int, read: NodeReader, policy: CheckpointPolicy | None
) -> None:
    """The store must hold every entry the ledger published a checkpoint of
    or acknowledged, with the same roots (kept outside SQLite, so that a lost
    WAL cannot take them along)."""
    try:
        published = store.heads.published()
        acked = store.heads.acked()
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


def _compare_tiles(store: SqliteStore, tiles: dict[tuple[int, int], bytes]) -> None:
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


def _compare_index(store: SqliteStore, rows: list[IndexRow]) -> None:
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


def _compare_state(store: SqliteStore, state: _MemoryState) -> None:
    stored = dict(store.state_items())
    for key in sorted(set(stored) | set(state.values)):
        want = state.values.get(key)
        got = stored.get(key)
        if want is None or got is None or canonical.dumps(want) != got:
            raise AuditError(f"stored state {key!r} differs from replaying the log")
