"""Inference receipts: one verifiable, privately revealable record per model decision.

``ReceiptLog.record(inputs, outputs)`` hashes the input and output, each with a
fresh 16-byte salt, and appends the record to the open batch; it never waits on
the ledger. A background thread closes a batch every ``batch_size`` records or
``batch_ms`` milliseconds, builds its RFC 9162 tree, writes it to the receipt
store (SQLite, WAL, beside the caller) and then submits one ``inference.batch``
transaction carrying the root, the count and the time range.

Durability: a record is durable once its batch is closed and written to the
receipt store, which happens before its transaction is submitted. A process
killed at any moment loses at most the records of the open batch and of closed
batches not yet written (at most ``batch_size`` records or ``batch_ms``
milliseconds of them, plus a batch being written); ``flush()`` and ``sync()``
return only once every record so far is durable. Batches written but not yet
in the ledger (unreachable ledger, crash) stay on disk and are submitted in
order by the next ``ReceiptLog`` on the same store; each batch's transaction
nonce is its batch id, so a batch is never logged twice.

A leaf is the canonical JSON ``{v, model, version, input_hash, output_hash,
time_ms, request_id[, meta]}``; a salted hash is ``SHA-256(salt || encoding)``
where ``encoding`` is ``encode_value(value)``. Raw inputs and outputs never
leave the process; the salts stay with the receipt store, so revealing one
record exposes no other.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .contracts.inference import INFERENCE_BATCH
from .contracts.registry import deployment_key
from .core import canonical
from .core.checkpoint import open_checkpoint
from .core.identity import Signer, VerifierKey
from .core.merkle import MemoryTree, leaf_hash, root_of, verify_inclusion
from .core.receipt import InclusionReceipt, verify_receipt
from .core.tx import LogEntry
from .errors import Error, MalformedError, NotFoundError, ProofError, UsageError
from .keys.files import modelchain_home

if TYPE_CHECKING:
    from .ledger import Ledger

__all__ = [
    "RECEIPT_VERSION",
    "ReceiptLog",
    "decode_value",
    "encode_value",
    "reveal",
    "salted_hash",
    "verify_inference_receipt",
    "verify_reveal",
]

RECEIPT_VERSION = 1
SALT_SIZE = 16

_sha = hashlib.sha256
_urandom = os.urandom
_time_ns = time.time_ns
_SAFE_ID = re.compile(r"[A-Za-z0-9._:/@+=-]{1,200}\Z")
_AUTO_ID = re.compile(r"([0-9a-f]{16})-([0-9]{1,18})\Z")
_BIG = 1 << 14

# (request id, or the sequence number of an automatic one; time_ms; input hash;
# output hash; meta)
_Rec = tuple[str | int, int, bytes, bytes, Any]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY,
    batch_id TEXT NOT NULL UNIQUE,
    model TEXT NOT NULL,
    version INTEGER NOT NULL,
    env TEXT,
    root BLOB NOT NULL,
    count INTEGER NOT NULL,
    first_time INTEGER NOT NULL,
    last_time INTEGER NOT NULL,
    leaves BLOB NOT NULL,
    salts BLOB NOT NULL,
    status TEXT NOT NULL,
    entry_index INTEGER,
    error TEXT
);
CREATE INDEX IF NOT EXISTS batches_status ON batches (status, seq);
CREATE TABLE IF NOT EXISTS records (
    request_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS auto_ids (
    prefix TEXT NOT NULL,
    lo INTEGER NOT NULL,
    hi INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (prefix, lo)
) WITHOUT ROWID;
"""


# -- value encoding ------------------------------------------------------------------


def _is_array(value: object) -> bool:
    return type(value).__module__ == "numpy" and hasattr(value, "dtype")


_ARRAY_HEADS: dict[tuple[str, tuple[int, ...]], bytes] = {}


def encode_value(value: Any) -> bytes:
    """The bytes a salted hash commits to: a one-byte type tag then the payload.

    ``B`` bytes as-is; ``S`` str as UTF-8; ``N`` a numpy array or scalar as
    canonical ``{"dtype", "shape"}``, a newline and its C-order raw bytes; ``J``
    any other value as RFC 8785 canonical JSON.
    """
    t = type(value)
    if t is bytes:
        return b"B" + bytes(value)
    if t is str:
        return b"S" + str(value).encode("utf-8")
    if t is bytearray or t is memoryview:
        return b"B" + bytes(value)
    if _is_array(value):
        if value.dtype.hasobject:
            raise MalformedError("arrays of Python objects have no canonical bytes")
        spec = (value.dtype.str, value.shape)
        head = _ARRAY_HEADS.get(spec)
        if head is None:
            head = canonical.dumps({"dtype": spec[0], "shape": list(spec[1])})
            if len(_ARRAY_HEADS) > 4096:
                _ARRAY_HEADS.clear()
            _ARRAY_HEADS[spec] = head
        raw: bytes = value.tobytes(order="C")
        return b"N" + head + b"\n" + raw
    return b"J" + canonical.dumps(value)


def decode_value(data: bytes) -> Any:
    """Invert ``encode_value``; an array comes back as {"dtype", "shape", "data" (bytes)}."""
    tag, body = data[:1], data[1:]
    if tag == b"B":
        return body
    if tag == b"S":
        return body.decode("utf-8")
    if tag == b"J":
        return canonical.loads_canonical(body)
    if tag == b"N":
        head, sep, raw = body.partition(b"\n")
        if not sep:
            raise MalformedError("array encoding has no header line")
        meta = canonical.loads_canonical(head)
        return {"dtype": meta["dtype"], "shape": meta["shape"], "data": raw}
    raise MalformedError(f"unknown value encoding tag {tag!r}")


def _salted(salt: bytes, value: Any) -> bytes:
    t = type(value)
    if t is bytes:
        if len(value) < _BIG:
            return _sha(salt + b"B" + value).digest()
        h = _sha(salt + b"B")
        h.update(value)
        return h.digest()
    if t is str:
        return _sha(salt + b"S" + value.encode("utf-8")).digest()
    return _sha(salt + encode_value(value)).digest()


def salted_hash(salt: bytes, value: Any) -> str:
    """Hex SHA-256 of ``salt || encode_value(value)``."""
    return _salted(salt, value).hex()


# -- the log -------------------------------------------------------------------------


def _default_store(origin: str, model: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", origin)
    return (
        modelchain_home() / "receipts" / safe / f"{re.sub(r'[^A-Za-z0-9._-]', '_', model)}.sqlite"
    )


class ReceiptLog:
    """Batches inference records into ``inference.batch`` transactions.

    ``ledger`` may be ``None`` (or closed, or read-only): batches then wait in
    the store until a log on the same store can reach a ledger. ``version`` is
    the model version; without it, the version deployed to ``env``, else the
    latest registered one. With ``pin_env`` each batch names ``env`` and the
    ledger rejects it unless that version is deployed there when the batch
    arrives (so a batch queued across a rollback would be rejected).
    """

    def __init__(
        self,
        ledger: Ledger | None,
        model: str,
        env: str | None = None,
        version: int | None = None,
        *,
        signer: Signer | None = None,
        store: str | os.PathLike[str] | None = None,
        origin: str | None = None,
        batch_size: int = 4096,
        batch_ms: int = 200,
        background: bool = True,
        retry_ms: int = 1000,
        pin_env: bool = False,
    ) -> None:
        if not isinstance(model, str) or not model:
            raise UsageError("model must be a non-empty string")
        if batch_size < 1 or batch_ms < 1:
            raise UsageError("batch_size and batch_ms must be positive")
        self.ledger = ledger
        self.model = model
        self.env = env
        self._body_env = env if pin_env else None
        self.signer = signer if signer is not None else (ledger.identity if ledger else None)
        if origin is None:
            if ledger is None:
                raise UsageError("without a ledger, give the origin (or a store path)")
            origin = ledger.origin
        self.origin = origin
        self.version = self._resolve_version(version)
        self.batch_size = batch_size
        self.batch_ms = batch_ms
        self.retry_ms = retry_ms
        self.last_error: str | None = None
        self.path = Path(store) if store is not None else _default_store(origin, model)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._dblock = threading.Lock()
        # Hot-path state, guarded by _lock.
        self._lock = threading.Lock()
        self._buf: list[_Rec] = []
        self._salts = _urandom(2 * SALT_SIZE * batch_size)
        self._opened = 0.0
        self._closed: list[tuple[list[_Rec], bytes]] = []
        self._rid_prefix = secrets.token_hex(8) + "-"
        self._seq = 0
        # The leaf bytes up to the request id, and after it, when meta is absent.
        self._model_json = canonical.dumps(model).decode()
        self._leaf_mid = f'","model":{self._model_json},"output_hash":"'
        self._leaf_tail = f',"v":{RECEIPT_VERSION},"version":{self.version}}}'
        # Background work: one processing pass at a time.
        self._work = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._next_retry = 0.0
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._run, name="modelchain-receipts")
            self._thread.daemon = True
            self._thread.start()
        else:
            self._process(submit=True, force=False)

    def _resolve_version(self, version: int | None) -> int:
        if version is not None:
            if isinstance(version, bool) or not isinstance(version, int) or version < 1:
                raise UsageError("version must be an integer >= 1")
            return version
        if self.ledger is None:
            raise UsageError("without a ledger, give the model version")
        get = self.ledger.store.get_state
        if self.env is not None:
            dep = get(deployment_key(self.model, self.env))
            if not isinstance(dep, dict):
                raise NotFoundError(f"model {self.model} is not deployed to {self.env}")
            return int(dep["version"])
        entity = get(f"model/{self.model}")
        if not isinstance(entity, dict) or not entity.get("latest"):
            raise NotFoundError(f"model {self.model} has no registered version")
        return int(entity["latest"])

    # -- hot path ------------------------------------------------------------------

    def record(
        self,
        inputs: Any,
        outputs: Any,
        meta: Any = None,
        request_id: str | None = None,
    ) -> str:
        """Record one decision; returns its request id at once (never waits on the ledger)."""
        # Bytes and str are hashed inline: a function call is a third of the budget.
        ti, to = type(inputs), type(outputs)
        with self._lock:
            buf = self._buf
            n = len(buf)
            o = n << 5
            salts = self._salts
            if ti is bytes and len(inputs) < _BIG:
                ih = _sha(salts[o : o + 16] + b"B" + inputs).digest()
            elif ti is str:
                ih = _sha(salts[o : o + 16] + b"S" + inputs.encode()).digest()
            else:
                ih = _salted(salts[o : o + 16], inputs)
            if to is str:
                oh = _sha(salts[o + 16 : o + 32] + b"S" + outputs.encode()).digest()
            elif to is bytes and len(outputs) < _BIG:
                oh = _sha(salts[o + 16 : o + 32] + b"B" + outputs).digest()
            else:
                oh = _salted(salts[o + 16 : o + 32], outputs)
            if request_id is None:
                self._seq = seq = self._seq + 1
                request_id = self._rid_prefix + str(seq)
                buf.append((seq, _time_ns() // 1_000_000, ih, oh, meta))
            else:
                buf.append((request_id, _time_ns() // 1_000_000, ih, oh, meta))
            if n == 0:
                self._opened = time.monotonic()
            if n + 1 >= self.batch_size:
                self._close_locked()
                self._wake.set()
        return request_id

    def _close_locked(self) -> None:
        if self._buf:
            self._closed.append((self._buf, self._salts[: len(self._buf) << 5]))
            self._buf = []
            self._salts = _urandom(2 * SALT_SIZE * self.batch_size)

    # -- background ----------------------------------------------------------------

    def _run(self) -> None:
        tick = self.batch_ms / 1000
        while True:
            self._wake.wait(tick)
            self._wake.clear()
            stop = self._stop
            try:
                self._process(submit=True, force=stop)
            except Exception as exc:  # keep the thread alive; the error is reported
                self.last_error = f"{type(exc).__name__}: {exc}"
            if stop:
                return

    def _process(self, *, submit: bool, force: bool) -> None:
        with self._work:
            with self._lock:
                if self._buf and (force or time.monotonic() - self._opened >= self.batch_ms / 1000):
                    self._close_locked()
                closed, self._closed = self._closed, []
            for buf, salts in closed:
                self._persist(buf, salts)
            if submit and (force or time.monotonic() >= self._next_retry):
                self._submit_pending()

    def _leaf(self, rec: _Rec) -> bytes:
        rid, t, ih, oh, meta = rec
        if type(rid) is int:
            rid = self._rid_prefix + str(rid)
            if meta is None:
                return (
                    f'{{"input_hash":"{ih.hex()}{self._leaf_mid}{oh.hex()}","request_id":"{rid}"'
                    f',"time_ms":{t}{self._leaf_tail}'
                ).encode()
        elif meta is None and _SAFE_ID.match(str(rid)):
            return (
                f'{{"input_hash":"{ih.hex()}{self._leaf_mid}{oh.hex()}","request_id":"{rid}"'
                f',"time_ms":{t}{self._leaf_tail}'
            ).encode()
        return canonical.dumps(self._record_json(rec))

    def _record_json(self, rec: _Rec) -> dict[str, Any]:
        rid, t, ih, oh, meta = rec
        if type(rid) is int:
            rid = self._rid_prefix + str(rid)
        out = {
            "v": RECEIPT_VERSION,
            "model": self.model,
            "version": self.version,
            "input_hash": ih.hex(),
            "output_hash": oh.hex(),
            "time_ms": t,
            "request_id": rid,
        }
        if meta is not None:
            out["meta"] = meta
        return out

    def _persist(self, buf: list[_Rec], salts: bytes) -> None:
        leaf = self._leaf
        leaves = [leaf(r) for r in buf]
        sha = _sha
        root = root_of([sha(b"\x00" + x).digest() for x in leaves])
        times = [r[1] for r in buf]
        batch_id = secrets.token_hex(16)
        with self._dblock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                cur = db.execute(
                    "INSERT INTO batches (batch_id, model, version, env, root, count, first_time,"
                    " last_time, leaves, salts, status) VALUES (?,?,?,?,?,?,?,?,?,?,'pending')",
                    (
                        batch_id,
                        self.model,
                        self.version,
                        self._body_env,
                        root,
                        len(buf),
                        min(times),
                        max(times),
                        b"\n".join(leaves),
                        salts,
                    ),
                )
                seq = cur.lastrowid
                autos = [r[0] for r in buf if type(r[0]) is int]
                if autos:
                    db.execute(
                        "INSERT INTO auto_ids (prefix, lo, hi, seq) VALUES (?,?,?,?)",
                        (self._rid_prefix[:-1], autos[0], autos[-1], seq),
                    )
                if len(autos) < len(buf):
                    db.executemany(
                        "INSERT OR REPLACE INTO records (request_id, seq) VALUES (?,?)",
                        [(r[0], seq) for r in buf if type(r[0]) is not int],
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def _submit_pending(self) -> None:
        """Submit every written batch not yet in the ledger, in order; stop at the first
        that cannot be submitted (it and those after it wait for the next attempt)."""
        with self._dblock:
            rows = self._db.execute(
                "SELECT seq, batch_id, model, version, env, root, count, first_time, last_time"
                " FROM batches WHERE status='pending' ORDER BY seq"
            ).fetchall()
        for seq, batch_id, model, version, env, root, count, first, last in rows:
            try:
                status, index, error = self._submit_one(
                    batch_id, model, version, env, root, count, first, last
                )
            except (Error, OSError, sqlite3.Error) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                self._next_retry = time.monotonic() + self.retry_ms / 1000
                return
            with self._dblock:
                self._db.execute(
                    "UPDATE batches SET status=?, entry_index=?, error=? WHERE seq=?",
                    (status, index, error, seq),
                )
        self.last_error = None

    def _submit_one(
        self,
        batch_id: str,
        model: str,
        version: int,
        env: str | None,
        root: bytes,
        count: int,
        first: int,
        last: int,
    ) -> tuple[str, int, str | None]:
        led = self.ledger
        if led is None:
            raise UsageError("no ledger to submit to")
        if led.origin != self.origin:
            raise UsageError(f"the ledger is {led.origin}, this store belongs to {self.origin}")
        if self.signer is None:
            raise UsageError("no signer for inference.batch transactions")
        done = led.store.nonce_index(batch_id)
        if done is None:
            body: dict[str, Any] = {
                "model": model,
                "version": version,
                "root": root.hex(),
                "count": count,
                "first_time": first,
                "last_time": last,
                "batch_id": batch_id,
            }
            if env is not None:
                body["env"] = env
            tx = led.transaction(INFERENCE_BATCH, body, self.signer.name, nonce=batch_id)
            ack = led.submit(tx.sign(self.signer))
            if not ack.outcome.accepted:
                return "rejected", ack.index, f"{ack.outcome.code}: {ack.outcome.reason}"
            return "submitted", ack.index, None
        outcome = led.entry(done).outcome
        if not outcome.accepted:
            return "rejected", done, f"{outcome.code}: {outcome.reason}"
        return "submitted", done, None

    # -- control -------------------------------------------------------------------

    def sync(self) -> None:
        """Close the open batch and return once every record so far is in the store."""
        self._process(submit=False, force=True)

    def flush(self) -> int:
        """Close the open batch, write it, submit what waits; return how many batches
        are still waiting (0 once the ledger has taken them all)."""
        self._process(submit=True, force=True)
        return self.pending()

    def pending(self) -> int:
        with self._dblock:
            row = self._db.execute("SELECT COUNT(*) FROM batches WHERE status='pending'")
            return int(row.fetchone()[0])

    def close(self) -> None:
        """Flush, stop the background thread and close the store."""
        if self._thread is not None:
            self._stop = True
            self._wake.set()
            self._thread.join()
            self._thread = None
        self._process(submit=True, force=True)
        with self._dblock:
            self._db.close()

    def __enter__(self) -> ReceiptLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- receipts ------------------------------------------------------------------

    def batch_status(self, request_id: str) -> str:
        """``pending``, ``submitted`` or ``rejected``; NotFoundError if the record is
        not (yet) in the store."""
        return str(self._lookup(request_id)[1]["status"])

    def _lookup(self, request_id: str) -> tuple[int, dict[str, Any]]:
        auto = _AUTO_ID.match(request_id)
        with self._dblock:
            row = self._db.execute(
                "SELECT seq FROM records WHERE request_id=?", (request_id,)
            ).fetchone()
            if row is None and auto:
                row = self._db.execute(
                    "SELECT seq FROM auto_ids WHERE prefix=? AND lo<=? AND hi>=?",
                    (auto[1], int(auto[2]), int(auto[2])),
                ).fetchone()
            if row is None:
                raise NotFoundError(f"no record {request_id!r} in {self.path} (flush first?)")
            cur = self._db.execute("SELECT * FROM batches WHERE seq=?", (row[0],))
            names = [d[0] for d in cur.description]
            batch = dict(zip(names, cur.fetchone(), strict=True))
        # Find the leaf by its request id: leaves are canonical JSON, one a line.
        leaves = bytes(batch["leaves"])
        needle = b'"request_id":' + canonical.dumps(request_id) + b","
        pos = leaves.find(needle)
        while pos >= 0:
            # The needle could also sit inside a record's meta: confirm on the leaf.
            start = leaves.rfind(b"\n", 0, pos) + 1
            end = leaves.find(b"\n", pos)
            leaf = leaves[start : end if end >= 0 else len(leaves)]
            if canonical.loads_canonical(leaf).get("request_id") == request_id:
                return leaves.count(b"\n", 0, pos), batch
            pos = leaves.find(needle, pos + 1)
        raise NotFoundError(f"no record {request_id!r} in {self.path}")

    def receipt(self, request_id: str) -> dict[str, Any]:
        """A complete receipt: the record and its salts, its path in the batch, and a
        C2SP tlog-proof of the batch entry. NotFoundError while the batch is not in
        the ledger."""
        idx, batch = self._lookup(request_id)
        if batch["status"] == "pending":
            self.flush()
            idx, batch = self._lookup(request_id)
        if batch["status"] != "submitted":
            raise NotFoundError(
                f"the batch of {request_id!r} is {batch['status']}: {batch['error'] or ''}"
            )
        led = self.ledger
        if led is None:
            raise UsageError("this receipt log has no ledger to prove its batches in")
        entry_index = int(batch["entry_index"])
        leaves = bytes(batch["leaves"]).split(b"\n")
        tree = MemoryTree(leaf_hash(x) for x in leaves)
        salts = bytes(batch["salts"])
        o = idx << 5
        return {
            "v": RECEIPT_VERSION,
            "record": canonical.loads_canonical(leaves[idx]),
            "salt_input": salts[o : o + 16].hex(),
            "salt_output": salts[o + 16 : o + 32].hex(),
            "batch": {
                "id": batch["batch_id"],
                "root": bytes(batch["root"]).hex(),
                "count": int(batch["count"]),
                "index_in_batch": idx,
                "path": [base64.b64encode(h).decode() for h in tree.inclusion_proof(idx)],
            },
            "ledger": {
                "entry_index": entry_index,
                "tlog_proof": led.receipt(entry_index).to_text(),
                "entry": base64.b64encode(led.entry_bytes(entry_index)).decode(),
            },
        }


# -- offline verification ------------------------------------------------------------


def _b64(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise MalformedError(f"{what} must be base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise MalformedError(f"{what} is not valid base64") from exc


def _hex(text: object, what: str, size: int) -> bytes:
    try:
        if not isinstance(text, str):
            raise ValueError
        out = bytes.fromhex(text)
    except ValueError as exc:
        raise MalformedError(f"{what} must be hex") from exc
    if len(out) != size:
        raise MalformedError(f"{what} must be {size} bytes")
    return out


def _as_receipt(receipt: Mapping[str, Any] | str | bytes) -> Mapping[str, Any]:
    obj = canonical.loads(receipt) if isinstance(receipt, str | bytes) else receipt
    if not isinstance(obj, Mapping) or not {"record", "batch", "ledger"} <= set(obj):
        raise MalformedError("an inference receipt has record, batch and ledger")
    return obj


def verify_inference_receipt(
    receipt: Mapping[str, Any] | str | bytes,
    log_key: VerifierKey | str,
    checkpoint: bytes | str | None = None,
) -> dict[str, Any]:
    """Check a receipt offline: the record is in the batch, the batch entry (accepted,
    same root, count, model, version, time range) is in the log, the checkpoint is
    signed by ``log_key``. With ``checkpoint`` (a signed note the verifier trusts),
    the receipt's checkpoint must be that same tree. Returns the record.

    Raises ProofError (or MalformedError for a receipt that cannot be read)."""
    key = VerifierKey.from_string(log_key) if isinstance(log_key, str) else log_key
    r = _as_receipt(receipt)
    record, batch, led = r["record"], r["batch"], r["ledger"]
    if not isinstance(record, dict) or not isinstance(batch, dict) or not isinstance(led, dict):
        raise MalformedError("record, batch and ledger are objects")
    if record.get("v") != RECEIPT_VERSION:
        raise MalformedError(f"unknown record version {record.get('v')!r}")
    leaf = leaf_hash(canonical.dumps(record))
    root = _hex(batch.get("root"), "batch root", 32)
    count, index = batch.get("count"), batch.get("index_in_batch")
    if not isinstance(count, int) or not isinstance(index, int):
        raise MalformedError("batch count and index_in_batch are integers")
    path = batch.get("path")
    if not isinstance(path, list):
        raise MalformedError("batch path is a list")
    verify_inclusion(index, count, leaf, [_b64(p, "batch path hash") for p in path], root)

    entry_bytes = _b64(led.get("entry"), "ledger entry")
    entry = LogEntry.decode(entry_bytes)
    tx = entry.transaction
    if tx.type != INFERENCE_BATCH:
        raise ProofError(f"ledger entry is a {tx.type}, not {INFERENCE_BATCH}")
    if not entry.outcome.accepted:
        raise ProofError(f"the ledger rejected this batch: {entry.outcome.reason}")
    body = tx.body
    if body.get("root") != root.hex() or body.get("count") != count:
        raise ProofError("the ledger entry commits to a different batch root or count")
    if body.get("model") != record.get("model") or body.get("version") != record.get("version"):
        raise ProofError("the record's model version is not the batch's")
    t = record.get("time_ms")
    if not isinstance(t, int) or not body["first_time"] <= t <= body["last_time"]:
        raise ProofError("the record's time is outside the batch's time range")
    if tx.ledger != key.name:
        raise ProofError(f"the entry is for ledger {tx.ledger}, the key is {key.name}")

    proof = InclusionReceipt.from_text(str(led.get("tlog_proof", "")))
    if proof.index != led.get("entry_index") or entry.index != proof.index:
        raise ProofError("the tlog-proof is for another entry index")
    cp = verify_receipt(proof, leaf_hash(entry_bytes), key)
    if checkpoint is not None:
        trusted, _ = open_checkpoint(checkpoint, key)
        if (trusted.size, trusted.root) != (cp.size, cp.root):
            raise ProofError(
                f"the receipt's checkpoint (size {cp.size}) is not the given one "
                f"(size {trusted.size}); fetch a receipt for that checkpoint"
            )
    return dict(record)


def reveal(
    receipt: Mapping[str, Any] | str | bytes, inputs: Any = None, outputs: Any = None
) -> dict[str, Any]:
    """What an auditor needs to check one decision: the receipt plus the encoded
    input and/or output. Raises ProofError if a value does not match its hash."""
    r = dict(_as_receipt(receipt))
    out: dict[str, Any] = {"receipt": r}
    for name, value, salt in (("input", inputs, "salt_input"), ("output", outputs, "salt_output")):
        if value is None:
            continue
        enc = encode_value(value)
        if _sha(_hex(r.get(salt), salt, SALT_SIZE) + enc).hexdigest() != r["record"].get(
            f"{name}_hash"
        ):
            raise ProofError(f"the {name} given does not match the receipt's {name}_hash")
        out[name] = base64.b64encode(enc).decode()
    return out


def verify_reveal(
    revealed: Mapping[str, Any] | str | bytes,
    log_key: VerifierKey | str,
    checkpoint: bytes | str | None = None,
) -> dict[str, Any]:
    """Verify a reveal: the receipt, then each revealed value against its salted hash.
    Returns ``{"record", "input"?, "output"?}`` with values decoded."""
    obj = canonical.loads(revealed) if isinstance(revealed, str | bytes) else revealed
    if not isinstance(obj, Mapping) or "receipt" not in obj:
        raise MalformedError("a reveal holds a receipt")
    r = _as_receipt(obj["receipt"])
    record = verify_inference_receipt(r, log_key, checkpoint)
    out: dict[str, Any] = {"record": record}
    for name in ("input", "output"):
        if name not in obj:
            continue
        enc = _b64(obj[name], name)
        salt = _hex(r.get(f"salt_{name}"), f"salt_{name}", SALT_SIZE)
        if _sha(salt + enc).hexdigest() != record.get(f"{name}_hash"):
            raise ProofError(f"the revealed {name} does not match the record's {name}_hash")
        out[name] = decode_value(enc)
    return out
