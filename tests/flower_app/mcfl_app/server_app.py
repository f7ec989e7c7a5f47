"""The coordinator: opens the ledger named in the run config with its
identity, runs the task's rounds with FedAvg wrapped in ModelchainStrategy
(leave-one-out credit on the held-out rows) and registers the final model."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from flwr.app import ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

import modelchain
from mcfl_app.task import Arrays, heldout, initial, loss
from modelchain.integrations.flower import ModelchainStrategy
from modelchain.keys import KeyStore, passphrase_source

app = ServerApp()


def _score(w: Arrays) -> float:
    return -loss(w, *heldout())


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    home = Path(str(cfg["home"]))
    where = str(cfg["ledger"])
    name = str(cfg["identity"])  # an encrypted key's passphrase as the CLI finds it
    identity = KeyStore(home).signer(name, passphrase_source(name, os.environ, interactive=False))
    if where.startswith(("http://", "https://")):
        led = modelchain.connect(where, identity=identity, home=home)
    else:
        led = modelchain.open(where, identity=identity, home=home)
    try:
        task = str(cfg["task"])
        record = led.fl.task(task)
        n = len(record["participants"])
        inner = FedAvg(fraction_evaluate=0.0, min_train_nodes=n, min_available_nodes=n)
        strategy = ModelchainStrategy(led, task, inner, score=_score)
        result = strategy.start(
            grid=grid, initial_arrays=ArrayRecord(initial()), num_rounds=int(record["rounds"])
        )
        out = Path(str(cfg["out"]))
        out.mkdir(parents=True, exist_ok=True)
        final = result.arrays.to_numpy_ndarrays()
        np.savez(out / "model.npz", coef=final[0], bias=final[1])
        version = led.fl.register_model(
            task, str(cfg["model-name"]), out, metrics={"heldout_loss": -_score(final)}
        )
        print(f"modelchain: {task} registered {version.name}@{version.version}")
    finally:
        led.close()
