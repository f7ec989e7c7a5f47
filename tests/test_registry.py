"""The registry end to end with real models and data: datasets, runs, model versions,
verification, diffs and lineage."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import joblib
import pytest
import torch
from safetensors.torch import load_file, save_file
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import modelchain as mc
from modelchain.core.identity import Ed25519Signer
from modelchain.errors import IntegrityError, NotFoundError, ProofError, RejectedError
from modelchain.ledger.lineage import DatasetNode, ModelNode


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELCHAIN_HOME", str(tmp_path / "home"))


@pytest.fixture
def iris_csv(tmp_path: Path) -> Path:
    data = load_iris()
    path = tmp_path / "iris.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([*data.feature_names, "species"])
        for row, target in zip(data.data.tolist(), data.target.tolist(), strict=True):
            w.writerow([*row, int(target)])
    return path


@pytest.fixture
def sklearn_model(tmp_path: Path) -> Path:
    data = load_iris()
    clf = LogisticRegression(max_iter=500).fit(data.data, data.target)
    path = tmp_path / "iris-logreg.joblib"
    joblib.dump(clf, path)
    return path


def _torch_folder(root: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    root.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, root / "model.safetensors")
    (root / "config.json").write_text(json.dumps({"layers": [4, 8, 3]}))
    torch.save(net.state_dict(), root / "model.pt")
    return root


@pytest.fixture
def led(ledger: mc.Ledger, alice: Ed25519Signer) -> mc.Ledger:
    ledger.identity = alice
    return ledger


def test_dataset_versions_with_record_roots(led: mc.Ledger, iris_csv: Path) -> None:
    v1 = led.datasets.register("iris", iris_csv, source="sklearn://iris", license="BSD-3")
    assert (v1.version, v1.created) == (1, True)
    assert v1.records is not None and v1.records["count"] == 150
    again = led.datasets.ingest("iris", iris_csv, source="s3://x", batch="b1", collected_by="bob")
    assert (again.version, again.created) == (1, False), "same bytes: no new version"
    with iris_csv.open("a") as fh:
        fh.write("5.0,3.0,1.5,0.2,0\n")
    v2 = led.datasets.ingest("iris", iris_csv, source="s3://x", batch="b2", collected_by="bob")
    assert (v2.version, v2.created) == (2, True)
    assert v2.record["ingest"]["batch"] == "b2"
    assert v2.records is not None and v2.records["count"] == 151
    assert [d["name"] for d in led.datasets.list()] == ["iris"]

    proof = led.datasets.prove("iris", 2, 150, iris_csv)
    led.datasets.verify_record(proof, "iris", 2)
    with pytest.raises(ProofError):
        led.datasets.verify_record(proof, "iris", 1)  # another version's root
    assert led.audit().rejected == 0


def test_a_name_with_a_version_in_it_names_nothing(led: mc.Ledger, iris_csv: Path) -> None:
    # Entities and versions share one key space: "iris@1" must not read version 1.
    led.datasets.register("iris", iris_csv)
    for name in ("iris@1", "iris#x", "Iris", ""):
        with pytest.raises(NotFoundError, match="no dataset named"):
            led.datasets.get(name)
        with pytest.raises(NotFoundError, match="no dataset named"):
            led.datasets.info(name)
    with pytest.raises(NotFoundError, match="no model named"):
        led.models.get("iris@1")


def test_model_lineage_from_data_through_run(
    led: mc.Ledger, iris_csv: Path, sklearn_model: Path
) -> None:
    led.datasets.register("iris", iris_csv)
    led.runs.record(
        "train-1",
        outputs=[sklearn_model],
        datasets=[("iris", 1)],
        parameters={"max_iter": 500},
        metrics={"accuracy": 0.97},
        code_dir=None,
    )
    run = led.runs.get("train-1")
    assert run["inputs"] == [{"kind": "dataset", "name": "iris", "version": 1}]
    env = run["statement"]["predicate"]["buildDefinition"]["internalParameters"]["environment"]
    assert "scikit-learn" in env["packages"] and env["python"]

    v1 = led.models.register("iris-clf", sklearn_model, run="train-1", metrics={"acc": 0.97})
    assert (v1.version, v1.created) == (1, True)
    assert v1.record["artifact"]["format"] == "sklearn"
    size = led.size
    same = led.models.register("iris-clf", sklearn_model, run="train-1")
    assert (same.version, same.created) == (1, False)
    assert led.size == size, "re-registering the same bytes writes nothing"

    tree = led.models.lineage("iris-clf")
    assert tree.run is not None and tree.run.id == "train-1"
    assert isinstance(tree.run.inputs[0], DatasetNode) and tree.run.inputs[0].name == "iris"
    assert tree.to_json()["run"]["inputs"][0]["name"] == "iris"
    assert led.verify(sklearn_model, model="iris-clf").version == 1


def test_a_model_must_be_an_output_of_its_run(
    led: mc.Ledger, sklearn_model: Path, tmp_path: Path
) -> None:
    led.runs.record("r", outputs=[sklearn_model], code_dir=None)
    other = _torch_folder(tmp_path / "other")
    with pytest.raises(RejectedError, match="not_a_run_output") as info:
        led.models.register("m", other, run="r")
    assert not led.entry(info.value.index).outcome.accepted, "the refusal is evidence"
    with pytest.raises(RejectedError, match="no_run"):
        led.models.register("m", other, run="never-recorded")


def test_versions_diff_by_file_and_tensor(led: mc.Ledger, tmp_path: Path) -> None:
    folder = _torch_folder(tmp_path / "net")
    v1 = led.models.register("net", folder)
    tensors = led.models.manifest("net", 1).file("model.safetensors")
    assert tensors is not None and {t.name for t in tensors.tensors} == {
        "0.weight",
        "0.bias",
        "2.weight",
        "2.bias",
    }
    fine_tuned = tmp_path / "net2"
    shutil.copytree(folder, fine_tuned)
    weights = load_file(fine_tuned / "model.safetensors")
    weights["2.bias"] = weights["2.bias"] + 1
    save_file(weights, fine_tuned / "model.safetensors")
    (fine_tuned / "README.md").write_text("fine-tuned\n")
    v2 = led.models.register("net", fine_tuned, parent=("net", v1.version))
    changes = led.models.diff("net", 1, 2)
    assert changes.changed == ("model.safetensors",)
    assert changes.added == ("README.md",)
    assert changes.tensors_changed == ("model.safetensors:2.bias",)
    parent = led.models.lineage("net", v2.version).parent
    assert parent is not None and parent.version == 1


def test_verify_names_what_differs(led: mc.Ledger, tmp_path: Path) -> None:
    folder = _torch_folder(tmp_path / "net")
    led.models.register("net", folder)
    led.verify(folder, model="net")
    data = bytearray((folder / "config.json").read_bytes())
    data[2] ^= 1
    (folder / "config.json").write_bytes(bytes(data))
    with pytest.raises(IntegrityError) as info:
        led.verify(folder, model="net")
    assert "changed config.json" in info.value.differences
    (folder / "config.json").rename(folder / "config2.json")
    with pytest.raises(IntegrityError) as info:
        led.verify(folder, model="net")
    assert {"added config2.json", "removed config.json"} <= set(info.value.differences)
    with pytest.raises(NotFoundError):
        led.verify(folder, model="nope")


def test_large_manifests_live_beside_the_ledger(led: mc.Ledger, tmp_path: Path) -> None:
    folder = tmp_path / "shards"
    folder.mkdir()
    for i in range(500):
        (folder / f"shard-{i:04d}.bin").write_bytes(i.to_bytes(4, "big") * 10)
    v = led.models.register("sharded", folder)
    art = v.record["artifact"]
    assert "manifest_ref" in art and "manifest" not in art
    assert (led.path / "blobs" / "sha256").is_dir()
    assert len(led.entry_bytes(v.index)) < 65_535
    led.verify(folder, model="sharded")
    assert led.audit().rejected == 0


def test_roles_gate_registration(
    ledger: mc.Ledger, carol: Ed25519Signer, sklearn_model: Path
) -> None:
    ledger.identity = carol  # an auditor
    with pytest.raises(RejectedError, match="not_permitted"):
        ledger.models.register("m", sklearn_model)


def test_reopened_ledger_keeps_the_registry(led: mc.Ledger, sklearn_model: Path) -> None:
    led.models.register("m", sklearn_model)
    path = led.path
    led.close()
    with mc.open(path, readonly=True) as again:
        assert again.models.get("m").version == 1
        again.verify(sklearn_model, model="m")


def test_verify_against_an_environment_needs_a_deployment(
    led: mc.Ledger, sklearn_model: Path
) -> None:
    led.models.register("m", sklearn_model)
    with pytest.raises(NotFoundError, match="not deployed to 'production'"):
        led.verify(sklearn_model, model="m", env="production")


def test_runs_record_the_git_commit_of_the_code(
    led: mc.Ledger, sklearn_model: Path, tmp_path: Path
) -> None:
    import subprocess

    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text("print('train')\n")
    git = ["git", "-C", str(code), "-c", "user.email=t@example.org", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "train.py"], check=True)
    subprocess.run([*git, "commit", "-qm", "train"], check=True)
    head = subprocess.run(
        [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    led.runs.record("r-git", outputs=[sklearn_model], code_dir=code)
    deps = led.runs.get("r-git")["statement"]["predicate"]["buildDefinition"][
        "resolvedDependencies"
    ]
    assert {"gitCommit": head} in [d["digest"] for d in deps]
    assert [d["annotations"]["dirty"] for d in deps if "gitCommit" in d["digest"]] == [False]


def test_handing_out_a_dataset_location_is_logged(led: mc.Ledger, iris_csv: Path) -> None:
    led.datasets.register("iris", iris_csv, source="s3://lake/iris.csv")
    size = led.size
    assert led.datasets.locate("iris", 1, purpose="retraining") == "s3://lake/iris.csv"
    entry = led.entry(size)
    assert entry.transaction.type == "access.log"
    # the purpose is free text: the log holds a salted commitment, the vault the text
    body = entry.transaction.body
    assert body["artifact"] == {"kind": "dataset", "name": "iris", "version": 1}
    assert set(body["purpose"]) == {"_sd"} and b"retraining" not in led.entry_bytes(size)
    assert led.disclosures.reveal(body)["purpose"] == "retraining"


def test_lineage_is_read_once_and_lists_a_shared_ancestor_once(
    led: mc.Ledger, tmp_path: Path
) -> None:
    files = tmp_path / "lineage"
    files.mkdir()
    for name in ("d.csv", "base.bin", "m1.bin", "m2.bin"):
        (files / name).write_text(name)
    led.datasets.register("d", files / "d.csv", records=False)
    led.models.register("base", files / "base.bin")
    led.runs.record("r1", outputs=[files / "m1.bin"], datasets=[("d", 1)], code_dir=None)
    led.models.register("m", files / "m1.bin", run="r1")
    led.runs.record(
        "r2",
        outputs=[files / "m2.bin"],
        datasets=[("d", 1)],
        base_models=[("m", 1), ("base", 1)],
        code_dir=None,
    )
    led.models.register("m", files / "m2.bin", run="r2", parent=("m", 1))

    tree = led.models.lineage("m")
    assert (tree.name, tree.version, tree.repeated) == ("m", 2, False)
    assert tree.parent is not None and tree.parent.run is not None
    assert tree.parent.run.id == "r1" and not tree.parent.repeated
    assert tree.run is not None
    again = tree.run.inputs[1]
    assert isinstance(again, ModelNode) and (again.name, again.repeated) == ("m", True)
    assert "parent" not in again.to_json(), "a repeated node is not walked again"
    assert tree.datasets() == [("d", 1)]
    lines = tree.lines()
    assert lines[0].startswith("model m@2  sha256:")
    assert lines[1].startswith("├── model m@1") and lines[-1].startswith("    └── model base@1")
    assert "└── run r2 by alice" in "\n".join(lines)
    assert tree.to_json()["run"]["inputs"][0]["kind"] == "dataset"
