"""Content-addressed blobs beside the ledger: manifests too large for a transaction.

A blob is named by the SHA-256 of its bytes and checked against it on every
read, so the ledger entry that carries the name pins the content.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from ..errors import IntegrityError, MalformedError, NotFoundError, StorageError
from .files import replace_file

__all__ = ["FileBlobStore"]

_REF = re.compile(r"sha256:([0-9a-f]{64})\Z")


class FileBlobStore:
    """A ``BlobStore`` in a directory: ``sha256/<2 hex>/<64 hex>`` files."""

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
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Identical bytes: whichever of two writers lands last is the same blob.
            replace_file(path, data)
        except OSError as exc:
            raise StorageError(f"cannot store blob {ref}: {exc.strerror or exc}") from exc
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
