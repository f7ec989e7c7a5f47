"""Where the contracts keep things: every state key, in one place.

State is a map from string keys to JSON values, written only by contracts.
Facades, the server and the reports read it through these names.
"""

from __future__ import annotations

from typing import Protocol

from ..core.canonical import JSONValue

__all__ = [
    "APPROVAL_TTL_KEY",
    "CONTRACT_SET_KEY",
    "GOVERNANCE_KEY",
    "LEDGER_KEY",
    "MEMBERS_KEY",
    "POLICY_PREFIX",
    "REPLICATION_KEY",
    "VALIDITY_KEY",
    "StateReader",
    "dataset_key",
    "deploy_envs_key",
    "deploy_history_key",
    "deployment_key",
    "digest_key",
    "entity_key",
    "erased_field_key",
    "erased_key",
    "fl_node_key",
    "fl_participant_key",
    "fl_progress_key",
    "fl_round_key",
    "fl_task_key",
    "fl_update_key",
    "grant_key",
    "inference_key",
    "keyid_key",
    "member_key",
    "model_key",
    "monitor_key",
    "policy_history_key",
    "policy_key",
    "replicas_key",
    "run_key",
    "stored_key",
    "version_key",
]


class StateReader(Protocol):
    def get_state(self, key: str) -> JSONValue | None: ...


# {origin, log_key, permissions, genesis_time}: what genesis fixed (the role map
# in ``permissions`` changes by permissions.set)
LEDGER_KEY = "ledger"
GOVERNANCE_KEY = "governance"  # {quorum}
MEMBERS_KEY = "members"  # [name, ...] in the order they joined
# {"versions": [{version, from, set_at, by}]}: absent in ledgers made before
# contract-set versions (they run version 1)
CONTRACT_SET_KEY = "contract-set"
# {max_ms, set_at, by}: the longest validity window (not_before..expires) a
# transaction may carry, set by governance.validity; absent: five minutes
VALIDITY_KEY = "validity"
# {ttl_ms, set_at, by}: how long an approval counts (contract-set version 5 on),
# set by governance.approval-ttl; absent: 30 days
APPROVAL_TTL_KEY = "approval-ttl"
# {copies, set_at, by}: how many organisations must hold a verified copy of a
# model version before it is deployed (contract-set version 8 on), set by
# governance.replication; absent or 0: no requirement
REPLICATION_KEY = "replication"
POLICY_PREFIX = "policy/"


def member_key(name: str) -> str:
    return f"member/{name}"


def keyid_key(keyid: str) -> str:
    """Which member a DSSE key id belongs (or belonged) to."""
    return f"keyid/{keyid}"


def policy_key(action: str) -> str:
    return f"{POLICY_PREFIX}{action}"


def policy_history_key(action: str, version: int) -> str:
    return f"policy-history/{action}@{version}"


def entity_key(kind: str, name: str) -> str:
    """A dataset's or model's record (``kind`` is "dataset" or "model")."""
    return f"{kind}/{name}"


def dataset_key(name: str) -> str:
    return entity_key("dataset", name)


def model_key(name: str) -> str:
    return entity_key("model", name)


def version_key(kind: str, name: str, version: int) -> str:
    return f"{kind}/{name}@{version}"


def digest_key(kind: str, name: str, digest: str) -> str:
    """Which version of ``name`` has these bytes (idempotent registration)."""
    return f"{kind}/{name}#{digest}"


def run_key(run_id: str) -> str:
    return f"run/{run_id}"


def deployment_key(model: str, env: str) -> str:
    """Where the deployment contracts keep the version an environment runs:
    ``{"version": N, ...}``."""
    return f"deployment/{model}/{env}"


def deploy_history_key(model: str, env: str) -> str:
    return f"deploy-history/{model}/{env}"


def deploy_envs_key(model: str) -> str:
    return f"deploy-envs/{model}"


def monitor_key(model: str, env: str) -> str:
    return f"monitor/{model}/{env}"


def inference_key(model: str, version: int) -> str:
    """State key of a model version's counters: ``{"batches": B, "records": R}``."""
    return f"inference/{model}@{version}"


def fl_participant_key(member: str) -> str:
    """A member's Flower identity: ``{member, org, node_id, public_key, index}``."""
    return f"fl-participant/{member}"


def fl_node_key(node_id: str) -> str:
    """Which member registered a Flower node id (so no two share one)."""
    return f"fl-node/{node_id}"


def fl_task_key(task: str) -> str:
    """A federated task's definition (written once) and, at the end, its final model."""
    return f"fl-task/{task}"


def fl_progress_key(task: str) -> str:
    """Where a task is: ``{round, status}`` (the round open now; open or complete)."""
    return f"fl-progress/{task}"


def fl_round_key(task: str, round_: int) -> str:
    """One round of a task: how many updates it accepted, its aggregate, its credit."""
    return f"fl-round/{task}/{round_}"


def fl_update_key(task: str, round_: int, participant: str) -> str:
    """One participant's accepted update to a round (``participant`` "" gives
    the prefix of the round's updates)."""
    return f"fl-update/{task}/{round_}/{participant}"


def stored_key(kind: str, name: str, version: int) -> str:
    """How a version's files are stored encrypted (``artifact.store``): the scheme,
    the key entry's id, the location and each file's ciphertext; never a key."""
    return f"artifact-store/{kind}/{name}@{version}"


def grant_key(kind: str, name: str, member: str) -> str:
    """A member's grant to obtain the data keys of a dataset's or model's versions
    (``member`` "" gives the prefix of the entity's grants)."""
    return f"artifact-grant/{kind}/{name}/{member}"


def erased_key(kind: str, name: str, version: int) -> str:
    """A version's erasure: who, when, why (``artifact.erase``)."""
    return f"artifact-erased/{kind}/{name}@{version}"


def erased_field_key(digest: str) -> str:
    """The erasure of one committed personal field, by its digest (``record.erase``):
    the entry it was in, who, when, why."""
    return f"erased-field/{digest}"


def replicas_key(kind: str, name: str, version: int) -> str:
    """Which organisations hold a verified copy of a version's files
    (``artifact.replica``): ``{org: {location, by, index, time}}``."""
    return f"artifact-replicas/{kind}/{name}@{version}"
