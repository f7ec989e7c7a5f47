"""Benchmark: contract execution with the default policies against policies off.

    python bench/contracts.py            # medians of 5 runs of 20,000 transactions
    python bench/contracts.py --quick

Executes the same signed transactions (model registrations under the default
``model.register`` policy, and production deployments under the default
``model.deploy:production`` policy) through the contract dispatcher, once with
the policies installed and once without, in the same run. Execution only: no
signature checks and no storage, so the figures isolate what policies cost.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from modelchain.contracts import default_contracts
from modelchain.contracts.genesis import genesis_body
from modelchain.contracts.policy import DEFAULT_POLICIES
from modelchain.core.canonical import JSONValue
from modelchain.core.identity import Ed25519Signer, verifier_of
from modelchain.core.manifest import FileDigest, Manifest
from modelchain.core.tx import Transaction

ORIGIN = "bench.example.org/contracts"


class _State:
    def __init__(self, values: dict[str, JSONValue]) -> None:
        self.values = values

    def get_state(self, key: str) -> JSONValue | None:
        return self.values.get(key)


def _signer(name: str) -> Ed25519Signer:
    return Ed25519Signer(name, name.encode().ljust(32, b"\0"))


def _tx(type_: str, body: dict[str, Any], actor: str, n: int) -> Transaction:
    return Transaction(ORIGIN, type_, actor, f"nonce-{n:012d}-xxxxxxxx", 1_800_000_000_000, body)


def _world(
    policies: bool,
) -> tuple[dict[str, JSONValue], list[tuple[Transaction, tuple[str, ...]]]]:
    """A ledger state (members, a dataset, an attested model with approvals) and
    the transactions to execute against it."""
    contracts = default_contracts()
    people = {
        "alice": ("admin",),
        "bob": ("trainer",),
        "val": ("validator",),
        "ev": ("evaluator",),
        "risk": ("approver:risk",),
        "lead": ("approver:ml-lead",),
        "ops": ("deployer",),
        "steward": ("data-steward",),
    }
    members = [
        {"name": n, "org": "o", "roles": list(r), "keys": [verifier_of(_signer(n)).to_string()]}
        for n, r in people.items()
    ]
    body = genesis_body(
        ORIGIN,
        verifier_of(_signer(ORIGIN)),
        members,
        policies=DEFAULT_POLICIES if policies else None,
    )
    state: dict[str, JSONValue] = {}

    def run(tx: Transaction, signers: tuple[str, ...], index: int) -> None:
        keyids = tuple(verifier_of(_signer(s)).key_id_hex for s in signers)
        outcome, writes = contracts.execute(_State(state), index, tx, keyids)
        assert outcome.accepted, outcome
        for k, v in writes.items():
            if v is None:
                state.pop(k, None)
            else:
                state[k] = v

    run(_tx("ledger.genesis", body, "alice", 0), ("alice",), 0)
    manifest = Manifest("d", "sha256", (FileDigest(".", 1, "ab" * 32),))
    art = {
        "digest": manifest.digest,
        "size": 1,
        "files": 1,
        "format": "csv",
        "manifest": manifest.to_json(),
    }
    run(
        _tx(
            "dataset.register",
            {
                "name": "d",
                "source": "",
                "license": "",
                "description": "",
                "artifact": art,
                "records": None,
            },
            "steward",
            1,
        ),
        ("steward",),
        1,
    )
    run(
        _tx(
            "dataset.attest",
            {"dataset": {"name": "d", "version": 1}, "result": {"passed": True}},
            "val",
            2,
        ),
        ("val",),
        2,
    )
    work: list[tuple[Transaction, tuple[str, ...]]] = []
    dataset_root = manifest.digest.split(":", 1)[1]
    for i in range(3, 5):
        digest = f"{i:064x}"
        m = Manifest("m", "sha256", (FileDigest(".", 1, digest),))
        run(_tx("run.record", _run_body(f"r{i}", m.digest, dataset_root), "bob", i), ("bob",), i)
        body = {
            "name": "m",
            "artifact": {
                "digest": m.digest,
                "size": 1,
                "files": 1,
                "format": "file",
                "manifest": m.to_json(),
            },
            "run": f"r{i}",
            "parent": None,
            "metrics": {"accuracy": 0.95},
            "card": {},
        }
        run(_tx("model.register", body, "bob", i), ("bob",), i)
    version = 1
    run(
        _tx(
            "model.evaluate",
            {
                "model": {"name": "m", "version": version},
                "dataset": {"name": "d", "version": 1},
                "metrics": {"accuracy": 0.95},
                "tool": {},
            },
            "ev",
            300,
        ),
        ("ev",),
        300,
    )
    for who, role in (("risk", "risk"), ("lead", "ml-lead")):
        run(
            _tx(
                "model.approve",
                {
                    "model": "m",
                    "version": version,
                    "env": "production",
                    "role": role,
                    "comment": "",
                },
                who,
                301,
            ),
            (who,),
            301,
        )
    # What gets measured: registrations of new bytes and redeployments to production.
    for i in range(1000):
        m = Manifest("m", "sha256", (FileDigest(".", 1, f"{i + 10_000:064x}"),))
        run(
            _tx("run.record", _run_body(f"t{i}", m.digest, dataset_root), "bob", 600 + i),
            ("bob",),
            600 + i,
        )
        body = {
            "name": f"m{i}",
            "artifact": {
                "digest": m.digest,
                "size": 1,
                "files": 1,
                "format": "file",
                "manifest": m.to_json(),
            },
            "run": f"t{i}",
            "parent": None,
            "metrics": {},
            "card": {},
        }
        work.append((_tx("model.register", body, "bob", 1000 + i), ("bob",)))
        work.append(
            (
                _tx(
                    "model.deploy",
                    {"model": "m", "version": version, "env": "production", "rollback_rule": None},
                    "ops",
                    5000 + i,
                ),
                ("ops",),
            )
        )
    return state, work


def _run_body(run_id: str, digest: str, dataset_root: str) -> dict[str, Any]:
    """A training run (in-toto Statement, SLSA v1) with the model as its subject and
    the attested dataset as its input: what the default model.register policy asks for."""
    alg, value = digest.split(":", 1)
    return {
        "id": run_id,
        "statement": {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "model", "digest": {alg: value}}],
            "predicateType": "https://slsa.dev/provenance/v1",
            "predicate": {
                "buildDefinition": {
                    "buildType": "https://example.org/train/v1",
                    "externalParameters": {},
                    "resolvedDependencies": [
                        {"uri": "modelchain:dataset/d@1", "digest": {"sha256": dataset_root}}
                    ],
                },
                "runDetails": {"builder": {"id": "https://example.org/trainer"}},
            },
        },
    }


def _measure(policies: bool, n: int) -> float:
    contracts = default_contracts()
    state, work = _world(policies)
    keyids = {s: verifier_of(_signer(s)).key_id_hex for s in ("bob", "ops")}
    reader = _State(state)
    done = 0
    start = time.perf_counter()
    while done < n:
        for tx, signers in work:
            outcome, _ = contracts.execute(reader, 10_000, tx, tuple(keyids[s] for s in signers))
            assert outcome.accepted, outcome
            done += 1
            if done >= n:
                break
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n, runs = (2_000, 3) if args.quick else (20_000, 5)
    on, off = [], []
    for _ in range(runs):  # interleaved, so drift on a noisy machine hits both
        off.append(_measure(False, n))
        on.append(_measure(True, n))
    rate_on, rate_off = statistics.median(on), statistics.median(off)
    per_tx = (1 / rate_on - 1 / rate_off) * 1e6
    print(f"contract execution, median of {runs} x {n} (model.register + model.deploy, 1:1):")
    print(f"  policies off        {rate_off:>10,.0f} tx/s")
    print(f"  default policies    {rate_on:>10,.0f} tx/s  (ratio {rate_on / rate_off:.2f})")
    print(f"  policy cost         {per_tx:>10.1f} us per transaction (context + CEL)")


if __name__ == "__main__":
    main()
