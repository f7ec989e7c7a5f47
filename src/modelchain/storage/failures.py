"""Operating-system and SQLite failures, translated into the error tree once.

A full disk or a store locked by another process is a condition to retry
later; anything else is a storage failure. Messages name what was being done,
never a secret.
"""

from __future__ import annotations

import errno
import sqlite3

from ..errors import StorageBusyError, StorageError, StorageFullError

__all__ = ["storage_error"]

_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_SQLITE_FULL = 13
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6


def storage_error(doing: str, exc: BaseException) -> StorageError:
    """The modelchain error for ``exc``, raised while ``doing`` something."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        code &= 0xFF  # extended result codes keep the primary one in the low byte
    if (isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS) or code == _SQLITE_FULL:
        return StorageFullError(f"{doing} failed: the disk is full; free space and retry")
    if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return StorageBusyError(
            f"{doing} failed: the store is locked by another process; retry shortly"
        )
    if isinstance(exc, PermissionError):
        return StorageError(f"{doing} failed: permission denied ({exc.filename or exc})")
    if isinstance(exc, OSError):
        return StorageError(f"{doing} failed: {exc.strerror or exc}")
    if isinstance(exc, sqlite3.Error):
        return StorageError(f"{doing} failed: {exc}")
    return StorageError(f"{doing} failed: {exc!r}")
