"""Inference receipts: one verifiable, privately revealable record per model decision.

``ReceiptLog.record(inputs, outputs)`` hashes the input and output, each with a
fresh 16-byte salt, and appends the record to a per-record journal beside the
receipt store with one ``write()``; it never waits on the ledger. A background
thread closes a batch every ``batch_size`` records or ``batch_ms`` milliseconds,
builds its RFC 9162 tree from the journal, writes it to the receipt store
(SQLite, WAL, beside the caller) and then submits one ``inference.batch``
transaction carrying the root, the count and the time range.

Durability: once ``record()`` returns, the record is in the kernel's page cache
and survives the death of the process (``kill -9`` included), though not a power
loss unless the log was opened with ``durability="fsync"`` (then every
``record()`` waits for the disk) or ``sync()`` has returned since. A log opened
on the same store later recovers every journal record that is not yet in a
written batch, forms batches of them and submits them as usual. Batches written
but not yet in the ledger (unreachable ledger, crash) stay on disk and are
submitted in order by the next ``ReceiptLog`` on the same store; each batch's
transaction nonce is its batch id, so a batch is never logged twice.

The journal is a folder ``<store>.journal`` of segment files, one per batch,
each named for the log session that writes it and locked (``flock``) while that
session lives. A batch row records its session and the sequence number of its
last record, and is written only if that session's earlier rows end before its
first record, in the same SQLite transaction: so a record reaches the store at
most once, whichever process recovers it and whenever one is killed; the
segment is deleted only after its batch is committed.

A leaf is the canonical JSON ``{v, model, version, input_hash, output_hash,
time_ms, request_id[, meta]}``; a salted hash is ``SHA-256(salt || encoding)``
where ``encoding`` is ``encode_value(value)``. Raw inputs and outputs never
leave the process; the salts stay with the receipt store and the journal, so
revealing one record exposes no other.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import os
import re
import secrets
import select
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .contracts.state import deployment_key, model_key
from .contracts.types import INFERENCE_BATCH
from .core import canonical
from .core.checkpoint import open_checkpoint
from .core.identity import Signer, VerifierKey
from .core.merkle import MemoryTree, leaf_hash, root_of, verify_inclusion
from .core.receipt import InclusionReceipt, verify_receipt
from .core.tx import LogEntry
from .errors import (
    Error,
    MalformedError,
    NotFoundError,
    ProofError,
    PushbackError,
    StorageError,
    UsageError,
)
from .keys.files import modelchain_home
from .storage.files import fsync_dir

if TYPE_CHECKING:
    from .ledger.port import LedgerPort

__all__ = [
    "DURABILITY",
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
DURABILITY = ("process", "fsync")
"""``process``: a returned ``record()`` survives the process being killed;
``fsync``: it survives a power loss too (each ``record()`` waits for the disk)."""

_sha = hashlib.sha256
_urandom = os.urandom
_time_ns = time.time_ns
_write = os.write
_crc32 = zlib.crc32
_SAFE_ID = re.compile(r"[A-Za-z0-9._:/@+=-]{1,200}\Z")
_AUTO_ID = re.compile(r"([0-9a-f]{16})-([0-9]{1,18})\Z")
_SESSION = re.compile(r"[0-9a-f]{16}\Z")
_BIG = 1 << 14

# Closed batches whose segments still wait to be written to the store. More than
# this means the store cannot keep up (or is failing): record() pushes back
# rather than holding an open file and unbounded memory per batch.
_MAX_WAITING = 64

_SCHEMA_VERSION = 2
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
    session TEXT,
    last_seq INTEGER,
    status TEXT NOT NULL,
    entry_index INTEGER,
    error TEXT
);
CREATE INDEX IF NOT EXISTS batches_status ON batches (status, seq);
CREATE INDEX IF NOT EXISTS batches_session ON batches (session, last_seq);
CREATE TABLE IF NOT EXISTS batch_leaves (
    seq INTEGER PRIMARY KEY,
    leaves BLOB NOT NULL,
    salts BLOB NOT NULL
);
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

# Schema 1 kept each batch's leaves in its ``batches`` row, so marking a batch
# submitted rewrote a megabyte of leaves; schema 2 keeps them in their own table.
_MIGRATE_1_TO_2 = """
DROP INDEX IF EXISTS batches_status;
ALTER TABLE batches RENAME TO batches_v1;
{schema}
INSERT INTO batches (seq, batch_id, model, version, env, root, count, first_time, last_time,
                     status, entry_index, error)
    SELECT seq, batch_id, model, version, env, root, count, first_time, last_time,
           status, entry_index, error FROM batches_v1;
INSERT INTO batch_leaves (seq, leaves, salts) SELECT seq, leaves, salts FROM batches_v1;
DROP TABLE batches_v1;
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


# -- the journal (pure: bytes in, values out) ----------------------------------------

# A segment starts with a header: magic, format, the length of a canonical JSON
# object naming its session ({env, first_seq, model, session, v, version}), the
# JSON, and a CRC-32 of all of that. Records follow, each: sequence number (one
# more than the one before), time_ms, request id length (0: automatic), meta
# length, input salt, output salt, input hash, output hash, then the request id
# (UTF-8), the meta (canonical JSON) and a CRC-32 of the record. Little-endian.
_MAGIC = b"MCRJ"
_FORMAT = 1
_HEAD = struct.Struct("<4sBI")
_REC = struct.Struct("<QqHI32s32s32s")
_PLAIN = struct.Struct("<QqHI32s32s32sI")  # a record without request id or meta
_pack_rec = _REC.pack
_MAX_HEAD = 1 << 16
_MAX_RID = 0xFFFF
_MAX_META = 1 << 24

# (sequence number, time_ms, request id length, meta length, salts, input hash,
# output hash, CRC)
_JRec = tuple[int, int, int, int, bytes, bytes, bytes, int]


@dataclass(frozen=True)
class _Session:
    """Who wrote a journal segment: the session id (also the prefix of its automatic
    request ids) and the model version its leaves commit to; ``env`` is the
    environment its batches name, if pinned."""

    id: str
    model: str
    version: int
    env: str | None


@dataclass
class _Parsed:
    """A segment read back. ``problem`` says why reading stopped before the end;
    ``damaged`` is set when bytes follow it (a torn last write leaves none)."""

    session: _Session | None = None
    first_seq: int = 0
    recs: list[_JRec] = field(default_factory=list)
    ext: dict[int, tuple[str | None, bytes | None]] = field(default_factory=dict)
    problem: str | None = None
    damaged: bool = False


def _segment_head(session: _Session, first_seq: int) -> bytes:
    body = canonical.dumps(
        {
            "env": session.env,
            "first_seq": first_seq,
            "model": session.model,
            "session": session.id,
            "v": _FORMAT,
            "version": session.version,
        }
    )
    head = _HEAD.pack(_MAGIC, _FORMAT, len(body)) + body
    return head + _crc32(head).to_bytes(4, "little")


def _int_field(value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise MalformedError(f"{value!r} is not an integer >= {low}")
    return value


def _read_head(data: bytes, out: _Parsed) -> int:
    """Fill ``out.session`` and ``out.first_seq``; return where records start, or -1."""
    size = len(data)
    if size < _HEAD.size:
        out.problem = "the segment header is incomplete"
        return -1
    magic, fmt, length = _HEAD.unpack_from(data)
    if magic != _MAGIC or fmt != _FORMAT or length > _MAX_HEAD:
        out.problem, out.damaged = "not a receipt journal segment of a known format", True
        return -1
    end: int = _HEAD.size + length
    if end + 4 > size:
        out.problem = "the segment header is incomplete"
        return -1
    if _crc32(data[:end]) != int.from_bytes(data[end : end + 4], "little"):
        out.problem, out.damaged = "the segment header fails its checksum", end + 4 < size
        return -1
    try:
        head = canonical.loads_canonical(data[_HEAD.size : end])
        if not isinstance(head, dict):
            raise MalformedError("the header is not an object")
        sid, model, env = head["session"], head["model"], head["env"]
        if not isinstance(sid, str) or not _SESSION.match(sid):
            raise MalformedError(f"bad session id {sid!r}")
        if not isinstance(model, str) or not model or not (env is None or isinstance(env, str)):
            raise MalformedError("bad model or env")
        out.session = _Session(sid, model, _int_field(head["version"], 1), env)
        out.first_seq = _int_field(head["first_seq"], 1)
    except (Error, KeyError) as exc:
        out.problem, out.damaged = f"the segment header is unreadable: {exc}", True
        return -1
    return end + 4


def _parse_segment(data: bytes, plain: bool = False) -> _Parsed:
    """Read a segment. ``plain``: this process wrote it and no record has a request id
    or meta, so the records are read in bulk without checking what it wrote.

    Reading stops at the first record that is incomplete, fails its checksum or
    breaks the sequence; records before it are returned. Never raises."""
    out = _Parsed()
    pos = _read_head(data, out)
    if pos < 0:
        return out
    size = len(data)
    if plain:
        whole = pos + (size - pos) // _PLAIN.size * _PLAIN.size
        out.recs = list(_PLAIN.iter_unpack(memoryview(data)[pos:whole]))
        if whole != size:
            out.problem = "the last record is incomplete"
        return out
    recs, ext, expect, head = out.recs, out.ext, out.first_seq, _REC.size
    while pos < size:
        if size - pos < head + 4:
            out.problem = "the last record is incomplete"
            break
        seq, t, rl, ml, salts, ih, oh = _REC.unpack_from(data, pos)
        end = pos + head + rl + ml
        if end + 4 > size:
            out.problem = "the last record is incomplete"
            break
        crc = int.from_bytes(data[end : end + 4], "little")
        if crc != _crc32(data[pos:end]):
            out.problem = f"the record at byte {pos} fails its checksum"
        elif seq != expect:
            out.problem = f"the record at byte {pos} is number {seq}, not {expect}"
        else:
            try:
                rid = data[pos + head : pos + head + rl].decode() if rl else None
                meta = data[end - ml : end] if ml else None
                if meta is not None:
                    canonical.loads_canonical(meta)
            except (Error, UnicodeDecodeError) as exc:
                out.problem = f"the record at byte {pos} is unreadable: {exc}"
            else:
                if rl or ml:
                    ext[len(recs)] = (rid, meta)
                recs.append((seq, t, rl, ml, salts, ih, oh, crc))
                expect += 1
                pos = end + 4
                continue
        out.damaged = end + 4 < size
        break
    return out


@dataclass(frozen=True)
class _Batch:
    """A batch ready for the store: its leaves (canonical JSON, one a line), salts,
    root and what the store indexes it by."""

    session: _Session
    root: bytes
    leaves: bytes
    salts: bytes
    count: int
    first_time: int
    last_time: int
    first_seq: int
    last_seq: int
    auto: tuple[int, int] | None
    named: list[tuple[str, int]]


def _build_batch(
    session: _Session, recs: list[_JRec], ext: Mapping[int, tuple[str | None, bytes | None]]
) -> _Batch:
    """Leaves, tree and index rows of journal records, in order."""
    model = canonical.dumps(session.model).decode()
    # The leaf is canonical JSON, so its keys are in sorted order and a record
    # without meta or an unusual request id fills one template (see _leaf_json).
    a = '{"input_hash":"'
    b = f'","model":{model},"output_hash":"'
    c = f'","request_id":"{session.id}-'
    d = f',"v":{RECEIPT_VERSION},"version":{session.version}}}'
    leaves = [
        f'{a}{ih.hex()}{b}{oh.hex()}{c}{seq}","time_ms":{t}{d}'.encode()
        for seq, t, _, _, _, ih, oh, _ in recs
    ]
    named: list[tuple[str, int]] = []
    autos: list[int] = []
    if ext:
        for i, (rid, meta) in ext.items():
            seq, t, _, _, _, ih, oh, _ = recs[i]
            if rid is None:
                rid = f"{session.id}-{seq}"
            else:
                named.append((rid, seq))
            leaves[i] = _leaf_json(session, model, ih, oh, rid, t, meta)
        autos = [r[0] for i, r in enumerate(recs) if ext.get(i, (None,))[0] is None]
    else:
        autos = [recs[0][0], recs[-1][0]]
    sha = _sha
    times = [r[1] for r in recs]
    return _Batch(
        session=session,
        root=root_of([sha(b"\x00" + x).digest() for x in leaves]),
        leaves=b"\n".join(leaves),
        salts=b"".join([r[4] for r in recs]),
        count=len(recs),
        first_time=min(times),
        last_time=max(times),
        first_seq=recs[0][0],
        last_seq=recs[-1][0],
        auto=(autos[0], autos[-1]) if autos else None,
        named=named,
    )


def _leaf_json(
    session: _Session,
    model: str,
    ih: bytes,
    oh: bytes,
    rid: str,
    t: int,
    meta: bytes | None,
) -> bytes:
    # Keys in canonical (sorted) order; meta is already canonical JSON and a JSON
    # value nested in canonical JSON is written exactly as on its own.
    rid_json = f'"{rid}"' if _SAFE_ID.match(rid) else canonical.dumps(rid).decode()
    meta_json = "" if meta is None else ',"meta":' + meta.decode()
    return (
        f'{{"input_hash":"{ih.hex()}"{meta_json},"model":{model},"output_hash":"{oh.hex()}"'
        f',"request_id":{rid_json},"time_ms":{t},"v":{RECEIPT_VERSION}'
        f',"version":{session.version}}}'
    ).encode()


def _after(recs: list[_JRec], upto: int) -> int:
    """Index of the first record numbered above ``upto`` (records ascend by one)."""
    if not recs or recs[0][0] > upto:
        return 0
    return min(len(recs), upto - recs[0][0] + 1)


# -- the log -------------------------------------------------------------------------


def _default_store(origin: str, model: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", origin)
    return (
        modelchain_home() / "receipts" / safe / f"{re.sub(r'[^A-Za-z0-9._-]', '_', model)}.sqlite"
    )


def _read_fd(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    chunks, pos = [], 0
    while pos < size:
        chunk = os.pread(fd, size - pos, pos)
        if not chunk:
            break
        chunks.append(chunk)
        pos += len(chunk)
    return b"".join(chunks)


def _extension(request_id: object, meta: Any) -> tuple[bytes, int, int]:
    """The request id and meta bytes of a journal record and their lengths (checked
    here, so a value the leaf cannot carry fails the caller's record(), not a batch)."""
    rid = b""
    if request_id is not None:
        if not isinstance(request_id, str) or not request_id:
            raise UsageError("request_id must be a non-empty string")
        try:
            rid = request_id.encode()
        except UnicodeEncodeError as exc:
            raise MalformedError(f"request_id is not valid Unicode: {exc}") from exc
        if len(rid) > _MAX_RID:
            raise UsageError(f"request_id is over {_MAX_RID} bytes")
    meta_json = b"" if meta is None else canonical.dumps(meta)
    if len(meta_json) > _MAX_META:
        raise UsageError(f"meta is over {_MAX_META} bytes of JSON")
    return rid + meta_json, len(rid), len(meta_json)


class _Segment:
    """A journal segment this process writes: one batch, locked while open."""

    __slots__ = ("count", "fd", "first_seq", "path", "plain")

    def __init__(self, path: Path, fd: int, first_seq: int) -> None:
        self.path = path
        self.fd = fd
        self.first_seq = first_seq
        self.count = 0
        self.plain = True


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        # Another process (a log, its worker, a recovering log) may hold the write lock.
        db.execute("PRAGMA busy_timeout=10000")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
    except BaseException:
        db.close()
        raise
    return db


class _BatchWriter:
    """Inserts batches into the receipt store: the one writer of batch rows, used by
    a log's own thread, by its recovery and by its worker process."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock, path: Path) -> None:
        self._db = db
        self._lock = lock
        self._path = path

    def store(self, parsed: _Parsed) -> None:
        """Write a segment's records that are not yet in the store as one batch.

        A batch row carries its session and last record number, and goes in only if
        the session's rows end before its first record, checked in the same write
        transaction: a record can reach the store once, never twice."""
        session = parsed.session
        if session is None or not parsed.recs:
            return
        while True:
            upto = self._upto(session.id)
            skip = _after(parsed.recs, upto)
            recs = parsed.recs[skip:]
            if not recs:
                return
            ext = {i - skip: v for i, v in parsed.ext.items() if i >= skip}
            if self._write_batch(_build_batch(session, recs, ext), upto):
                return

    def _upto(self, session: str) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT MAX(last_seq) FROM batches WHERE session=?", (session,)
            ).fetchone()
        return int(row[0] or 0)

    def _write_batch(self, batch: _Batch, upto: int) -> bool:
        """Insert ``batch``; False (and nothing written) if the session's rows no
        longer end at ``upto``."""
        s = batch.session
        batch_id = secrets.token_hex(16)
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    (now,) = db.execute(
                        "SELECT MAX(last_seq) FROM batches WHERE session=?", (s.id,)
                    ).fetchone()
                    if int(now or 0) != upto:
                        db.execute("ROLLBACK")
                        return False
                    seq = db.execute(
                        "INSERT INTO batches (batch_id, model, version, env, root, count,"
                        " first_time, last_time, session, last_seq, status)"
                        " VALUES (?,?,?,?,?,?,?,?,?,?,'pending')",
                        (
                            batch_id,
                            s.model,
                            s.version,
                            s.env,
                            batch.root,
                            batch.count,
                            batch.first_time,
                            batch.last_time,
                            s.id,
                            batch.last_seq,
                        ),
                    ).lastrowid
                    db.execute(
                        "INSERT INTO batch_leaves (seq, leaves, salts) VALUES (?,?,?)",
                        (seq, batch.leaves, batch.salts),
                    )
                    if batch.auto is not None:
                        db.execute(
                            "INSERT INTO auto_ids (prefix, lo, hi, seq) VALUES (?,?,?,?)",
                            (s.id, batch.auto[0], batch.auto[1], seq),
                        )
                    if batch.named:
                        db.executemany(
                            "INSERT OR REPLACE INTO records (request_id, seq) VALUES (?,?)",
                            [(rid, seq) for rid, _ in batch.named],
                        )
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StorageError(f"cannot write a batch to {self._path}: {exc}") from exc
        return True


class _Worker:
    """A process that writes batches from journal segments into the store, so their
    leaves and trees are built outside the interpreter that calls ``record()``.

    One JSON line per segment each way. It starts in the background and is used once
    it says it is ready; it exits when its input closes (this process ended)."""

    def __init__(self, store: Path) -> None:
        if not sys.executable:
            raise OSError("no Python executable to start")
        here = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [here, env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER_MAIN, str(store)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            # Its own session: a Ctrl-C meant for the caller does not cut a write short.
            start_new_session=True,
        )
        self._ready = False
        self._deadline = time.monotonic() + _WORKER_START_S
        self.failed = False

    def ready(self) -> bool:
        if not self._ready and not self.failed:
            out = self.proc.stdout
            assert out is not None
            if select.select([out], [], [], 0)[0]:
                self._ready = out.readline() == b"ready\n"
                self.failed = not self._ready
            else:
                # sys.executable is not always a Python that can run us (an embedding
                # server, say): give up on one that never answers.
                self.failed = time.monotonic() > self._deadline
        return self._ready

    def persist(self, path: Path, plain: bool) -> _Parsed:
        """Have the worker write a segment's batch; OSError if it is gone."""
        out, inp = self.proc.stdout, self.proc.stdin
        assert out is not None and inp is not None
        try:
            inp.write(canonical.dumps({"path": str(path), "plain": plain}) + b"\n")
            inp.flush()
            line = out.readline()
        except ValueError as exc:  # a closed pipe
            raise OSError(str(exc)) from exc
        if not line:
            raise OSError("the receipt worker exited")
        reply = canonical.loads(line)
        if not isinstance(reply, dict):
            raise OSError(f"the receipt worker answered {line!r}")
        if reply.get("error"):
            raise StorageError(str(reply["error"]))
        return _Parsed(problem=reply.get("problem"), damaged=bool(reply.get("damaged")))

    def stop(self) -> None:
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        try:
            self.proc.wait(timeout=60 if self._ready else 0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


_WORKER_MAIN = "from modelchain.receipts import _worker_main; _worker_main()"
_WORKER_START_S = 60.0


def _worker_main() -> None:
    """The worker process: for each segment named on stdin, write its batch to the
    store named by argv[1] and answer one line."""
    path = Path(sys.argv[1])
    db = _connect(path)
    writer = _BatchWriter(db, threading.Lock(), path)
    out = sys.stdout.buffer
    out.write(b"ready\n")
    out.flush()
    for line in sys.stdin.buffer:
        reply: dict[str, Any]
        try:
            req = canonical.loads(line)
            with open(req["path"], "rb") as f:
                parsed = _parse_segment(f.read(), plain=bool(req["plain"]))
            writer.store(parsed)
            reply = {"damaged": parsed.damaged, "problem": parsed.problem}
        except Exception as exc:  # reported to the log, which keeps the segment
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        out.write(canonical.dumps(reply) + b"\n")
        out.flush()
    db.close()


class ReceiptLog:
    """Batches inference records into ``inference.batch`` transactions.

    ``ledger`` may be ``None`` (or closed, or read-only): batches then wait in
    the store until a log on the same store can reach a ledger. ``version`` is
    the model version; without it, the version deployed to ``env``, else the
    latest registered one. With ``pin_env`` each batch names ``env`` and the
    ledger rejects it unless that version is deployed there when the batch
    arrives (so a batch queued across a rollback would be rejected).
    ``durability`` is one of ``DURABILITY``. Opening a log recovers the journal
    records that logs on the same store left unbatched (killed, or closed while
    the store failed) and writes them as batches before it returns.

    ``worker``: build and write batches in a separate process, so that the
    process calling ``record()`` spends its interpreter on nothing else. ``None``
    (the default) starts one once a batch of at least 1,024 records fills before
    ``batch_ms`` (sustained load); ``False`` keeps the work on the log's thread.
    Without ``background`` there is no thread and no worker: a full batch is
    written by the ``record()`` call that fills it, and ``flush()`` submits.
    """

    def __init__(
        self,
        ledger: LedgerPort | None,
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
        durability: str = "process",
        worker: bool | None = None,
    ) -> None:
        if not isinstance(model, str) or not model:
            raise UsageError("model must be a non-empty string")
        if batch_size < 1 or batch_ms < 1:
            raise UsageError("batch_size and batch_ms must be positive")
        if durability not in DURABILITY:
            raise UsageError(f"durability is one of {', '.join(DURABILITY)}, not {durability!r}")
        self.ledger = ledger
        self.model = model
        self.env = env
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
        self.durability = durability
        self.last_error: str | None = None
        self.damaged: list[Path] = []
        self.path = Path(store) if store is not None else _default_store(origin, model)
        self.journal = self.path.with_name(self.path.name + ".journal")
        self.journal.mkdir(mode=0o700, parents=True, exist_ok=True)
        if durability == "fsync":
            fsync_dir(self.journal.parent)
        self._session = _Session(
            secrets.token_hex(8), model, self.version, env if pin_env else None
        )
        self._rid_prefix = self._session.id + "-"
        self._started = time.time_ns()
        self._db = self._open_store()
        self._db_closed = False  # after close(), lookups read the store on their own
        self._dblock = threading.Lock()
        self._writer = _BatchWriter(self._db, self._dblock, self.path)
        self._use_worker = worker
        self._worker: _Worker | None = None
        # Hot-path state, guarded by _lock.
        self._lock = threading.Lock()
        self._seg: _Segment | None = None
        self._fd = -1
        self._n = 0
        self._seq = 0
        self._plain = True
        self._salts = b""
        self._opened = 0.0
        self._closed: list[_Segment] = []
        self._closing = False
        # Background work: one processing pass at a time.
        self._work = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._next_retry = 0.0
        self._thread: threading.Thread | None = None
        try:
            self._recover()
        except BaseException:
            self._db.close()
            raise
        if background:
            if worker:
                self._start_worker()
            self._thread = threading.Thread(target=self._run, name="modelchain-receipts")
            self._thread.daemon = True
            self._thread.start()
        else:
            self._process(submit=True, force=False)

    def _open_store(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = _connect(self.path)
            try:
                self._migrate(db)
            except BaseException:
                db.close()
                raise
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open the receipt store {self.path}: {exc}") from exc
        return db

    def _migrate(self, db: sqlite3.Connection) -> None:
        (found,) = db.execute("PRAGMA user_version").fetchone()
        if found == _SCHEMA_VERSION:
            return
        if found > _SCHEMA_VERSION:
            raise UsageError(f"{self.path} is a receipt store of a newer modelchain")
        db.execute("BEGIN IMMEDIATE")
        try:
            # Read again under the write lock: another process may have migrated.
            (found,) = db.execute("PRAGMA user_version").fetchone()
            if found != _SCHEMA_VERSION:
                columns = {r[1] for r in db.execute("PRAGMA table_info(batches)")}
                script = _MIGRATE_1_TO_2 if "leaves" in columns else "{schema}"
                for statement in script.format(schema=_SCHEMA).split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

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
        entity = get(model_key(self.model))
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
        """Record one decision; returns its request id once the record is in the
        journal (never waits on the ledger). PushbackError if batches cannot be
        written to the store as fast as they fill."""
        if request_id is None and meta is None:
            ext, rl, ml = b"", 0, 0
        else:
            ext, rl, ml = _extension(request_id, meta)
        # Bytes and str are hashed inline: a function call is a third of the budget.
        ti, to = type(inputs), type(outputs)
        with self._lock:
            if self._fd < 0:
                self._open_segment()
            n = self._n
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
            # A number is used once even if its write fails.
            self._seq = seq = self._seq + 1
            rec = _pack_rec(seq, _time_ns() // 1_000_000, rl, ml, salts[o : o + 32], ih, oh)
            if ext:
                rec += ext
                self._plain = False
            rec += _crc32(rec).to_bytes(4, "little")
            try:
                if _write(self._fd, rec) != len(rec):
                    raise OSError("short write (disk full?)")
            except OSError as exc:
                # What reached the file is a torn last record, which recovery skips;
                # nothing more goes into this segment.
                self._plain = False
                self._close_locked()
                raise StorageError(f"cannot write to the receipt journal: {exc}") from exc
            self._n = n = n + 1
            if n < self.batch_size:
                return request_id if request_id is not None else self._rid_prefix + str(seq)
            self._close_locked()
        # A full batch: the background thread writes it; without one, this thread does.
        if self._thread is not None:
            self._wake.set()
        else:
            self._process_quietly(submit=False)
        return request_id if request_id is not None else self._rid_prefix + str(seq)

    def _open_segment(self) -> None:
        """Start the journal segment of the next batch (under _lock)."""
        if self._closing:
            raise UsageError("this receipt log is closed")
        if len(self._closed) >= _MAX_WAITING:
            raise PushbackError(
                f"{len(self._closed)} batches wait to be written to {self.path}; retry later",
                retry_after=self.batch_ms / 1000,
            )
        first = self._seq + 1
        name = f"{self._started:020d}-{self._session.id}-{first:020d}"
        tmp = self.journal / (name + ".tmp")
        path = self.journal / (name + ".seg")
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND
        if self.durability == "fsync":
            flags |= os.O_DSYNC
        try:
            fd = os.open(tmp, flags, 0o600)
        except OSError as exc:
            raise StorageError(f"cannot create a receipt journal segment: {exc}") from exc
        try:
            # Locked and given its header before it gets a name that recovery reads:
            # a recovering log skips a locked segment, and never sees one half made.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _write(fd, _segment_head(self._session, first))
            os.rename(tmp, path)
            if self.durability == "fsync":
                fsync_dir(self.journal)
        except OSError as exc:
            os.close(fd)
            for left in (tmp, path):
                with contextlib.suppress(OSError):
                    os.unlink(left)
            raise StorageError(f"cannot create a receipt journal segment: {exc}") from exc
        self._seg = _Segment(path, fd, first)
        self._fd = fd
        self._n = 0
        self._plain = True
        self._salts = _urandom(2 * SALT_SIZE * self.batch_size)
        self._opened = time.monotonic()

    def _close_locked(self) -> None:
        if self._seg is not None:
            self._seg.count = self._n
            self._seg.plain = self._plain
            self._closed.append(self._seg)
            self._seg = None
            self._fd = -1
            self._n = 0

    # -- background ----------------------------------------------------------------

    def _run(self) -> None:
        tick = self.batch_ms / 1000
        while True:
            self._wake.wait(tick)
            self._wake.clear()
            stop = self._stop
            self._process_quietly(submit=True, force=stop)
            if stop:
                return

    def _process_quietly(self, *, submit: bool, force: bool = False) -> None:
        try:
            self._process(submit=submit, force=force)
        except Exception as exc:  # the batch stays queued; the error is reported
            self.last_error = f"{type(exc).__name__}: {exc}"

    def _process(self, *, submit: bool, force: bool) -> None:
        if self._db_closed:
            raise UsageError(
                f"this receipt log is closed; a ReceiptLog opened on {self.path} "
                "writes and submits what waits"
            )
        with self._work:
            with self._lock:
                if self._seg is not None and (
                    force or time.monotonic() - self._opened >= self.batch_ms / 1000
                ):
                    self._close_locked()
                waiting = list(self._closed)
            for seg in waiting:
                self._persist(seg)
                with self._lock:
                    self._closed.pop(0)
            if submit and (force or time.monotonic() >= self._next_retry):
                self._submit_pending()

    def _persist(self, seg: _Segment) -> None:
        """Write a closed segment's batch to the store, then delete the segment."""
        if (
            self._use_worker is None
            and self._thread is not None
            and seg.count >= max(1024, self.batch_size)
        ):
            # A batch of 1,024 or more filled up: a sustained load (see __init__).
            self._use_worker = True
            self._start_worker()
        parsed: _Parsed | None = None
        worker = self._worker
        if worker is not None and worker.ready():
            try:
                parsed = worker.persist(seg.path, seg.plain)
            except StorageError as exc:
                # Try once here: the same failure then reaches the caller as ours.
                self.last_error = f"the receipt worker failed: {exc}"
            except OSError as exc:
                # The worker died: this thread takes over; a batch it committed first
                # is found in the store and not written again.
                self._worker = None
                worker.stop()
                self.last_error = f"the receipt worker stopped ({exc}); writing on a thread"
        elif worker is not None and worker.failed:
            self._worker = None
            worker.stop()
        if parsed is None:
            parsed = _parse_segment(_read_fd(seg.fd), plain=seg.plain)
            self._writer.store(parsed)
        self._retire(seg.path, parsed)
        os.close(seg.fd)

    def _start_worker(self) -> None:
        try:
            self._worker = _Worker(self.path)
        except OSError as exc:  # the thread does the work
            self.last_error = f"cannot start a receipt worker: {exc}"

    def _retire(self, path: Path, parsed: _Parsed) -> None:
        """Delete a segment whose records are in the store, or set a damaged one aside
        (its records before the damage are in the store) for someone to look at."""
        try:
            if parsed.damaged:
                aside = path.with_suffix(".damaged")
                os.replace(path, aside)
                self.damaged.append(aside)
                self.last_error = f"journal segment {aside} is damaged: {parsed.problem}"
            else:
                os.unlink(path)
        except FileNotFoundError:
            pass  # its owner finished it while we waited for the lock

    def _recover(self) -> None:
        """Write the batches of journal segments that no live log holds, oldest first."""
        for name in sorted(os.listdir(self.journal)):
            if not name.endswith((".seg", ".tmp")):
                continue
            path = self.journal / name
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue  # finished by its owner meanwhile
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live log is writing it
                if name.endswith(".tmp"):
                    # Killed while making a segment: it has no record yet.
                    path.unlink(missing_ok=True)
                    continue
                parsed = _parse_segment(_read_fd(fd))
                self._writer.store(parsed)
                self._retire(path, parsed)
            finally:
                os.close(fd)

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
        """Close the open batch and return once every record so far is in the store
        (which survives a power loss: it is written with SQLite's synchronous=FULL)."""
        self._process(submit=False, force=True)

    def flush(self) -> int:
        """Close the open batch, write it, submit what waits; return how many batches
        are still waiting (0 once the ledger has taken them all)."""
        self._process(submit=True, force=True)
        return self.pending()

    def pending(self) -> int:
        with self._reading() as db:
            row = db.execute("SELECT COUNT(*) FROM batches WHERE status='pending'")
            return int(row.fetchone()[0])

    def close(self) -> None:
        """Write and submit what waits, stop the background thread and close the store.
        A batch that cannot be written stays in the journal for the next log."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
        try:
            if self._thread is not None:
                self._stop = True
                self._wake.set()
                self._thread.join()
                self._thread = None
            self._process(submit=True, force=True)
        finally:
            with self._lock:
                for seg in self._closed:
                    os.close(seg.fd)
                self._closed.clear()
            if self._worker is not None:
                self._worker.stop()
                self._worker = None
            with self._dblock:
                self._db.close()
                self._db_closed = True

    def __enter__(self) -> ReceiptLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- receipts ------------------------------------------------------------------

    def batch_status(self, request_id: str) -> str:
        """``pending``, ``submitted`` or ``rejected``; NotFoundError if the record is
        not (yet) in the store."""
        return str(self._lookup(request_id)[1]["status"])

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """The store, to read: the log's own connection, or after close() one opened
        read-only for this lookup (receipts stay answerable once the log is closed)."""
        with self._dblock:
            if not self._db_closed:
                try:
                    yield self._db
                except sqlite3.Error as exc:
                    raise StorageError(f"cannot read the receipt store {self.path}: {exc}") from exc
                return
        try:
            db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open the receipt store {self.path}: {exc}") from exc
        try:
            db.execute("PRAGMA busy_timeout=10000")
            yield db
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read the receipt store {self.path}: {exc}") from exc
        finally:
            db.close()

    def _lookup(self, request_id: str) -> tuple[int, dict[str, Any]]:
        auto = _AUTO_ID.match(request_id)
        with self._reading() as db:
            row = db.execute("SELECT seq FROM records WHERE request_id=?", (request_id,)).fetchone()
            if row is None and auto:
                row = db.execute(
                    "SELECT seq FROM auto_ids WHERE prefix=? AND lo<=? AND hi>=?",
                    (auto[1], int(auto[2]), int(auto[2])),
                ).fetchone()
            if row is None:
                raise NotFoundError(f"no record {request_id!r} in {self.path} (flush first?)")
            cur = db.execute(
                "SELECT * FROM batches JOIN batch_leaves USING (seq) WHERE seq=?", (row[0],)
            )
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
        if batch["status"] == "pending" and not self._db_closed:
            self.flush()
            idx, batch = self._lookup(request_id)
        if batch["status"] == "pending":
            raise NotFoundError(
                f"the batch of {request_id!r} was not in the ledger when this receipt log "
                f"closed ({self.last_error or 'not submitted'}); a ReceiptLog opened on "
                f"{self.path} with the ledger submits it"
            )
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
