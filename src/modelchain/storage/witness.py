"""A witness's state on disk: per log origin, the latest checkpoint note it
cosigned, in a file named by the origin's hash, replaced atomically and synced
before an update returns; updates are a compare-and-set under a file lock.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..core.checkpoint import Checkpoint
from ..core.note import Note, parse_note
from ..core.witness import origin_hash
from ..errors import StorageError
from .files import fsync_dir, replace_file

__all__ = ["WitnessState"]

_LOCK_NAME = ".lock"


class WitnessState:
    """The latest cosigned checkpoint of each origin, kept under ``directory``.

    ``update`` holds an exclusive lock (``flock`` on one file, so threads and
    processes sharing the folder exclude each other) from reading the latest
    note to making the new one durable: two requests from the same old size
    cannot both advance it.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            (self.directory / _LOCK_NAME).touch(mode=0o600)
            fsync_dir(self.directory)
        except OSError as exc:
            raise StorageError(f"cannot use witness state folder {self.directory}: {exc}") from exc

    def _path(self, origin: str) -> Path:
        return self.directory / f"{origin_hash(origin)}.checkpoint"

    def note_bytes(self, origin: str) -> bytes | None:
        """The latest cosigned note for ``origin`` as served, or None if none."""
        try:
            return self._path(origin).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read the witness state for {origin!r}: {exc}") from exc

    def note_bytes_by_hash(self, hex_hash: str) -> bytes | None:
        """As ``note_bytes``, by the lowercase hex SHA-256 of the origin."""
        if len(hex_hash) != 64 or any(c not in "0123456789abcdef" for c in hex_hash):
            return None
        try:
            return (self.directory / f"{hex_hash}.checkpoint").read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read the witness state {hex_hash}: {exc}") from exc

    def latest(self, origin: str) -> Checkpoint | None:
        data = self.note_bytes(origin)
        if data is None:
            return None
        cp = Checkpoint.from_text(parse_note(data).text)
        if cp.origin != origin:
            raise StorageError(f"witness state for {origin!r} holds a checkpoint of {cp.origin!r}")
        return cp

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.directory / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def update(self, origin: str, advance: Callable[[Checkpoint | None], Note]) -> Note:
        """Under the lock: call ``advance`` with the latest checkpoint of
        ``origin`` and durably store the note it returns. Whatever ``advance``
        raises leaves the state as it was."""
        with self._locked():
            note = advance(self.latest(origin))
            if Checkpoint.from_text(note.text).origin != origin:
                raise StorageError(f"a note of another origin cannot be stored for {origin!r}")
            try:
                replace_file(self._path(origin), note.to_bytes(), mode=0o644)
            except OSError as exc:
                raise StorageError(f"cannot store the witness state for {origin!r}: {exc}") from exc
            return note
