"""The Python API of a ledger: ``Ledger``, over a backend.

``modelchain.open(path)`` puts it over a ``LocalBackend`` (a ledger directory:
``ledger.db``, SQLite in WAL mode, and ``log.key``, the node's checkpoint key,
mode 0600); ``modelchain.connect(url)`` over a ``RemoteBackend``. Member keys
never live in the ledger directory: they stay with their signers, in the
caller's ``home`` or an HSM.
"""

from __future__ import annotations

import functools
import os
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from ..contracts import ContractSet
from ..contracts.genesis import genesis_body
from ..contracts.personal import PERSONAL_FIELDS
from ..contracts.types import EVENT, GENESIS
from ..core import canonical
from ..core.canonical import JSONValue
from ..core.checkpoint import Checkpoint
from ..core.dsse import Envelope
from ..core.identity import Ed25519Signer, Signer, VerifierKey, verifier_of
from ..core.merkle import consistency_proof, inclusion_proof
from ..core.note import Note, add_signatures, parse_note
from ..core.policy import CheckpointPolicy, verify_checkpoint
from ..core.tiles import (
    encode_entry_bundle,
    entries_path,
    entry_bundles_for_size,
    tile_path,
    tiles_for_size,
)
from ..core.tlogproof import TlogProof
from ..core.tx import LogEntry, Transaction, decode_submission
from ..errors import MalformedError, NotFoundError, UsageError
from ..keys.files import generate_seed, modelchain_home, write_private_key
from ..keys.logkey import LogKeySecrets, Pkcs11Key, create_log_key, log_key_files
from ..keys.wrap import DataKeyStore
from ..node.audit import AuditReport, Progress, audit
from ..node.node import Ack, Node, NodeConfig, system_clock_ms
from ..node.verifier import default_verifier
from ..receipts import ReceiptLog, default_store
from ..storage.failures import storage_error
from ..storage.files import replace_file
from ..storage.protocols import ArtifactStore, BlobStore
from ..storage.sqlite import SqliteStore
from .artifacts import Artifacts, KeyService
from .backend import Backend
from .datasets import Datasets
from .deployments import Deployments
from .disclosures import MARK, Disclosures
from .fl import FederatedLearning
from .local import DB_NAME, LOG_KEY_NAME, LocalBackend
from .members import Members
from .models import Models, ModelVersion
from .policies import Policies
from .port import LedgerReads

if TYPE_CHECKING:
    from ..storage.vault import DisclosureVault
from .runs import Runs
from .trail import exclusions, rejected

__all__ = [
    "DB_NAME",
    "LOG_KEY_NAME",
    "Founder",
    "Ledger",
    "RevealingReads",
    "default_home",
    "init",
    "new_nonce",
    "open",
]


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


def default_home() -> Path:
    """The documented default ``home``, ``~/.modelchain``, without reading the
    environment: the entry points (``modelchain.open``, ``init`` and ``connect``,
    the CLI, the server's start) read ``$MODELCHAIN_HOME`` and pass it on."""
    return modelchain_home({})


class RevealingReads:
    """A ledger's reads with every committed personal field in its state revealed
    (``Disclosures.field``); the log's entries are given as logged."""

    def __init__(self, store: LedgerReads, disclosures: Disclosures) -> None:
        self._store = store
        self._disclosures = disclosures

    @property
    def size(self) -> int:
        return self._store.size

    def get_state(self, key: str) -> JSONValue | None:
        found = self._store.get_state(key)
        return (
            found
            if isinstance(found, str | int | float | bool | None)
            else self._disclosures.reveal(found)
        )

    def state_prefix(self, prefix: str) -> Iterator[tuple[str, bytes]]:
        for key, value in self._store.state_prefix(prefix):
            if MARK in value:
                value = canonical.dumps(self._disclosures.reveal(canonical.loads(value)))
            yield key, value

    def entry(self, index: int) -> bytes:
        return self._store.entry(index)

    def entries(self, start: int = 0, end: int | None = None) -> Iterator[tuple[int, bytes]]:
        return self._store.entries(start, end)

    def indexed(self) -> int:
        return self._store.indexed()

    def find(self, start: int, end: int, limit: int, **kw: Any) -> list[int]:
        return self._store.find(start, end, limit, **kw)

    def nonce_index(self, nonce: str) -> int | None:
        return self._store.nonce_index(nonce)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class Ledger:
    """A ledger, embedded or remote: the facades and proofs over a backend.
    Use as a context manager, or call ``close()``.

    ``Ledger(path, ...)`` opens the ledger directory ``path`` over a
    ``LocalBackend`` (the keyword options are its own); ``Ledger(backend=...)``
    puts it over any other. ``identity`` is the default signer of the facades'
    calls; ``home`` is where record keys and the digest cache live.
    ``log_key_secrets`` unlock an encrypted or PKCS#11 log key; a read-only
    ledger never opens the log key."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        backend: Backend | None = None,
        identity: Signer | None = None,
        home: str | os.PathLike[str] | None = None,
        readonly: bool = False,
        config: NodeConfig | None = None,
        synchronous: str = "FULL",
        busy_timeout_ms: int = 10_000,
        clock: Callable[[], int] = system_clock_ms,
        contracts: ContractSet | None = None,
        log_key_secrets: LogKeySecrets | None = None,
        keys: Callable[[], KeyService] | None = None,
    ) -> None:
        if backend is None:
            if path is None:
                raise UsageError("give a ledger directory or a backend")
            backend = LocalBackend(
                path,
                readonly=readonly,
                config=config,
                synchronous=synchronous,
                busy_timeout_ms=busy_timeout_ms,
                clock=clock,
                contracts=contracts,
                log_key_secrets=log_key_secrets,
            )
        elif path is not None:
            raise UsageError("give a ledger directory or a backend, not both")
        self.backend = backend
        self.identity = identity  # the default signer of the facades' calls
        self.home = Path(home) if home is not None else default_home()
        # The organisation's key service (KEK and key stores), made on first use:
        # for encrypted artifacts and the disclosure vault.
        self.keys: Callable[[], KeyService] = keys or self._default_keys

    def _default_keys(self) -> KeyService:
        """``kek/ORIGIN.kek`` (made on first use) and ``datakeys/ORIGIN`` in the home."""
        from ..keys.wrap import open_kek

        origin = self.origin.replace("/", "_")
        kek = open_kek(str(self.home / "kek" / f"{origin}.kek"), create=True)
        return KeyService(kek, (DataKeyStore(self.home / "datakeys" / origin),))

    @property
    def local(self) -> bool:
        """Whether this ledger is embedded (its node in this process), not served."""
        return isinstance(self.backend, LocalBackend)

    # -- what the backend holds ----------------------------------------------

    @property
    def path(self) -> Path:
        return self.backend.path

    @property
    def origin(self) -> str:
        return self.backend.origin

    @property
    def readonly(self) -> bool:
        return self.backend.readonly

    @property
    def contracts(self) -> ContractSet:
        return self.backend.contracts

    @property
    def store(self) -> LedgerReads:
        """The log and state every read goes to (for a remote ledger: its
        verified mirror, brought up to date first). What else a store can do
        belongs to the backend (``backend.store``). Committed personal fields in
        its state read as their values where this side holds them (``disclosures``)."""
        return RevealingReads(self.backend.store, self.disclosures)

    @property
    def _store(self) -> SqliteStore:
        # The store as held, without syncing a mirror first (tests and tools).
        return self.backend.held

    @property
    def log_key(self) -> VerifierKey:
        """The log's checkpoint key: the node's own, or (read-only) the one genesis names."""
        return self.backend.log_key

    @property
    def node(self) -> Node:
        return self.backend.node

    @property
    def policy(self) -> CheckpointPolicy:
        """Which signatures make one of this ledger's checkpoints count: the
        checkpoint policy genesis names, or the log key alone."""
        return self.backend.policy

    @property
    def blobs(self) -> BlobStore:
        """Content-addressed blobs beside the ledger (manifests too large for an entry)."""
        return self.backend.blobs

    def meta(self, key: str) -> str | None:
        """A setting stored with the ledger (``admin``: the default signer's name)."""
        return self.backend.held.meta(key)

    def set_meta(self, key: str, value: str) -> None:
        self.backend.held.set_meta(key, value)

    # -- lifecycle -----------------------------------------------------------

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def size(self) -> int:
        return self.store.size

    def clock(self) -> int:
        """The node's clock, in milliseconds since the Unix epoch."""
        return self.backend.clock()

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

    @functools.cached_property
    def fl(self) -> FederatedLearning:
        """Federated learning tasks, their rounds and credit (contract-set version 6 on)."""
        return FederatedLearning(self)

    @functools.cached_property
    def disclosures(self) -> Disclosures:
        """Personal fields: committed on writing, revealed on reading, erased (version 8 on)."""
        return Disclosures(lambda: self.backend.store, self.entry, self._vault)

    def _vault(self, create: bool) -> DisclosureVault | None:
        # Its data keys live in a second file (a copy of the vault file alone opens
        # nothing once they are destroyed), wrapped by the organisation's KEK.
        path = self.home / "disclosures" / f"{self.origin.replace('/', '_')}.sqlite"
        if not create and not path.exists():
            return None
        from ..storage.vault import DisclosureVault  # cryptography: on first use only

        return DisclosureVault(path, self.keys().kek)

    @functools.cached_property
    def artifacts(self) -> Artifacts:
        return Artifacts(self)

    def artifact_store(
        self, url: str | os.PathLike[str] | None = None, **storage_options: Any
    ) -> ArtifactStore:
        """The artifact store at ``url`` (a folder, or an fsspec URL such as
        ``s3://bucket/prefix`` with its ``storage_options``), else this ledger's
        own: ``artifacts/`` in the ledger directory."""
        from ..storage.artifacts import open_store

        return open_store(self.path / "artifacts" if url is None else url, **storage_options)

    def receipts(
        self, model: str, env: str | None = None, version: int | None = None, **kw: Any
    ) -> ReceiptLog:
        """Inference receipts for ``model`` (see ``modelchain.receipts``); the store
        defaults to one under the ledger's home (``receipts/``), chosen here."""
        if kw.get("store") is None:
            origin = self.origin if kw.get("origin") is None else kw["origin"]
            kw["store"] = default_store(self.home, origin, model)
        return ReceiptLog(self, model, env, version, **kw)

    def denied(self, exclude: Iterable[str] = ()) -> list[dict[str, Any]]:
        """Every rejected entry, oldest first: who tried what, and the rule or
        reason that denied it; less the types ``exclude`` names (a type, or a
        prefix ending in a dot: ``inference.``; at most 20, else UsageError).
        Read from the audit-trail index, page by page
        (``modelchain.ledger.trail.rejected``, which the server's API and dashboard use)."""
        excluded = exclusions(exclude)  # a UsageError before any page is read
        out: list[dict[str, Any]] = []
        before: int | None = None
        while True:
            page = rejected(self, before=before, limit=_DENIED_PAGE, exclude=excluded)
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
        """A new transaction for this ledger, stamped with the current time. From
        contract-set version 8 its personal fields are committed and the disclosures
        go to this side's vault; a served ledger's server gets them once the entry is
        logged (``submit``)."""
        if type in PERSONAL_FIELDS and self.disclosures.commits():
            body, made = self.disclosures.commit(type, body)
            self.disclosures.keep(made)  # before anyone signs: drafts included
        return Transaction(
            ledger=self.origin,
            type=type,
            actor=actor,
            nonce=nonce or new_nonce(),
            time=self.clock(),
            body=body,
        )

    def submit(self, envelope: Envelope | bytes) -> Ack:
        """Submit a signed transaction; returns once it is durable."""
        return self.submit_many([envelope])[0]

    def submit_many(self, envelopes: Iterable[Envelope | bytes]) -> list[Ack]:
        """Submit several transactions at once: signatures are verified on the
        other cores and entries are group-committed. Raises the first refusal
        (the others are still applied); PushbackError if too many are waiting."""
        datas = [e.to_bytes() if isinstance(e, Envelope) else e for e in envelopes]
        acks = self._submit(datas)
        if not self.local:  # the server's vault gets what ours holds of each entry
            for data, ack in zip(datas, acks, strict=True):
                tx = decode_submission(data)[1]
                if tx.type in PERSONAL_FIELDS and (held := self.disclosures.held_for(tx)):
                    self.backend.disclose(ack.index, held)
        return acks

    def _submit(self, datas: list[bytes]) -> list[Ack]:
        return (
            [self.backend.submit(datas[0])] if len(datas) == 1 else self.backend.submit_many(datas)
        )

    def precheck(self, data: bytes) -> None:
        """Raise what admission would, short of verifying signatures: to refuse
        a whole batch before submitting any of it."""
        self.backend.precheck(data)

    @property
    def max_batch(self) -> int:
        """The most transactions worth submitting in one ``submit_many``."""
        return self.backend.max_batch

    def record_event(
        self, event: str, data: JSONValue, signer: Signer, *, nonce: str | None = None
    ) -> Ack:
        """Record an application-defined event signed by ``signer``."""
        tx = self.transaction(EVENT, {"event": event, "data": data}, signer.name, nonce)
        return self.submit(tx.sign(signer))

    # -- reading -------------------------------------------------------------

    def published(self) -> tuple[int, bytes] | None:
        """The size and note of the last checkpoint stored, without publishing one."""
        return self.backend.store.checkpoint()

    def tile(self, level: int, n: int, width: int = 256) -> bytes:
        """The first ``width`` hashes of tlog tile ``n`` at ``level``."""
        return self.backend.store.read_tile(level, n)[: width * 32]

    def entry_bytes(self, index: int) -> bytes:
        return self.store.entry(index)

    def entry(self, index: int) -> LogEntry:
        return LogEntry.decode(self.store.entry(index))

    def checkpoint(self) -> bytes:
        """The latest signed checkpoint note (publishing one first if the log grew;
        for a remote ledger, the latest its mirror verified)."""
        return self.backend.checkpoint()

    def verified_checkpoint(self) -> Checkpoint:
        cp, _ = verify_checkpoint(self.checkpoint(), self.policy)
        return cp

    def add_cosignatures(self, note: bytes | str | Note) -> bytes:
        """Keep the cosignatures ``note`` carries by the policy's witnesses on the
        latest checkpoint (the same text); return the checkpoint note now served.

        Each is verified first; other signature lines are ignored.
        """
        try:
            self.backend.node  # noqa: B018 (only a writable embedded ledger has one)
        except UsageError as exc:
            raise UsageError("a read-only or remote ledger cannot store cosignatures") from exc
        given = note if isinstance(note, Note) else parse_note(note)
        latest = self.backend.held.checkpoint()
        stored = None if latest is None else parse_note(latest[1])
        if stored is None or stored.text != given.text:
            raise NotFoundError("the note is not the ledger's latest checkpoint")
        known = {(w.key.name, w.key.key_id) for w in self.policy.witnesses}
        merged = add_signatures(
            stored, *(s for s in given.signatures if (s.name, s.key_id) in known)
        )
        cp, _ = verify_checkpoint(merged, self.policy, require_quorum=False)
        data = merged.to_bytes()
        self.backend.held.put_checkpoint(cp.size, cp.root, data)
        return data

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        size = self.size if size is None else size
        if not 0 <= index < size <= self.size:
            raise NotFoundError(f"entry {index} is not in a tree of size {size}")
        return inclusion_proof(self.backend.store.node_reader(), index, size)

    def consistency_proof(self, old: int, new: int | None = None) -> list[bytes]:
        new = self.size if new is None else new
        if not 0 < old <= new <= self.size:
            raise MalformedError(f"need 0 < old <= new <= {self.size}, got {old} and {new}")
        return consistency_proof(self.backend.store.node_reader(), old, new)

    def tlog_proof(self, index: int) -> TlogProof:
        """A C2SP tlog-proof for entry ``index`` against the latest checkpoint."""
        self.backend.cover(index)
        if not 0 <= index < self.size:
            raise NotFoundError(f"no entry {index}: the log has {self.size} entries")
        note = self.checkpoint()
        cp, _ = verify_checkpoint(note, self.policy)
        if index >= cp.size:
            raise NotFoundError(
                f"entry {index} is not yet covered by a checkpoint (size {cp.size})"
            )
        return TlogProof(
            index=index, proof=tuple(self.inclusion_proof(index, cp.size)), checkpoint=note
        )

    def export_tiles(self, directory: str | os.PathLike[str]) -> int:
        """Write the log as tlog-tiles static files for the latest checkpoint.

        Full tiles and bundles never change, so existing ones are kept; returns
        the number of files written."""
        out = Path(directory)
        note = self.checkpoint()
        cp, _ = verify_checkpoint(note, self.policy, require_quorum=False)
        written = 0
        for level, n, width in tiles_for_size(cp.size):
            path = out / tile_path(level, n, width)
            if width == 256 and path.exists():
                continue
            _write_file(path, self.tile(level, n, width))
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
        verifier = default_verifier()
        try:
            return audit(
                self.backend.store, self.contracts, self.backend.audit_key, progress, verifier
            )
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
    checkpoint_policy: CheckpointPolicy | str | None = None,
    log_key_passphrase: bytes | None = None,
    log_key_pkcs11: Pkcs11Key | None = None,
    log_key_secrets: LogKeySecrets | None = None,
    **kwargs: Any,
) -> Ledger:
    """Create a ledger: its log key, its store, and a genesis signed by ``admin``.

    ``checkpoint_policy`` (tlog-policy, usually without a ``log`` line: the new
    log key is added) says which cosignatures a checkpoint needs to count;
    absent, the log key alone.

    The log key is ``log.key``, encrypted with ``log_key_passphrase`` when one
    is given, or with ``log_key_pkcs11`` a new key in that token, logged in
    with ``log_key_secrets.pin`` (which also opens it afterwards).

    On any failure nothing is left behind: a half-made ledger is removed (a key
    already generated in a PKCS#11 token stays there, unnamed by any file)."""
    directory = Path(path)
    db = directory / DB_NAME
    log_key_path, log_key_config = log_key_files(directory)
    if db.exists():
        raise UsageError(f"a ledger already exists at {directory}")
    for existing in (log_key_path, log_key_config):
        if existing.exists():
            raise UsageError(f"{existing} exists but there is no ledger; remove it first")
    if log_key_pkcs11 is not None and log_key_passphrase is not None:
        raise UsageError("a PKCS#11 log key takes a PIN, not a passphrase")
    if log_key_secrets is None:
        given = log_key_passphrase
        log_key_secrets = LogKeySecrets(passphrase=(lambda: given) if given else None)
    roles = ("admin", *(r for r in admin_roles if r != "admin"))
    founders = [Founder(verifier_of(admin), org, roles), *members]

    def genesis(log_key: VerifierKey) -> dict[str, Any]:
        return genesis_body(
            origin,
            log_key,
            [f.to_json() for f in founders],
            permissions,
            policies=policies,
            checkpoint_policy=checkpoint_policy,
        )

    seed = generate_seed()
    body = genesis(verifier_of(Ed25519Signer(origin, seed)))  # checked before anything is made
    try:
        # Owner-only: read tokens guard the ledger over HTTP, and local users
        # must not read around them.
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.chmod(0o700)
    except OSError as exc:
        raise storage_error(f"creating the ledger directory {directory}", exc) from exc
    ledger: Ledger | None = None
    try:
        if log_key_pkcs11 is None:
            write_private_key(log_key_path, seed, log_key_passphrase)
        else:
            pin = log_key_secrets.pin() if log_key_secrets.pin is not None else None
            body = genesis(
                create_log_key(
                    directory, origin, pkcs11=log_key_pkcs11, pin=pin.decode() if pin else None
                )
            )
        store = SqliteStore(db)
        try:
            store.set_meta("origin", origin)
        finally:
            store.close()
        ledger = Ledger(directory, log_key_secrets=log_key_secrets, **kwargs)
        tx = ledger.transaction(GENESIS, body, admin.name)
        ledger.submit(tx.sign(admin))
        ledger.checkpoint()
    except BaseException:
        if ledger is not None:
            ledger.close()
        leftovers = [db.with_name(db.name + s) for s in _SIDE_FILES]
        leftovers += [db.with_suffix(s) for s in _HEAD_FILES]
        for leftover in (db, log_key_path, log_key_config, *leftovers):
            leftover.unlink(missing_ok=True)
        raise
    return ledger


_SIDE_FILES = ("-wal", "-shm", ".lock")
_HEAD_FILES = (".checkpoint", ".head")
