"""How the document words ledger values inside sentences, and how it cites
long runs of entries."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ...ledger.lineage import ExternalInput, LineageInput

__all__ = [
    "CITE_EACH_END",
    "attempt",
    "capped",
    "capped_note",
    "dep_name",
    "fmt",
    "json_text",
    "run_environment",
    "with_org",
]

# A statement that sums up many entries (inference batches, accesses) cites the
# first and last of them; `modelchain report logs` exports every one with proofs.
CITE_EACH_END = 50


def fmt(value: Any) -> str:
    """A compact, stable rendering of a JSON value inside a sentence."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Mapping):
        if not value:
            return "none"
        return ", ".join(
            f"{k}={fmt(v) if not isinstance(v, Mapping | list) else json_text(v)}"
            for k, v in sorted(value.items())
        )
    if isinstance(value, list | tuple):
        return ", ".join(fmt(v) for v in value) if value else "none"
    return json_text(value)


def json_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def with_org(name: str, org: str) -> str:
    return f"{name} ({org})" if org else name


def capped(indexes: Sequence[int]) -> tuple[int, ...]:
    if len(indexes) <= 2 * CITE_EACH_END:
        return tuple(indexes)
    return (*indexes[:CITE_EACH_END], *indexes[-CITE_EACH_END:])


def capped_note(indexes: Sequence[int]) -> str:
    if len(indexes) <= 2 * CITE_EACH_END:
        return ""
    return (
        f" The first and last {CITE_EACH_END} of these {len(indexes)} entries are cited here; "
        "`modelchain report logs` exports every one with its proof."
    )


# -- building ---------------------------------------------------------------------------


def attempt(tx_type: str, body: Mapping[str, Any]) -> str:
    version = body.get("version")
    if isinstance(body.get("model"), Mapping):
        version = body["model"].get("version")
    parts = []
    if isinstance(version, int):
        parts.append(f"version {version}")
    env = body.get("env")
    if isinstance(env, str):
        parts.append(f"environment {env}")
    return ", ".join(parts) if parts else tx_type


def dep_name(dep: LineageInput) -> str:
    if isinstance(dep, ExternalInput):
        return str(dep.uri)
    return f"{dep.kind} {dep.name}@{dep.version}"


def run_environment(run: Mapping[str, Any]) -> dict[str, Any]:
    try:
        env = run["statement"]["predicate"]["buildDefinition"]["internalParameters"]["environment"]
    except (KeyError, TypeError):
        return {}
    return dict(env) if isinstance(env, Mapping) else {}
