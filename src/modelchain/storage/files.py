"""Small files replaced whole: written beside their final name under a name
of their own, synced, and renamed over it, so that a reader or a crash sees
the old bytes or the new ones, never a mix, and two writers never share a
temporary file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["fsync_dir", "replace_file"]


def fsync_dir(path: Path) -> None:
    """Make the names in a folder durable (a new file's data is not enough)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(path: Path, data: bytes, *, mode: int = 0o600, durable: bool = True) -> None:
    """Put ``data`` at ``path`` atomically; with ``durable``, the bytes and the
    rename are synced before it returns. Raises OSError."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        if mode != 0o600:  # mkstemp's own
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)
