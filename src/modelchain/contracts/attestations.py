"""Attestations: off-ledger work, on-ledger evidence.

Heavy checks (data quality, evaluation on a holdout set) run where the data is;
their signed results enter the ledger here. ``dataset.attest`` records a
validator's data-quality result for a dataset version; ``model.evaluate`` an
evaluator's metrics for a model version on a registered dataset version. The
results are added to the version records, where policies find them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import MalformedError
from .base import Call, Overlay, Rejected, StateReader, TypeRule, is_int, names
from .state import member_key, version_key
from .types import DATASET_ATTEST, MODEL_EVALUATE

__all__ = ["attestation_rules"]


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise MalformedError(message)


def _ref(obj: object, what: str) -> None:
    _require(
        isinstance(obj, dict) and set(obj) == {"name", "version"}, f"{what} is {{name, version}}"
    )
    assert isinstance(obj, dict)
    _require(isinstance(obj["name"], str) and bool(obj["name"]), f"{what} name")
    _require(is_int(obj["version"]) and obj["version"] >= 1, f"{what} version is an integer >= 1")


def _numbers(obj: object, what: str) -> None:
    _require(isinstance(obj, dict) and bool(obj), f"{what} is a non-empty object")
    assert isinstance(obj, dict)
    for k, v in obj.items():
        _require(
            isinstance(k, str) and (v is None or is_int(v) or isinstance(v, float)),
            f"{what}: {k!r} must be a number or null",
        )


def check_dataset_attest(body: Mapping[str, Any]) -> None:
    _require(set(body) == {"dataset", "result"}, "dataset.attest body is {dataset, result}")
    _ref(body["dataset"], "dataset")
    result = body["result"]
    _require(isinstance(result, dict), "result is an object")
    _require(isinstance(result.get("passed"), bool), "result.passed is a boolean")
    _require(isinstance(result.get("checks", []), list), "result.checks is a list")
    _require(isinstance(result.get("tool", {}), dict), "result.tool is an object")


def check_model_evaluate(body: Mapping[str, Any]) -> None:
    _require(
        set(body) == {"model", "dataset", "metrics", "tool"},
        "model.evaluate body is {model, dataset, metrics, tool}",
    )
    _ref(body["model"], "model")
    _ref(body["dataset"], "dataset")
    _numbers(body["metrics"], "metrics")
    _require(isinstance(body["tool"], dict), "tool is an object")


def _version(state: StateReader, kind: str, ref: Mapping[str, Any]) -> dict[str, Any]:
    found = state.get_state(version_key(kind, ref["name"], ref["version"]))
    if not isinstance(found, dict):
        raise Rejected(
            f"no_{kind}", f"{kind} {ref['name']} version {ref['version']} is not registered"
        )
    return found


def _org(state: StateReader, name: str) -> str:
    m = state.get_state(member_key(name))
    return str(m["org"]) if isinstance(m, dict) else ""


def exec_dataset_attest(state: Overlay, call: Call) -> None:
    ref = call.tx.body["dataset"]
    record = _version(state, "dataset", ref)
    attestations = list(record.get("attestations", []))
    if any(a["by"] == call.tx.actor for a in attestations):
        raise Rejected("already_attested", f"{call.tx.actor} already attested this version")
    result = call.tx.body["result"]
    attestations.append(
        {
            "by": call.tx.actor,
            "org": _org(state, call.tx.actor),
            "passed": result["passed"],
            "checks": [c.get("name") for c in result.get("checks", []) if isinstance(c, dict)],
            "tool": result.get("tool", {}),
            "index": call.index,
            "time": call.tx.time,
        }
    )
    state.put(
        version_key("dataset", ref["name"], ref["version"]),
        {**record, "attestations": attestations},
    )


def exec_model_evaluate(state: Overlay, call: Call) -> None:
    body = call.tx.body
    record = _version(state, "model", body["model"])
    _version(state, "dataset", body["dataset"])
    evaluations = list(record.get("evaluations", []))
    if any(e["by"] == call.tx.actor and e["dataset"] == body["dataset"] for e in evaluations):
        raise Rejected(
            "already_evaluated", f"{call.tx.actor} already evaluated this version on that data"
        )
    evaluations.append(
        {
            "by": call.tx.actor,
            "org": _org(state, call.tx.actor),
            "dataset": body["dataset"],
            "metrics": body["metrics"],
            "tool": body["tool"],
            "index": call.index,
            "time": call.tx.time,
        }
    )
    key = version_key("model", body["model"]["name"], body["model"]["version"])
    state.put(key, {**record, "evaluations": evaluations})


def attestation_rules() -> dict[str, TypeRule]:
    return {
        DATASET_ATTEST: TypeRule(
            check_dataset_attest, exec_dataset_attest, admit=names("dataset.name")
        ),
        MODEL_EVALUATE: TypeRule(
            check_model_evaluate, exec_model_evaluate, admit=names("model.name", "dataset.name")
        ),
    }
