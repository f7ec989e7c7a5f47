"""C2SP tlog-tiles: paths, entry bundles, and TileWriter output checked against MemoryTree."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelchain.core.merkle import MemoryTree, inclusion_proof, root_of, tree_root
from modelchain.core.merkle import consistency_proof as tiled_consistency_proof
from modelchain.core.tiles import (
    TILE_HEIGHT,
    TILE_WIDTH,
    TileWriter,
    decode_entry_bundle,
    encode_entry_bundle,
    entries_path,
    entry_bundles_for_size,
    index_path,
    parse_tile_path,
    tile_node_reader,
    tile_path,
    tiles_for_size,
)
from modelchain.errors import MalformedError

BIG = 70_000  # past 65,536 so level 2 tiles exist
LEAVES = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(BIG)]
TREE = MemoryTree(LEAVES)

# --- Paths ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "path"),
    [
        (1234067, "x001/x234/067"),  # the spec's example
        (5, "005"),
        (0, "000"),
        (999, "999"),
        (1000, "x001/000"),
        (1_000_000, "x001/x000/000"),
    ],
)
def test_index_path(n: int, path: str) -> None:
    assert index_path(n) == path


def test_tile_and_entry_paths() -> None:
    assert tile_path(0, 1234067) == "tile/0/x001/x234/067"
    assert tile_path(1, 5, 17) == "tile/1/005.p/17"
    assert tile_path(63, 0, 256) == "tile/63/000"
    assert entries_path(1234067, 5) == "tile/entries/x001/x234/067.p/5"
    assert entries_path(0) == "tile/entries/000"
    for args in [(0, 0, 0), (0, 0, 257), (64, 0, 256), (-1, 0, 256), (0, -1, 256)]:
        with pytest.raises(MalformedError):
            tile_path(*args)
    with pytest.raises(MalformedError):
        entries_path(0, 0)
    with pytest.raises(MalformedError):
        index_path(-1)


@settings(max_examples=300)
@given(
    st.one_of(st.none(), st.integers(0, 63)),
    st.one_of(st.integers(0, 2000), st.integers(0, 2**56)),
    st.integers(1, 256),
)
def test_parse_tile_path_round_trip(level: int | None, n: int, width: int) -> None:
    path = entries_path(n, width) if level is None else tile_path(level, n, width)
    assert parse_tile_path(path) == (level, n, width)


@pytest.mark.parametrize(
    "path",
    [
        "",
        "tile/0/5",
        "tile/0/05",
        "tile/0/0005",
        "tile/00/005",
        "tile/01/005",
        "tile/64/005",
        "tile/100/005",
        "tile/-1/005",
        "tile/x/005",
        "tile//005",
        "tile/0/x000/005",  # leading zero group
        "tile/0/x000/x001/005",
        "tile/0/001/005",  # missing x
        "tile/0/x001",  # x on the last element
        "tile/0/x001/x234/x067",
        "tile/0/x1/005",
        "tile/0/00a",
        "tile/0/005.p/0",
        "tile/0/005.p/00",
        "tile/0/005.p/017",
        "tile/0/005.p/256",
        "tile/0/005.p/1000",
        "tile/0/005.p",
        "tile/0/005.p/",
        "tile/0/005/",
        "/tile/0/005",
        "tile/0/005 ",
        "tile/0/005\n",
        "tiles/0/005",
        "tile/entries/0/005",
        "tile/entries/005.p/256",
        "tile/0/\u0660\u0660\u0665",  # Arabic-Indic digits are not ASCII decimal
        "tile/0/x001/x002/x003/x004/x005/x006/x007/008",  # beyond any uint64 size
        "tile/0/005.p/5/6",
    ],
)
def test_parse_tile_path_rejects(path: str) -> None:
    with pytest.raises(MalformedError):
        parse_tile_path(path)


# --- Which tiles a size has -------------------------------------------------------------------


def test_tiles_for_size_spec_example() -> None:
    # The spec: size 70,000 has 273 full level 0 tiles, a level 0 partial of width 112, one
    # full level 1 tile, a level 1 partial of width 17 and a level 2 partial of width 1.
    tiles = tiles_for_size(70_000)
    assert tiles == [
        *((0, n, 256) for n in range(273)),
        (0, 273, 112),
        (1, 0, 256),
        (1, 1, 17),
        (2, 0, 1),
    ]
    # "a tree of size 256 will be represented by a full level 0 tile and a partial level 1
    # tile of width 1"
    assert tiles_for_size(256) == [(0, 0, 256), (1, 0, 1)]
    assert tiles_for_size(0) == []
    assert tiles_for_size(1) == [(0, 0, 1)]
    assert tiles_for_size(65536) == [*((0, n, 256) for n in range(256)), (1, 0, 256), (2, 0, 1)]
    with pytest.raises(MalformedError):
        tiles_for_size(-1)


def test_entry_bundles_for_size() -> None:
    assert entry_bundles_for_size(70_000) == [*((n, 256) for n in range(273)), (273, 112)]
    assert entry_bundles_for_size(512) == [(0, 256), (1, 256)]
    assert entry_bundles_for_size(0) == []
    with pytest.raises(MalformedError):
        entry_bundles_for_size(-1)


# --- Entry bundles ----------------------------------------------------------------------------


@settings(max_examples=200)
@given(st.lists(st.binary(max_size=600), max_size=TILE_WIDTH))
def test_entry_bundle_round_trip(entries: list[bytes]) -> None:
    data = encode_entry_bundle(entries)
    assert len(data) == sum(2 + len(e) for e in entries)
    assert decode_entry_bundle(data) == entries


def test_entry_bundle_limits() -> None:
    biggest = b"\xab" * 0xFFFF
    data = encode_entry_bundle([biggest, b""])
    assert data[:2] == b"\xff\xff"
    assert decode_entry_bundle(data) == [biggest, b""]
    assert encode_entry_bundle([b"ab"]) == b"\x00\x02ab"
    assert encode_entry_bundle([]) == b""
    assert decode_entry_bundle(b"") == []
    with pytest.raises(MalformedError):
        encode_entry_bundle([b"\x00" * 0x10000])
    with pytest.raises(MalformedError):
        encode_entry_bundle([b""] * (TILE_WIDTH + 1))
    with pytest.raises(MalformedError):
        decode_entry_bundle(b"\x00" * (2 * (TILE_WIDTH + 1)))


@pytest.mark.parametrize("data", [b"\x00", b"\x00\x05abc", b"\x00\x01a\x00", b"\xff\xff"])
def test_entry_bundle_truncated(data: bytes) -> None:
    with pytest.raises(MalformedError):
        decode_entry_bundle(data)


# --- TileWriter -----------------------------------------------------------------------------


def _expected_tile(level: int, n: int, width: int) -> bytes:
    # The spec's definition: hash i of tile n at level L is MTH of leaves
    # [(n*256+i)*256**L, (n*256+i+1)*256**L), i.e. the perfect node at height 8L.
    return b"".join(TREE.node(TILE_HEIGHT * level, n * TILE_WIDTH + i) for i in range(width))


def _counts(size: int) -> list[int]:
    out = []
    while size:
        out.append(size)
        size >>= TILE_HEIGHT
    return out


def _run_writer(chunks: list[int], swaps: list[bool]) -> None:
    store: dict[tuple[int, int], bytes] = {}
    writer = TileWriter()
    reader = tile_node_reader(lambda level, n: store[(level, n)])
    size = 0
    for step, chunk in enumerate(chunks):
        clone = TileWriter(writer.size, writer.edge())
        assert clone.edge() == writer.edge()
        batch = LEAVES[size : size + chunk]
        changed = writer.append(iter(batch))
        assert clone.append(batch) == changed  # a writer rebuilt from edge() goes on alike
        assert clone.edge() == writer.edge()
        if swaps[step % len(swaps)]:
            writer = clone
        old, size = size, size + chunk
        assert writer.size == size

        # Exactly the tiles whose hashes changed are returned, each with its full bytes.
        old_counts = _counts(old) + [0] * 8
        want_keys: set[tuple[int, int]] = set()
        for level, count in enumerate(_counts(size)):
            if count > old_counts[level]:
                first, last = old_counts[level] >> TILE_HEIGHT, (count - 1) >> TILE_HEIGHT
                want_keys.update((level, n) for n in range(first, last + 1))
        assert set(changed) == want_keys
        for (level, n), tile in changed.items():
            width = len(tile) // 32
            assert len(tile) == 32 * width and 0 < width <= TILE_WIDTH
            assert tile == _expected_tile(level, n, width)
        store.update(changed)

        # The store now holds every tile the size has, at least as wide as required.
        for level, n, width in tiles_for_size(size):
            assert len(store[(level, n)]) >= 32 * width
        for level, count in enumerate(_counts(size)):
            width = count % TILE_WIDTH
            want = store[(level, count >> TILE_HEIGHT)][: 32 * width] if width else b""
            assert writer.partial(level) == want
        assert writer.edge() == {lv: writer.partial(lv) for lv in range(8) if writer.partial(lv)}

        if size:
            root = TREE.root(size)
            assert tree_root(reader, size) == root
            assert writer.root() == root
            for index in {0, size - 1, size // 3, old} - {size}:
                assert inclusion_proof(reader, index, size) == TREE.inclusion_proof(index, size)
            if old:
                assert tiled_consistency_proof(reader, old, size) == TREE.consistency_proof(
                    old, size
                )
        else:
            assert writer.root() == root_of([])
    if size:
        assert tree_root(reader, size) == root_of(LEAVES[:size])


_chunk = st.one_of(st.integers(0, 8), st.integers(250, 260), st.integers(1, 700))


@settings(max_examples=40, deadline=None)
@given(st.lists(_chunk, min_size=1, max_size=12), st.lists(st.booleans(), min_size=1))
def test_tile_writer_small(chunks: list[int], swaps: list[bool]) -> None:
    _run_writer(chunks, swaps)


@settings(max_examples=4, deadline=None)
@given(
    st.lists(st.one_of(_chunk, st.integers(5000, 20000)), min_size=1, max_size=8),
    st.integers(65_537, BIG),
    st.lists(st.booleans(), min_size=1),
)
def test_tile_writer_reaches_level_two(chunks: list[int], target: int, swaps: list[bool]) -> None:
    cut: list[int] = []
    total = 0
    for c in chunks:
        c = min(c, target - total)
        cut.append(c)
        total += c
    cut.append(target - total)
    _run_writer(cut, swaps)


def test_tile_writer_level_two_exact_boundaries() -> None:
    # 65,536 leaves fill level 0 tile 255 and level 1 tile 0 in the same call, which carries
    # into level 2; then one more leaf.
    _run_writer([65_535, 1, 1, 255, 1], [False])
    _run_writer([65_536, 4_464], [True])


def test_tile_writer_spec_size_256() -> None:
    writer = TileWriter()
    changed = writer.append(LEAVES[:256])
    assert set(changed) == {(0, 0), (1, 0)}
    assert changed[(1, 0)] == root_of(LEAVES[:256])
    assert writer.edge() == {1: root_of(LEAVES[:256])}
    assert writer.partial(0) == b""
    assert writer.partial(7) == b""
    assert writer.append([]) == {}


def test_tile_writer_validates_edge() -> None:
    h = LEAVES[0]
    TileWriter(256, {1: h})
    TileWriter(256, {0: b"", 1: h})
    TileWriter(257, {0: h, 1: h})
    bad: list[tuple[int, dict[int, bytes]]] = [
        (5, {}),
        (0, {0: h}),
        (1, {0: h + h}),
        (1, {0: h[:31]}),
        (256, {0: h, 1: h}),
        (256, {0: b""}),
        (1, {0: h, 5: h}),
        (1, {0: h, -1: h}),
    ]
    for size, edge in bad:
        with pytest.raises(MalformedError):
            TileWriter(size, edge)
    with pytest.raises(MalformedError):
        TileWriter(-1)


def test_tile_writer_rejects_bad_leaf_without_change() -> None:
    writer = TileWriter()
    writer.append(LEAVES[:3])
    with pytest.raises(MalformedError):
        writer.append([LEAVES[3], b"short"])
    assert writer.size == 3
    assert writer.edge() == {0: b"".join(LEAVES[:3])}


def test_tile_node_reader_short_tile() -> None:
    reader = tile_node_reader(lambda level, n: b"".join(LEAVES[:3]))
    assert reader(0, 2) == LEAVES[2]
    assert reader(1, 0) == hashlib.sha256(b"\x01" + LEAVES[0] + LEAVES[1]).digest()
    with pytest.raises(MalformedError):
        reader(0, 3)
    with pytest.raises(MalformedError):
        reader(2, 0)
    with pytest.raises(MalformedError):
        reader(-1, 0)
