"""Federated learning on the ledger (contract-set version 6 on): who takes part,
every round's committed updates and aggregate, who is credited, and the model
version the last aggregate became.

The ledger never sees arrays: only their digests (``modelchain.fl.arrays``) and
the figures computed off-ledger that a task's acceptance rule (CEL, the policy
evaluator) reads. Rounds open one at a time: an update is committed to the open
round, ``fl.round.aggregate`` names exactly the round's accepted updates (sorted
by Flower node id) and opens the next one. A refused update is a rejected entry
(the evidence); it writes nothing, so an aggregate naming it names an update the
round does not have.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Mapping
from typing import Any

from ..core.names import check_name
from ..errors import MalformedError
from .base import Call, Overlay, Rejected, StateReader, TypeRule, is_int
from .clauses import conjuncts, failing_clause
from .members import holds_role
from .policy import compile_rule, evaluate
from .state import (
    dataset_key,
    fl_node_key,
    fl_participant_key,
    fl_progress_key,
    fl_round_key,
    fl_task_key,
    fl_update_key,
    member_key,
    run_key,
    version_key,
)
from .types import (
    FL_CREDIT_RECORD,
    FL_PARTICIPANT_REGISTER,
    FL_ROUND_AGGREGATE,
    FL_TASK_CREATE,
    FL_TASK_FINALIZE,
    FL_UPDATE_COMMIT,
)
from .versions import FL_VERSION

__all__ = [
    "AGGREGATIONS",
    "CREDIT_METHODS",
    "MAX_PARTICIPANTS",
    "MAX_ROUNDS",
    "SHARE_TOLERANCE",
    "UPDATE_REFUSED",
    "check_node_id",
    "check_public_key",
    "failing_acceptance_clause",
    "fl_participant_uri",
    "fl_round_uri",
    "fl_rules",
    "fl_task_uri",
    "node_order",
    "update_view",
]

MAX_PARTICIPANTS = 1000
MAX_ROUNDS = 10_000
MAX_FIGURES = 64  # metrics per update, parameters per credit record
SHARE_TOLERANCE = 1e-9  # shares sum to one within this
# Flower's built-in strategies, by their class names.
AGGREGATIONS = frozenset(
    {"FedAvg", "FedProx", "FedMedian", "FedTrimmedAvg", "Krum", "MultiKrum", "Bulyan"}
)
# examples: each participant's share of the round's examples (the contract
# recomputes it); the two others are scores on the task's held-out dataset.
CREDIT_METHODS = frozenset({"examples", "leave-one-out", "shapley-mc"})
UPDATE_REFUSED = "update_refused"  # the reason code of an update the task's rule refuses
PARTICIPANT_ROLE = "fl-participant"
COORDINATOR_ROLE = "fl-coordinator"

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}\Z")
_NODE_ID = re.compile(r"(0|[1-9][0-9]{0,19})\Z")
_MEMBER = re.compile(r"[A-Za-z0-9._@-]{1,128}\Z")
_KEY_TYPE = "ecdsa-sha2-nistp256"
_MAX_KEY = 1024
_MAX_INT = 2**53 - 1


def fl_task_uri(task: str) -> str:
    """How a run's resolved dependencies name a federated task."""
    return f"modelchain-fl:task/{task}"


def fl_round_uri(task: str, round_: int) -> str:
    """How a run's resolved dependencies name one round's aggregate (with its digest)."""
    return f"modelchain-fl:task/{task}/round/{round_}"


def fl_participant_uri(task: str, member: str) -> str:
    return f"modelchain-fl:task/{task}/participant/{member}"


# -- static checks ---------------------------------------------------------------


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise MalformedError(message)


def _keys(body: Mapping[str, Any], want: set[str], what: str) -> None:
    _require(set(body) == want, f"{what} is {{{', '.join(sorted(want))}}}")


def _member(v: object, what: str) -> None:
    _require(isinstance(v, str) and bool(_MEMBER.match(v)), f"{what} is a member name")


def _int(v: object, lo: int, hi: int, what: str) -> None:
    _require(is_int(v) and lo <= v <= hi, f"{what} is an integer {lo}..{hi}")


def _finite(v: object) -> bool:
    if is_int(v):
        return abs(v) <= _MAX_INT
    return isinstance(v, float) and math.isfinite(v)


def _figures(v: object, what: str) -> None:
    _require(
        isinstance(v, dict) and len(v) <= MAX_FIGURES,
        f"{what} is an object of at most {MAX_FIGURES} figures",
    )
    assert isinstance(v, dict)
    for k, x in v.items():
        _require(isinstance(k, str) and 0 < len(k) <= 64, f"{what}: names are 1-64 characters")
        _require(_finite(x), f"{what}[{k!r}] is a finite number")


def _ref(v: object, what: str) -> None:
    _require(isinstance(v, dict) and set(v) == {"name", "version"}, f"{what} is {{name, version}}")
    assert isinstance(v, dict)
    _require(isinstance(v["name"], str) and 0 < len(v["name"]) <= 128, f"{what} name")
    _int(v["version"], 1, _MAX_INT, f"{what} version")


def _digest(v: object, what: str) -> None:
    _require(isinstance(v, str) and bool(_DIGEST.match(v)), f"{what} is sha256:<64 hex>")


def _task(v: object) -> None:
    _require(isinstance(v, str) and 0 < len(v) <= 128, "task is a task name")


def check_public_key(key: object) -> None:
    """An EC P-256 public key in OpenSSH format (``ecdsa-sha2-nistp256 AAAA...``,
    a comment allowed), as Flower's SuperNode authentication uses."""
    _require(
        isinstance(key, str) and 0 < len(key) <= _MAX_KEY and key.isascii(),
        f"public_key is an OpenSSH public key of at most {_MAX_KEY} characters",
    )
    assert isinstance(key, str)
    parts = key.split()
    _require(
        len(parts) in (2, 3) and parts[0] == _KEY_TYPE,
        f"public_key is an OpenSSH {_KEY_TYPE} key (Flower SuperNode keys are EC P-256)",
    )
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedError("public_key: the key is not base64") from exc
    fields: list[bytes] = []
    at = 0
    while at < len(blob) and len(fields) < 4:
        size = int.from_bytes(blob[at : at + 4], "big")
        at += 4
        fields.append(blob[at : at + size])
        at += size
    _require(
        at == len(blob)
        and len(fields) == 3
        and fields[0] == _KEY_TYPE.encode()
        and fields[1] == b"nistp256"
        and len(fields[2]) == 65
        and fields[2][0] == 4,
        "public_key: the key blob is not an uncompressed P-256 point",
    )


def check_node_id(v: object) -> None:
    """Flower's node id: a 64-bit unsigned integer, written in decimal as a
    string (canonical JSON carries integers only up to 2**53)."""
    _require(
        isinstance(v, str) and bool(_NODE_ID.match(v)) and int(v) < 2**64,
        'node_id is Flower\'s 64-bit node id in decimal, as a string ("0".."18446744073709551615")',
    )


def node_order(node_id: str) -> int:
    """The order of node ids: numeric, as Flower's."""
    return int(node_id)


def check_participant_register(body: Mapping[str, Any]) -> None:
    _keys(body, {"node_id", "public_key"}, "fl.participant.register body")
    check_node_id(body["node_id"])
    check_public_key(body["public_key"])


def check_task_create(body: Mapping[str, Any]) -> None:
    _keys(
        body,
        {
            "task",
            "model",
            "participants",
            "rounds",
            "aggregation",
            "min_participants",
            "acceptance",
            "heldout",
            "description",
        },
        "fl.task.create body",
    )
    _task(body["task"])
    _ref(body["model"], "model")
    if body["heldout"] is not None:
        _ref(body["heldout"], "heldout")
    parts = body["participants"]
    _require(
        isinstance(parts, list) and 0 < len(parts) <= MAX_PARTICIPANTS,
        f"participants is a list of 1..{MAX_PARTICIPANTS} member names",
    )
    for p in parts:
        _member(p, "a participant")
    _require(len(set(parts)) == len(parts), "participants are named once each")
    _int(body["rounds"], 1, MAX_ROUNDS, "rounds")
    _require(
        isinstance(body["aggregation"], str) and body["aggregation"] in AGGREGATIONS,
        f"aggregation is one of {', '.join(sorted(AGGREGATIONS))}",
    )
    _int(body["min_participants"], 1, len(parts), "min_participants")
    if body["acceptance"] is not None:
        compile_rule(body["acceptance"])
    _require(
        isinstance(body["description"], str) and len(body["description"]) <= 2000,
        "description is a string of at most 2000 characters",
    )


def _admit_task_create(body: Mapping[str, Any]) -> None:
    check_name(body["task"], "task")
    check_name(body["model"]["name"], "model")
    if body["heldout"] is not None:
        check_name(body["heldout"]["name"], "heldout dataset")
    for p in body["participants"]:
        check_name(p, "participant")


def check_update_commit(body: Mapping[str, Any]) -> None:
    _keys(
        body,
        {"task", "round", "participant", "digest", "examples", "metrics", "figures"},
        "fl.update.commit body",
    )
    _task(body["task"])
    _int(body["round"], 1, MAX_ROUNDS, "round")
    _member(body["participant"], "participant")
    _digest(body["digest"], "digest")
    _int(body["examples"], 1, _MAX_INT, "examples")
    _figures(body["metrics"], "metrics")
    figures = body["figures"]
    _require(
        isinstance(figures, dict) and set(figures) == {"norm", "distance", "cosine"},
        "figures is {norm, distance, cosine} (null where not computed)",
    )
    for k in ("norm", "distance", "cosine"):
        v = figures[k]
        _require(v is None or _finite(v), f"figures.{k} is a finite number or null")
    _require(figures["norm"] is None or figures["norm"] >= 0, "figures.norm is not negative")
    _require(
        figures["distance"] is None or figures["distance"] >= 0, "figures.distance is not negative"
    )
    _require(figures["cosine"] is None or -1 <= figures["cosine"] <= 1, "figures.cosine is -1..1")


def check_round_aggregate(body: Mapping[str, Any]) -> None:
    _keys(body, {"task", "round", "aggregation", "digest", "updates"}, "fl.round.aggregate body")
    _task(body["task"])
    _int(body["round"], 1, MAX_ROUNDS, "round")
    _require(
        isinstance(body["aggregation"], str) and body["aggregation"] in AGGREGATIONS,
        f"aggregation is one of {', '.join(sorted(AGGREGATIONS))}",
    )
    _digest(body["digest"], "digest")
    ups = body["updates"]
    _require(
        isinstance(ups, list) and 0 < len(ups) <= MAX_PARTICIPANTS,
        f"updates is a list of 1..{MAX_PARTICIPANTS} {{participant, digest}}",
    )
    for u in ups:
        _require(
            isinstance(u, dict) and set(u) == {"participant", "digest"},
            "an included update is {participant, digest}",
        )
        _member(u["participant"], "an included update's participant")
        _digest(u["digest"], "an included update's digest")
    names = [u["participant"] for u in ups]
    _require(len(set(names)) == len(names), "an update is included once")


def check_credit_record(body: Mapping[str, Any]) -> None:
    _keys(body, {"task", "round", "method", "heldout", "shares", "params"}, "fl.credit.record body")
    _task(body["task"])
    _int(body["round"], 1, MAX_ROUNDS, "round")
    _require(
        isinstance(body["method"], str) and body["method"] in CREDIT_METHODS,
        f"method is one of {', '.join(sorted(CREDIT_METHODS))}",
    )
    if body["heldout"] is not None:
        _ref(body["heldout"], "heldout")
    shares = body["shares"]
    _require(
        isinstance(shares, dict) and 0 < len(shares) <= MAX_PARTICIPANTS,
        "shares map each participant of the round to a share",
    )
    for k, v in shares.items():
        _member(k, "a share's participant")
        _require(_finite(v) and v >= 0, f"the share of {k} is a finite number >= 0")
    _require(
        abs(math.fsum(float(v) for v in shares.values()) - 1.0) <= SHARE_TOLERANCE,
        f"shares sum to one (within {SHARE_TOLERANCE})",
    )
    _figures(body["params"], "params")


def check_task_finalize(body: Mapping[str, Any]) -> None:
    _keys(body, {"task", "model"}, "fl.task.finalize body")
    _task(body["task"])
    _ref(body["model"], "model")


# -- execution ---------------------------------------------------------------------


def _get(state: StateReader, key: str) -> dict[str, Any] | None:
    found = state.get_state(key)
    return found if isinstance(found, dict) else None


def _task_record(state: StateReader, name: str) -> dict[str, Any]:
    """A task's definition with where it is (``round``, ``status``) merged in."""
    task = _get(state, fl_task_key(name))
    progress = _get(state, fl_progress_key(name))
    if task is None or progress is None:
        raise Rejected("no_task", f"no federated task named {name}")
    return {**task, **progress}


def _require_coordinator(task: Mapping[str, Any], call: Call) -> None:
    if call.tx.actor != task["coordinator"]:
        raise Rejected(
            "not_coordinator",
            f"only the task's coordinator ({task['coordinator']}) may {call.tx.type} "
            f"for {task['task']}; {call.tx.actor} is not",
        )


def _open_round(task: Mapping[str, Any], round_: int) -> None:
    if task["status"] != "open":
        raise Rejected("task_complete", f"task {task['task']} has run all its rounds")
    if round_ < task["round"]:
        raise Rejected(
            "round_closed",
            f"round {round_} of {task['task']} is closed; round {task['round']} is open",
        )
    if round_ > task["round"]:
        raise Rejected(
            "round_not_open",
            f"round {round_} of {task['task']} is not open yet; round {task['round']} is",
        )


def _round(state: StateReader, task: str, round_: int) -> dict[str, Any]:
    found = _get(state, fl_round_key(task, round_))
    return found if found is not None else {"round": round_, "accepted": 0, "aggregate": None}


def exec_participant_register(state: Overlay, call: Call) -> None:
    """A member registers its own Flower node id and public key (a later
    registration replaces its earlier one; a task keeps what it was created with)."""
    body, actor = call.tx.body, call.tx.actor
    owner = state.get_state(fl_node_key(body["node_id"]))
    if owner is not None and owner != actor:
        raise Rejected("node_id_taken", f"node id {body['node_id']} is registered to {owner}")
    before = _get(state, fl_participant_key(actor))
    if before is not None and before["node_id"] != body["node_id"]:
        state.delete(fl_node_key(before["node_id"]))
    member = _get(state, member_key(actor))
    assert member is not None  # authorize found it
    state.put(fl_node_key(body["node_id"]), actor)
    state.put(
        fl_participant_key(actor),
        {
            "member": actor,
            "org": member["org"],
            "node_id": body["node_id"],
            "public_key": " ".join(body["public_key"].split()[:2]),  # the comment is not the key
            "index": call.index,
        },
    )


def exec_task_create(state: Overlay, call: Call) -> None:
    body = call.tx.body
    if state.get_state(fl_task_key(body["task"])) is not None:
        raise Rejected("task_exists", f"federated task {body['task']} already exists")
    model = body["model"]
    if _get(state, version_key("model", model["name"], model["version"])) is None:
        raise Rejected(
            "no_model", f"model {model['name']} version {model['version']} is not registered"
        )
    heldout = body["heldout"]
    if heldout is not None and (
        _get(state, version_key("dataset", heldout["name"], heldout["version"])) is None
        or _get(state, dataset_key(heldout["name"])) is None
    ):
        raise Rejected(
            "no_dataset",
            f"held-out dataset {heldout['name']} version {heldout['version']} is not registered",
        )
    participants = []
    for name in body["participants"]:
        member = _get(state, member_key(name))
        if member is None or member.get("status") != "active":
            raise Rejected("not_participant", f"{name} is not an active member")
        if not holds_role(member["roles"], [PARTICIPANT_ROLE], call.version):
            raise Rejected("not_participant", f"{name} does not hold the {PARTICIPANT_ROLE} role")
        reg = _get(state, fl_participant_key(name))
        if reg is None:
            raise Rejected(
                "participant_unregistered",
                f"{name} has registered no Flower node ({FL_PARTICIPANT_REGISTER})",
            )
        participants.append({k: reg[k] for k in ("member", "org", "node_id", "public_key")})
    state.put(
        fl_task_key(body["task"]),
        {
            "task": body["task"],
            "coordinator": call.tx.actor,
            "model": dict(model),
            "participants": participants,
            "rounds": body["rounds"],
            "aggregation": body["aggregation"],
            "min_participants": body["min_participants"],
            "acceptance": body["acceptance"],
            "heldout": None if heldout is None else dict(heldout),
            "description": body["description"],
            "final": None,
            "index": call.index,
        },
    )
    state.put(fl_progress_key(body["task"]), {"round": 1, "status": "open"})


def _participant(task: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    for p in task["participants"]:
        if p["member"] == name:
            return dict(p)
    return None


def update_view(task: Mapping[str, Any], body: Mapping[str, Any], by: str) -> dict[str, Any]:
    """What a task's acceptance rule sees as ``update`` (figures as doubles, so
    that ``update.norm < 10`` compares alike whatever JSON number was sent)."""
    p = _participant(task, body["participant"]) or {"org": "", "node_id": ""}
    fig = body["figures"]
    return {
        "participant": body["participant"],
        "org": p["org"],
        "node_id": p["node_id"],
        "round": body["round"],
        "digest": body["digest"],
        "examples": body["examples"],
        "metrics": {k: float(v) for k, v in body["metrics"].items()},
        "norm": None if fig["norm"] is None else float(fig["norm"]),
        "distance": None if fig["distance"] is None else float(fig["distance"]),
        "cosine": None if fig["cosine"] is None else float(fig["cosine"]),
        "by": by,
        "signed_by_participant": by == body["participant"],
    }


def _task_view(task: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": task["task"],
        "round": task["round"],
        "rounds": task["rounds"],
        "aggregation": task["aggregation"],
        "min_participants": task["min_participants"],
        "participants": len(task["participants"]),
    }


def _acceptance_context(
    task: Mapping[str, Any], body: Mapping[str, Any], by: str
) -> dict[str, Any]:
    return {"update": update_view(task, body, by), "task": _task_view(task)}


def failing_acceptance_clause(state: StateReader, body: Mapping[str, Any], by: str) -> str | None:
    """For messages only (as ``clauses``): the conjunct of the task's acceptance
    rule that an ``fl.update.commit`` body fails; None where there is no task, no
    rule, a single clause (already quoted) or nothing fails."""
    try:
        task = _task_record(state, str(body.get("task")))
    except Rejected:
        return None
    if task["acceptance"] is None or len(conjuncts(task["acceptance"])) < 2:
        return None
    return failing_clause(task["acceptance"], _acceptance_context(task, body, by))


def exec_update_commit(state: Overlay, call: Call) -> None:
    body, actor = call.tx.body, call.tx.actor
    task = _task_record(state, body["task"])
    who = body["participant"]
    if _participant(task, who) is None:
        raise Rejected("not_participant", f"{who} is not a participant of task {task['task']}")
    if actor != who and actor != task["coordinator"]:
        raise Rejected(
            "not_participant",
            f"{actor} may not commit {who}'s update: only the participant itself or the "
            f"task's coordinator ({task['coordinator']}) may",
        )
    member = _get(state, member_key(who))
    if member is None or member.get("status") != "active":
        raise Rejected("member_revoked", f"participant {who} is no longer an active member")
    _open_round(task, body["round"])
    key = fl_update_key(task["task"], body["round"], who)
    earlier = _get(state, key)
    if earlier is not None:
        raise Rejected(
            "duplicate_update",
            f"{who} already committed an update to round {body['round']} of {task['task']} "
            f"(entry {earlier['index']})",
        )
    rule = task["acceptance"]
    if rule is not None and not evaluate(rule, _acceptance_context(task, body, actor)):
        raise Rejected(
            UPDATE_REFUSED,
            f"the update of {who} to round {body['round']} fails task {task['task']}'s "
            f"acceptance rule: {rule}",
        )
    update = {
        "participant": who,
        "digest": body["digest"],
        "examples": body["examples"],
        "metrics": body["metrics"],
        "figures": body["figures"],
        "by": actor,
        # who vouches for the bytes: the participant's own signature, or the
        # coordinator's record of what it received
        "signed_by_participant": actor == who,
        "index": call.index,
    }
    state.put(key, update)
    record = _round(state, task["task"], body["round"])
    state.put(
        fl_round_key(task["task"], body["round"]), {**record, "accepted": record["accepted"] + 1}
    )


def exec_round_aggregate(state: Overlay, call: Call) -> None:
    body = call.tx.body
    task = _task_record(state, body["task"])
    _require_coordinator(task, call)
    _open_round(task, body["round"])
    if body["aggregation"] != task["aggregation"]:
        raise Rejected(
            "aggregation_mismatch",
            f"task {task['task']} aggregates by {task['aggregation']}, not {body['aggregation']}",
        )
    record = _round(state, task["task"], body["round"])
    accepted: dict[str, dict[str, Any]] = {}
    for u in body["updates"]:
        mine = _get(state, fl_update_key(task["task"], body["round"], u["participant"]))
        if mine is not None:
            accepted[u["participant"]] = mine
        if mine is None or mine["digest"] != u["digest"]:
            raise Rejected(
                "update_not_accepted",
                f"round {body['round']} of {task['task']} has no accepted update "
                f"{u['digest'][:23]}... from {u['participant']} (refused, never committed or "
                "other bytes)",
            )
    named = {u["participant"] for u in body["updates"]}
    if len(named) != record["accepted"]:  # each named one is accepted: so all of them
        raise Rejected(
            "update_left_out",
            f"the aggregate names {len(named)} of the {record['accepted']} updates round "
            f"{body['round']} accepted: it includes every one",
        )
    if len(named) < task["min_participants"]:
        raise Rejected(
            "too_few_updates",
            f"round {body['round']} of {task['task']} needs {task['min_participants']} "
            f"accepted updates; it has {len(named)}",
        )
    node = {p["member"]: p["node_id"] for p in task["participants"]}
    order = [u["participant"] for u in body["updates"]]
    if order != sorted(order, key=lambda n: (node_order(node[n]), n)):
        raise Rejected("update_order", "the included updates are listed by Flower node id")
    aggregate = {
        "digest": body["digest"],
        "aggregation": body["aggregation"],
        "updates": [dict(u) for u in body["updates"]],
        "examples": sum(accepted[n]["examples"] for n in order),
        "by": call.tx.actor,
        "index": call.index,
    }
    state.put(fl_round_key(task["task"], body["round"]), {**record, "aggregate": aggregate})
    done = body["round"] == task["rounds"]
    state.put(
        fl_progress_key(task["task"]),
        {
            "round": body["round"] if done else body["round"] + 1,
            "status": "complete" if done else "open",
        },
    )


def exec_credit_record(state: Overlay, call: Call) -> None:
    body = call.tx.body
    task = _task_record(state, body["task"])
    record = _get(state, fl_round_key(task["task"], body["round"]))
    if record is None or record.get("aggregate") is None:
        raise Rejected(
            "round_not_aggregated",
            f"round {body['round']} of {task['task']} has no aggregate to credit",
        )
    if call.tx.actor != task["coordinator"] and not _evaluator(state, call):
        raise Rejected(
            "not_permitted",
            f"credit for {task['task']} is recorded by its coordinator or an evaluator",
        )
    included = [u["participant"] for u in record["aggregate"]["updates"]]
    if set(body["shares"]) != set(included):
        raise Rejected(
            "shares_mismatch",
            f"the shares name {', '.join(sorted(body['shares']))}; round {body['round']} "
            f"included {', '.join(sorted(included))}",
        )
    method = body["method"]
    credit = dict(record.get("credit", {}))
    if method in credit:
        raise Rejected(
            "credit_exists", f"round {body['round']} already has {method} credit recorded"
        )
    if method == "examples":
        if body["heldout"] is not None:
            raise Rejected("heldout_mismatch", "example-count credit reads no held-out dataset")
        total = record["aggregate"]["examples"]
        for name in included:
            update = _get(state, fl_update_key(task["task"], body["round"], name))
            assert update is not None  # the aggregate named it, so it was accepted
            want = update["examples"] / total
            if abs(float(body["shares"][name]) - want) > SHARE_TOLERANCE:
                raise Rejected(
                    "shares_mismatch",
                    f"{name}'s example-count share is {want!r}, not {body['shares'][name]!r}",
                )
    elif task["heldout"] is None or body["heldout"] != task["heldout"]:
        raise Rejected(
            "heldout_mismatch",
            f"{method} credit is scored on the task's held-out dataset "
            f"({_ref_text(task['heldout'])}), not {_ref_text(body['heldout'])}",
        )
    credit[method] = {
        "shares": body["shares"],
        "heldout": body["heldout"],
        "params": body["params"],
        "by": call.tx.actor,
        "index": call.index,
    }
    state.put(fl_round_key(task["task"], body["round"]), {**record, "credit": credit})


def _evaluator(state: StateReader, call: Call) -> bool:
    member = _get(state, member_key(call.tx.actor))
    return member is not None and holds_role(member["roles"], ["evaluator"], call.version)


def _ref_text(ref: Mapping[str, Any] | None) -> str:
    return "none" if ref is None else f"{ref['name']}@{ref['version']}"


def exec_task_finalize(state: Overlay, call: Call) -> None:
    """Name the model version the last aggregate became. Its parent must be the
    task's starting model and its run must name every round's aggregate (at its
    digest) and the task, so that the lineage is checked when it is written."""
    body = call.tx.body
    task = _task_record(state, body["task"])
    _require_coordinator(task, call)
    if task["status"] != "complete":
        raise Rejected(
            "task_not_complete",
            f"task {task['task']} is at round {task['round']} of {task['rounds']}",
        )
    if task["final"] is not None:
        raise Rejected(
            "task_finalized",
            f"task {task['task']} already became {task['final']['name']} "
            f"version {task['final']['version']}",
        )
    ref = body["model"]
    model = _get(state, version_key("model", ref["name"], ref["version"]))
    if model is None:
        raise Rejected(
            "no_model", f"model {ref['name']} version {ref['version']} is not registered"
        )
    if model.get("parent") != task["model"]:
        raise Rejected(
            "lineage_mismatch",
            f"{ref['name']}@{ref['version']}'s parent is not the task's starting model "
            f"{_ref_text(task['model'])}",
        )
    run = _get(state, run_key(model["run"])) if isinstance(model.get("run"), str) else None
    if run is None:
        raise Rejected("lineage_mismatch", f"{ref['name']}@{ref['version']} names no recorded run")
    deps = run["statement"]["predicate"]["buildDefinition"].get("resolvedDependencies", [])
    named = {
        d["uri"]: d.get("digest")
        for d in deps
        if isinstance(d, dict) and isinstance(d.get("uri"), str)
    }
    if fl_task_uri(task["task"]) not in named:
        raise Rejected("lineage_mismatch", f"run {run['id']} does not name task {task['task']}")
    for r in range(1, task["rounds"] + 1):
        digest = _round(state, task["task"], r)["aggregate"]["digest"]
        found = named.get(fl_round_uri(task["task"], r))
        if not isinstance(found, dict) or found.get("sha256") != digest.split(":", 1)[1]:
            raise Rejected(
                "lineage_mismatch",
                f"run {run['id']} does not name round {r}'s aggregate at its digest",
            )
    definition = _get(state, fl_task_key(task["task"]))
    assert definition is not None  # _task_record found it
    final = {"name": ref["name"], "version": ref["version"], "index": call.index}
    state.put(fl_task_key(task["task"]), {**definition, "final": final})


def fl_rules() -> dict[str, TypeRule]:
    def rule(check: Any, execute: Any, admit: Any = None) -> TypeRule:
        return TypeRule(check, execute, admit=admit, since=FL_VERSION)

    return {
        FL_PARTICIPANT_REGISTER: rule(check_participant_register, exec_participant_register),
        FL_TASK_CREATE: rule(check_task_create, exec_task_create, _admit_task_create),
        FL_UPDATE_COMMIT: rule(check_update_commit, exec_update_commit, _admit_names),
        FL_ROUND_AGGREGATE: rule(check_round_aggregate, exec_round_aggregate, _admit_names),
        FL_CREDIT_RECORD: rule(check_credit_record, exec_credit_record, _admit_names),
        FL_TASK_FINALIZE: rule(check_task_finalize, exec_task_finalize, _admit_names),
    }


def _admit_names(body: Mapping[str, Any]) -> None:
    check_name(body["task"], "task")
    if "participant" in body:
        check_name(body["participant"], "participant")
    for u in body.get("updates", ()):
        check_name(u["participant"], "participant")
    for p in body.get("shares", {}):
        check_name(p, "participant")
    for k in ("model", "heldout"):
        if isinstance(body.get(k), dict):
            check_name(body[k]["name"], k)
