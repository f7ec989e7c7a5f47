"""`export-tiles` writes a tlog-tiles tree that a client can check from files alone."""

from __future__ import annotations

import hashlib
from pathlib import Path

import modelchain as mc
from modelchain.core.checkpoint import open_checkpoint
from modelchain.core.identity import Ed25519Signer
from modelchain.core.tiles import decode_entry_bundle, parse_tile_path


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _mth(hashes: list[bytes]) -> bytes:
    """RFC 9162 root over leaf hashes, written independently of modelchain.core.merkle."""
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return _sha(b"\x01" + _mth(hashes[:k]) + _mth(hashes[k:]))


def test_exported_tiles_match_the_checkpoint(
    ledger: mc.Ledger, alice: Ed25519Signer, tmp_path: Path
) -> None:
    envs = [
        ledger.transaction("event.record", {"event": "e", "data": i}, "alice").sign(alice)
        for i in range(700)
    ]
    ledger.submit_many(envs)
    out = tmp_path / "tiles"
    ledger.export_tiles(out)
    cp, _ = open_checkpoint((out / "checkpoint").read_bytes(), ledger.log_key)
    assert cp.size == 701

    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    entries: list[bytes] = []
    tiles: dict[tuple[int, int], bytes] = {}
    for path, data in sorted(files.items()):
        if path == "checkpoint":
            continue
        level, n, width = parse_tile_path(path)
        if level is None:
            bundle = decode_entry_bundle(data)
            assert len(bundle) == width
            entries[n * 256 : n * 256] = bundle
        else:
            assert len(data) == 32 * width
            tiles[(level, n)] = data
    assert set(tiles) == {(0, 0), (0, 1), (0, 2), (1, 0)}
    assert len(entries) == 701
    assert entries[5] == ledger.entry_bytes(5)

    leaves = [_sha(b"\x00" + e) for e in entries]
    level0 = b"".join(tiles[(0, n)] for n in range(3))
    assert level0 == b"".join(leaves)
    assert tiles[(1, 0)] == _mth(leaves[:256]) + _mth(leaves[256:512])
    assert _mth(leaves) == cp.root

    # Full tiles are immutable, so a later export keeps them and adds the new partial ones.
    ledger.record_event("late", {}, alice)
    ledger.export_tiles(out)
    assert (out / "tile/0/002.p/190").exists()
    assert (out / "tile/0/002.p/189").exists()
    cp2, _ = open_checkpoint((out / "checkpoint").read_bytes(), ledger.log_key)
    assert cp2.size == 702
