"""Federated tasks over HTTP, against a real `modelchain serve`: the ``/v1/fl``
reads and the dashboard's task pages, where each participant's credit is
shown per round and cumulatively and exported as CSV."""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from flower_deploy import node_key
from flwr.app import ArrayRecord, ConfigRecord
from flwr.serverapp.strategy import FedAvg
from flwr.supercore.task_identity import TaskIdentity
from mcfl_app.task import heldout, initial, loss
from serving import running_server
from test_flower import ORGS, TASK, _create, _Grid, _ledger, _local, _reply

import modelchain as mc
from modelchain.integrations.flower import ModelchainStrategy
from modelchain.keys import KeyStore


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A task of two rounds run through ModelchainStrategy in process (org-c
    poisoned and refused), with credit by examples and leave-one-out; served
    with open reads."""
    root = tmp_path_factory.mktemp("fl-served")
    home = root / "home"
    with pytest.MonkeyPatch.context() as mp:
        for attr, value in (("_task_id", 1), ("_run_id", 1), ("_node_id", 0)):
            mp.setattr(TaskIdentity, attr, value)
        led, keys = _ledger(root / "ledger", home)
        with led:
            _register(led, keys, root)
            _create(led, ORGS, rounds=2)
            strategy = ModelchainStrategy(
                led,
                TASK,
                FedAvg(fraction_evaluate=0.0, min_available_nodes=3),
                score=lambda w: -loss(w, *heldout()),
            )
            grid = _Grid(strategy.participants)
            w = initial()
            for r in (1, 2):
                sent = strategy.configure_train(r, ArrayRecord(w), ConfigRecord(), grid)
                by_node = {m.metadata.dst_node_id: m for m in sent}
                replies = [
                    _reply(by_node[n], _local(w, who), 400 // (2**i))
                    for i, (n, who) in enumerate(
                        sorted(strategy.participants.items(), key=lambda x: ORGS.index(x[1]))
                    )
                ]
                arrays, _ = strategy.aggregate_train(r, replies)
                assert arrays is not None
                w = arrays.to_numpy_ndarrays()
    env = {**os.environ, "MODELCHAIN_HOME": str(home), "MODELCHAIN_LEDGER": str(root / "ledger")}
    with running_server(
        root / "ledger", "--reads", "open", env=env, log=root / "server.log"
    ) as url:
        yield url


def _register(led: mc.Ledger, keys: KeyStore, root: Path) -> None:
    for i, org in enumerate(ORGS):
        _, public = node_key(root, org)
        led.fl.register_participant(100 + i, public.read_text(), signer=keys.signer(org))


def test_the_api_reads_tasks_rounds_and_credit(served: str) -> None:
    tasks = httpx.get(served + "/v1/fl/tasks").json()["result"]
    assert [(t["task"], t["status"], t["aggregated"]) for t in tasks] == [(TASK, "complete", 2)]
    rounds = httpx.get(served + f"/v1/fl/tasks/{TASK}/rounds").json()["result"]
    assert [sorted(r["updates"]) for r in rounds] == [["org-a", "org-b"]] * 2
    att = httpx.get(served + f"/v1/fl/tasks/{TASK}/attribution?method=leave-one-out").json()
    shares = att["result"]["cumulative"]
    assert math.isclose(math.fsum(shares.values()), 1.0) and shares["org-a"] > shares["org-b"]
    assert httpx.get(served + "/v1/fl/tasks/nope").status_code == 404
    assert httpx.get(served + f"/v1/fl/tasks/{TASK}/attribution?method=tokens").status_code == 400


def test_the_dashboard_shows_and_exports_each_participants_share(served: str) -> None:
    listing = httpx.get(served + "/ui/fl")
    assert listing.status_code == 200 and f'href="/ui/fl/{TASK}"' in listing.text
    page = httpx.get(served + f"/ui/fl/{TASK}")
    assert page.status_code == 200
    for method in ("examples", "leave-one-out"):
        assert f'id="credit-{method}"' in page.text
        assert f"attribution.csv?method={method}" in page.text
    assert 'data-participant="org-a"' in page.text and "recorded by coord" in page.text
    exported = httpx.get(served + f"/ui/fl/{TASK}/attribution.csv?method=leave-one-out")
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    total = [r for r in rows if r["round"] == "all"]
    assert {r["participant"] for r in total} == {"org-a", "org-b"}
    assert math.isclose(math.fsum(float(r["share"]) for r in total), 1.0)
