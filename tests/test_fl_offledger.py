"""The off-ledger half of federated learning: the array digest's bytes are
pinned, FedAvg recomputes bit for bit whatever the byte order it is handed, and
credit shares follow their documented rule."""

from __future__ import annotations

import hashlib
import math
import struct

import numpy as np
import pytest

from modelchain.errors import MalformedError, UsageError
from modelchain.fl.arrays import ARRAYS_FORMAT, arrays_digest, fedavg, fedmedian, figures
from modelchain.fl.attribution import (
    cumulative,
    example_shares,
    leave_one_out,
    shapley_mc,
    shares,
)


def test_the_digest_hashes_exactly_the_documented_bytes() -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([True, False])
    want = hashlib.sha256(b"modelchain-fl-arrays/v1\n" + struct.pack("<Q", 2))
    for dtype, arr in ((b"<f4", a), (b"|b1", b)):
        want.update(struct.pack("<I", len(dtype)) + dtype)
        want.update(struct.pack("<I", arr.ndim) + b"".join(struct.pack("<Q", d) for d in arr.shape))
        data = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        want.update(struct.pack("<Q", len(data)) + data)
    assert arrays_digest([a, b]) == "sha256:" + want.hexdigest()
    assert ARRAYS_FORMAT == "modelchain-fl-arrays/v1"
    # a golden value: changing the encoding changes this
    assert arrays_digest([np.zeros(2, dtype="<f8")]) == arrays_digest([np.zeros(2, dtype=">f8")])
    assert (
        arrays_digest([])
        == "sha256:"
        + hashlib.sha256(b"modelchain-fl-arrays/v1\n" + struct.pack("<Q", 0)).hexdigest()
    )


def test_the_digest_tells_shape_dtype_order_and_layout_apart() -> None:
    a = np.arange(6, dtype=np.float32)
    seen = {
        arrays_digest([a]),
        arrays_digest([a.reshape(2, 3)]),
        arrays_digest([a.astype(np.float64)]),
        arrays_digest([a[:3], a[3:]]),
        arrays_digest([a[3:], a[:3]]),
    }
    assert len(seen) == 5
    # Fortran order or a strided view: the same elements, the same digest
    m = np.arange(6, dtype=np.int64).reshape(2, 3)
    assert arrays_digest([np.asfortranarray(m)]) == arrays_digest([m])
    assert arrays_digest([np.arange(12)[::2]]) == arrays_digest([np.arange(0, 12, 2)])
    for bad in (np.array(["x"]), np.array([object()]), np.zeros(2, dtype=[("a", "<i4")])):
        with pytest.raises(MalformedError):
            arrays_digest([bad])


def test_fedavg_recomputes_bit_for_bit() -> None:
    rng = np.random.default_rng(5)
    updates = [[rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=2)] for _ in range(3)]
    examples = [10, 300, 7]
    first = fedavg(updates, examples)
    swapped = [[a.astype(a.dtype.newbyteorder(">")) for a in u] for u in updates]
    assert arrays_digest(fedavg(swapped, examples)) == arrays_digest(first)
    assert first[0].dtype == np.float32 and first[1].dtype == np.float64
    expected = sum(
        np.asarray(u[1], dtype=np.float64) * n for u, n in zip(updates, examples, strict=True)
    )
    assert np.array_equal(first[1], expected / 317)
    with pytest.raises(MalformedError):
        fedavg(updates, [1, 2])
    with pytest.raises(MalformedError):
        fedavg([updates[0], [updates[1][0]]], [1, 1])
    med = fedmedian(updates)
    assert np.array_equal(med[1], np.median(np.stack([u[1] for u in updates]), axis=0))


def test_figures_are_norm_distance_and_cosine() -> None:
    f = figures([np.array([3.0, 4.0])], [[np.array([3.0, 4.0])], [np.array([3.0, 4.0])]])
    assert (f.norm, f.distance, f.cosine) == (5.0, 0.0, 1.0)
    assert figures([np.array([1.0])]).to_json() == {"norm": 1.0, "distance": None, "cosine": None}
    with pytest.raises(MalformedError):
        figures([np.array([np.nan])])


def test_shares_clip_negative_contributions_and_sum_to_one() -> None:
    assert shares({"a": 3.0, "b": 1.0, "c": -2.0}) == {"a": 0.75, "b": 0.25, "c": 0.0}
    assert shares({"a": -1.0, "b": 0.0}) == {"a": 0.5, "b": 0.5}
    assert example_shares({"a": 30, "b": 10}) == {"a": 0.75, "b": 0.25}
    with pytest.raises(UsageError):
        shares({"a": math.inf})
    with pytest.raises(UsageError):
        example_shares({"a": 0})


def test_shapley_of_an_additive_game_is_each_players_value() -> None:
    value = {"a": 5.0, "b": 3.0, "c": 0.0}

    def score(s: frozenset[str]) -> float:
        return sum(value[p] for p in s)

    assert shapley_mc(value, score, samples=10, seed=1) == pytest.approx(value)
    assert leave_one_out(value, score) == pytest.approx(value)
    again = shapley_mc(value, lambda s: score(s) ** 1.5, samples=30, seed=3)
    assert again == shapley_mc(value, lambda s: score(s) ** 1.5, samples=30, seed=3)
    with pytest.raises(UsageError):
        shapley_mc([str(i) for i in range(11)], score)


def test_cumulative_shares_are_the_mean_over_rounds() -> None:
    total = cumulative([{"a": 1.0}, {"a": 0.5, "b": 0.5}])
    assert total == {"a": 0.75, "b": 0.25}
    assert cumulative([]) == {}
