"""Ways a WAL is damaged after a crash, for the fault tests and bench/faults.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def _empty(wal: Path) -> None:
    wal.write_bytes(b"")


def _delete(wal: Path) -> None:
    wal.unlink()


def _truncate(wal: Path) -> None:
    with wal.open("r+b") as f:
        f.truncate(max(32, wal.stat().st_size - 3000))


def _flip(wal: Path) -> None:
    # A byte of the last committed frames: SQLite's frame checksums then drop them.
    data = bytearray(wal.read_bytes())
    data[len(data) - 2000] ^= 0x40
    wal.write_bytes(bytes(data))


DAMAGES: dict[str, Callable[[Path], None]] = {
    "emptied": _empty,
    "deleted": _delete,
    "truncated": _truncate,
    "bit-flipped": _flip,
}
