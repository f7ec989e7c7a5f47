"""Federated learning from Python: ``led.fl`` registers a member's Flower node,
creates tasks, commits updates, aggregates rounds, records credit, registers
the final model with its federated lineage, and reads tasks, rounds and
attribution back. The arrays themselves never reach the ledger: their digests
and figures come from ``modelchain.fl.arrays``."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..contracts.fl import fl_participant_uri, fl_round_uri, fl_task_uri, node_order
from ..contracts.state import (
    fl_participant_key,
    fl_progress_key,
    fl_round_key,
    fl_task_key,
    fl_update_key,
)
from ..contracts.types import (
    FL_CREDIT_RECORD,
    FL_PARTICIPANT_REGISTER,
    FL_ROUND_AGGREGATE,
    FL_TASK_CREATE,
    FL_TASK_FINALIZE,
    FL_UPDATE_COMMIT,
)
from ..core import canonical
from ..core.identity import Signer
from ..errors import NotFoundError, RejectedError, UsageError
from ..fl.attribution import cumulative, example_shares
from ..node.node import Ack
from ._facade import Facade
from ._refusals import refused
from .models import Models, ModelVersion
from .runs import Runs

__all__ = ["Attribution", "FederatedLearning", "UpdateCommit"]


@dataclass(frozen=True)
class UpdateCommit:
    """One update as ``FederatedLearning.commit_updates`` commits it: the digest
    of its arrays, its example count, the figures the acceptance rule reads,
    its metrics, and whose it is (None: the signer's own)."""

    digest: str
    examples: int
    figures: Mapping[str, float | None]
    metrics: Mapping[str, float] | None = None
    participant: str | None = None


@dataclass(frozen=True)
class Attribution:
    """Each participant's share of credit by one method: per round (rounds
    credited by that method, oldest first) and cumulative (the mean over those
    rounds, a round a participant was not in counting 0), each summing to one."""

    task: str
    method: str
    rounds: tuple[tuple[int, dict[str, float]], ...]
    cumulative: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "method": self.method,
            "rounds": [{"round": r, "shares": s} for r, s in self.rounds],
            "cumulative": self.cumulative,
        }

    def rows(self) -> list[dict[str, Any]]:
        """One row per participant and round, then ``round`` "all" for the
        cumulative share: what ``fl attribution --csv`` writes."""
        out: list[dict[str, Any]] = [
            {"task": self.task, "method": self.method, "round": r, "participant": p, "share": v}
            for r, shares in self.rounds
            for p, v in sorted(shares.items())
        ]
        out.extend(
            {"task": self.task, "method": self.method, "round": "all", "participant": p, "share": v}
            for p, v in sorted(self.cumulative.items())
        )
        return out


def _ref(pair: tuple[str, int] | None) -> dict[str, Any] | None:
    return None if pair is None else {"name": pair[0], "version": int(pair[1])}


class FederatedLearning(Facade):
    """Federated tasks, their rounds and their credit: ``led.fl``."""

    # -- writing -------------------------------------------------------------

    def register_participant(
        self, node_id: int | str, public_key: str, *, signer: Signer | None = None
    ) -> Ack:
        """Record the signer's Flower node: the node id ``flwr supernode register``
        returned (a 64-bit integer, recorded in decimal as a string) and the EC
        P-256 public key (OpenSSH format) it registered."""
        body = {"node_id": str(node_id), "public_key": public_key.strip()}
        return self._submit(FL_PARTICIPANT_REGISTER, body, signer)

    def create_task(
        self,
        task: str,
        *,
        model: tuple[str, int],
        participants: Iterable[str],
        rounds: int,
        aggregation: str = "FedAvg",
        min_participants: int | None = None,
        acceptance: str | None = None,
        heldout: tuple[str, int] | None = None,
        description: str = "",
        signer: Signer | None = None,
    ) -> dict[str, Any]:
        """Create a task (the signer is its coordinator): the starting model
        version, the participants (members that registered a node), the rounds,
        the aggregation rule, the fewest updates a round aggregates, a CEL rule
        over each update (``update.norm``, ``update.distance``, ``update.cosine``,
        ``update.examples``, ``update.metrics``) and the held-out dataset credit
        is scored on."""
        names = list(participants)
        body = {
            "task": task,
            "model": _ref(model),
            "participants": names,
            "rounds": rounds,
            "aggregation": aggregation,
            "min_participants": len(names) if min_participants is None else min_participants,
            "acceptance": acceptance,
            "heldout": _ref(heldout),
            "description": description,
        }
        self._submit(FL_TASK_CREATE, body, signer)
        return self.task(task)

    def commit_update(
        self,
        task: str,
        round: int,
        *,
        digest: str,
        examples: int,
        figures: Mapping[str, float | None],
        metrics: Mapping[str, float] | None = None,
        participant: str | None = None,
        signer: Signer | None = None,
    ) -> Ack:
        """Commit one participant's update to a round: the digest of its arrays
        (``fl.arrays.arrays_digest``), its example count, its metrics and the
        figures the acceptance rule reads (``fl.arrays.figures(...).to_json()``).
        Signed by the participant itself, or by the coordinator recording what it
        received (``participant`` names whose it is; the entry says which)."""
        update = UpdateCommit(digest, examples, figures, metrics, participant)
        found = self.commit_updates(task, round, [update], signer=signer)[0]
        if isinstance(found, RejectedError):
            raise found
        return found

    def commit_updates(
        self,
        task: str,
        round: int,
        updates: Sequence[UpdateCommit],
        *,
        signer: Signer | None = None,
    ) -> list[Ack | RejectedError]:
        """Commit several updates to a round at once, in this order, in one group
        commit (what a coordinator does with a round's replies): for each, its
        Ack, or the RejectedError naming why the ledger refused it (the refusal
        is logged all the same). A transaction admission refuses outright
        (a bad signature, a malformed body) raises, as ``submit_many`` does."""
        s = self._signer(signer)
        envelopes = []
        for u in updates:
            fig = dict(u.figures)
            body = {
                "task": task,
                "round": round,
                "participant": s.name if u.participant is None else u.participant,
                "digest": u.digest,
                "examples": u.examples,
                "metrics": dict(u.metrics or {}),
                "figures": {k: fig.get(k) for k in ("norm", "distance", "cosine")},
            }
            envelopes.append(self._led.transaction(FL_UPDATE_COMMIT, body, s.name).sign(s))
        acks = self._led.submit_many(envelopes) if envelopes else []
        return [
            ack
            if ack.outcome.accepted
            else refused(self._led, env, ack, f"{FL_UPDATE_COMMIT} was rejected")
            for env, ack in zip(envelopes, acks, strict=True)
        ]

    def included(self, task: str, round: int) -> list[dict[str, Any]]:
        """The round's accepted updates in the order an aggregate names them (by
        Flower node id): the order ``fl.arrays.fedavg`` is computed in."""
        record = self.task(task)
        node = {p["member"]: p["node_id"] for p in record["participants"]}
        updates = self.round(task, round)["updates"]
        return [updates[n] for n in sorted(updates, key=lambda n: (node_order(node[n]), n))]

    def aggregate(
        self,
        task: str,
        round: int,
        *,
        digest: str,
        aggregation: str | None = None,
        signer: Signer | None = None,
    ) -> Ack:
        """Record round ``round``'s aggregate: its digest over every accepted update
        of the round (``included``), which opens the next round."""
        updates = [
            {"participant": u["participant"], "digest": u["digest"]}
            for u in self.included(task, round)
        ]
        body = {
            "task": task,
            "round": round,
            "aggregation": aggregation or self.task(task)["aggregation"],
            "digest": digest,
            "updates": updates,
        }
        return self._submit(FL_ROUND_AGGREGATE, body, signer)

    def record_credit(
        self,
        task: str,
        round: int,
        method: str,
        shares: Mapping[str, float],
        *,
        params: Mapping[str, float] | None = None,
        signer: Signer | None = None,
    ) -> Ack:
        """Record each included participant's share of a round (``fl.attribution``);
        methods other than ``examples`` are scored on the task's held-out dataset."""
        heldout = None if method == "examples" else self.task(task)["heldout"]
        body = {
            "task": task,
            "round": round,
            "method": method,
            "heldout": heldout,
            "shares": {k: float(v) for k, v in shares.items()},
            "params": dict(params or {}),
        }
        return self._submit(FL_CREDIT_RECORD, body, signer)

    def credit_by_examples(self, task: str, round: int, *, signer: Signer | None = None) -> Ack:
        """Record the example-count shares of an aggregated round."""
        aggregate = self.round(task, round).get("aggregate")
        if aggregate is None:
            raise UsageError(f"round {round} of {task} is not aggregated yet")
        updates = self.round(task, round)["updates"]
        counts = {
            u["participant"]: updates[u["participant"]]["examples"] for u in aggregate["updates"]
        }
        return self.record_credit(task, round, "examples", example_shares(counts), signer=signer)

    def register_model(
        self,
        task: str,
        name: str,
        path: str | os.PathLike[str],
        *,
        run_id: str | None = None,
        metrics: dict[str, Any] | None = None,
        card: dict[str, Any] | None = None,
        signer: Signer | None = None,
    ) -> ModelVersion:
        """Register the files of the last aggregate as a version of ``name``: a run
        naming the task, every round's aggregate, every participant, the starting
        model and the held-out dataset; the version, child of the starting model;
        then ``fl.task.finalize``, which checks that lineage. The version goes
        through the registration policy like any other, and through the approval
        and deployment policies after. The signer registers the run and model
        (a trainer) and finalizes the task (its coordinator)."""
        record = self.task(task)
        if record["status"] != "complete":
            raise UsageError(f"task {task} is at round {record['round']} of {record['rounds']}")
        if record["final"] is not None:
            final = record["final"]
            raise UsageError(f"task {task} already became {final['name']}@{final['version']}")
        deps: list[dict[str, Any]] = [{"uri": fl_task_uri(task), "digest": {}}]
        for r in range(1, record["rounds"] + 1):
            digest = self.round(task, r)["aggregate"]["digest"]
            deps.append({"uri": fl_round_uri(task, r), "digest": {"sha256": digest.split(":")[1]}})
        for p in record["participants"]:
            deps.append({"uri": fl_participant_uri(task, p["member"]), "digest": {}})
        start = record["model"]
        heldout = record["heldout"]
        runs, models = Runs(self._led), Models(self._led)
        rid = runs.record(
            run_id or f"fl-{task}",
            outputs=[path],
            datasets=[] if heldout is None else [(heldout["name"], heldout["version"])],
            base_models=[(start["name"], start["version"])],
            parameters={
                "fl_task": task,
                "aggregation": record["aggregation"],
                "rounds": record["rounds"],
                "participants": [p["member"] for p in record["participants"]],
            },
            code_dir=None,
            dependencies=deps,
            signer=signer,
        )
        version = models.register(
            name,
            path,
            run=rid,
            parent=(start["name"], start["version"]),
            metrics=metrics,
            card=card,
            signer=signer,
        )
        body = {"task": task, "model": {"name": name, "version": version.version}}
        self._submit(FL_TASK_FINALIZE, body, signer)
        return version

    # -- reading -------------------------------------------------------------

    def participant(self, member: str) -> dict[str, Any]:
        """A member's registered Flower node: {member, org, node_id, public_key, index}."""
        found = self._state(fl_participant_key(member))
        if not isinstance(found, dict):
            raise NotFoundError(f"{member} has registered no Flower node")
        return found

    def task(self, name: str) -> dict[str, Any]:
        """A task's definition, its final model and where it is (``round``, ``status``)."""
        found = self._state(fl_task_key(name))
        progress = self._state(fl_progress_key(name))
        if not isinstance(found, dict) or not isinstance(progress, dict):
            raise NotFoundError(f"no federated task named {name!r}")
        return {**found, **progress}

    def tasks(self) -> list[dict[str, Any]]:
        out = []
        for _, value in self._led.store.state_prefix(fl_task_key("")):
            found = canonical.loads(value)
            if isinstance(found, dict):
                out.append(self.task(str(found["task"])))
        return out

    def round(self, task: str, round: int) -> dict[str, Any]:
        """One round: {round, accepted, updates {participant: update}, aggregate,
        credit {method: ...}}."""
        self.task(task)
        found = self._state(fl_round_key(task, round))
        record = (
            dict(found)
            if isinstance(found, dict)
            else {"round": round, "accepted": 0, "aggregate": None}
        )
        updates = {}
        for _, value in self._led.store.state_prefix(fl_update_key(task, round, "")):
            update = canonical.loads(value)
            if isinstance(update, dict):
                updates[str(update["participant"])] = update
        record["updates"] = updates
        return record

    def rounds(self, task: str) -> list[dict[str, Any]]:
        """Every round that has an update, oldest first."""
        record = self.task(task)
        out = []
        for r in range(1, record["round"] + 1):
            found = self.round(task, r)
            if found["updates"] or found["aggregate"] is not None:
                out.append(found)
        return out

    def status(self, task: str) -> dict[str, Any]:
        """A task at a glance: where it is, who takes part, what each round holds."""
        record = self.task(task)
        return {
            "task": record["task"],
            "status": record["status"],
            "round": record["round"],
            "rounds": record["rounds"],
            "coordinator": record["coordinator"],
            "model": record["model"],
            "aggregation": record["aggregation"],
            "min_participants": record["min_participants"],
            "acceptance": record["acceptance"],
            "heldout": record["heldout"],
            "participants": record["participants"],
            "aggregated": record["round"] - (record["status"] == "open"),
            "final": record["final"],
        }

    def attribution(self, task: str, method: str = "examples") -> Attribution:
        """Per-round and cumulative shares by ``method`` (``examples``,
        ``leave-one-out``, ``shapley-mc``), from the credit recorded."""
        per_round = []
        for r in self.rounds(task):
            credit = r.get("credit", {}).get(method)
            if credit is not None:
                per_round.append(
                    (int(r["round"]), {k: float(v) for k, v in credit["shares"].items()})
                )
        total = cumulative([s for _, s in per_round])
        return Attribution(task, method, tuple(per_round), total)
