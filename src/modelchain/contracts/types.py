"""Every transaction type's name, in one place.

Contracts, facades, the CLI, the server and the reports use these names, never
the strings. ``GOVERNANCE_TYPES`` are the types their own contract authorizes
(an admin quorum, or the member itself for its keys), not the role map.
"""

from __future__ import annotations

__all__ = [
    "ACCESS_LOG",
    "APPROVAL_TTL_SET",
    "ARTIFACT_ERASE",
    "ARTIFACT_GRANT",
    "ARTIFACT_KEY_FETCH",
    "ARTIFACT_REPLICA",
    "ARTIFACT_REVOKE",
    "ARTIFACT_STORE",
    "ARTIFACT_TYPES",
    "CHECKPOINT_POLICY_SET",
    "CONTRACTS_ACTIVATE",
    "DATASET_ATTEST",
    "DATASET_INGEST",
    "DATASET_REGISTER",
    "EVENT",
    "FL_CREDIT_RECORD",
    "FL_PARTICIPANT_REGISTER",
    "FL_ROUND_AGGREGATE",
    "FL_TASK_CREATE",
    "FL_TASK_FINALIZE",
    "FL_TYPES",
    "FL_UPDATE_COMMIT",
    "GENESIS",
    "GOVERNANCE_TYPES",
    "INFERENCE_BATCH",
    "MEMBER_ADD",
    "MEMBER_REVOKE",
    "MEMBER_ROTATE",
    "MEMBER_UPDATE",
    "MODEL_APPROVE",
    "MODEL_DEPLOY",
    "MODEL_EVALUATE",
    "MODEL_REGISTER",
    "MODEL_REJECT",
    "MODEL_REVOKE",
    "MODEL_ROLLBACK",
    "MONITOR_REPORT",
    "PERMISSIONS_SET",
    "POLICY_SET",
    "QUORUM_SET",
    "RECORD_ERASE",
    "REPLICATION_SET",
    "REPLICATION_TYPES",
    "RUN_RECORD",
    "VALIDITY_SET",
    "VERSION_1_TYPES",
]

# the ledger itself
GENESIS = "ledger.genesis"
EVENT = "event.record"

# registry
DATASET_REGISTER = "dataset.register"
DATASET_INGEST = "dataset.ingest"
RUN_RECORD = "run.record"
MODEL_REGISTER = "model.register"

# attestations
DATASET_ATTEST = "dataset.attest"
MODEL_EVALUATE = "model.evaluate"

# approvals and deployments
MODEL_APPROVE = "model.approve"
MODEL_REJECT = "model.reject"
MODEL_DEPLOY = "model.deploy"
MODEL_ROLLBACK = "model.rollback"
MODEL_REVOKE = "model.revoke"
MONITOR_REPORT = "monitor.report"
ACCESS_LOG = "access.log"

# inference receipts
INFERENCE_BATCH = "inference.batch"

# federated learning (contract-set version 6 on)
FL_PARTICIPANT_REGISTER = "fl.participant.register"
FL_TASK_CREATE = "fl.task.create"
FL_UPDATE_COMMIT = "fl.update.commit"
FL_ROUND_AGGREGATE = "fl.round.aggregate"
FL_CREDIT_RECORD = "fl.credit.record"
FL_TASK_FINALIZE = "fl.task.finalize"
FL_TYPES = frozenset(
    {
        FL_PARTICIPANT_REGISTER,
        FL_TASK_CREATE,
        FL_UPDATE_COMMIT,
        FL_ROUND_AGGREGATE,
        FL_CREDIT_RECORD,
        FL_TASK_FINALIZE,
    }
)

# encrypted artifacts, who may obtain their keys, erasure (contract-set version 7 on)
ARTIFACT_STORE = "artifact.store"
ARTIFACT_GRANT = "artifact.grant"
ARTIFACT_REVOKE = "artifact.revoke"
ARTIFACT_KEY_FETCH = "artifact.key.fetch"
ARTIFACT_ERASE = "artifact.erase"
# personal fields (contract-set version 8 on): erasing committed fields of an entry
RECORD_ERASE = "record.erase"

ARTIFACT_TYPES = frozenset(
    {ARTIFACT_STORE, ARTIFACT_GRANT, ARTIFACT_REVOKE, ARTIFACT_KEY_FETCH, ARTIFACT_ERASE}
)

# which organisations hold a verified copy of a version (contract-set version 8 on)
ARTIFACT_REPLICA = "artifact.replica"
REPLICATION_TYPES = frozenset({ARTIFACT_REPLICA})

# governance
MEMBER_ADD = "member.add"
MEMBER_UPDATE = "member.update"
MEMBER_REVOKE = "member.revoke"
MEMBER_ROTATE = "member.rotate"
QUORUM_SET = "governance.quorum"
POLICY_SET = "policy.set"
PERMISSIONS_SET = "permissions.set"
CONTRACTS_ACTIVATE = "contracts.activate"
CHECKPOINT_POLICY_SET = "checkpoint.policy.set"
VALIDITY_SET = "governance.validity"
APPROVAL_TTL_SET = "governance.approval-ttl"
REPLICATION_SET = "governance.replication"

GOVERNANCE_TYPES = frozenset(
    {
        MEMBER_ADD,
        MEMBER_UPDATE,
        MEMBER_REVOKE,
        MEMBER_ROTATE,
        QUORUM_SET,
        POLICY_SET,
        PERMISSIONS_SET,
        CONTRACTS_ACTIVATE,
        CHECKPOINT_POLICY_SET,
        VALIDITY_SET,
        APPROVAL_TTL_SET,
        REPLICATION_SET,
    }
)

# The types contract-set version 1 knew. Under version 1 a type absent from the
# role map was open to every member; only these keep that (old logs replay as
# they were written): a type added since is denied until the map lists it.
VERSION_1_TYPES = frozenset(
    {
        GENESIS,
        EVENT,
        DATASET_REGISTER,
        DATASET_INGEST,
        RUN_RECORD,
        MODEL_REGISTER,
        DATASET_ATTEST,
        MODEL_EVALUATE,
        MODEL_APPROVE,
        MODEL_REJECT,
        MODEL_DEPLOY,
        MODEL_ROLLBACK,
        MODEL_REVOKE,
        MONITOR_REPORT,
        ACCESS_LOG,
        INFERENCE_BATCH,
        MEMBER_ADD,
        MEMBER_UPDATE,
        MEMBER_REVOKE,
        MEMBER_ROTATE,
        QUORUM_SET,
        POLICY_SET,
    }
)
