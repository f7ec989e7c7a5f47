"""Benchmark: what modelchain costs a training script and a CI job.

    python bench/workflow.py                 # every part, 7 rounds each (about 2 min on 2 cores)
    python bench/workflow.py --rounds 3      # a quicker look
    python bench/workflow.py --only verify   # one part: verify, callbacks or mlflow

Three figures, each against its reference measured in the same run, in
interleaved rounds so that load on the machine falls on both alike; medians:

- **verify**: wall time of ``modelchain verify FILE --model NAME`` on a one-byte
  model (so nearly all of it is start-up: reading the ledger and checkpoint
  before hashing starts), against ``python -c pass``. Target: under 0.3 s.
- **callbacks**: a short training run of a tiny model (Hugging Face ``Trainer``,
  and Lightning) with the modelchain callback, which records the run and
  registers the saved model on an embedded ledger, against the same run without
  it. The figure is the wall time the callback adds.
- **mlflow**: one registration through the MLflow bridge (download the
  version's files, hash them, record the run and the model version, write the
  tags back) against MLflow's own ``mlflow.register_model`` of the same model,
  on a real tracking server (SQLite backend) on loopback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ORIGIN = "bench.example/workflow"


def _admin() -> Any:
    from modelchain.core.identity import Ed25519Signer

    return Ed25519Signer("admin", bytes(range(32)))


def _ledger(path: Path) -> Any:
    import modelchain

    return modelchain.init(path, ORIGIN, _admin(), home=path.parent / "home", identity=_admin())


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _row(name: str, values: list[float], base: float | None = None) -> str:
    med = statistics.median(values)
    ratio = f"{med / base:9.2f}" if base else f"{'':>9}"
    return f"{name:<44} {med * 1000:9.1f}ms {min(values) * 1000:9.1f}ms {ratio}"


def _header(title: str, rounds: int) -> None:
    print(f"\n{title} (medians of {rounds} interleaved rounds)")
    print(f"{'':<44} {'median':>11} {'min':>11} {'ratio':>9}")


# -- verify: the CLI's start before hashing -----------------------------------


def bench_verify(rounds: int, tmp: Path) -> None:
    led_dir = tmp / "verify-ledger"
    model = tmp / "model.bin"
    model.write_bytes(b"\0")
    with _ledger(led_dir) as led:
        led.runs.record("bench-run", outputs=[model], code_dir=None)
        led.models.register("m", model, run="bench-run")
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("MODELCHAIN_SERVER", None)
    env.update(MODELCHAIN_HOME=str(tmp / "home"), MODELCHAIN_LEDGER=str(led_dir))
    verify = [sys.executable, "-m", "modelchain", "verify", str(model), "--model", "m"]
    baseline = [sys.executable, "-c", "pass"]

    def run(argv: list[str]) -> float:
        return _timed(lambda: subprocess.run(argv, env=env, check=True, capture_output=True))

    run(verify)  # bytecode caches, page cache
    base: list[float] = []
    ours: list[float] = []
    for _ in range(max(rounds, 5) * 2):
        base.append(run(baseline))
        ours.append(run(verify))
    _header("modelchain verify, start before hashing", len(ours))
    print(_row("python -c pass", base))
    print(_row("modelchain verify (1-byte model)", ours, statistics.median(base)))
    verdict = "met" if statistics.median(ours) < 0.3 else "NOT met"
    print(f"target under 300 ms: {verdict}")


# -- callbacks: the wall time they add to a short training run ---------------


def bench_callbacks(rounds: int, tmp: Path) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import lightning  # noqa: F401
        import transformers
    except ImportError:
        print("\ncallbacks: skipped (pip install 'modelchain[transformers,lightning]')")
        return
    import logging
    import warnings

    import transformers

    warnings.filterwarnings("ignore")  # deprecation notes from the frameworks, every run
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    for noisy in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    from modelchain.integrations import lightning as mc_lightning
    from modelchain.integrations import transformers as mc_transformers

    led = _ledger(tmp / "callbacks-ledger")
    data = tmp / "data.bin"
    data.write_bytes(b"training rows")
    led.datasets.register("rows", data)
    counter = iter(range(10_000))

    def hf(with_callback: bool) -> float:
        import torch
        from transformers import (
            BertConfig,
            BertForSequenceClassification,
            PrinterCallback,
            Trainer,
            TrainingArguments,
        )

        out = tmp / f"hf-{next(counter)}"
        model = BertForSequenceClassification(
            BertConfig(
                vocab_size=64,
                hidden_size=16,
                num_hidden_layers=1,
                num_attention_heads=2,
                intermediate_size=32,
                max_position_embeddings=32,
            )
        )
        gen = torch.Generator().manual_seed(0)
        rows = [
            {
                "input_ids": torch.randint(0, 64, (8,), generator=gen),
                "labels": torch.tensor(i % 2),
            }
            for i in range(32)
        ]
        args = TrainingArguments(
            output_dir=str(out),
            max_steps=8,
            per_device_train_batch_size=4,
            report_to=[],
            use_cpu=True,
            save_strategy="no",
            logging_steps=4,
            disable_tqdm=True,
        )
        callbacks = (
            [mc_transformers.ModelchainCallback(led, model="bert-tiny", datasets=["rows@1"])]
            if with_callback
            else []
        )
        trainer = Trainer(model=model, args=args, train_dataset=rows, callbacks=callbacks)
        trainer.remove_callback(PrinterCallback)  # it prints every log line
        return _timed(trainer.train)

    def pl(with_callback: bool) -> float:
        import lightning
        import torch

        class Tiny(lightning.LightningModule):
            def __init__(self) -> None:
                super().__init__()
                self.save_hyperparameters({"lr": 0.05})
                self.layer = torch.nn.Linear(32, 2)

            def training_step(self, batch: Any, _: int) -> Any:
                x, y = batch
                loss = torch.nn.functional.cross_entropy(self.layer(x), y)
                self.log("loss", loss)
                return loss

            def configure_optimizers(self) -> Any:
                return torch.optim.SGD(self.parameters(), lr=0.05)

        gen = torch.Generator().manual_seed(0)
        xs = torch.randn(64, 32, generator=gen)
        ys = torch.randint(0, 2, (64,), generator=gen)
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xs, ys), batch_size=8)
        callbacks = (
            [mc_lightning.ModelchainCallback(led, model="linear-tiny", datasets=["rows@1"])]
            if with_callback
            else []
        )
        trainer = lightning.Trainer(
            max_steps=8,
            accelerator="cpu",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=str(tmp / f"pl-{next(counter)}"),
            callbacks=callbacks,
        )
        return _timed(lambda: trainer.fit(Tiny(), loader))

    for fn in (hf, pl):  # imports, first-run costs
        fn(False)
        fn(True)
    for label, fn in (("Hugging Face Trainer, 8 steps", hf), ("Lightning Trainer, 8 steps", pl)):
        plain: list[float] = []
        with_cb: list[float] = []
        for _ in range(rounds):
            plain.append(fn(False))
            with_cb.append(fn(True))
        _header(label, rounds)
        print(_row("without the callback", plain))
        print(_row("with the modelchain callback", with_cb, statistics.median(plain)))
        added = statistics.median(with_cb) - statistics.median(plain)
        fastest = min(with_cb) - min(plain)
        print(
            f"added by the callback: {added * 1000:.0f} ms per training run "
            f"(medians), {fastest * 1000:.0f} ms (fastest runs)"
        )
    led.close()


# -- mlflow: one registration through the bridge vs register_model -------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _mlflow_server(tmp: Path) -> Iterator[str]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MLFLOW_ENABLE_TELEMETRY": "false", "DO_NOT_TRACK": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{tmp / 'mlflow.db'}",
            "--artifacts-destination",
            str(tmp / "mlartifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the MLflow server did not start")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def bench_mlflow(rounds: int, tmp: Path) -> None:
    try:
        import mlflow
        import sklearn  # noqa: F401
    except ImportError:
        print("\nmlflow: skipped (pip install 'modelchain[mlflow]' scikit-learn)")
        return
    import logging

    from modelchain.integrations.mlflow import MlflowBridge

    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    from sklearn.linear_model import LogisticRegression

    with _mlflow_server(tmp) as url:
        mlflow.set_tracking_uri(url)
        with mlflow.start_run() as run:
            mlflow.log_params({"C": 1.0})
            model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
            mlflow.log_metric("accuracy", 1.0)
            mlflow.sklearn.log_model(model, name="model")
        source = f"runs:/{run.info.run_id}/model"
        led = _ledger(tmp / "mlflow-ledger")
        bridge = MlflowBridge(led, url)
        ours: list[float] = []
        base: list[float] = []
        mlflow.register_model(source, "warmup")
        for i in range(rounds):
            name = f"bench-{i}"
            start = time.perf_counter()
            version = int(mlflow.register_model(source, name).version)
            base.append(time.perf_counter() - start)
            start = time.perf_counter()
            bridge.record(name, version)
            ours.append(time.perf_counter() - start)
        led.close()
    _header("one MLflow model version registered", rounds)
    print(_row("mlflow.register_model", base))
    print(_row("modelchain MLflow bridge (record + tags)", ours, statistics.median(base)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="rounds per figure (default 7)")
    parser.add_argument("--only", choices=["verify", "callbacks", "mlflow"], action="append")
    args = parser.parse_args()
    parts = args.only or ["verify", "callbacks", "mlflow"]
    print(f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        for part in parts:
            {"verify": bench_verify, "callbacks": bench_callbacks, "mlflow": bench_mlflow}[part](
                args.rounds, Path(tmp)
            )


if __name__ == "__main__":
    main()
