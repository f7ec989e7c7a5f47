"""The canonical digest of a list of arrays and the aggregates recomputed from
them bit for bit (format ``modelchain-fl-arrays/v1``, in FORMATS below).

The digest is SHA-256 over::

    b"modelchain-fl-arrays/v1\\n"
    u64le(number of arrays)
    for each array, in order:
        u32le(len(dtype)) dtype        numpy's dtype string, little-endian: "<f4", "|u1", "|b1"
        u32le(ndim) u64le(dim)...      the shape
        u64le(len(data)) data          the elements in C order, little-endian

and is written ``sha256:<64 hex>``. Object, string and structured arrays are
refused. ``fedavg`` accumulates in float64 in the order given (the ledger's:
by Flower node id), ``acc += w_i * n_i`` then ``acc / sum(n_i)``, and casts back
to each array's dtype: elementwise IEEE operations only, so every machine
gets the same bytes. ``fedmedian`` is the elementwise median in float64.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..errors import MalformedError

__all__ = ["ARRAYS_FORMAT", "UpdateFigures", "arrays_digest", "fedavg", "fedmedian", "figures"]

ARRAYS_FORMAT = "modelchain-fl-arrays/v1"
_KINDS = frozenset("biufc")

Arrays = Sequence[npt.NDArray[np.generic]]


def _little(a: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
    if a.dtype.kind not in _KINDS:
        raise MalformedError(
            f"{ARRAYS_FORMAT} digests numeric and boolean arrays, not dtype {a.dtype.str!r}"
        )
    a = np.ascontiguousarray(a)
    if a.dtype.byteorder == ">" or (a.dtype.byteorder == "=" and not _NATIVE_LITTLE):
        a = a.byteswap().view(a.dtype.newbyteorder("<"))
    return a


_NATIVE_LITTLE = np.dtype("=u4").str == "<u4"


def arrays_digest(arrays: Arrays) -> str:
    """``sha256:<hex>`` of ``arrays`` in the ``modelchain-fl-arrays/v1`` encoding."""
    h = hashlib.sha256(ARRAYS_FORMAT.encode() + b"\n")
    h.update(struct.pack("<Q", len(arrays)))
    for raw in arrays:
        a = _little(np.asarray(raw))
        dtype = a.dtype.str.encode()
        h.update(struct.pack("<I", len(dtype)) + dtype)
        h.update(struct.pack("<I", a.ndim) + b"".join(struct.pack("<Q", d) for d in a.shape))
        data = a.reshape(-1).view(np.uint8).data  # C order, contiguous: no copy
        h.update(struct.pack("<Q", data.nbytes))
        h.update(data)
    return "sha256:" + h.hexdigest()


def _same_shapes(updates: Sequence[Arrays]) -> None:
    if not updates:
        raise MalformedError("an aggregate needs at least one update")
    shapes = [tuple(np.shape(a) for a in u) for u in updates]
    if any(s != shapes[0] for s in shapes):
        raise MalformedError("the updates' arrays differ in number or shape")


def fedavg(updates: Sequence[Arrays], examples: Sequence[int]) -> list[npt.NDArray[np.generic]]:
    """The example-weighted mean of ``updates`` (one list of arrays each, in the
    ledger's order), canonically: see the module's docstring."""
    _same_shapes(updates)
    if len(examples) != len(updates) or any(n <= 0 for n in examples):
        raise MalformedError("one positive example count per update")
    total = float(sum(examples))
    out = []
    for i, first in enumerate(updates[0]):
        acc = np.zeros(np.shape(first), dtype=np.float64)
        for update, n in zip(updates, examples, strict=True):
            acc += np.asarray(update[i], dtype=np.float64) * float(n)
        out.append((acc / total).astype(np.asarray(first).dtype))
    return out


def fedmedian(updates: Sequence[Arrays]) -> list[npt.NDArray[np.generic]]:
    """The elementwise median of ``updates``, in float64, cast back."""
    _same_shapes(updates)
    if len(updates) == 1:  # the median of one is itself: no sort of a copy
        return [np.asarray(a, dtype=np.float64).astype(np.asarray(a).dtype) for a in updates[0]]
    out = []
    for i, first in enumerate(updates[0]):
        stacked = np.stack([np.asarray(u[i], dtype=np.float64) for u in updates])
        out.append(np.median(stacked, axis=0).astype(np.asarray(first).dtype))
    return out


@dataclass(frozen=True)
class UpdateFigures:
    """What a task's acceptance rule reads of an update (``update.norm`` ...)."""

    norm: float
    distance: float | None
    cosine: float | None

    def to_json(self) -> dict[str, float | None]:
        return {"norm": self.norm, "distance": self.distance, "cosine": self.cosine}


def _flat(arrays: Arrays) -> npt.NDArray[np.float64]:
    if not arrays:
        return np.zeros(0, dtype=np.float64)
    return np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays])


def figures(update: Arrays, others: Sequence[Arrays] = ()) -> UpdateFigures:
    """The L2 norm of ``update`` (pass deltas from the round's starting model to
    read a norm as a step size), and its L2 distance and cosine to the
    elementwise median of ``others`` (None without others). Non-finite figures
    are refused: the ledger carries only finite numbers."""
    u = _flat(update)
    norm = float(np.sqrt(np.dot(u, u)))
    distance = cosine = None
    if others:
        m = _flat(fedmedian(list(others)))
        if m.shape != u.shape:
            raise MalformedError("the update and the others differ in size")
        distance = float(np.sqrt(np.dot(u - m, u - m)))
        mn = float(np.sqrt(np.dot(m, m)))
        cosine = float(np.dot(u, m) / (norm * mn)) if norm > 0 and mn > 0 else 0.0
        cosine = max(-1.0, min(1.0, cosine))
    for v in (norm, distance, cosine):
        if v is not None and not math.isfinite(v):
            raise MalformedError("the update's figures are not finite (NaN or inf in its arrays)")
    return UpdateFigures(norm, distance, cosine)
