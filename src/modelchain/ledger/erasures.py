"""Which erased model or dataset version a log entry concerns, so that every view of an
entry (``log show``, the dashboard's entry page) says the version was erased rather
than showing it as a normal version whose pull then fails."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..contracts import types as tx_types
from ..core.tx import LogEntry
from ..errors import NotFoundError

if TYPE_CHECKING:
    from .ledger import Ledger

__all__ = ["concerned_version", "erasure_of_entry"]

_REGISTERS = {
    tx_types.MODEL_REGISTER: ("model", "name"),
    tx_types.DATASET_REGISTER: ("dataset", "name"),
    tx_types.DATASET_INGEST: ("dataset", "dataset"),
}


def concerned_version(led: Ledger, entry: LogEntry) -> tuple[str, str, int] | None:
    """(kind, name, version) of the model or dataset version ``entry`` is about, or
    None: an ``artifact.*`` or ``access.log`` body names it; an accepted registration
    or ingest made it; a model transaction names its model and version."""
    tx = entry.transaction
    body = tx.body
    if tx.type in _REGISTERS:  # their "artifact" is the registered digest and manifest
        if not entry.outcome.accepted:
            return None
        kind, field = _REGISTERS[tx.type]
        return _registered(led, kind, body.get(field), entry.index)
    art = body.get("artifact")
    if isinstance(art, Mapping):
        version = art.get("version")
        if art.get("kind") in ("model", "dataset") and isinstance(version, int):
            return str(art["kind"]), str(art.get("name")), version
        return None
    model = body.get("model")
    if isinstance(model, Mapping) and isinstance(model.get("version"), int):
        return "model", str(model.get("name")), int(model["version"])
    if isinstance(model, str) and isinstance(body.get("version"), int):
        return "model", model, int(body["version"])
    return None


def _registered(led: Ledger, kind: str, name: Any, index: int) -> tuple[str, str, int] | None:
    if not isinstance(name, str):
        return None
    versions = led.models if kind == "model" else led.datasets
    try:
        latest = versions.get(name).version
        for v in range(latest, 0, -1):
            record = versions.get(name, v).record
            if record["index"] == index:
                return kind, name, v
            if record["index"] < index:
                return None
    except NotFoundError:
        return None
    return None


def erasure_of_entry(led: Ledger, entry: LogEntry) -> dict[str, Any] | None:
    """The erasure {kind, name, version, reason, by, signers, index, time} of the
    version ``entry`` concerns, or None when it concerns none or that one is not erased
    (an entry the erasure itself is, or comes after, included)."""
    found = concerned_version(led, entry)
    if found is None:
        return None
    kind, name, version = found
    erased = led.artifacts.erasure(kind, name, version)
    if erased is None:
        return None
    signers = list(erased.get("signers") or [erased["by"]])
    return {**erased, "kind": kind, "name": name, "version": version, "signers": signers}
