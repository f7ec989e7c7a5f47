"""Read-side questions the API and the dashboard both ask: the audit trail
with filters (``modelchain.ledger.trail``, shared with the SDK), and which registered
version a digest belongs to."""

from __future__ import annotations

from typing import Any

from ..contracts.state import entity_key
from ..core import canonical
from ..errors import IntegrityError, NotFoundError
from ..ledger.datasets import Datasets
from ..ledger.ledger import Ledger
from ..ledger.models import Models
from ..ledger.trail import TrailFilter, TrailPage, entry_summary, member_orgs, rejected, trail

Registry = Models | Datasets

__all__ = [
    "TrailFilter",
    "TrailPage",
    "entry_summary",
    "find_digest",
    "member_orgs",
    "rejected",
    "trail",
]


def find_digest(led: Ledger, digest: str) -> list[dict[str, Any]]:
    """Registered model and dataset versions whose artifact, or one of whose
    files, has ``digest`` (``sha256:<hex>`` or bare hex)."""
    want = digest.strip().lower().removeprefix("sha256:")
    found: list[dict[str, Any]] = []
    for kind in ("model", "dataset"):
        registry = led.models if kind == "model" else led.datasets
        for key, value in led.store.state_prefix(entity_key(kind, "")):
            if "@" not in key:
                continue
            record = canonical.loads(value)
            if not isinstance(record, dict) or "artifact" not in record:
                continue
            art = record["artifact"]
            base = {"kind": kind, "name": record["name"], "version": record["version"]}
            base["index"] = record.get("index")
            if str(art.get("digest", "")).lower().removeprefix("sha256:") == want:
                found.append({**base, "path": None, "match": "artifact"})
                continue
            for path in _file_digests(registry, record).get(want, ()):
                found.append({**base, "path": path, "match": "file"})
    return found


_FILES_CACHE: dict[str, dict[str, tuple[str, ...]]] = {}
_FILES_CACHE_MAX = 4096


def _file_digests(registry: Registry, record: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """A version's SHA-256 file digests and their paths. A registered manifest
    never changes, so it is read and parsed once per artifact digest."""
    key = str(record["artifact"].get("digest", ""))
    cached = _FILES_CACHE.get(key)
    if cached is not None:
        return cached
    try:
        manifest = registry.manifest_of(record)
    except (NotFoundError, IntegrityError):  # a manifest blob this node lacks
        return {}
    paths: dict[str, list[str]] = {}
    if manifest.algorithm == "sha256":
        for f in manifest.files:
            paths.setdefault(f.digest, []).append(f.path)
    result = {d: tuple(ps) for d, ps in paths.items()}
    if len(_FILES_CACHE) >= _FILES_CACHE_MAX:
        _FILES_CACHE.clear()
    _FILES_CACHE[key] = result
    return result
