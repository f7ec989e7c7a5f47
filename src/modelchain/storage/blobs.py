"""Content-addressed blobs beside the ledger: manifests too large for a transaction.

A blob is named by the SHA-256 of its bytes and checked against it on every
read, so the ledger entry that carries the name pins the content.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path

from ..errors import IntegrityError, MalformedError, NotFoundError, StorageError

__all__ = ["BlobStore"]

_REF = re.compile(r"sha256:([0-9a-f]{64})\Z")


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, ref: str) -> Path:
        m = _REF.match(ref)
        if m is None:
            raise MalformedError(f"bad blob reference {ref!r}")
        h = m.group(1)
        return self.root / "sha256" / h[:2] / h

    def put(self, data: bytes) -> str:
        ref = "sha256:" + hashlib.sha256(data).hexdigest()
        path = self._path(ref)
        if path.exists():
            return ref
        tmp: str | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # A name of its own per writer: threads of one server storing the
            # same blob at once must not write into (or rename away) each other's.
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            with open(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)  # identical bytes: whichever lands last is the same blob
            tmp = None
        except OSError as exc:
            raise StorageError(f"cannot store blob {ref}: {exc.strerror or exc}") from exc
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        return ref

    def get(self, ref: str) -> bytes:
        path = self._path(ref)
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise NotFoundError(f"blob {ref} is missing from the blob store") from exc
        except OSError as exc:
            raise StorageError(f"cannot read blob {ref}: {exc.strerror or exc}") from exc
        if "sha256:" + hashlib.sha256(data).hexdigest() != ref:
            raise IntegrityError(f"blob {ref} in {self.root} does not match its name")
        return data
