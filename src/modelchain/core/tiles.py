"""C2SP tlog-tiles: tile and entry-bundle paths, entry-bundle encoding, the tiles a tree of a
given size has, reading tree nodes out of tiles, and ``TileWriter``, which turns appended leaf
hashes into the tiles that changed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence

from ..errors import MalformedError
from .merkle import HASH_SIZE, NodeReader, tree_root

__all__ = [
    "MAX_LEVEL",
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "TileWriter",
    "decode_entry_bundle",
    "encode_entry_bundle",
    "entries_path",
    "entry_bundles_for_size",
    "index_path",
    "parse_tile_path",
    "tile_node_reader",
    "tile_path",
    "tiles_for_size",
]

TILE_HEIGHT = 8
TILE_WIDTH = 256
MAX_LEVEL = 63  # the spec bounds <L> to 0..63
MAX_ENTRY_SIZE = 0xFFFF  # the uint16 length prefix

_FULL_TILE_BYTES = TILE_WIDTH * HASH_SIZE
_sha256 = hashlib.sha256

# <N> in path elements of three digits; at most 7 elements so a path cannot smuggle in an
# unbounded integer (7 elements reach 10**21, beyond any uint64 tree size).
_TILE_PATH = re.compile(
    r"tile/(entries|0|[1-9][0-9]?)/((?:x[0-9]{3}/){0,6}[0-9]{3})(?:\.p/([1-9][0-9]{0,2}))?"
)


def index_path(n: int) -> str:
    """``<N>`` as path elements: 1234067 -> ``x001/x234/067``."""
    if n < 0:
        raise MalformedError(f"tile index {n} is negative")
    parts = [f"{n % 1000:03d}"]
    n //= 1000
    while n:
        parts.append(f"x{n % 1000:03d}")
        n //= 1000
    return "/".join(reversed(parts))


def _width_suffix(width: int) -> str:
    if width == TILE_WIDTH:
        return ""
    if not 0 < width < TILE_WIDTH:
        raise MalformedError(f"tile width {width} is outside 1..{TILE_WIDTH}")
    return f".p/{width}"


def tile_path(level: int, n: int, width: int = TILE_WIDTH) -> str:
    """``tile/<L>/<N>`` for a full tile, ``tile/<L>/<N>.p/<W>`` for a partial one."""
    if not 0 <= level <= MAX_LEVEL:
        raise MalformedError(f"tile level {level} is outside 0..{MAX_LEVEL}")
    return f"tile/{level}/{index_path(n)}{_width_suffix(width)}"


def entries_path(n: int, width: int = TILE_WIDTH) -> str:
    """``tile/entries/<N>`` for a full entry bundle, with ``.p/<W>`` for a partial one."""
    return f"tile/entries/{index_path(n)}{_width_suffix(width)}"


def parse_tile_path(path: str) -> tuple[int | None, int, int]:
    """(level, n, width) of a tile path; level is None for an entry bundle.

    Only the canonical spelling is accepted (no leading zeros, no ``x000`` groups, no
    ``.p/256``), so each resource has exactly one name.
    """
    m = _TILE_PATH.fullmatch(path)
    if m is None:
        raise MalformedError(f"not a tile path: {path!r}")
    kind, digits, w = m.groups()
    level = None if kind == "entries" else int(kind)
    if level is not None and level > MAX_LEVEL:
        raise MalformedError(f"tile level {level} is outside 0..{MAX_LEVEL}")
    n = int(digits.replace("x", "").replace("/", ""))
    width = TILE_WIDTH if w is None else int(w)
    if w is not None and width >= TILE_WIDTH:
        raise MalformedError(f"partial tile width {width} is outside 1..{TILE_WIDTH - 1}")
    if index_path(n) != digits:
        raise MalformedError(f"tile index is not written canonically: {path!r}")
    return level, n, width


def tiles_for_size(size: int) -> list[tuple[int, int, int]]:
    """Every (level, n, width) tile of a tree of ``size``: full tiles, then the partial one,
    level by level. A level exists while ``size >> (8 * level)`` is not zero."""
    if size < 0:
        raise MalformedError(f"tree size {size} is negative")
    out: list[tuple[int, int, int]] = []
    level = 0
    count = size
    while count:
        full, width = divmod(count, TILE_WIDTH)
        out.extend((level, n, TILE_WIDTH) for n in range(full))
        if width:
            out.append((level, full, width))
        level += 1
        count >>= TILE_HEIGHT
    return out


def entry_bundles_for_size(size: int) -> list[tuple[int, int]]:
    """Every (n, width) entry bundle of a log of ``size`` entries."""
    if size < 0:
        raise MalformedError(f"tree size {size} is negative")
    full, width = divmod(size, TILE_WIDTH)
    out = [(n, TILE_WIDTH) for n in range(full)]
    if width:
        out.append((full, width))
    return out


def encode_entry_bundle(entries: Sequence[bytes]) -> bytes:
    """Entries, each prefixed by its length as a big-endian uint16."""
    if len(entries) > TILE_WIDTH:
        raise MalformedError(f"an entry bundle holds at most {TILE_WIDTH} entries")
    parts: list[bytes] = []
    for e in entries:
        if len(e) > MAX_ENTRY_SIZE:
            raise MalformedError(f"entry of {len(e)} bytes exceeds {MAX_ENTRY_SIZE}")
        parts.append(len(e).to_bytes(2, "big"))
        parts.append(e)
    return b"".join(parts)


def decode_entry_bundle(data: bytes) -> list[bytes]:
    """Split an entry bundle into its entries; MalformedError if truncated or too long."""
    out: list[bytes] = []
    pos, end = 0, len(data)
    while pos < end:
        if end - pos < 2:
            raise MalformedError("entry bundle ends inside a length prefix")
        n = (data[pos] << 8) | data[pos + 1]
        pos += 2
        if end - pos < n:
            raise MalformedError("entry bundle ends inside an entry")
        out.append(bytes(data[pos : pos + n]))
        pos += n
    if len(out) > TILE_WIDTH:
        raise MalformedError(f"entry bundle has {len(out)} entries; at most {TILE_WIDTH}")
    return out


def _fold(buf: bytes, start: int, count: int) -> bytes:
    """Root of the perfect tree over the ``count`` (a power of two) hashes at byte ``start``."""
    sha = _sha256
    if count == 1:
        return buf[start : start + HASH_SIZE]
    # Sibling pairs are adjacent, so each parent is the hash of one 64-byte slice.
    end = start + count * HASH_SIZE
    while count > 1:
        buf = b"".join([sha(b"\x01" + buf[i : i + 64]).digest() for i in range(start, end, 64)])
        count >>= 1
        start, end = 0, count * HASH_SIZE
    return buf


def tile_node_reader(read_tile: Callable[[int, int], bytes]) -> NodeReader:
    """A ``NodeReader`` over stored tiles; ``read_tile(level, n)`` returns a tile's bytes.

    A node of height h lies in level ``h // 8`` tiles; it is the fold of its ``2**(h % 8)``
    hashes there, which one tile always holds because the node is aligned.
    """

    def read(height: int, index: int) -> bytes:
        if height < 0 or index < 0:
            raise MalformedError(f"no node at height {height}, index {index}")
        level, j = divmod(height, TILE_HEIGHT)
        first = index << j
        count = 1 << j
        tile = read_tile(level, first >> TILE_HEIGHT)
        start = (first & (TILE_WIDTH - 1)) * HASH_SIZE
        if len(tile) < start + count * HASH_SIZE:
            raise MalformedError(
                f"tile {level}/{first >> TILE_HEIGHT} is {len(tile)} bytes, too short for "
                f"node at height {height}, index {index}"
            )
        return _fold(tile, start, count)

    return read


class TileWriter:
    """Right edge of a tiled tree held in memory: the current partial tile of each level."""

    __slots__ = ("_edge", "_size")

    def __init__(self, size: int = 0, edge: Mapping[int, bytes] | None = None) -> None:
        if size < 0:
            raise MalformedError(f"tree size {size} is negative")
        given = dict(edge or {})
        self._size = size
        self._edge: list[bytes] = []
        level, count = 0, size
        while count:
            want = (count % TILE_WIDTH) * HASH_SIZE
            tile = bytes(given.pop(level, b""))
            if len(tile) != want:
                raise MalformedError(
                    f"partial tile at level {level} is {len(tile)} bytes; size {size} needs {want}"
                )
            self._edge.append(tile)
            level += 1
            count >>= TILE_HEIGHT
        extra = [lv for lv, tile in given.items() if tile]
        if extra:
            raise MalformedError(f"size {size} has no partial tile at levels {sorted(extra)}")

    @property
    def size(self) -> int:
        return self._size

    def append(self, leaf_hashes: Iterable[bytes]) -> dict[tuple[int, int], bytes]:
        """Append leaf hashes; return every tile this call changed, (level, n) -> its bytes.

        Completed tiles are 8,192 bytes; the rest are the new partial tiles. Nothing is
        changed if a leaf hash has the wrong length.
        """
        leaves = list(leaf_hashes)
        changed: dict[tuple[int, int], bytes] = {}
        if not leaves:
            return changed
        if set(map(len, leaves)) != {HASH_SIZE}:
            raise MalformedError(f"every leaf hash must be {HASH_SIZE} bytes")
        old = self._size
        hashes = b"".join(leaves)
        level = 0
        while hashes:
            if level == len(self._edge):
                self._edge.append(b"")
            buf = self._edge[level] + hashes
            first = (old >> (TILE_HEIGHT * level)) >> TILE_HEIGHT  # tile n of the old partial
            full = len(buf) // _FULL_TILE_BYTES
            roots: list[bytes] = []
            for t in range(full):
                tile = buf[t * _FULL_TILE_BYTES : (t + 1) * _FULL_TILE_BYTES]
                changed[(level, first + t)] = tile
                # A full tile's root is one hash of the level above.
                roots.append(_fold(tile, 0, TILE_WIDTH))
            rest = buf[full * _FULL_TILE_BYTES :]
            self._edge[level] = rest
            if rest:
                changed[(level, first + full)] = rest
            hashes = b"".join(roots)
            level += 1
        self._size = old + len(leaves)
        return changed

    def edge(self) -> dict[int, bytes]:
        """Level -> current partial tile bytes, for the levels that have one."""
        return {level: tile for level, tile in enumerate(self._edge) if tile}

    def partial(self, level: int) -> bytes:
        """The current partial tile at ``level`` (empty if there is none)."""
        return self._edge[level] if 0 <= level < len(self._edge) else b""

    def root(self) -> bytes:
        """Root of the whole tree, from the partial tiles alone.

        Every perfect subtree in the root's decomposition lies in a current partial tile,
        so no stored tile is needed.
        """
        size = self._size

        def read_edge(level: int, n: int) -> bytes:
            if n != (size >> (TILE_HEIGHT * level)) >> TILE_HEIGHT:
                raise MalformedError(f"tile {level}/{n} is not on the right edge")
            return self.partial(level)

        return tree_root(tile_node_reader(read_edge), size)
