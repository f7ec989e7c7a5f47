"""The receipt journal: the segment file format a log appends records to, read back into
batches (leaves, tree, index rows). Pure but for ``read_fd``: bytes in, values out.

A segment starts with a header: magic, format, the length of a canonical JSON object
naming its session ({env, first_seq, model, session, v, version}), the JSON, and a
CRC-32 of all of that. Records follow, each: sequence number (one more than the one
before), time_ms, request id length (0: automatic), meta length, input salt, output salt,
input hash, output hash, then the request id (UTF-8), the meta (canonical JSON) and a
CRC-32 of the record. Little-endian.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..core import canonical
from ..core.merkle import root_of
from ..errors import Error, MalformedError, UsageError
from .encoding import RECEIPT_VERSION

__all__ = [
    "Batch",
    "JournalRecord",
    "Parsed",
    "Session",
    "build_batch",
    "check_extension",
    "pack_record",
    "parse_segment",
    "read_fd",
    "records_after",
    "segment_head",
]

_MAGIC = b"MCRJ"
_FORMAT = 1
_HEAD = struct.Struct("<4sBI")
_REC = struct.Struct("<QqHI32s32s32s")
_PLAIN = struct.Struct("<QqHI32s32s32sI")  # a record without request id or meta
pack_record = _REC.pack
"""The fixed part of a record (``record()`` appends the extension and the CRC-32)."""
_MAX_HEAD = 1 << 16
_MAX_RID = 0xFFFF
_MAX_META = 1 << 24
_SAFE_ID = re.compile(r"[A-Za-z0-9._:/@+=-]{1,200}\Z")
_SESSION = re.compile(r"[0-9a-f]{16}\Z")
_crc32 = zlib.crc32

# (sequence number, time_ms, request id length, meta length, salts, input hash,
# output hash, CRC)
JournalRecord = tuple[int, int, int, int, bytes, bytes, bytes, int]


@dataclass(frozen=True)
class Session:
    """Who wrote a journal segment: the session id (also the prefix of its automatic
    request ids) and the model version its leaves commit to; ``env`` is the
    environment its batches name, if pinned."""

    id: str
    model: str
    version: int
    env: str | None


@dataclass
class Parsed:
    """A segment read back. ``problem`` says why reading stopped before the end;
    ``damaged`` is set when bytes follow it (a torn last write leaves none)."""

    session: Session | None = None
    first_seq: int = 0
    recs: list[JournalRecord] = field(default_factory=list)
    ext: dict[int, tuple[str | None, bytes | None]] = field(default_factory=dict)
    problem: str | None = None
    damaged: bool = False


def segment_head(session: Session, first_seq: int) -> bytes:
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


def _read_head(data: bytes, out: Parsed) -> int:
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
        out.session = Session(sid, model, _int_field(head["version"], 1), env)
        out.first_seq = _int_field(head["first_seq"], 1)
    except (Error, KeyError) as exc:
        out.problem, out.damaged = f"the segment header is unreadable: {exc}", True
        return -1
    return end + 4


def parse_segment(data: bytes, plain: bool = False) -> Parsed:
    """Read a segment. ``plain``: this process wrote it and no record has a request id
    or meta, so the records are read in bulk without checking what it wrote.

    Reading stops at the first record that is incomplete, fails its checksum or
    breaks the sequence; records before it are returned. Never raises."""
    out = Parsed()
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
class Batch:
    """A batch ready for the store: its leaves (canonical JSON, one a line), salts,
    root and what the store indexes it by."""

    session: Session
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


def build_batch(
    session: Session, recs: list[JournalRecord], ext: Mapping[int, tuple[str | None, bytes | None]]
) -> Batch:
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
    sha = hashlib.sha256
    times = [r[1] for r in recs]
    return Batch(
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
    session: Session,
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


def records_after(recs: list[JournalRecord], upto: int) -> int:
    """Index of the first record numbered above ``upto`` (records ascend by one)."""
    if not recs or recs[0][0] > upto:
        return 0
    return min(len(recs), upto - recs[0][0] + 1)


def read_fd(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    chunks, pos = [], 0
    while pos < size:
        chunk = os.pread(fd, size - pos, pos)
        if not chunk:
            break
        chunks.append(chunk)
        pos += len(chunk)
    return b"".join(chunks)


def check_extension(request_id: object, meta: Any) -> tuple[bytes, int, int]:
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
