"""Format detection from real files written by the libraries that own each format."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from modelchain.artifacts import FORMATS, detect_format, hash_path


def test_safetensors(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    f = tmp_path / "model.safetensors"
    save_file({"w": torch.ones(2, 2)}, str(f))
    assert detect_format(f) == "safetensors"
    renamed = tmp_path / "weights.dat"
    f.rename(renamed)
    assert detect_format(renamed) == "safetensors"  # by its header, whatever the name


def test_pytorch_zip_and_legacy(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    state = {"w": torch.ones(3)}
    torch.save(state, tmp_path / "model.pt")
    assert detect_format(tmp_path / "model.pt") == "pytorch"
    torch.save(state, tmp_path / "pytorch_model.bin")
    assert detect_format(tmp_path / "pytorch_model.bin") == "pytorch"
    torch.save(state, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    assert detect_format(tmp_path / "legacy.pth") == "pytorch"
    # Not random bytes: one in 256 starts with 0x80, a pickle, which under a torch name is torch.
    (tmp_path / "blob.bin").write_bytes(bytes(range(100)))
    assert detect_format(tmp_path / "blob.bin") == "file"


def test_sklearn_joblib(tmp_path: Path) -> None:
    joblib = pytest.importorskip("joblib")
    datasets = pytest.importorskip("sklearn.datasets")
    linear_model = pytest.importorskip("sklearn.linear_model")
    x, y = datasets.load_iris(return_X_y=True)
    clf = linear_model.LogisticRegression(max_iter=300).fit(x, y)
    joblib.dump(clf, tmp_path / "clf.joblib")
    assert detect_format(tmp_path / "clf.joblib") == "sklearn"
    joblib.dump(clf, tmp_path / "clf.pkl", compress=3)
    assert detect_format(tmp_path / "clf.pkl") == "sklearn"


def test_onnx(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx", reason="the onnx package builds the test model")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph)
    onnx.checker.check_model(model)
    onnx.save(model, tmp_path / "tiny.onnx")
    assert detect_format(tmp_path / "tiny.onnx") == "onnx"


def test_csv_and_parquet(tmp_path: Path) -> None:
    (tmp_path / "rows.csv").write_text("a,b\n1,2\n")
    assert detect_format(tmp_path / "rows.csv") == "csv"
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    pq.write_table(table, tmp_path / "rows.parquet")
    assert detect_format(tmp_path / "rows.parquet") == "parquet"
    os.rename(tmp_path / "rows.parquet", tmp_path / "rows.data")
    assert detect_format(tmp_path / "rows.data") == "parquet"  # by its magic bytes


def test_folders(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"model_type": "bert"}))
    save_file({"w": torch.ones(1)}, str(hf / "model.safetensors"))
    (hf / "README.md").write_text("# card")
    assert detect_format(hf) == "huggingface"
    assert hash_path(hf).format == "huggingface"

    shards = tmp_path / "shards"
    shards.mkdir()
    for i in range(2):
        save_file({"w": torch.ones(1)}, str(shards / f"part-{i}.safetensors"))
    (shards / "README.md").write_text("# shards")
    assert detect_format(shards) == "safetensors"

    data = tmp_path / "data"
    (data / "train").mkdir(parents=True)
    (data / "train" / "0.csv").write_text("a\n1\n")
    (data / "test.csv").write_text("a\n2\n")
    assert detect_format(data) == "csv"

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "a.csv").write_text("a\n")
    (mixed / "b.onnx").write_bytes(b"\x08\x07")
    (mixed / "notes.txt").write_text("x")
    assert detect_format(mixed) == "folder"


def test_plain_file_and_every_answer_is_known(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    assert detect_format(tmp_path / "notes.txt") == "file"
    (tmp_path / "empty").write_bytes(b"")
    assert detect_format(tmp_path / "empty") == "file"
    (tmp_path / "fake.safetensors").write_bytes(b"\xff" * 20)
    assert detect_format(tmp_path / "fake.safetensors") == "safetensors"  # by its name
    for p in tmp_path.iterdir():
        assert detect_format(p) in FORMATS
