"""Contract-set versions: which rules an entry is executed under.

Genesis records the version a ledger starts on (a genesis without one, made
before versions existed, starts on 1); ``contracts.activate``, signed by an
admin quorum, switches to a newer one from a future index. A node refuses to
execute an entry under a version it does not know (``ContractVersionError``)
rather than give it another outcome. What each version changed:

    1  the rules of every ledger made before versions were recorded
    2  a named approval role (approver:risk) holds the ``approver`` role; "*" in
       the role map is any member; approvals and rejections of a version that
       is not registered are refused before any policy, and their policies see
       what the deployment's policy sees; a type the role map does not list is
       denied (under 1 only types added since version 1 were)
    3  ``checkpoint.policy.set``: an admin quorum replaces the checkpoint
       policy (a cluster's nodes and threshold, its witnesses)
    4  ``governance.validity``: an admin quorum sets the longest validity window
       (``not_before``..``expires``) a transaction may carry (five minutes until
       set); admission accepts windowed transactions only from version 4 on
    5  approvals go stale: one older than the approval period
       (``governance.approval-ttl``, 30 days until set) by the deploying
       entry's time, or recorded before the version's last rollback from that
       environment, does not count; a version rolled back from an environment
       is redeployed there only with an approval recorded since; an approver
       whose approval went stale may approve again
    6  federated learning (ADR 15): ``fl.participant.register``, ``fl.task.create``,
       ``fl.update.commit``, ``fl.round.aggregate``, ``fl.credit.record`` and
       ``fl.task.finalize``; under versions below 6 they are unknown types, and a
       ledger that activates 6 denies them until its role map lists them
       (``permissions.set``, by the quorum): only a new ledger's default map does
    7  encrypted artifacts and erasure (ADR 17): ``artifact.store`` (how a
       version's files are stored encrypted: ciphertext digests, location,
       scheme, key entry id, never a key), ``artifact.grant`` and
       ``artifact.revoke`` (who may obtain a version's data key),
       ``artifact.key.fetch`` (a key request: rejected, and so logged as a
       refusal, without a grant) and ``artifact.erase`` (a version erased: who,
       when, why; nothing is stored or granted for it afterwards). Unknown below
       7; a ledger that activates 7 denies them until ``permissions.set`` lists
       them: only a new ledger's default map does
    8  personal fields (ADR 18): the fields that may hold personal data (see
       ``contracts.personal.PERSONAL_FIELDS``: comments, reasons, purposes,
       sources, collectors, batches, descriptions) hold either "" or a salted
       commitment ``{"_sd": DIGEST}`` (an SD-JWT disclosure's digest), never a
       value: a value is refused at admission and rejected if logged, and a
       commitment is rejected under earlier versions. ``record.erase`` (a data
       steward and an admin, by default policy) records that committed fields of
       an entry are erased; their disclosures are destroyed off the ledger.
       Unknown below 8; a ledger that activates 8 denies it until
       ``permissions.set`` lists it. Also in 8,
       replication (ADR 19): ``governance.replication {copies}``, signed by the
       admin quorum, sets how many organisations must hold a verified copy of a
       model version before it is deployed (unset or 0: no requirement);
       ``artifact.replica`` records that the submitting member's organisation
       (its ``org``, else its name) holds a verified copy of every file of a
       registered, unerased version; ``model.deploy`` of a version held by fewer
       organisations than that is refused (``under_replicated``, before any
       policy), and the policies of ``model.deploy``, ``model.approve`` and
       ``model.reject`` see ``replication`` {required, copies, orgs}. Both types
       are unknown below 8; a ledger that activates 8 denies ``artifact.replica``
       until ``permissions.set`` lists it: only a new ledger's default map does
"""

from __future__ import annotations

from typing import Any

from .state import CONTRACT_SET_KEY, StateReader

__all__ = [
    "APPROVAL_VERSION",
    "ARTIFACT_VERSION",
    "CURRENT_VERSION",
    "FL_VERSION",
    "KNOWN_VERSIONS",
    "PERSONAL_VERSION",
    "REPLICATION_VERSION",
    "WINDOW_VERSION",
    "active_version",
    "schedule",
]

CURRENT_VERSION = 8
KNOWN_VERSIONS = frozenset({1, 2, 3, 4, 5, 6, 7, 8})
WINDOW_VERSION = 4  # transactions may carry a validity window from this version on
APPROVAL_VERSION = 5  # approvals expire, and a rollback makes them stale, from this version on
FL_VERSION = 6  # the fl.* types, from this version on
ARTIFACT_VERSION = 7  # the artifact.* types (encryption, grants, erasure), from this version on
PERSONAL_VERSION = 8  # personal fields are committed, and record.erase, from this version on
REPLICATION_VERSION = 8  # governance.replication, artifact.replica, under_replicated deploys


def schedule(state: StateReader) -> list[dict[str, Any]]:
    """The recorded versions, oldest first: ``[{version, from, set_at, by}]``
    (only contracts write them: ``from`` and ``version`` are integers)."""
    found = state.get_state(CONTRACT_SET_KEY)
    return list(found["versions"]) if isinstance(found, dict) else []


def active_version(state: StateReader, index: int) -> int:
    """The contract-set version that executes the entry at ``index``."""
    # On every entry's path: read the stored schedule in place, no copy.
    found = state.get_state(CONTRACT_SET_KEY)
    version = 1
    if isinstance(found, dict):
        for step in found["versions"]:
            if step["from"] <= index:
                version = int(step["version"])
    return version
