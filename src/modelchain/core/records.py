"""Record-level Merkle trees over the rows of a table (scheme ``modelchain-records-v1``).

Owns the salted leaf format, the one-pass tree that a reader of any size can feed, and
``RecordProof``: one row, its salt and its inclusion path, checkable offline against the
(root, row count) a ledger recorded for the dataset version.

Leaf ``i`` is the RFC 9162 leaf hash of the canonical JSON
``{"record": <row object>, "row": i, "salt": base64(salt_i)}`` where
``salt_i = HMAC-SHA256(record_key, b"modelchain/record-salt/v1" || u64be(i))``. The salt is
what keeps a proof from leaking the other rows: their leaf hashes appear as siblings in the
path, and without the owner's 32-byte ``record_key`` a low-entropy row cannot be guessed
from its hash. Salts are per row, so revealing one salt reveals nothing about another.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import MalformedError, ProofError
from .b64 import b64, unb64_canonical
from .canonical import dumps
from .merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    MemoryTree,
    NodeReader,
    inclusion_proof,
    leaf_hash,
    root_of,
    tree_root,
    verify_inclusion,
)

__all__ = [
    "RECORD_KEY_SIZE",
    "RECORD_SCHEME",
    "RecordProof",
    "RecordTree",
    "record_leaf",
    "record_salt",
    "verify_record_proof",
]

RECORD_SCHEME = "modelchain-records-v1"
RECORD_KEY_SIZE = 32
_SALT_DOMAIN = b"modelchain/record-salt/v1"
_MAX_ROW = 2**64 - 1
# A tree of fewer than 2**64 leaves has an inclusion path of at most 64 hashes.
_MAX_PATH = 64
_PROOF_FIELDS = frozenset({"scheme", "row", "count", "record", "salt", "path", "root"})


def record_salt(record_key: bytes, row: int) -> bytes:
    """The 32-byte salt of row ``row``: HMAC-SHA256(record_key, domain || u64be(row))."""
    if len(record_key) != RECORD_KEY_SIZE:
        raise MalformedError(f"a record key is {RECORD_KEY_SIZE} bytes, not {len(record_key)}")
    if not 0 <= row <= _MAX_ROW:
        raise MalformedError(f"row {row} is outside 0..2**64-1")
    return hmac.digest(record_key, _SALT_DOMAIN + row.to_bytes(8, "big"), "sha256")


def record_leaf(row: int, salt: bytes, record: Mapping[str, Any]) -> bytes:
    """The leaf data (not its hash) for ``record`` at ``row``: canonical JSON bytes.

    Raises MalformedError for a bad row or salt, or a record that is not a JSON object
    canonical JSON can carry (NaN, integers beyond +-(2**53-1), non-string keys).
    """
    if isinstance(row, bool) or not 0 <= row <= _MAX_ROW:
        raise MalformedError(f"row {row} is outside 0..2**64-1")
    if len(salt) != HASH_SIZE:
        raise MalformedError(f"a record salt is {HASH_SIZE} bytes, not {len(salt)}")
    if not isinstance(record, Mapping):
        raise MalformedError("a record must be a JSON object")
    return dumps({"record": dict(record), "row": row, "salt": b64(salt)})


class _ChunkedTree:
    """An RFC 9162 tree fed one leaf hash at a time, for trees too big to hold.

    Keeps the root of every complete chunk of ``2**chunk_height`` leaves, the leaves of the
    chunk being filled and, when ``keep`` names a leaf, the leaves of that leaf's chunk:
    32 bytes per chunk plus at most two chunks (4 MiB at the default height of 16). Every
    node an inclusion path or the root needs is either a perfect node over whole chunks or
    lies inside the kept chunk or the last, partial one, so nothing else is needed.
    """

    __slots__ = ("_chunk", "_current", "_height", "_keep", "_kept", "_roots", "_size")

    def __init__(self, keep: int | None = None, chunk_height: int = 16) -> None:
        if not 0 <= chunk_height <= 32:
            raise MalformedError(f"chunk height {chunk_height} is outside 0..32")
        if keep is not None and keep < 0:
            raise MalformedError(f"cannot keep negative leaf index {keep}")
        self._height = chunk_height
        self._chunk = 1 << chunk_height
        self._keep = keep
        self._roots: list[bytes] = []
        self._current: list[bytes] = []
        self._kept: list[bytes] | None = None
        self._size = 0

    @property
    def size(self) -> int:
        return self._size

    def append(self, leaf: bytes) -> None:
        if len(leaf) != HASH_SIZE:
            raise MalformedError(f"leaf hash is {len(leaf)} bytes, not {HASH_SIZE}")
        current = self._current
        current.append(leaf)
        self._size += 1
        if len(current) == self._chunk:
            self._roots.append(root_of(current))
            if self._keep is not None and self._keep >> self._height == len(self._roots) - 1:
                self._kept = current
            self._current = []

    def _reader(self) -> NodeReader:
        chunks = MemoryTree(self._roots)
        # Below chunk height the only nodes a root or path reads lie in the partial last
        # chunk or in the kept one.
        partial = len(self._roots)
        kept = None if self._keep is None else self._keep >> self._height
        inner: dict[int, MemoryTree] = {}
        height = self._height

        def read(h: int, index: int) -> bytes:
            if h >= height:
                return chunks.node(h - height, index)
            chunk = (index << h) >> height
            tree = inner.get(chunk)
            if tree is None:
                if chunk == partial:
                    tree = MemoryTree(self._current)
                elif chunk == kept and self._kept is not None:
                    tree = MemoryTree(self._kept)
                else:
                    raise MalformedError(f"leaf chunk {chunk} was not kept")
                inner[chunk] = tree
            return tree.node(h, index - (chunk << (height - h)))

        return read

    def root(self) -> bytes:
        """Root of the leaves appended so far (``EMPTY_ROOT`` for none)."""
        if self._size == 0:
            return EMPTY_ROOT
        return tree_root(self._reader(), self._size)

    def inclusion_proof(self) -> list[bytes]:
        """Inclusion path of the kept leaf in the tree of the leaves appended so far."""
        if self._keep is None or self._keep >= self._size:
            raise MalformedError(f"leaf {self._keep} was not kept or is not in the tree")
        return inclusion_proof(self._reader(), self._keep, self._size)


@dataclass(frozen=True)
class RecordProof:
    """One row of a table, its salt and its inclusion path in the table's record tree.

    ``root`` and ``count`` are what the prover claims; a verifier compares them with the
    root and row count the ledger recorded for the dataset version.
    """

    scheme: str
    row: int
    count: int
    record: dict[str, Any]
    salt: bytes
    path: tuple[bytes, ...]
    root: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "scheme": self.scheme,
            "row": self.row,
            "count": self.count,
            "record": self.record,
            "salt": b64(self.salt),
            "path": [b64(h) for h in self.path],
            "root": b64(self.root),
        }

    @classmethod
    def from_json(cls, obj: Any) -> RecordProof:
        """Parse a proof strictly (exact fields, canonical base64, sizes); nothing is verified."""
        if not isinstance(obj, dict):
            raise MalformedError("a record proof must be a JSON object")
        if set(obj) != _PROOF_FIELDS:
            missing = sorted(_PROOF_FIELDS - set(obj))
            extra = sorted(set(obj) - _PROOF_FIELDS)
            raise MalformedError(f"record proof fields: missing {missing}, unexpected {extra}")
        if obj["scheme"] != RECORD_SCHEME:
            raise MalformedError(
                f"record proof scheme is {obj['scheme']!r}; only {RECORD_SCHEME!r} is known"
            )
        row = _count(obj["row"], "record proof row")
        count = _count(obj["count"], "record proof count")
        record = obj["record"]
        if not isinstance(record, dict) or not all(isinstance(k, str) for k in record):
            raise MalformedError("record proof record must be a JSON object")
        dumps(record)  # refuse now what no leaf could be made of
        salt = _hash(obj["salt"], "record proof salt")
        path = obj["path"]
        if not isinstance(path, list) or len(path) > _MAX_PATH:
            raise MalformedError(f"record proof path must be a list of at most {_MAX_PATH}")
        hashes = tuple(_hash(h, f"record proof path hash {i}") for i, h in enumerate(path))
        root = _hash(obj["root"], "record proof root")
        return cls(RECORD_SCHEME, row, count, record, salt, hashes, root)


class RecordTree:
    """The record tree of a table, fed one row at a time in row order.

    ``keep`` names the row to prove (if any): its record and the leaves around it are kept
    so ``proof()`` can be called once the last row is in. Memory is 32 bytes per
    ``2**chunk_height`` rows plus two chunks of leaf hashes (4 MiB at the default height).
    """

    __slots__ = ("_keep", "_kept", "_key", "_mac", "_tree")

    def __init__(self, record_key: bytes, keep: int | None = None, chunk_height: int = 16) -> None:
        record_salt(record_key, 0)  # checks the key once, before any row
        self._key = record_key
        self._mac = hmac.new(record_key, _SALT_DOMAIN, "sha256")
        self._tree = _ChunkedTree(keep, chunk_height)
        self._keep = keep
        self._kept: dict[str, Any] | None = None

    @property
    def count(self) -> int:
        return self._tree.size

    def append(self, record: Mapping[str, Any]) -> None:
        row = self._tree.size
        # Copying the keyed state saves the two key blocks record_salt hashes on every row.
        mac = self._mac.copy()
        mac.update(row.to_bytes(8, "big"))
        self._tree.append(leaf_hash(record_leaf(row, mac.digest(), record)))
        if row == self._keep:
            self._kept = dict(record)

    def root(self) -> bytes:
        """Root over the rows appended so far (``EMPTY_ROOT`` for none)."""
        return self._tree.root()

    def proof(self) -> RecordProof:
        """The proof for the kept row in the tree of the rows appended so far."""
        if self._kept is None or self._keep is None:
            raise MalformedError(f"row {self._keep} was not kept or has not been appended")
        return RecordProof(
            scheme=RECORD_SCHEME,
            row=self._keep,
            count=self._tree.size,
            record=self._kept,
            salt=record_salt(self._key, self._keep),
            path=tuple(self._tree.inclusion_proof()),
            root=self._tree.root(),
        )


def _count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_ROW:
        raise MalformedError(f"{what} must be an integer in 0..2**64-1")
    return value


def _hash(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise MalformedError(f"{what} must be a base64 string")
    raw = unb64_canonical(value, what)
    if len(raw) != HASH_SIZE:
        raise MalformedError(f"{what} is {len(raw)} bytes, not {HASH_SIZE}")
    return raw


def verify_record_proof(
    proof: RecordProof, root: bytes | None = None, count: int | None = None
) -> None:
    """Check that ``proof.record`` is row ``proof.row`` of the tree it names; ProofError if not.

    ``root`` and ``count`` are the values the ledger recorded; when given, the proof's own
    must equal them. Without them this checks only that the proof is self-consistent, which
    anyone can achieve for any record: a caller that means "this row was in the dataset"
    must pass the ledger's root and count.
    """
    if proof.scheme != RECORD_SCHEME:
        raise ProofError(f"record proof scheme {proof.scheme!r} is not {RECORD_SCHEME!r}")
    if root is not None and proof.root != root:
        raise ProofError("record proof is for a different root than the ledger's")
    if count is not None and proof.count != count:
        raise ProofError(
            f"record proof is for a table of {proof.count} rows; the ledger has {count}"
        )
    if not 0 <= proof.row < proof.count:
        raise ProofError(f"row {proof.row} is not below the row count {proof.count}")
    if len(proof.salt) != HASH_SIZE:
        raise ProofError(f"record salt is {len(proof.salt)} bytes, not {HASH_SIZE}")
    try:
        leaf = leaf_hash(record_leaf(proof.row, proof.salt, proof.record))
    except MalformedError as exc:
        raise ProofError(f"record proof record cannot be a leaf: {exc.message}") from exc
    verify_inclusion(proof.row, proof.count, leaf, list(proof.path), proof.root)
