"""Property tests for core.merkle against a naive recursive RFC 9162 reference written here."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelchain.core.merkle import (
    EMPTY_ROOT,
    MemoryTree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_inclusion,
    root_of,
    subtree_hash,
    tree_root,
    verify_consistency,
    verify_inclusion,
)
from modelchain.errors import MalformedError, ProofError

MAX_SIZE = 2000
LEAVES = [leaf_hash(i.to_bytes(4, "big")) for i in range(MAX_SIZE)]
TREE = MemoryTree(LEAVES)


# --- Reference: RFC 9162 section 2.1, transcribed literally. -------------------------------


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    """Largest power of two strictly below n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: Sequence[bytes]) -> bytes:
    if not d:
        return _sha(b"")
    if len(d) == 1:
        return d[0]
    k = _k(len(d))
    return _sha(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:]))


def ref_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [ref_mth(d)]
    k = _k(len(d))
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


def ref_verify_inclusion(
    index: int, size: int, leaf: bytes, path: Sequence[bytes], root: bytes
) -> bool:
    """The loop of RFC 9162 section 2.1.3.2 (as in FORMATS.md)."""
    if index >= size or any(len(h) != 32 for h in (leaf, root, *path)):
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _sha(b"\x01" + p + r)
            while not (fn & 1 or fn == 0):
                fn >>= 1
                sn >>= 1
        else:
            r = _sha(b"\x01" + r + p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def ref_verify_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, path: Sequence[bytes]
) -> bool:
    """The loop of RFC 9162 section 2.1.4.2, with the vectors' rule for size 0."""
    if size1 == 0 or size2 < size1:
        return False
    if size1 == size2:
        return not path and root1 == root2
    if not path or any(len(h) != 32 for h in (root1, root2, *path)):
        return False
    if size1 & (size1 - 1) == 0:
        path = [root1, *path]
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = _sha(b"\x01" + c + fr)
            sr = _sha(b"\x01" + c + sr)
            while not (fn & 1 or fn == 0):
                fn >>= 1
                sn >>= 1
        else:
            sr = _sha(b"\x01" + sr + c)
        fn >>= 1
        sn >>= 1
    return fr == root1 and sr == root2 and sn == 0


def _accepts_inclusion(*args: object) -> bool:
    try:
        verify_inclusion(*args)  # type: ignore[arg-type]
    except ProofError:
        return False
    return True


def _accepts_consistency(*args: object) -> bool:
    try:
        verify_consistency(*args)  # type: ignore[arg-type]
    except ProofError:
        return False
    return True


def _flip(b: bytes, i: int) -> bytes:
    return b[:i] + bytes([b[i] ^ 0x01]) + b[i + 1 :]


@st.composite
def size_and_index(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(1, MAX_SIZE))
    return size, draw(st.integers(0, size - 1))


@st.composite
def two_sizes(draw: st.DrawFn) -> tuple[int, int]:
    size2 = draw(st.integers(1, MAX_SIZE))
    return draw(st.integers(1, size2)), size2


# --- Basic hashing --------------------------------------------------------------------------


def test_hash_primitives() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert leaf_hash(b"") == _sha(b"\x00")
    assert node_hash(b"a" * 32, b"b" * 32) == _sha(b"\x01" + b"a" * 32 + b"b" * 32)
    assert root_of([]) == EMPTY_ROOT
    assert root_of([LEAVES[0]]) == LEAVES[0]


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 300))
def test_root_of_matches_reference(n: int) -> None:
    assert root_of(LEAVES[:n]) == ref_mth(LEAVES[:n])


def test_root_of_rejects_bad_leaf() -> None:
    with pytest.raises(MalformedError):
        root_of([LEAVES[0], b"short"])
    with pytest.raises(MalformedError):
        root_of([b"x" * 31, b"x" * 33])


# --- Inclusion ------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(size_and_index())
def test_inclusion_proof_matches_reference_and_verifies(si: tuple[int, int]) -> None:
    size, index = si
    proof = TREE.inclusion_proof(index, size)
    assert proof == ref_path(index, LEAVES[:size])
    root = TREE.root(size)
    verify_inclusion(index, size, LEAVES[index], proof, root)
    assert root_from_inclusion(index, size, LEAVES[index], proof) == root
    assert ref_verify_inclusion(index, size, LEAVES[index], proof, root)


@settings(max_examples=60, deadline=None)
@given(size_and_index(), st.data())
def test_inclusion_tampering_fails(si: tuple[int, int], data: st.DataObject) -> None:
    size, index = si
    leaf = LEAVES[index]
    proof = TREE.inclusion_proof(index, size)
    root = TREE.root(size)
    byte = data.draw(st.integers(0, 31))
    with pytest.raises(ProofError):
        verify_inclusion(index, size, _flip(leaf, byte), proof, root)
    with pytest.raises(ProofError):
        verify_inclusion(index, size, leaf, proof, _flip(root, byte))
    for i in range(len(proof)):
        bad = list(proof)
        bad[i] = _flip(bad[i], byte)
        with pytest.raises(ProofError):
            verify_inclusion(index, size, leaf, bad, root)
    with pytest.raises(ProofError):
        verify_inclusion(index, size, leaf, [*proof, root], root)
    if proof:
        with pytest.raises(ProofError):
            verify_inclusion(index, size, leaf, proof[:-1], root)
        with pytest.raises(ProofError):
            verify_inclusion(index, size, leaf, proof[1:], root)
    with pytest.raises(ProofError):
        verify_inclusion(index, size, leaf[:31], proof, root)


@settings(max_examples=60, deadline=None)
@given(size_and_index(), st.integers(0, 4 * MAX_SIZE), st.integers(0, 4 * MAX_SIZE))
def test_inclusion_other_index_or_size(si: tuple[int, int], index2: int, size2: int) -> None:
    """Another index in the same tree never verifies. Another size verifies exactly when the
    RFC loop accepts it: an inclusion path alone does not fix the tree size (index 0 of 3 and
    of 4 hash alike), which is why a root is always checked together with its size."""
    size, index = si
    leaf = LEAVES[index]
    proof = TREE.inclusion_proof(index, size)
    root = TREE.root(size)
    candidates = {index2, index + 1, index - 1, index ^ 2, index * 2, index // 2} - {index}
    for other in candidates:
        with pytest.raises(ProofError):
            verify_inclusion(other, size, leaf, proof, root)
    for other_size in {size2, size + 1, size - 1, size * 2, size // 2} - {size}:
        if other_size < 0:
            continue
        want = ref_verify_inclusion(index, other_size, leaf, proof, root)
        assert _accepts_inclusion(index, other_size, leaf, proof, root) == want


def test_inclusion_size_ambiguity_is_what_rfc_does() -> None:
    # Documented above: the same path proves index 0 in sizes 3 and 4 against root(3).
    proof = TREE.inclusion_proof(0, 3)
    verify_inclusion(0, 4, LEAVES[0], proof, TREE.root(3))
    assert ref_verify_inclusion(0, 4, LEAVES[0], proof, TREE.root(3))


def test_inclusion_proof_arguments() -> None:
    for index, size in [(0, 0), (5, 5), (-1, 3), (6, 5)]:
        with pytest.raises(MalformedError):
            inclusion_proof(TREE.node, index, size)
    for index, size in [(0, 0), (5, 5), (-1, 3)]:
        with pytest.raises(ProofError):
            root_from_inclusion(index, size, LEAVES[0], [])


# --- Consistency ----------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(two_sizes())
def test_consistency_proof_matches_reference_and_verifies(sizes: tuple[int, int]) -> None:
    size1, size2 = sizes
    proof = TREE.consistency_proof(size1, size2)
    assert proof == ref_subproof(size1, LEAVES[:size2], True)
    root1, root2 = TREE.root(size1), TREE.root(size2)
    verify_consistency(size1, size2, root1, root2, proof)
    assert ref_verify_consistency(size1, size2, root1, root2, proof)


@settings(max_examples=60, deadline=None)
@given(two_sizes(), st.data())
def test_consistency_tampering_fails(sizes: tuple[int, int], data: st.DataObject) -> None:
    size1, size2 = sizes
    proof = TREE.consistency_proof(size1, size2)
    root1, root2 = TREE.root(size1), TREE.root(size2)
    byte = data.draw(st.integers(0, 31))
    with pytest.raises(ProofError):
        verify_consistency(size1, size2, _flip(root1, byte), root2, proof)
    with pytest.raises(ProofError):
        verify_consistency(size1, size2, root1, _flip(root2, byte), proof)
    for i in range(len(proof)):
        bad = list(proof)
        bad[i] = _flip(bad[i], byte)
        with pytest.raises(ProofError):
            verify_consistency(size1, size2, root1, root2, bad)
    with pytest.raises(ProofError):
        verify_consistency(size1, size2, root1, root2, [*proof, root1])
    if proof:
        with pytest.raises(ProofError):
            verify_consistency(size1, size2, root1, root2, proof[:-1])
    if size1 != size2:
        with pytest.raises(ProofError):
            verify_consistency(size1, size2, root2, root1, proof)


@settings(max_examples=60, deadline=None)
@given(two_sizes(), st.integers(0, 4 * MAX_SIZE), st.integers(0, 4 * MAX_SIZE))
def test_consistency_other_sizes(sizes: tuple[int, int], a: int, b: int) -> None:
    """With either size changed the verdict is the RFC loop's (which rejects all these for the
    trees built here, except when the change happens not to alter the hashing)."""
    size1, size2 = sizes
    proof = TREE.consistency_proof(size1, size2)
    root1, root2 = TREE.root(size1), TREE.root(size2)
    for s1, s2 in {
        (a, size2),
        (size1, b),
        (size1 + 1, size2),
        (size1 - 1, size2),
        (size1 ^ 2, size2),
        (size1, size2 + 1),
        (size1, size2 - 1),
        (size1, size2 * 2),
        (size1, size2 // 2),
        (0, size2),
    } - {(size1, size2)}:
        if s1 < 0 or s2 < 0:
            continue
        want = ref_verify_consistency(s1, s2, root1, root2, proof)
        assert _accepts_consistency(s1, s2, root1, root2, proof) == want
        if s1 == 0 or s2 < s1:
            assert not want


def test_consistency_proof_arguments() -> None:
    for size1, size2 in [(0, 0), (0, 5), (6, 5), (-1, 5)]:
        with pytest.raises(MalformedError):
            consistency_proof(TREE.node, size1, size2)
    assert TREE.consistency_proof(7, 7) == []


# --- NodeReader and MemoryTree --------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.integers(0, MAX_SIZE), st.integers(0, MAX_SIZE))
def test_subtree_hash_equals_root_of_slice(a: int, b: int) -> None:
    lo, hi = min(a, b), max(a, b)
    want = root_of(LEAVES[lo:hi])
    assert subtree_hash(TREE.node, lo, hi) == want
    if hi - lo <= 300:
        assert want == ref_mth(LEAVES[lo:hi])


def test_subtree_hash_bad_range() -> None:
    with pytest.raises(MalformedError):
        subtree_hash(TREE.node, 5, 4)
    with pytest.raises(MalformedError):
        subtree_hash(TREE.node, -1, 4)
    assert tree_root(TREE.node, 0) == EMPTY_ROOT


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 600))
def test_memory_tree_matches_reference(n: int) -> None:
    built = MemoryTree(LEAVES[:n])
    grown = MemoryTree()
    for leaf in LEAVES[:n]:
        grown.append(leaf)
    assert built.size == grown.size == n
    for size in range(0, n + 1):
        want = ref_mth(LEAVES[:size]) if size <= 64 or size == n else root_of(LEAVES[:size])
        assert built.root(size) == grown.root(size) == want
    assert built.root() == root_of(LEAVES[:n])
    for height in range(n.bit_length()):
        for index in range(n >> height):
            assert built.node(height, index) == grown.node(height, index)
    if n:
        index = n // 3
        assert built.inclusion_proof(index) == ref_path(index, LEAVES[:n])
        assert built.consistency_proof(max(1, n // 2)) == ref_subproof(
            max(1, n // 2), LEAVES[:n], True
        )


def test_memory_tree_errors() -> None:
    tree = MemoryTree(LEAVES[:5])
    with pytest.raises(MalformedError):
        tree.root(6)
    with pytest.raises(MalformedError):
        tree.root(-1)
    with pytest.raises(MalformedError):
        tree.node(1, 2)  # leaves 4..5 are not a complete pair yet
    with pytest.raises(MalformedError):
        tree.node(0, -1)
    with pytest.raises(MalformedError):
        tree.node(9, 0)
    with pytest.raises(MalformedError):
        tree.append(b"short")
    with pytest.raises(MalformedError):
        MemoryTree([b"short"])
    with pytest.raises(MalformedError):
        tree.inclusion_proof(5)
    with pytest.raises(MalformedError):
        tree.consistency_proof(3, 6)
    assert tree.size == 5
