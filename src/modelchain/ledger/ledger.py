"""The embedded ledger: what ``modelchain.open(path)`` returns.

A ledger directory holds ``ledger.db`` (SQLite, WAL) and ``log.key`` (the
node's checkpoint-signing key, mode 0600). Member keys never live here: they
stay with their signers under MODELCHAIN_HOME or in an HSM.
"""

from __future__ import annotations

import functools
import os
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..contracts import ContractSet, default_contracts
from ..contracts.ledger import EVENT, GENESIS, genesis_body
from ..core.canonical import JSONValue
from ..core.checkpoint import Checkpoint, open_checkpoint
from ..core.dsse import Envelope
from ..core.identity import Ed25519Signer, Signer, VerifierKey, verifier_of
from ..core.merkle import consistency_proof, inclusion_proof
from ..core.receipt import InclusionReceipt
from ..core.tiles import (
    encode_entry_bundle,
    entries_path,
    entry_bundles_for_size,
    tile_path,
    tiles_for_size,
)
from ..core.tx import LogEntry, Transaction
from ..errors import Error, MalformedError, NotFoundError, StorageError, UsageError
from ..keys.files import FileSigner, generate_seed, modelchain_home, write_private_key
from ..node.audit import AuditReport, Progress, audit
from ..node.node import Ack, Node, NodeConfig, system_clock_ms
from ..node.sequencer import LocalSequencer
from ..node.verifier import default_verifier
from ..receipts import ReceiptLog, default_store
from ..storage.blobs import BlobStore
from ..storage.failures import storage_error
from ..storage.files import replace_file
from ..storage.sqlite import SqliteStore
from .governance import Members, Policies
from .registry import Datasets, Deployments, Models, ModelVersion, Runs

__all__ = ["Founder", "Ledger", "init", "new_nonce", "open"]

DB_NAME = "ledger.db"
LOG_KEY_NAME = "log.key"


def new_nonce() -> str:
    return secrets.token_hex(16)


_DENIED_PAGE = 500  # rejected entries decoded per index query


@dataclass(frozen=True)
class Founder:
    """A founding member: its public key, organisation and roles."""

    key: VerifierKey
    org: str
    roles: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.key.name,
            "org": self.org,
            "roles": list(self.roles),
            "keys": [self.key.to_string()],
        }


class Ledger:
    """An embedded ledger. Use as a context manager, or call ``close()``."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        readonly: bool = False,
        config: NodeConfig | None = None,
        synchronous: str = "FULL",
        busy_timeout_ms: int = 10_000,
        clock: Callable[[], int] = system_clock_ms,
        contracts: ContractSet | None = None,
        identity: Signer | None = None,
    ) -> None:
        self.path = Path(path)
        self.identity = identity  # the default signer of the registry calls
        db = self.path / DB_NAME
        if not db.exists():
            raise NotFoundError(
                f"no ledger at {self.path}; create one with `modelchain init --origin NAME`"
            )
        self.readonly = readonly
        self.contracts = contracts or default_contracts()
        self._clock = clock
        self._store = SqliteStore(
            db, readonly=readonly, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms
        )
        origin = self._store.meta("origin")
        if origin is None:
            self._store.close()
            raise StorageError(f"{db} is not a modelchain ledger (no origin)")
        self.origin = origin
        self._node: Node | None = None
        self._log_key: VerifierKey | None = None
        if not readonly:
            try:
                signer = FileSigner.load(origin, self.path / LOG_KEY_NAME, None)
                self._node = Node(
                    self._store,
                    signer,
                    self.contracts,
                    LocalSequencer(self.store.size),
                    config,
                    clock,
                )
            except BaseException:
                self._store.close()
                raise
            self._log_key = verifier_of(signer)

    @property
    def store(self) -> SqliteStore:
        """The store every read goes to (for a remote ledger: its verified
        mirror, brought up to date first)."""
        return self._store

    @property
    def log_key(self) -> VerifierKey:
        """The log's checkpoint key: the node's own, or (read-only) the one genesis names."""
        if self._log_key is None:
            self._log_key = self._genesis_log_key()
        return self._log_key

    def _genesis_log_key(self) -> VerifierKey:
        # Taken from entry 0 itself, not from derived state, so that a reader of
        # a damaged ledger can still open it and let the audit say what is wrong.
        try:
            body = LogEntry.decode(self.store.entry(0)).transaction.body
            return VerifierKey.from_string(body["log_key"])
        except (Error, KeyError, TypeError) as exc:
            raise StorageError(
                "cannot read the log key from the genesis entry; run `modelchain log verify`"
            ) from exc

    # -- lifecycle -----------------------------------------------------------

    def close(self) -> None:
        try:
            if self._node is not None:
                node, self._node = self._node, None
                node.close()
        finally:
            self._store.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def node(self) -> Node:
        if self._node is None:
            raise UsageError("this ledger is open read-only")
        return self._node

    @property
    def size(self) -> int:
        return self.store.size

    def clock(self) -> int:
        """The node's clock, in milliseconds since the Unix epoch."""
        return self._clock()

    @functools.cached_property
    def blobs(self) -> BlobStore:
        """Content-addressed blobs beside the ledger (manifests too large for an entry)."""
        return BlobStore(self.path / "blobs")

    @functools.cached_property
    def members(self) -> Members:
        return Members(self)

    @functools.cached_property
    def policies(self) -> Policies:
        return Policies(self, self.members)

    @functools.cached_property
    def datasets(self) -> Datasets:
        return Datasets(self)

    @functools.cached_property
    def runs(self) -> Runs:
        return Runs(self)

    @functools.cached_property
    def models(self) -> Models:
        return Models(self)

    @functools.cached_property
    def deployments(self) -> Deployments:
        return Deployments(self)

    def receipts(
        self, model: str, env: str | None = None, version: int | None = None, **kw: Any
    ) -> ReceiptLog:
        """Inference receipts for ``model`` (see ``modelchain.receipts``); the store
        defaults to one under ``$MODELCHAIN_HOME/receipts``, chosen here, at the edge."""
        if kw.get("store") is None:
            origin = self.origin if kw.get("origin") is None else kw["origin"]
            kw["store"] = default_store(modelchain_home(), origin, model)
        return ReceiptLog(self, model, env, version, **kw)

    def denied(self) -> list[dict[str, Any]]:
        """Every rejected entry, oldest first: who tried what, and the rule or
        reason that denied it. Read from the audit-trail index, page by page
        (``modelchain.ledger.trail.rejected``, which the server's API and dashboard use)."""
        from .trail import rejected

        out: list[dict[str, Any]] = []
        before: int | None = None
        while True:
            page = rejected(self, before=before, limit=_DENIED_PAGE)
            out.extend(
                {
                    "index": e["index"],
                    "type": e["type"],
                    "actor": e["actor"],
                    "time": e["time"],
                    "code": e["outcome"].get("code"),
                    "reason": e["outcome"].get("reason"),
                }
                for e in page.entries
            )
            if page.next_before is None:
                break
            before = page.next_before
        out.reverse()
        return out

    def verify(
        self,
        path: str | os.PathLike[str],
        *,
        model: str,
        version: int | None = None,
        env: str | None = None,
        trust_cache: bool = False,
    ) -> ModelVersion:
        """Re-hash ``path``: return the registered version it is (the latest, the
        given one, or the one deployed to ``env``), or raise IntegrityError
        naming every file and tensor that differs."""
        return self.models.verify(path, model, version, env=env, trust_cache=trust_cache)

    # -- writing -------------------------------------------------------------

    def transaction(
        self, type: str, body: dict[str, Any], actor: str, nonce: str | None = None
    ) -> Transaction:
        """A new transaction for this ledger, stamped with the current time."""
        return Transaction(
            ledger=self.origin,
            type=type,
            actor=actor,
            nonce=nonce or new_nonce(),
            time=self._clock(),
            body=body,
        )

    def submit(self, envelope: Envelope | bytes) -> Ack:
        """Submit a signed transaction; returns once it is durable."""
        data = envelope.to_bytes() if isinstance(envelope, Envelope) else envelope
        return self.node.submit(data)

    def submit_many(self, envelopes: Iterable[Envelope | bytes]) -> list[Ack]:
        """Submit several transactions at once: signatures are verified on the
        other cores and entries are group-committed. Raises the first refusal
        (the others are still applied); PushbackError if too many are waiting."""
        datas = [e.to_bytes() if isinstance(e, Envelope) else e for e in envelopes]
        futures = self.node.submit_many(datas)
        acks, first_error = [], None
        for f in futures:
            try:
                acks.append(f.result())
            except Error as exc:
                first_error = first_error or exc
        if first_error is not None:
            raise first_error
        return acks

    def precheck(self, data: bytes) -> None:
        """Raise what admission would, short of verifying signatures: to refuse
        a whole batch before submitting any of it."""
        self.node.precheck(data)

    @property
    def max_batch(self) -> int:
        """The most transactions worth submitting in one ``submit_many``."""
        return max(1, self.node.config.max_backlog // 2)

    def record_event(
        self, event: str, data: JSONValue, signer: Signer, *, nonce: str | None = None
    ) -> Ack:
        """Record an application-defined event signed by ``signer``."""
        tx = self.transaction(EVENT, {"event": event, "data": data}, signer.name, nonce)
        return self.submit(tx.sign(signer))

    # -- reading -------------------------------------------------------------

    def entry_bytes(self, index: int) -> bytes:
        return self.store.entry(index)

    def entry(self, index: int) -> LogEntry:
        return LogEntry.decode(self.store.entry(index))

    def checkpoint(self) -> bytes:
        """The latest signed checkpoint note (publishing one first if the log grew)."""
        note = self._node.publish_checkpoint() if self._node is not None else None
        if note is None:
            latest = self.store.checkpoint()
            if latest is None:
                raise NotFoundError("the ledger has no checkpoint yet")
            note = latest[1]
        return note

    def verified_checkpoint(self) -> Checkpoint:
        cp, _ = open_checkpoint(self.checkpoint(), self.log_key)
        return cp

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        size = self.size if size is None else size
        if not 0 <= index < size <= self.size:
            raise NotFoundError(f"entry {index} is not in a tree of size {size}")
        return inclusion_proof(self.store.node_reader(), index, size)

    def consistency_proof(self, old: int, new: int | None = None) -> list[bytes]:
        new = self.size if new is None else new
        if not 0 < old <= new <= self.size:
            raise MalformedError(f"need 0 < old <= new <= {self.size}, got {old} and {new}")
        return consistency_proof(self.store.node_reader(), old, new)

    def receipt(self, index: int) -> InclusionReceipt:
        """A C2SP tlog-proof for entry ``index`` against the latest checkpoint."""
        if not 0 <= index < self.size:
            raise NotFoundError(f"no entry {index}: the log has {self.size} entries")
        note = self.checkpoint()
        cp, _ = open_checkpoint(note, self.log_key)
        if index >= cp.size:
            raise NotFoundError(
                f"entry {index} is not yet covered by a checkpoint (size {cp.size})"
            )
        return InclusionReceipt(
            index=index, proof=tuple(self.inclusion_proof(index, cp.size)), checkpoint=note
        )

    def export_tiles(self, directory: str | os.PathLike[str]) -> int:
        """Write the log as tlog-tiles static files for the latest checkpoint.

        Full tiles and bundles never change, so existing ones are kept; returns
        the number of files written."""
        out = Path(directory)
        note = self.checkpoint()
        cp, _ = open_checkpoint(note, self.log_key)
        written = 0
        for level, n, width in tiles_for_size(cp.size):
            path = out / tile_path(level, n, width)
            if width == 256 and path.exists():
                continue
            _write_file(path, self.store.read_tile(level, n)[: width * 32])
            written += 1
        for n, width in entry_bundles_for_size(cp.size):
            path = out / entries_path(n, width)
            if width == 256 and path.exists():
                continue
            start = n * 256
            bundle = [data for _, data in self.store.entries(start, start + width)]
            _write_file(path, encode_entry_bundle(bundle))
            written += 1
        _write_file(out / "checkpoint", note)
        return written + 1

    def audit(self, progress: Progress | None = None) -> AuditReport:
        """Full audit; raises AuditError naming the first bad entry."""
        # A read-only audit trusts no stored copy of the log key: it uses the one
        # genesis carries, checked as part of the replay.
        verifier = default_verifier()
        try:
            return audit(self.store, self.contracts, self._log_key, progress, verifier)
        finally:
            verifier.close()


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_file(path, data, mode=0o644, durable=False)  # tiles are public, like checkpoints


def open(path: str | os.PathLike[str], **kwargs: Any) -> Ledger:
    """Open the embedded ledger in ``path`` (see ``Ledger`` for options)."""
    return Ledger(path, **kwargs)


def init(
    path: str | os.PathLike[str],
    origin: str,
    admin: Signer,
    *,
    org: str = "",
    members: Sequence[Founder] = (),
    permissions: dict[str, list[str]] | None = None,
    policies: Mapping[str, Mapping[str, str]] | None = None,
    admin_roles: Sequence[str] = (),
    **kwargs: Any,
) -> Ledger:
    """Create a ledger: its log key, its store, and a genesis signed by ``admin``.

    On any failure nothing is left behind: a half-made ledger is removed."""
    directory = Path(path)
    db, log_key_path = directory / DB_NAME, directory / LOG_KEY_NAME
    if db.exists():
        raise UsageError(f"a ledger already exists at {directory}")
    if log_key_path.exists():
        raise UsageError(f"{log_key_path} exists but there is no ledger; remove it first")
    seed = generate_seed()
    log_key = verifier_of(Ed25519Signer(origin, seed))
    roles = ("admin", *(r for r in admin_roles if r != "admin"))
    founders = [Founder(verifier_of(admin), org, roles), *members]
    body = genesis_body(
        origin, log_key, [f.to_json() for f in founders], permissions, policies=policies
    )
    try:
        # Owner-only: read tokens guard the ledger over HTTP, and local users
        # must not read around them.
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.chmod(0o700)
    except OSError as exc:
        raise storage_error(f"creating the ledger directory {directory}", exc) from exc
    ledger: Ledger | None = None
    try:
        write_private_key(log_key_path, seed, None)
        store = SqliteStore(db)
        try:
            store.set_meta("origin", origin)
        finally:
            store.close()
        ledger = Ledger(directory, **kwargs)
        tx = ledger.transaction(GENESIS, body, admin.name)
        ledger.submit(tx.sign(admin))
        ledger.checkpoint()
    except BaseException:
        if ledger is not None:
            ledger.close()
        leftovers = [db.with_name(db.name + s) for s in _SIDE_FILES]
        leftovers += [db.with_suffix(s) for s in _HEAD_FILES]
        for leftover in (db, log_key_path, *leftovers):
            leftover.unlink(missing_ok=True)
        raise
    return ledger


_SIDE_FILES = ("-wal", "-shm", ".lock")
_HEAD_FILES = (".checkpoint", ".head")
