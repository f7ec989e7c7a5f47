"""RFC 9162 conformance vectors (transparency-dev/merkle test data) against core.merkle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from modelchain.core.merkle import (
    EMPTY_ROOT,
    MemoryTree,
    leaf_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)
from modelchain.errors import ProofError

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent.parent / "data" / "merkle_rfc9162.json").read_text()
)
LEAVES = [leaf_hash(bytes.fromhex(x)) for x in VECTORS["leaf_inputs_hex"]]


def _hashes(hexes: list[str]) -> list[bytes]:
    return [bytes.fromhex(h) for h in hexes]


@pytest.mark.parametrize("case", VECTORS["inclusion"], ids=lambda c: c["file"])
def test_inclusion_vector(case: dict[str, Any]) -> None:
    args = (
        case["leafIdx"],
        case["treeSize"],
        bytes.fromhex(case["leafHash"]),
        _hashes(case["proof"]),
        bytes.fromhex(case["root"]),
    )
    if case["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("case", VECTORS["consistency"], ids=lambda c: c["file"])
def test_consistency_vector(case: dict[str, Any]) -> None:
    args = (
        case["size1"],
        case["size2"],
        bytes.fromhex(case["root1"]),
        bytes.fromhex(case["root2"]),
        _hashes(case["proof"]),
    )
    if case["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_vector_counts() -> None:
    # FORMATS.md promises 8 leaves and 98 cases of each kind; a short file would pass silently.
    assert len(LEAVES) == 8
    assert len(VECTORS["inclusion"]) == 98
    assert len(VECTORS["consistency"]) == 98


def _happy(kind: str) -> list[dict[str, Any]]:
    # Only the numbered directories are built over the 8 standard leaves; "additional" and
    # "single-entry" cases use made-up hashes.
    return [c for c in VECTORS[kind] if not c["wantErr"] and c["file"].split("/")[1].isdigit()]


def test_happy_inclusion_vectors_reproduced() -> None:
    tree = MemoryTree(LEAVES)
    cases = _happy("inclusion")
    assert len(cases) == 5
    for c in cases:
        assert tree.root(c["treeSize"]).hex() == c["root"]
        assert tree.inclusion_proof(c["leafIdx"], c["treeSize"]) == _hashes(c["proof"])
        assert LEAVES[c["leafIdx"]].hex() == c["leafHash"]


def test_happy_consistency_vectors_reproduced() -> None:
    tree = MemoryTree(LEAVES)
    cases = _happy("consistency")
    assert len(cases) == 5
    for c in cases:
        assert tree.root(c["size1"]).hex() == c["root1"]
        assert tree.root(c["size2"]).hex() == c["root2"]
        assert tree.consistency_proof(c["size1"], c["size2"]) == _hashes(c["proof"])


def test_every_size_and_index_over_vector_leaves() -> None:
    # Every root, inclusion and consistency proof over the 8 leaves verifies, and the roots
    # named anywhere in the happy-path vectors are the ones this tree computes.
    tree = MemoryTree()
    assert tree.root() == EMPTY_ROOT == root_of([])
    known = {}
    for c in _happy("inclusion"):
        known[c["treeSize"]] = c["root"]
    for c in _happy("consistency"):
        known[c["size1"]] = c["root1"]
        known[c["size2"]] = c["root2"]
    for leaf in LEAVES:
        tree.append(leaf)
    for size in range(1, 9):
        root = tree.root(size)
        assert root == root_of(LEAVES[:size])
        if size in known:
            assert root.hex() == known[size]
        for index in range(size):
            verify_inclusion(index, size, LEAVES[index], tree.inclusion_proof(index, size), root)
        for size1 in range(1, size + 1):
            proof = tree.consistency_proof(size1, size)
            verify_consistency(size1, size, tree.root(size1), root, proof)
