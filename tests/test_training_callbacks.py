"""The training callbacks: a tiny model built from a config trains a few steps on
CPU, and the run and the saved model land on a ledger under the default
policies; inputs are checked before any step runs; nothing trained is lost when
the ledger refuses at the end."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import ORIGIN, PEOPLE, founders, make_signer

import modelchain as mc
from modelchain.contracts.policy import DEFAULT_POLICIES
from modelchain.errors import NotFoundError, RejectedError, UsageError
from modelchain.integrations._training import json_safe, version_spec

# Nothing here may reach the hub: every model is built from a config.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

torch = pytest.importorskip("torch")


@pytest.fixture
def code_dir(tmp_path: Path) -> Path:
    """A git working tree with one commit: the training code."""
    repo = tmp_path / "code"
    repo.mkdir()
    (repo / "train.py").write_text("print('train')\n")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    for args in (["init", "-q"], ["add", "train.py"], ["commit", "-q", "-m", "train"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    return repo


@pytest.fixture
def led(tmp_path: Path) -> Iterator[mc.Ledger]:
    """A ledger under the default policies, with bob (a trainer) as its identity
    and one attested dataset, txns version 1."""
    ledger = mc.init(
        tmp_path / "ledger",
        ORIGIN,
        make_signer("alice"),
        org="acme",
        members=founders(PEOPLE),
        policies=DEFAULT_POLICIES,
        identity=make_signer("bob"),
        home=tmp_path / "home",
    )
    data = tmp_path / "txns.csv"
    data.write_text("amount,fraud\n" + "".join(f"{i},{i % 2}\n" for i in range(20)))
    ledger.datasets.register("txns", data, signer=make_signer("steward"))
    ledger.datasets.attest("txns", 1, {"passed": True}, signer=make_signer("val"))
    try:
        yield ledger
    finally:
        ledger.close()


def _git_commit(statement: dict[str, Any]) -> str | None:
    for dep in statement["predicate"]["buildDefinition"]["resolvedDependencies"]:
        if "gitCommit" in dep["digest"]:
            return str(dep["digest"]["gitCommit"])
    return None


def _head(repo: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


# -- the shared part ------------------------------------------------------------------


def test_versions_are_name_at_version_or_pairs() -> None:
    assert version_spec("txns@3", "dataset") == ("txns", 3)
    assert version_spec(("txns", 3), "dataset") == ("txns", 3)
    for bad in ("txns", "Txns@3", ("txns", "3"), ("txns", True), 3):
        with pytest.raises(UsageError):
            version_spec(bad, "dataset")


@dataclass
class _Optimizer:
    name: str
    state: Path
    api_key: str


def test_parameters_leave_secrets_out_and_stay_json() -> None:
    found = json_safe(
        {
            "hub_token": "hf_secret",
            "push_to_hub_token": "x",
            "include_num_input_tokens_seen": "no",
            "nested": {"api_key": "k", "lr": 3e-5, "nan": math.nan},
            "path": Path("/tmp/out"),
            "layers": (1, 2),
            "dtype": torch.float32,
            "scalar": torch.tensor(0.5),
            "optimizer": _Optimizer("sgd", Path("/tmp/o"), "secret"),
        }
    )
    assert found == {
        "include_num_input_tokens_seen": "no",
        "nested": {"lr": 3e-5, "nan": None},
        "path": "/tmp/out",
        "layers": [1, 2],
        "dtype": "torch.float32",
        "scalar": 0.5,
        "optimizer": {"name": "sgd", "state": "/tmp/o"},
    }


# -- transformers -----------------------------------------------------------------------


class _Texts(torch.utils.data.Dataset):  # type: ignore[misc]
    """Thirty-two random sequences of eight tokens with alternating labels."""

    def __len__(self) -> int:
        return 32

    def __getitem__(self, i: int) -> dict[str, Any]:
        g = torch.Generator().manual_seed(i)
        return {"input_ids": torch.randint(0, 64, (8,), generator=g), "labels": torch.tensor(i % 2)}


def _hf_trainer(out: Path, callback: Any, steps: list[int] | None = None) -> Any:
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")

    class Steps(transformers.TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, *args: Any, **kwargs: Any) -> None:
            if steps is not None:
                steps.append(1)

    transformers.set_seed(0)
    config = transformers.BertConfig(
        vocab_size=64,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
    )
    args = transformers.TrainingArguments(
        output_dir=str(out),
        max_steps=4,
        per_device_train_batch_size=4,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        hub_token="hf_not_a_real_token",
    )
    return transformers.Trainer(
        model=transformers.BertForSequenceClassification(config),
        args=args,
        train_dataset=_Texts(),
        callbacks=[callback, Steps()],
    )


def test_transformers_run_is_recorded_and_model_registered(
    led: mc.Ledger, tmp_path: Path, code_dir: Path
) -> None:
    from modelchain.integrations.transformers import ModelchainCallback

    callback = ModelchainCallback(
        led, model="fraud", datasets=["txns@1"], code_dir=code_dir, card={"owner": "acme"}
    )
    _hf_trainer(tmp_path / "out", callback).train()

    assert callback.run_id is not None and callback.run_id.startswith("fraud-")
    assert callback.folder == tmp_path / "out" / "modelchain" / callback.run_id
    assert (callback.folder / "model.safetensors").is_file()
    assert (callback.folder / "config.json").is_file()
    run = led.runs.get(callback.run_id)
    assert run["inputs"] == [{"kind": "dataset", "name": "txns", "version": 1}]
    assert run["by"] == "bob"
    statement = run["statement"]
    parameters = statement["predicate"]["buildDefinition"]["externalParameters"]["parameters"]
    assert parameters["training_args"]["max_steps"] == 4
    assert "hub_token" not in parameters["training_args"]
    assert "hf_not_a_real_token" not in str(run)
    assert parameters["model"]["hidden_size"] == 16
    assert parameters["model"]["class"].endswith(".BertForSequenceClassification")
    assert parameters["model"]["num_parameters"] > 0
    assert _git_commit(statement) == _head(code_dir)
    environment = statement["predicate"]["buildDefinition"]["internalParameters"]["environment"]
    assert "transformers" in environment["packages"]
    metrics = statement["predicate"]["runDetails"]["byproducts"][0]["content"]
    assert metrics["global_step"] == 4
    assert math.isfinite(metrics["train_loss"]) and math.isfinite(metrics["loss"])

    version = callback.version
    assert version is not None and (version.name, version.version) == ("fraud", 1)
    assert version.record["run"] == callback.run_id
    assert version.record["metrics"] == metrics
    assert version.record["card"] == {"owner": "acme"}
    assert run["subjects"] == [version.digest]
    assert led.models.verify(callback.folder, "fraud").version == 1  # re-hashes the folder


def test_transformers_unknown_dataset_fails_before_any_step(led: mc.Ledger, tmp_path: Path) -> None:
    from modelchain.integrations.transformers import ModelchainCallback

    size = led.size
    steps: list[int] = []
    trainer = _hf_trainer(
        tmp_path / "out", ModelchainCallback(led, model="fraud", datasets=["nope@1"]), steps
    )
    with pytest.raises(NotFoundError, match="no dataset named 'nope'"):
        trainer.train()
    assert steps == []
    assert led.size == size
    assert not (tmp_path / "out" / "modelchain").exists()


def test_transformers_register_false_records_the_run_only(led: mc.Ledger, tmp_path: Path) -> None:
    from modelchain.integrations.transformers import ModelchainCallback

    callback = ModelchainCallback(
        led, model="fraud", datasets=[("txns", 1)], register=False, run_id="ft-1", code_dir=None
    )
    _hf_trainer(tmp_path / "out", callback).train()
    assert callback.run_id == "ft-1" and callback.version is None
    assert led.runs.get("ft-1")["subjects"]
    assert led.models.list() == []


# -- lightning ------------------------------------------------------------------------

# Lightning 2.6 flattens loaders with torch's deprecated pytree LeafSpec (torch 2.13).
_LEAFSPEC = r"ignore:`isinstance\(treespec, LeafSpec\)` is deprecated:FutureWarning"


def _fit(out: Path, callback: Any, steps: list[int] | None = None) -> Any:
    pl = pytest.importorskip("lightning.pytorch")

    class Tiny(pl.LightningModule):  # type: ignore[misc]
        def __init__(self, width: int = 4, lr: float = 0.1) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.layer = torch.nn.Linear(width, 1)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            if steps is not None:
                steps.append(batch_idx)
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.layer(x), y)
            self.log("train_loss", loss)
            self.log("never_finite", torch.tensor(math.inf))
            return loss

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    pl.seed_everything(0, verbose=False)
    x = torch.randn(16, 4)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True)))
    trainer = pl.Trainer(
        max_steps=4,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=out,
        callbacks=[callback],
    )
    trainer.fit(Tiny(), data)
    return trainer


@pytest.mark.filterwarnings(_LEAFSPEC)
def test_lightning_run_is_recorded_and_weights_registered(
    led: mc.Ledger, tmp_path: Path, code_dir: Path
) -> None:
    from modelchain.integrations.lightning import ModelchainCallback

    callback = ModelchainCallback(led, model="tiny", datasets=["txns@1"], code_dir=code_dir)
    _fit(tmp_path / "out", callback)

    assert callback.run_id is not None and callback.folder is not None
    assert callback.folder == tmp_path / "out" / "modelchain" / callback.run_id
    assert [p.name for p in callback.folder.iterdir()] == ["model.safetensors"]
    run = led.runs.get(callback.run_id)
    assert run["inputs"] == [{"kind": "dataset", "name": "txns", "version": 1}]
    statement = run["statement"]
    parameters = statement["predicate"]["buildDefinition"]["externalParameters"]["parameters"]
    assert parameters["hparams"] == {"width": 4, "lr": 0.1}
    assert parameters["trainer"]["max_steps"] == 4
    assert parameters["module"]["num_parameters"] == 5
    assert _git_commit(statement) == _head(code_dir)
    metrics = statement["predicate"]["runDetails"]["byproducts"][0]["content"]
    assert math.isfinite(metrics["train_loss"])
    assert metrics["never_finite"] is None
    assert metrics["global_step"] == 4

    version = callback.version
    assert version is not None and version.record["run"] == callback.run_id
    assert led.models.verify(callback.folder, "tiny").version == 1


def test_lightning_unknown_dataset_fails_before_any_step(led: mc.Ledger, tmp_path: Path) -> None:
    from modelchain.integrations.lightning import ModelchainCallback

    size = led.size
    steps: list[int] = []
    with pytest.raises(NotFoundError, match="dataset txns has no version 7"):
        _fit(tmp_path / "out", ModelchainCallback(led, model="tiny", datasets=["txns@7"]), steps)
    assert steps == []
    assert led.size == size


@pytest.mark.filterwarnings(_LEAFSPEC)
def test_a_refusal_at_the_end_keeps_the_model_and_says_where(
    led: mc.Ledger, tmp_path: Path
) -> None:
    """The default policy wants attested datasets: the run is recorded, the
    registration refused, and the error names the saved folder."""
    from modelchain.integrations.lightning import ModelchainCallback

    unattested = tmp_path / "raw.csv"
    unattested.write_text("a\n1\n")
    led.datasets.register("raw", unattested, signer=make_signer("steward"))
    callback = ModelchainCallback(led, model="tiny", datasets=["raw@1"], code_dir=None)
    with pytest.raises(RejectedError, match="policy_denied") as info:
        _fit(tmp_path / "out", callback)
    assert callback.folder is not None and callback.run_id is not None
    assert str(callback.folder) in info.value.message
    assert f"--run {callback.run_id}" in info.value.message
    assert (callback.folder / "model.safetensors").is_file()
    led.runs.get(callback.run_id)  # recorded before the refusal


def test_no_signer_fails_at_the_start(tmp_path: Path) -> None:
    from modelchain.integrations.lightning import ModelchainCallback

    with mc.init(tmp_path / "l", ORIGIN, make_signer("alice"), home=tmp_path / "h") as bare:
        steps: list[int] = []
        with pytest.raises(UsageError, match="no signer"):
            _fit(tmp_path / "out", ModelchainCallback(bare, model="tiny"), steps)
        assert steps == []


def test_the_package_imports_no_framework() -> None:
    """Only a script that imports a callback module pays for its framework."""
    probe = (
        "import sys, modelchain, modelchain.integrations, modelchain.integrations._training; "
        "print(sorted({'torch', 'transformers', 'lightning', 'accelerate'} & set(sys.modules)))"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert found.strip() == "[]"


def test_a_used_run_id_or_a_full_output_folder_fails_at_the_start(
    led: mc.Ledger, tmp_path: Path
) -> None:
    from modelchain.integrations.lightning import ModelchainCallback

    weights = tmp_path / "w.bin"
    weights.write_bytes(b"w")
    led.runs.record("taken", outputs=[weights], code_dir=None)
    full = tmp_path / "full"
    full.mkdir()
    (full / "stale.bin").write_bytes(b"old")
    for callback, match in (
        (ModelchainCallback(led, model="tiny", run_id="taken"), "already recorded"),
        (ModelchainCallback(led, model="tiny", output_dir=full), "already holds files"),
    ):
        steps: list[int] = []
        with pytest.raises(UsageError, match=match):
            _fit(tmp_path / "out", callback, steps)
        assert steps == []
