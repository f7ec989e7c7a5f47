"""Benchmark: what the ledger adds to a federated round run by ModelchainStrategy.

    python bench/fl.py                  # 3 and 30 participants, a 10 MB model, 5 rounds
    python bench/fl.py --quick          # 3 and 30 participants, a 1 MB model, 2 rounds

In process, no Flower servers: for each round the same replies (float32
arrays, each participant's step a little different) go through Flower's FedAvg
``aggregate_train`` alone and through ModelchainStrategy around the same FedAvg
on an embedded ledger, in the same run. The ledger's part of a round is what the
wrapper times itself: hashing each reply, its figures, committing it, checking
the accepted updates, committing the aggregate and the example credit. Printed:
medians of the plain aggregation, the wrapped one, the ledger's part, the ratio
of wrapped to plain, and the round wall time at which the ledger's part is 5%
(a real round adds local training and the transfer of every reply).
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from flwr.supercore.task_identity import TaskIdentity

import modelchain as mc
from modelchain.core.identity import Ed25519Signer, verifier_of
from modelchain.integrations.flower import ModelchainStrategy
from modelchain.ledger.ledger import Founder

ORIGIN = "bench.example.org/fl"


def _signer(name: str) -> Ed25519Signer:
    return Ed25519Signer(name, hashlib.sha256(name.encode()).digest())


def _p256(seed: int) -> str:
    key = ec.derive_private_key(seed + 1, ec.SECP256R1())
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )


class _Grid(Grid):
    def __init__(self, nodes: list[int]) -> None:
        self.nodes = nodes

    @property
    def run(self) -> Any:
        raise NotImplementedError

    def set_run(self, run: Any) -> None:
        pass

    def create_message(self, *args: Any, **kwargs: Any) -> Message:
        raise NotImplementedError

    def get_node_ids(self) -> list[int]:
        return self.nodes

    def push_messages(self, messages: Any) -> list[str]:
        raise NotImplementedError

    def pull_messages(self, message_ids: Any) -> list[Message]:
        raise NotImplementedError

    def send_and_receive(self, messages: Any, *, timeout: float | None = None) -> list[Message]:
        raise NotImplementedError


def _model(megabytes: float) -> list[np.ndarray[Any, Any]]:
    """float32 arrays of about ``megabytes`` MB: four fifths in one matrix."""
    n = int(megabytes * 1_000_000 / 4)
    rng = np.random.default_rng(0)
    big = n * 4 // 5 // 1000
    rest = n - big * 1000
    return [
        rng.normal(size=(big, 1000)).astype(np.float32),
        rng.normal(size=(rest // 1000, 1000)).astype(np.float32),
        rng.normal(size=rest % 1000).astype(np.float32),
    ]


def bench(participants: int, megabytes: float, rounds: int) -> dict[str, float]:
    for attr, value in (("_task_id", 1), ("_run_id", 1), ("_node_id", 0)):
        setattr(TaskIdentity, attr, value)
    names = [f"org-{i:02d}" for i in range(participants)]
    nodes = {n: 10_000 + i for i, n in enumerate(names)}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        founders = [Founder(verifier_of(_signer(n)), n, ("fl-participant",)) for n in names]
        led = mc.init(
            Path(tmp) / "ledger",
            ORIGIN,
            _signer("coord"),
            org="acme",
            members=founders,
            admin_roles=("fl-coordinator", "trainer"),
            home=home,
        )
        with led:
            led.identity = _signer("coord")
            start = Path(tmp) / "start.bin"
            start.write_bytes(b"\0" * 64)
            led.models.register("big", start)
            for i, n in enumerate(names):
                led.fl.register_participant(nodes[n], _p256(i), signer=_signer(n))
            led.fl.create_task(
                "bench",
                model=("big", 1),
                participants=names,
                rounds=rounds,
                acceptance="update.norm < 1.0e9",
            )
            plain = FedAvg(fraction_evaluate=0.0, min_available_nodes=participants)
            wrapped = ModelchainStrategy(
                led, "bench", FedAvg(fraction_evaluate=0.0, min_available_nodes=participants)
            )
            grid = _Grid(list(nodes.values()))
            w = _model(megabytes)
            rng = np.random.default_rng(1)
            times: dict[str, list[float]] = {"plain": [], "wrapped": [], "ledger": []}
            for r in range(1, rounds + 1):
                sent = wrapped.configure_train(r, ArrayRecord(w), ConfigRecord(), grid)
                replies = []
                for i, m in enumerate(sent):
                    step = [rng.normal(scale=1e-3, size=a.shape).astype(np.float32) for a in w]
                    arrays = ArrayRecord([a + s for a, s in zip(w, step, strict=True)])
                    metrics = MetricRecord({"num-examples": 100 + i})
                    replies.append(
                        Message(
                            content=RecordDict({"arrays": arrays, "metrics": metrics}),
                            reply_to=m,
                        )
                    )
                t = time.perf_counter()
                plain.aggregate_train(r, replies)
                times["plain"].append(time.perf_counter() - t)
                t = time.perf_counter()
                found, _ = wrapped.aggregate_train(r, replies)
                times["wrapped"].append(time.perf_counter() - t)
                times["ledger"].append(wrapped.records[r].ledger_seconds)
                assert found is not None and len(wrapped.records[r].kept) == participants
                w = found.to_numpy_ndarrays()
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--megabytes", type=float, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    mb = args.megabytes or (1.0 if args.quick else 10.0)
    rounds = args.rounds or (2 if args.quick else 5)
    print(f"{mb:g} MB float32 model, median of {rounds} rounds")
    print(
        f"{'participants':>12} {'FedAvg s':>9} {'wrapped s':>10} {'ledger s':>9} "
        f"{'ratio':>6} {'5% at round s':>14}"
    )
    for n in (3, 30):
        m = bench(n, mb, rounds)
        print(
            f"{n:>12} {m['plain']:>9.3f} {m['wrapped']:>10.3f} {m['ledger']:>9.3f} "
            f"{m['wrapped'] / m['plain']:>6.2f} {m['ledger'] / 0.05:>14.1f}"
        )


if __name__ == "__main__":
    main()
