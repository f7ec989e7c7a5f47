"""RFC 9162 Merkle tree hashing: roots, inclusion and consistency proofs, and their checks.

Proof generation reads perfect subtree hashes through a ``NodeReader`` so the same code serves
an in-memory tree (``MemoryTree``) and a tiled log on storage.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

from ..errors import MalformedError, ProofError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MemoryTree",
    "NodeReader",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_from_inclusion",
    "root_of",
    "subtree_hash",
    "tree_root",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

# Module-level alias of an immutable function: saves an attribute lookup per hash on the hot path.
_sha256 = hashlib.sha256

NodeReader = Callable[[int, int], bytes]
"""``read(height, index)``: hash of the perfect subtree over leaves
``[index * 2**height, (index + 1) * 2**height)``."""


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 leaf hash: SHA-256(0x00 || data)."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 interior node hash: SHA-256(0x01 || left || right)."""
    return _sha256(b"\x01" + left + right).digest()


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """Merkle Tree Hash of the given leaf hashes (``EMPTY_ROOT`` for none).

    Hashes level by level, carrying an odd last node up unchanged; that builds exactly the
    RFC 9162 shape (left subtree = largest power of two below n) without recursion.
    """
    n = len(leaf_hashes)
    if n == 0:
        return EMPTY_ROOT
    if set(map(len, leaf_hashes)) != {HASH_SIZE}:
        raise MalformedError(f"every leaf hash must be {HASH_SIZE} bytes")
    sha = _sha256
    level = b"".join(leaf_hashes)
    # Pairs are adjacent in the joined buffer, so one slice feeds each node hash.
    while n > 1:
        pairs = n >> 1
        end = pairs * 64
        nxt = b"".join([sha(b"\x01" + level[i : i + 64]).digest() for i in range(0, end, 64)])
        if n & 1:
            nxt += level[end:]
        level = nxt
        n = pairs + (n & 1)
    return level


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} is {len(value)} bytes, not {HASH_SIZE}")


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root that an inclusion proof for ``leaf`` at ``index`` in a tree of ``size`` implies.

    Raises ProofError when the proof cannot be one for that position (wrong length, bad
    hash sizes, index out of range). Same result as the FORMATS.md loop: the path splits into
    ``inner`` siblings below the point where the leaf's path leaves the left edge of the right
    border, then ``border`` left siblings that are hashed in from the left.
    """
    if index < 0 or size < 0:
        raise ProofError(f"negative index {index} or size {size}")
    if index >= size:
        raise ProofError(f"index {index} is not below tree size {size}")
    _check_hash(leaf, "leaf hash")
    inner = (index ^ (size - 1)).bit_length()
    border = (index >> inner).bit_count()
    if len(proof) != inner + border:
        raise ProofError(
            f"inclusion proof has {len(proof)} hashes; index {index} in size {size} needs "
            f"{inner + border}"
        )
    sha = _sha256
    r = leaf
    for i, p in enumerate(proof):
        if len(p) != HASH_SIZE:
            raise ProofError(f"inclusion proof hash {i} is {len(p)} bytes, not {HASH_SIZE}")
        if i < inner and not (index >> i) & 1:
            r = sha(b"\x01" + r + p).digest()
        else:
            r = sha(b"\x01" + p + r).digest()
    return r


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf`` is at ``index`` in the tree of ``size`` with ``root``.

    Returns nothing; raises ProofError if the proof fails.
    """
    _check_hash(root, "root")
    if root_from_inclusion(index, size, leaf, proof) != root:
        raise ProofError(f"inclusion proof for index {index} does not lead to the tree root")


def verify_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree (size1, root1) is a prefix of (size2, root2); ProofError if not.

    Proofs from size 0 are rejected, as the RFC 9162 conformance vectors require; a caller
    that treats size 0 as "no previous tree" must handle it before calling.
    """
    if size1 < 0 or size2 < 0:
        raise ProofError(f"negative tree size {size1} or {size2}")
    if size2 < size1:
        raise ProofError(f"old size {size1} is larger than new size {size2}")
    if size1 == 0:
        raise ProofError("a consistency proof from the empty tree proves nothing")
    if size1 == size2:
        # The vectors accept equal sizes with an empty proof whatever the root length:
        # there is nothing to hash, only the two roots to compare.
        if proof:
            raise ProofError("sizes are equal but the consistency proof is not empty")
        if root1 != root2:
            raise ProofError(f"two different roots for the same tree size {size1}")
        return
    if not proof:
        raise ProofError("consistency proof is empty")
    _check_hash(root1, "old root")
    _check_hash(root2, "new root")
    for i, p in enumerate(proof):
        if len(p) != HASH_SIZE:
            raise ProofError(f"consistency proof hash {i} is {len(p)} bytes, not {HASH_SIZE}")

    # The proof is the inclusion path of leaf size1-1 in size2, minus the levels below the
    # lowest set bit of size1 (the subtree there is whole in both trees), plus that subtree's
    # hash first unless it is the entire old tree (then it is root1 itself).
    inner = ((size1 - 1) ^ (size2 - 1)).bit_length()
    shift = (size1 & -size1).bit_length() - 1
    border = ((size1 - 1) >> inner).bit_count()
    inner -= shift
    if size1 == 1 << shift:
        seed, rest = root1, proof
    else:
        seed, rest = proof[0], proof[1:]
    if len(rest) != inner + border:
        raise ProofError(
            f"consistency proof {size1} -> {size2} has {len(proof)} hashes; expected "
            f"{len(proof) - len(rest) + inner + border}"
        )
    mask = (size1 - 1) >> shift
    sha = _sha256
    r1 = r2 = seed
    for i, p in enumerate(rest):
        if i >= inner or (mask >> i) & 1:
            r1 = sha(b"\x01" + p + r1).digest()
            r2 = sha(b"\x01" + p + r2).digest()
        else:
            # Right siblings exist only in the new tree.
            r2 = sha(b"\x01" + r2 + p).digest()
    if r1 != root1:
        raise ProofError(f"consistency proof does not lead to the old root at size {size1}")
    if r2 != root2:
        raise ProofError(f"consistency proof does not lead to the new root at size {size2}")


def subtree_hash(read: NodeReader, lo: int, hi: int) -> bytes:
    """RFC 9162 Merkle Tree Hash of leaves ``[lo, hi)`` from perfect subtree hashes.

    When ``lo`` is aligned to the largest power of two in ``hi - lo`` (true for every range a
    proof needs) the range is a run of perfect subtrees of decreasing size, one per set bit
    of its length, so it costs one read per set bit; other ranges fall back to recursion.
    """
    n = hi - lo
    if lo < 0 or n < 0:
        raise MalformedError(f"bad leaf range [{lo}, {hi})")
    if n == 0:
        return EMPTY_ROOT
    top = n.bit_length() - 1
    if lo & ((1 << top) - 1):
        k = 1 << ((n - 1).bit_length() - 1)
        return node_hash(subtree_hash(read, lo, lo + k), subtree_hash(read, lo + k, hi))
    if n & (n - 1) == 0:
        return read(top, lo >> top)
    chunks: list[bytes] = []
    pos = lo
    for h in range(top, -1, -1):
        if (n >> h) & 1:
            chunks.append(read(h, pos >> h))
            pos += 1 << h
    sha = _sha256
    r = chunks[-1]
    for c in reversed(chunks[:-1]):
        r = sha(b"\x01" + c + r).digest()
    return r


def tree_root(read: NodeReader, size: int) -> bytes:
    """Root of the tree of the first ``size`` leaves."""
    return subtree_hash(read, 0, size)


def inclusion_proof(read: NodeReader, index: int, size: int) -> list[bytes]:
    """RFC 9162 inclusion path for leaf ``index`` in the tree of ``size``, leaf end first."""
    if not 0 <= index < size:
        raise MalformedError(f"index {index} is not in a tree of size {size}")
    path: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = 1 << ((hi - lo - 1).bit_length() - 1)
        mid = lo + k
        if index < mid:
            path.append(subtree_hash(read, mid, hi))
            hi = mid
        else:
            path.append(read((k - 1).bit_length(), lo >> (k - 1).bit_length()))
            lo = mid
    path.reverse()
    return path


def consistency_proof(read: NodeReader, size1: int, size2: int) -> list[bytes]:
    """RFC 9162 consistency proof from the tree of ``size1`` to the tree of ``size2``."""
    if not 0 < size1 <= size2:
        raise MalformedError(f"no consistency proof from size {size1} to size {size2}")
    path: list[bytes] = []
    lo, hi = 0, size2
    whole = True  # the SUBPROOF flag b: still on the old tree's own root
    while hi != size1:
        k = 1 << ((hi - lo - 1).bit_length() - 1)
        mid = lo + k
        if size1 <= mid:
            path.append(subtree_hash(read, mid, hi))
            hi = mid
        else:
            path.append(read((k - 1).bit_length(), lo >> (k - 1).bit_length()))
            lo = mid
            whole = False
    if not whole:
        path.append(subtree_hash(read, lo, hi))
    path.reverse()
    return path


class MemoryTree:
    """Leaf hashes held in memory with every perfect node cached, so node reads are O(1).

    For tests and small trees; a log on storage reads its nodes from tiles instead.
    """

    __slots__ = ("_levels",)

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        # _levels[h][i] is the perfect node (h, i); only complete nodes are stored.
        self._levels: list[list[bytes]] = [[]]
        leaves = list(leaf_hashes)
        for leaf in leaves:
            if len(leaf) != HASH_SIZE:
                raise MalformedError(f"leaf hash is {len(leaf)} bytes, not {HASH_SIZE}")
        self._levels[0] = leaves
        sha = _sha256
        below = leaves
        while len(below) > 1:
            level = [
                sha(b"\x01" + below[i] + below[i + 1]).digest() for i in range(0, len(below) - 1, 2)
            ]
            self._levels.append(level)
            below = level

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def append(self, leaf_hash: bytes) -> None:
        if len(leaf_hash) != HASH_SIZE:
            raise MalformedError(f"leaf hash is {len(leaf_hash)} bytes, not {HASH_SIZE}")
        levels = self._levels
        levels[0].append(leaf_hash)
        h = 0
        # A node completes each time its level reaches an even length.
        while not len(levels[h]) & 1:
            if h + 1 == len(levels):
                levels.append([])
            below = levels[h]
            levels[h + 1].append(_sha256(b"\x01" + below[-2] + below[-1]).digest())
            h += 1

    def node(self, height: int, index: int) -> bytes:
        """The perfect node (height, index); a ``NodeReader``."""
        try:
            if height < 0 or index < 0:
                raise IndexError
            return self._levels[height][index]
        except IndexError:
            raise MalformedError(f"no complete node at height {height}, index {index}") from None

    def _size_arg(self, size: int | None) -> int:
        if size is None:
            return self.size
        if not 0 <= size <= self.size:
            raise MalformedError(f"tree size {size} is outside 0..{self.size}")
        return size

    def root(self, size: int | None = None) -> bytes:
        return tree_root(self.node, self._size_arg(size))

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        return inclusion_proof(self.node, index, self._size_arg(size))

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        return consistency_proof(self.node, size1, self._size_arg(size2))
