"""The registry commands as a user runs them: hash, dataset, run, model, verify."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli as run

ORIGIN = "ledger.example.org/registry"


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    data = tmp_path / "train.csv"
    data.write_text("x,y\n" + "".join(f"{i},{i % 3}\n" for i in range(40)))
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(bytes(range(256)) * 64)
    (model / "config.json").write_text('{"hidden": 8}\n')
    (model / ".git").mkdir()
    (model / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    return {"data": data, "model": model}


def test_register_train_verify_round_trip(
    env: dict[str, str], files: dict[str, Path], tmp_path: Path
) -> None:
    run(env, "init", "--origin", ORIGIN, "--admin", "alice", "--no-default-policies")
    manifest = json.loads(run(env, "hash", str(files["model"]), "--json").stdout)
    weights = next(f for f in manifest["files"] if f["path"] == "weights.bin")
    assert (
        weights["digest"]
        == hashlib.sha256((files["model"] / "weights.bin").read_bytes()).hexdigest()
    )
    assert manifest["ignored"] == [".git"]

    ds = json.loads(
        run(
            env,
            "dataset",
            "register",
            "train",
            str(files["data"]),
            "--source",
            "file://train.csv",
            "--json",
        ).stdout
    )
    assert ds["version"] == 1 and ds["records"]["count"] == 40
    run(
        env,
        "run",
        "record",
        "r1",
        "--output",
        str(files["model"]),
        "--dataset",
        "train@1",
        "--param",
        "lr=0.01",
        "--metric",
        "acc=0.9",
        "--code-dir",
        str(tmp_path),
    )
    reg = json.loads(
        run(env, "model", "register", "m", str(files["model"]), "--run", "r1", "--json").stdout
    )
    assert (reg["version"], reg["created"]) == (1, True)
    again = run(env, "model", "register", "m", str(files["model"]))
    assert "unchanged" in again.stdout

    assert "ok:" in run(env, "verify", str(files["model"]), "--model", "m").stdout
    (files["model"] / "config.json").write_text('{"hidden": 9}\n')
    bad = run(env, "verify", str(files["model"]), "--model", "m", ok=False)
    assert bad.returncode == 1
    assert "changed config.json" in bad.stderr and "Traceback" not in bad.stderr

    v2 = json.loads(
        run(env, "model", "register", "m", str(files["model"]), "--parent", "m@1", "--json").stdout
    )
    assert v2["version"] == 2
    diff = json.loads(run(env, "model", "diff", "m", "1", "2", "--json").stdout)
    assert diff["changed"] == ["config.json"] and diff["added"] == []
    tree = run(env, "model", "lineage", "m", "--version", "1").stdout
    assert "run r1" in tree and "dataset train@1" in tree
    lineage = json.loads(run(env, "model", "lineage", "m", "--version", "2", "--json").stdout)
    assert lineage["parent"]["run"]["inputs"][0]["name"] == "train"

    proof_file = tmp_path / "proof.json"
    run(
        env,
        "dataset",
        "prove",
        "train",
        "--version",
        "1",
        "--row",
        "7",
        "--data",
        str(files["data"]),
        "-o",
        str(proof_file),
    )
    proof = json.loads(proof_file.read_text())
    assert proof["record"] == {"x": "7", "y": "1"}
    assert "ok: row 7" in run(env, "dataset", "verify-record", str(proof_file)).stdout
    proof["record"]["y"] = "2"
    proof_file.write_text(json.dumps(proof))
    forged = run(env, "dataset", "verify-record", str(proof_file), ok=False)
    assert forged.returncode == 1

    shown = json.loads(run(env, "model", "show", "m", "--json").stdout)
    assert shown["version"] == 2 and shown["parent"] == {"name": "m", "version": 1}
    assert "ok: " in run(env, "log", "verify").stdout


def test_bad_paths_get_clear_errors(env: dict[str, str], tmp_path: Path) -> None:
    run(env, "init", "--origin", ORIGIN, "--admin", "alice", "--no-default-policies")
    missing = run(env, "hash", str(tmp_path / "nope"), ok=False)
    assert missing.returncode == 3 and missing.stderr.startswith("error: ")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run(env, "model", "register", "m", str(empty), ok=False).returncode == 4
    (tmp_path / "real").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    linked = run(env, "hash", str(tmp_path / "link"), ok=False)
    assert linked.returncode == 4 and "symlink" in linked.stderr.lower()
    unknown = run(env, "verify", str(tmp_path / "real"), "--model", "ghost", ok=False)
    assert unknown.returncode == 3
    bad_spec = run(
        env,
        "run",
        "record",
        "r",
        "--output",
        str(tmp_path / "real"),
        "--dataset",
        "nover",
        ok=False,
    )
    assert bad_spec.returncode == 2 and "NAME@VERSION" in bad_spec.stderr


def test_oms_bundles_round_trip_with_model_signing(
    env: dict[str, str], files: dict[str, Path], tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private = tmp_path / "signer.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = tmp_path / "signer.pub.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
    )
    model, bundle = files["model"], tmp_path / "model.sig"
    run(env, "oms", "sign", str(model), "--key", str(private), "-o", str(bundle))
    theirs = subprocess.run(
        [
            sys.executable,
            "-m",
            "model_signing",
            "verify",
            "key",
            str(model),
            "--signature",
            str(bundle),
            "--public_key",
            str(public),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert theirs.returncode == 0, theirs.stdout + theirs.stderr

    run(env, "init", "--origin", ORIGIN, "--admin", "alice", "--no-default-policies")
    imported = json.loads(
        run(
            env,
            "oms",
            "import",
            str(bundle),
            str(model),
            "--model",
            "m",
            "--key",
            str(public),
            "--json",
        ).stdout
    )
    assert imported["version"] == 1
    shown = json.loads(run(env, "model", "show", "m", "--json").stdout)
    assert shown["card"]["oms"]["bundle"].startswith("sha256:")

    (model / "weights.bin").write_bytes(b"tampered")
    refused = run(
        env,
        "oms",
        "import",
        str(bundle),
        str(model),
        "--model",
        "m",
        "--key",
        str(public),
        ok=False,
    )
    assert refused.returncode == 1 and "weights.bin" in refused.stderr


def test_parquet_datasets_and_unsupported_record_files(env: dict[str, str], tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    run(env, "init", "--origin", ORIGIN, "--admin", "alice", "--no-default-policies")
    table = pa.table(
        {"id": list(range(30)), "label": ["a", "b", "c"] * 10, "score": [i / 7 for i in range(30)]}
    )
    data = tmp_path / "rows.parquet"
    pq.write_table(table, data, row_group_size=8)
    reg = json.loads(run(env, "dataset", "register", "rows", str(data), "--json").stdout)
    assert reg["records"]["count"] == 30
    proof = json.loads(
        run(
            env, "dataset", "prove", "rows", "--version", "1", "--row", "17", "--data", str(data)
        ).stdout
    )
    assert proof["record"]["id"] == 17 and proof["record"]["label"] == "c"

    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"\x00\x01 not a table")
    run(env, "dataset", "register", "blob", str(blob))
    no_rows = run(
        env,
        "dataset",
        "prove",
        "blob",
        "--version",
        "1",
        "--row",
        "0",
        "--data",
        str(blob),
        ok=False,
    )
    assert no_rows.returncode == 3 and "record-level root" in no_rows.stderr


def test_verify_names_a_single_file_model(env: dict[str, str], tmp_path: Path) -> None:
    st = pytest.importorskip("safetensors.numpy")
    import numpy as np

    def save(weight: float) -> None:
        tensors = {
            "dense.weight": np.full((2, 2), weight, dtype=np.float32),
            "dense.bias": np.zeros(2, dtype=np.float32),
        }
        st.save_file(tensors, str(path))

    run(env, "init", "--origin", ORIGIN, "--admin", "alice", "--no-default-policies")
    path = tmp_path / "clf.safetensors"
    save(0.0)
    run(env, "model", "register", "clf", str(path))
    save(1.0)
    bad = run(env, "verify", str(path), "--model", "clf", ok=False)
    assert bad.returncode == 1, bad.stderr
    lines = [line.strip() for line in bad.stderr.splitlines()]
    assert "changed clf.safetensors" in lines and "changed clf.safetensors:dense.weight" in lines
    assert not any(line.startswith("changed .") for line in lines), bad.stderr


def test_show_takes_name_at_version_and_unknown_names_exit_3(
    env: dict[str, str], files: dict[str, Path]
) -> None:
    run(env, "init", "--origin", ORIGIN, "--admin", "alice", "--no-default-policies")
    run(env, "dataset", "register", "iris", str(files["data"]))
    run(env, "model", "register", "m", str(files["model"]))
    (files["model"] / "config.json").write_text('{"hidden": 9}\n')
    run(env, "model", "register", "m", str(files["model"]))

    assert run(env, "history", "m").stdout == "", "a model never deployed has no history"
    shown = json.loads(run(env, "dataset", "show", "iris@1", "--json").stdout)
    assert shown["version"]["version"] == 1
    assert "version:  1 " in run(env, "dataset", "show", "iris@1").stdout
    assert json.loads(run(env, "model", "show", "m@1", "--json").stdout)["version"] == 1
    assert json.loads(run(env, "model", "show", "m@2", "--json").stdout)["version"] == 2
    assert (
        json.loads(run(env, "model", "show", "m", "--version", "1", "--json").stdout)["version"]
        == 1
    )
    assert "m@1" in run(env, "model", "lineage", "m@1").stdout

    for args in (
        ("dataset", "show", "nope"),
        ("dataset", "show", "nope@1"),
        ("dataset", "show", "Iris"),
        ("model", "show", "nope@1"),
        ("model", "show", "iris@1"),  # a dataset's name is no model's
        ("model", "lineage", "nope"),
        ("history", "nope"),
        ("history", "m@1"),
    ):
        proc = run(env, *args, ok=False)
        assert proc.returncode == 3, (args, proc.stderr)
        assert proc.stderr.startswith("error: no ") and "Traceback" not in proc.stderr
    missing = run(env, "dataset", "show", "iris@9", ok=False)
    assert missing.returncode == 3 and "has no version 9" in missing.stderr

    for args in (
        ("dataset", "show", "iris@1", "--version", "2"),
        ("dataset", "show", "iris@latest"),
        ("model", "show", "@1"),
    ):
        proc = run(env, *args, ok=False)
        assert proc.returncode == 2, (args, proc.stderr)
        assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
