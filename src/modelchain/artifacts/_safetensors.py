"""Per-tensor digests of a safetensors file: its header read and checked by hand (no
safetensors or numpy import), and each tensor's SHA-256 taken from the chunks of the same
sequential read that hashes the whole file."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from ..core.manifest import TensorDigest
from ..errors import ArtifactError
from ._walk import changed

__all__ = ["TensorSweep", "tensor_spans"]

_MAX_HEADER = 100_000_000  # the limit the safetensors library enforces
_DTYPE_BITS = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "I64": 64,
    "U64": 64,
    "F64": 64,
    "C64": 64,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
}


@dataclass(frozen=True)
class _Span:
    begin: int  # absolute file offsets
    end: int
    name: str
    dtype: str
    shape: tuple[int, ...]


class TensorSweep:
    """Hashes each tensor's bytes from the chunks of a sequential read of its file."""

    def __init__(self, spans: list[_Span]) -> None:
        self.spans = spans  # sorted, not overlapping
        self.hashers = [hashlib.sha256() for _ in spans]
        self.first = 0  # spans before this one are complete

    def __call__(self, offset: int, chunk: memoryview) -> None:
        end = offset + len(chunk)
        spans = self.spans
        i = self.first
        while i < len(spans) and spans[i].end <= offset:
            i += 1
        self.first = i
        while i < len(spans) and spans[i].begin < end:
            s = spans[i]
            lo, hi = max(s.begin, offset), min(s.end, end)
            if hi > lo:
                self.hashers[i].update(chunk[lo - offset : hi - offset])
            i += 1

    def digests(self) -> tuple[TensorDigest, ...]:
        out = [
            TensorDigest(s.name, s.dtype, s.shape, h.hexdigest())
            for s, h in zip(self.spans, self.hashers, strict=True)
        ]
        return tuple(sorted(out, key=lambda t: t.name))


def _pread_exact(fd: int, n: int, offset: int) -> bytes:
    parts = []
    while n > 0:
        got = os.pread(fd, min(n, 1 << 30), offset)
        if not got:
            break
        parts.append(got)
        n -= len(got)
        offset += len(got)
    return b"".join(parts)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate key in safetensors header")
    return out


def tensor_spans(fd: int, size: int, shown: str) -> list[_Span]:
    """The tensors of a safetensors file, from its header: 8-byte little-endian length, then
    JSON of name -> {dtype, shape, data_offsets (relative to the end of the header)}."""

    def bad(why: str) -> ArtifactError:
        return ArtifactError(f"{shown}: malformed safetensors header: {why}")

    head = _pread_exact(fd, 8, 0)
    if len(head) < 8:
        raise bad("the file is shorter than 8 bytes")
    (n,) = struct.unpack("<Q", head)
    if n > _MAX_HEADER or 8 + n > size:
        raise bad(f"header length {n} does not fit a {size}-byte file")
    raw = _pread_exact(fd, n, 8)
    if len(raw) != n:
        raise changed(shown)
    try:
        header = json.loads(raw, object_pairs_hook=_no_duplicate_keys)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError included
        raise bad(str(exc)) from exc
    if not isinstance(header, dict):
        raise bad("not a JSON object")
    data_start, data_len = 8 + n, size - 8 - n
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict):
            raise bad(f"tensor {name!r} is not an object")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if not isinstance(dtype, str):
            raise bad(f"tensor {name!r} has no dtype")
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            raise bad(f"tensor {name!r} has a bad shape")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(type(o) is int for o in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= data_len
        ):
            raise bad(f"tensor {name!r} has bad data_offsets")
        bits = _DTYPE_BITS.get(dtype)
        if bits is not None:
            count = 1
            for d in shape:
                count *= d
            if count * bits % 8 or count * bits // 8 != offsets[1] - offsets[0]:
                raise bad(f"tensor {name!r}: {dtype}{shape} does not fill its data_offsets")
        spans.append(
            _Span(data_start + offsets[0], data_start + offsets[1], name, dtype, tuple(shape))
        )
    spans.sort(key=lambda s: (s.begin, s.end))
    for a, b in pairwise(spans):
        if b.begin < a.end:
            raise bad(f"tensors {a.name!r} and {b.name!r} overlap")
    return spans
