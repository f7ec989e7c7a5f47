"""Inference receipts: ``inference.batch`` commits a batch of inference records.

Each record (model version, salted input and output hashes, time, request id)
is a leaf of an RFC 9162 tree kept by the caller; the ledger sees only the
batch: its root, its record count and its time range. State keeps two
counters per model version, so a batch costs one small state write.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..errors import MalformedError
from .base import Call, Overlay, Rejected, TypeRule, is_int, names
from .state import deployment_key, inference_key, version_key
from .types import INFERENCE_BATCH

__all__ = ["MAX_BATCH_RECORDS", "inference_rules"]

MAX_BATCH_RECORDS = 1 << 24

_HEX32 = re.compile(r"[0-9a-f]{64}\Z")
_BATCH_ID = re.compile(r"[0-9a-f]{32}\Z")
_FIELDS = {"model", "version", "root", "count", "first_time", "last_time", "batch_id"}


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise MalformedError(message)


def _int(v: object, lo: int, hi: int) -> bool:
    return is_int(v) and lo <= v <= hi


def check_batch(body: Mapping[str, Any]) -> None:
    _require(
        _FIELDS <= set(body) <= _FIELDS | {"env"},
        "inference.batch body is {model, version, root, count, first_time, last_time, "
        "batch_id} and optionally env",
    )
    for k in ("model", *(("env",) if "env" in body else ())):
        v = body[k]
        _require(isinstance(v, str) and 0 < len(v) <= 200, f"{k} is a non-empty string")
    _require(_int(body["version"], 1, 2**53 - 1), "version is an integer >= 1")
    _require(isinstance(body["root"], str) and bool(_HEX32.match(body["root"])), "root is hex")
    _require(
        isinstance(body["batch_id"], str) and bool(_BATCH_ID.match(body["batch_id"])),
        "batch_id is 32 lowercase hex digits",
    )
    _require(_int(body["count"], 1, MAX_BATCH_RECORDS), f"count is 1..{MAX_BATCH_RECORDS}")
    _require(_int(body["first_time"], 0, 2**53 - 1), "first_time is milliseconds")
    _require(_int(body["last_time"], 0, 2**53 - 1), "last_time is milliseconds")
    _require(body["first_time"] <= body["last_time"], "first_time is not after last_time")


def exec_batch(state: Overlay, call: Call) -> None:
    body = call.tx.body
    model, version = body["model"], body["version"]
    record = state.get_state(version_key("model", model, version))
    if not isinstance(record, dict):
        raise Rejected("no_model", f"model {model} version {version} is not registered")
    if "env" in body:
        dep = state.get_state(deployment_key(model, body["env"]))
        if not isinstance(dep, dict) or dep.get("version") != version:
            raise Rejected(
                "not_deployed", f"model {model} version {version} is not deployed to {body['env']}"
            )
    key = inference_key(model, version)
    counters = state.get_state(key)
    batches, records = (0, 0)
    if isinstance(counters, dict):
        batches, records = int(counters["batches"]), int(counters["records"])
    state.put(key, {"batches": batches + 1, "records": records + body["count"]})


def inference_rules() -> dict[str, TypeRule]:
    return {INFERENCE_BATCH: TypeRule(check_batch, exec_batch, admit=names("model", "env"))}
