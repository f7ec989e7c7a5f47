"""What a ledger has promised, kept outside SQLite: the last checkpoint it
published and the last tree head it acknowledged.

A damaged or deleted WAL makes SQLite open, without complaint, a store that is
shorter than what the node acknowledged and signed; the log key would then
sign a second, different tree at sizes it already vouched for. These two small
files outlive such damage (as tessera's and Trillian's published checkpoints
do), so that an opener can tell that the store went back, and refuse.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

from ..core.checkpoint import Checkpoint
from ..core.merkle import HASH_SIZE
from ..core.note import parse_note
from ..errors import Error, RollbackError, StorageError
from .failures import storage_error
from .files import replace_file
from .protocols import Head

__all__ = ["Head", "Heads"]

# size (8 bytes), root (32), CRC-32 of both (4): one write well inside a sector.
_RECORD = struct.Struct(f">Q{HASH_SIZE}sI")


class Heads:
    """The published and acknowledged heads of one ledger directory.

    ``durable`` writes are fsynced before they return; without it (a store
    opened with synchronous=NORMAL) they survive a crash of the process but
    not of the machine, like the store's own commits."""

    def __init__(self, directory: Path, stem: str, *, durable: bool = True) -> None:
        self.directory = directory
        self.durable = durable
        # The latest published checkpoint note, as served, and the size and
        # root of the latest acknowledged tree: ledger.checkpoint, ledger.head.
        self.published_path = directory / f"{stem}.checkpoint"
        self.acked_path = directory / f"{stem}.head"
        self._acked_fd: int | None = None

    # -- reading -------------------------------------------------------------

    def published(self) -> tuple[Head, bytes] | None:
        """The last published checkpoint's head and note, if one was kept."""
        try:
            note = self.published_path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise storage_error("reading the published checkpoint", exc) from exc
        try:
            cp = Checkpoint.from_text(parse_note(note).text)
        except Error as exc:
            raise StorageError(
                f"the published checkpoint {self.published_path} is damaged ({exc}); "
                "restore it from a mirror or a backup of this ledger"
            ) from exc
        return Head(cp.size, cp.root), note

    def acked(self) -> Head | None:
        """The last acknowledged head, if one was kept."""
        try:
            raw = self.acked_path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise storage_error("reading the acknowledged head", exc) from exc
        if not raw:  # created, then the process died before the first record
            return None
        if len(raw) != _RECORD.size:
            raise StorageError(
                f"the acknowledged head {self.acked_path} is {len(raw)} bytes, "
                f"not {_RECORD.size}; it is damaged"
            )
        size, root, crc = _RECORD.unpack(raw)
        if zlib.crc32(raw[:-4]) != crc:
            raise StorageError(f"the acknowledged head {self.acked_path} is damaged (bad CRC)")
        return Head(size, root)

    def check(self, size: int, root_at: Callable[[int], bytes]) -> None:
        """Raise RollbackError unless a store of ``size`` entries, whose tree
        root at a size is ``root_at(size)``, holds everything published and
        acknowledged."""
        published = self.published()
        for what, head in (
            ("published a checkpoint of", None if published is None else published[0]),
            ("acknowledged", self.acked()),
        ):
            if head is None:
                continue
            if size < head.size:
                raise RollbackError(
                    f"the store holds {size} entries but this ledger {what} "
                    f"{head.size}: the store went back (a lost or damaged WAL?). "
                    "It will not be written, so that no different tree is ever signed "
                    "at a size already vouched for; restore the store from a backup or a "
                    "mirror that holds every entry (see README, 'Recovering a store')"
                )
            if head.size and root_at(head.size) != head.root:
                raise RollbackError(
                    f"the store's first {head.size} entries do not have the root this "
                    f"ledger {what} {head.size} entries with: the store was altered. "
                    "Restore it from a backup or a mirror (see README, 'Recovering a store')"
                )

    # -- writing -------------------------------------------------------------

    def publish(self, note: bytes) -> None:
        """Replace the published checkpoint atomically (a crash leaves the old
        one or the new one, never a mix)."""
        try:
            replace_file(self.published_path, note, durable=self.durable)
        except OSError as exc:
            raise storage_error("writing the published checkpoint", exc) from exc

    def acknowledge(self, size: int, root: bytes) -> None:
        """Record the head about to be acknowledged: one write in place (a
        record this small is never torn) and, if durable, one fdatasync."""
        body = struct.pack(f">Q{HASH_SIZE}s", size, root)
        record = body + struct.pack(">I", zlib.crc32(body))
        try:
            if self._acked_fd is None:
                self._acked_fd = os.open(self.acked_path, os.O_RDWR | os.O_CREAT, 0o600)
            os.pwrite(self._acked_fd, record, 0)
            if self.durable:
                os.fdatasync(self._acked_fd)
        except OSError as exc:
            raise storage_error("recording the acknowledged head", exc) from exc

    def close(self) -> None:
        if self._acked_fd is not None:
            os.close(self._acked_fd)
            self._acked_fd = None
