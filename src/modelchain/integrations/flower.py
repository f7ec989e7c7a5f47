"""A Flower strategy that runs a federated task recorded on the ledger: it trains
only with the nodes the task names, commits every update it receives, lets the
ledger refuse the unknown and the poisoned, aggregates the rest canonically and
commits the aggregate, so anyone holding the updates recomputes it::

    from flwr.serverapp.strategy import FedAvg
    from modelchain.integrations.flower import ModelchainStrategy
    strategy = ModelchainStrategy(led, "sepsis", FedAvg(min_available_nodes=3))
    result = strategy.start(grid=grid, initial_arrays=arrays, num_rounds=3)

It wraps any of Flower's Message API strategies (``flwr.serverapp.strategy``).
``configure_train`` and ``configure_evaluate`` sample only the Flower nodes the
task's participants registered (by node id); ``aggregate_train`` hashes each
reply (``fl.arrays.arrays_digest``), computes its figures (its step from the
round's starting arrays; where the task's acceptance rule reads
``update.distance`` or ``update.cosine``, its distance and cosine to the
elementwise median of every reply's step, computed once a round),
commits it for the participant (the coordinator records what it received; the
entry says so), drops replies from unknown nodes and those the ledger refuses
(the refusal is logged there), sorts the kept replies by node id and aggregates
them: FedAvg and FedMedian with ``fl.arrays.fedavg``/``fedmedian`` (bit for bit
recomputable; Flower's own FedAvg sums in another order), any other strategy by
its own ``aggregate_train`` over the sorted replies. Then it commits the
aggregate, which opens the next round, and records credit: by examples, and by
leave-one-out where a held-out ``score`` is given.

This module lives in the API layer (it uses ``led.fl``); ``modelchain.fl`` is
the pure part below it and cannot re-export it. Needs ``pip install
'modelchain[flower]'``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from logging import INFO, WARNING
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg, FedMedian, Strategy
from flwr.supercore import log
from flwr.supercore.run import Run

from ..contracts.fl import node_order
from ..errors import RejectedError, UsageError
from ..fl.arrays import arrays_digest, fedavg, fedmedian, figures
from ..fl.attribution import leave_one_out, shares

if TYPE_CHECKING:
    from ..ledger.ledger import Ledger

__all__ = ["HeldoutScore", "ModelchainStrategy", "Refusal", "RegisteredGrid", "RoundRecord"]

Arrays = list[npt.NDArray[Any]]
HeldoutScore = Callable[[Arrays], float]
"""Scores a model's arrays on the task's held-out dataset (higher is better)."""


@dataclass(frozen=True)
class Refusal:
    """A reply the strategy did not aggregate, and why: ``unknown_node`` (not a
    participant of the task), ``error`` (the node replied with an error),
    ``malformed`` (no arrays, no example count, or arrays shaped unlike the
    round's) or the ledger's reason code."""

    round: int
    node_id: int
    participant: str | None
    reason: str


@dataclass
class RoundRecord:
    """What one round did: the participants kept, in aggregation order, the
    aggregate's digest, and the seconds spent on the ledger's part (hashing,
    figures, commits, the aggregate commit and credit)."""

    round: int
    kept: list[str] = field(default_factory=list)
    digest: str | None = None
    ledger_seconds: float = 0.0


class RegisteredGrid(Grid):
    """``grid`` as a strategy sees it: only the node ids in ``allowed``."""

    def __init__(self, grid: Grid, allowed: Iterable[int]) -> None:
        self._grid = grid
        self._allowed = frozenset(allowed)

    @property
    def run(self) -> Run:
        return self._grid.run

    def set_run(self, run: Run) -> None:
        self._grid.set_run(run)

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        return self._grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        return [n for n in self._grid.get_node_ids() if n in self._allowed]

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self._grid.push_messages(self._only_allowed(messages))

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self._grid.pull_messages(message_ids)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        return self._grid.send_and_receive(self._only_allowed(messages), timeout=timeout)

    def _only_allowed(self, messages: Iterable[Message]) -> list[Message]:
        return [m for m in messages if m.metadata.dst_node_id in self._allowed]


@dataclass
class _Reply:
    node_id: int
    participant: str
    message: Message
    keys: list[str]
    arrays: Arrays
    examples: int
    metrics: dict[str, float]
    digest: str = ""


class ModelchainStrategy(Strategy):
    """Run ``strategy`` for ledger task ``task`` on ``led``, whose identity is the
    task's coordinator. ``score`` (optional) scores arrays on the task's held-out
    dataset, for leave-one-out credit each round. ``refusals`` and ``records``
    keep what each round refused and kept."""

    def __init__(
        self,
        led: Ledger,
        task: str,
        strategy: Strategy,
        *,
        score: HeldoutScore | None = None,
    ) -> None:
        self.led = led
        self.task = task
        self.strategy = strategy
        self.score = score
        record = led.fl.task(task)
        self.aggregation = str(record["aggregation"])
        if type(strategy).__name__ != self.aggregation:
            # the aggregate's entry names the rule: it must be the one that ran
            raise UsageError(
                f"task {task} aggregates with {self.aggregation}, not {type(strategy).__name__}"
            )
        self.participants: dict[int, str] = {
            int(p["node_id"]): str(p["member"]) for p in record["participants"]
        }
        # the median step of a round is computed only for a rule that reads it
        rule = str(record.get("acceptance") or "")
        self._reads_median = "distance" in rule or "cosine" in rule
        self.array_key = str(getattr(strategy, "arrayrecord_key", "arrays"))
        self.weight_key = str(getattr(strategy, "weighted_by_key", "num-examples"))
        self.refusals: list[Refusal] = []
        self.records: dict[int, RoundRecord] = {}
        self._start: dict[int, Arrays] = {}

    # -- sampling ------------------------------------------------------------

    def _grid(self, grid: Grid) -> Grid:
        others = sorted(set(grid.get_node_ids()) - set(self.participants))
        for node in others:
            log(WARNING, "modelchain: node %d is not a participant of %s", node, self.task)
        return RegisteredGrid(grid, self.participants)

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self._start[server_round] = arrays.to_numpy_ndarrays()
        messages = self.strategy.configure_train(server_round, arrays, config, self._grid(grid))
        return [m for m in messages if m.metadata.dst_node_id in self.participants]

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        messages = self.strategy.configure_evaluate(server_round, arrays, config, self._grid(grid))
        return [m for m in messages if m.metadata.dst_node_id in self.participants]

    # -- aggregating ---------------------------------------------------------

    def _refuse(self, server_round: int, node: int, who: str | None, reason: str) -> None:
        self.refusals.append(Refusal(server_round, node, who, reason))
        log(
            WARNING,
            "modelchain: round %d refused node %d (%s): %s",
            server_round,
            node,
            who,
            reason,
        )

    def _read(self, server_round: int, message: Message) -> _Reply | None:
        node = int(message.metadata.src_node_id)
        who = self.participants.get(node)
        if who is None:
            self._refuse(server_round, node, None, "unknown_node")
            return None
        if message.has_error():
            self._refuse(server_round, node, who, "error")
            return None
        content = message.content
        records = content.array_records
        metric_records = content.metric_records
        record = records.get(self.array_key) or next(iter(records.values()), None)
        metric = next(iter(metric_records.values()), None)
        if record is None or metric is None or self.weight_key not in metric:
            self._refuse(server_round, node, who, "malformed")
            return None
        metrics = {k: float(v) for k, v in metric.items() if isinstance(v, int | float)}
        return _Reply(
            node_id=node,
            participant=who,
            message=message,
            keys=list(record.keys()),
            arrays=record.to_numpy_ndarrays(),
            examples=int(metric[self.weight_key]),  # type: ignore[arg-type]
            metrics=metrics,
        )

    def _committed_itself(
        self, server_round: int, reply: _Reply, digest: str, exc: RejectedError
    ) -> bool:
        """Whether a refused commit is the participant's own commitment, made
        before (a ClientApp with a modelchain identity signs its update), of
        exactly these bytes: then the reply is aggregated as committed."""
        if exc.reason_code != "duplicate_update":
            return False
        found = self.led.fl.round(self.task, server_round)["updates"].get(reply.participant)
        return isinstance(found, dict) and found.get("digest") == digest

    def _check_included(self, server_round: int, kept: Sequence[_Reply]) -> None:
        """The ledger's accepted updates are exactly the replies kept: an update
        committed on the ledger whose bytes never came (a participant that
        signed one thing and sent another) leaves the round unaggregatable."""
        included = [
            (u["participant"], u["digest"]) for u in self.led.fl.included(self.task, server_round)
        ]
        here = [(r.participant, r.digest) for r in kept]
        if included != here:
            raise UsageError(
                f"round {server_round} of {self.task}: the ledger accepted {included} "
                f"but the replies kept are {here}; the aggregate cannot name them"
            )

    def _combine(self, server_round: int, kept: Sequence[_Reply]) -> Arrays:
        if self.aggregation == "FedAvg" and type(self.strategy) is FedAvg:
            return fedavg([r.arrays for r in kept], [r.examples for r in kept])
        if self.aggregation == "FedMedian" and isinstance(self.strategy, FedMedian):
            return fedmedian([r.arrays for r in kept])
        found, _ = self.strategy.aggregate_train(server_round, [r.message for r in kept])
        if found is None:
            raise UsageError(f"{type(self.strategy).__name__} aggregated nothing")
        return found.to_numpy_ndarrays()

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        started = time.perf_counter()
        ledger = 0.0
        record = self.records.setdefault(server_round, RoundRecord(server_round))
        start = self._start.pop(server_round, None)
        read = []
        for message in replies:
            reply = self._read(server_round, message)
            if reply is None:
                continue
            if [a.shape for a in reply.arrays] != [a.shape for a in start or []]:
                self._refuse(server_round, reply.node_id, reply.participant, "malformed")
                continue
            read.append(reply)
        if start is None or not read:
            return None, None

        t = time.perf_counter()
        steps = [[a - s for a, s in zip(r.arrays, start, strict=True)] for r in read]
        kept: list[_Reply] = []
        median = [fedmedian(steps)] if len(steps) > 1 and self._reads_median else []
        for i, reply in enumerate(read):
            digest = reply.digest = arrays_digest(reply.arrays)
            try:
                self.led.fl.commit_update(
                    self.task,
                    server_round,
                    digest=digest,
                    examples=reply.examples,
                    figures=figures(steps[i], median).to_json(),
                    metrics=reply.metrics,
                    participant=reply.participant,
                )
            except RejectedError as exc:
                if not self._committed_itself(server_round, reply, digest, exc):
                    self._refuse(server_round, reply.node_id, reply.participant, exc.reason_code)
                    continue
            kept.append(reply)
        kept.sort(key=lambda r: node_order(str(r.node_id)))
        self._check_included(server_round, kept)
        ledger += time.perf_counter() - t

        combined = self._combine(server_round, kept) if kept else None
        if combined is None:
            raise UsageError(f"round {server_round} of {self.task}: every update was refused")

        t = time.perf_counter()
        digest = arrays_digest(combined)
        self.led.fl.aggregate(self.task, server_round, digest=digest, aggregation=self.aggregation)
        self.led.fl.credit_by_examples(self.task, server_round)
        ledger += time.perf_counter() - t
        if self.score is not None and len(kept) > 1:
            self._leave_one_out(server_round, kept, start)

        record.kept = [r.participant for r in kept]
        record.digest = digest
        record.ledger_seconds = ledger
        log(
            INFO,
            "modelchain: round %d aggregated %s as %s (%.3fs of %.3fs on the ledger)",
            server_round,
            record.kept,
            digest,
            ledger,
            time.perf_counter() - started,
        )
        keys = kept[0].keys
        arrays = ArrayRecord(
            array_dict={
                k: Array(np.ascontiguousarray(a)) for k, a in zip(keys, combined, strict=True)
            }
        )
        return arrays, self._metrics([r.message for r in kept])

    def _metrics(self, messages: list[Message]) -> MetricRecord | None:
        aggregate = getattr(self.strategy, "train_metrics_aggr_fn", None)
        if aggregate is None:
            return None
        found = aggregate([m.content for m in messages], self.weight_key)
        return found if isinstance(found, MetricRecord) else None

    def _leave_one_out(self, server_round: int, kept: Sequence[_Reply], start: Arrays) -> None:
        assert self.score is not None
        score = self.score
        by_name = {r.participant: r for r in kept}

        def of(subset: frozenset[str]) -> float:
            if not subset:
                return score(start)
            chosen = [by_name[p] for p in sorted(subset, key=lambda p: by_name[p].node_id)]
            return score(self._combine(server_round, chosen))

        contributions = leave_one_out(by_name, of)
        self.led.fl.record_credit(self.task, server_round, "leave-one-out", shares(contributions))

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        known = [m for m in replies if m.metadata.src_node_id in self.participants]
        return self.strategy.aggregate_evaluate(server_round, known)

    def summary(self) -> None:
        log(INFO, "\t├──> modelchain task %s: %d participants", self.task, len(self.participants))
        self.strategy.summary()
