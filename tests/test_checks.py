"""Data-quality checks and model evaluations on real data (scikit-learn's bundled iris and
breast-cancer sets) written to CSV and Parquet: each fault fails exactly its check, metrics
equal sklearn.metrics, and the evidence is deterministic JSON."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib  # type: ignore[import-untyped]
import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file, save_file
from sklearn import metrics as skm  # type: ignore[import-untyped]
from sklearn.datasets import load_breast_cancer, load_iris  # type: ignore[import-untyped]
from sklearn.linear_model import LinearRegression, LogisticRegression  # type: ignore[import-untyped]
from sklearn.pipeline import make_pipeline  # type: ignore[import-untyped]
from sklearn.preprocessing import StandardScaler  # type: ignore[import-untyped]

import modelchain.checks as checks
from modelchain.checks import (
    METRICS,
    evaluate_entry,
    evaluate_sklearn,
    evaluate_torch,
    metrics_agree,
    model_file_in,
    run_quality_checks,
)
from modelchain.checks.quality import _find_duplicates
from modelchain.errors import ArtifactError, UsageError

FORMATS = ["csv", "parquet"]
CHECK_NAMES = ["schema", "nulls", "ranges", "duplicates", "row_count"]


def write(table: pa.Table, path: Path) -> Path:
    if path.suffix == ".csv":
        pcsv.write_csv(table, path)
    else:
        pq.write_table(table, path)
    return path


def replace(table: pa.Table, column: str, values: Any) -> pa.Table:
    i = table.column_names.index(column)
    return table.set_column(i, column, pa.array(values))


@pytest.fixture(scope="module")
def cancer() -> pa.Table:
    data = load_breast_cancer()
    columns = {name: data.data[:, i] for i, name in enumerate(data.feature_names)}
    columns["target"] = data.target.astype(np.int64)
    return pa.table(columns)


@pytest.fixture(scope="module")
def iris() -> pa.Table:
    data = load_iris()
    columns = {name: data.data[:, i] for i, name in enumerate(data.feature_names)}
    columns["species"] = data.target.astype(np.int64)
    return pa.table(columns)


def clean_args(table: pa.Table) -> dict[str, Any]:
    schema = {name: "float" for name in table.column_names}
    schema["target"] = "int"
    return {
        "schema": schema,
        "ranges": {"mean radius": (0, 100), "target": (0, 1)},
        "min_rows": 100,
    }


def failing(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c["details"] for c in result["checks"] if not c["passed"]}


def canonical(result: dict[str, Any]) -> str:
    return json.dumps(result, allow_nan=False, sort_keys=True)


# --- quality --------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_clean_file_passes_every_check(cancer: pa.Table, tmp_path: Path, fmt: str) -> None:
    path = write(cancer, tmp_path / f"cancer.{fmt}")
    result = run_quality_checks(path, **clean_args(cancer))
    assert result["passed"] is True
    assert [c["name"] for c in result["checks"]] == CHECK_NAMES
    assert all(c["passed"] for c in result["checks"])
    summary = result["summary"]
    assert (summary["rows"], summary["columns"], summary["duplicates"]) == (569, 31, 0)
    assert set(summary["nulls"].values()) == {0}
    assert summary["numeric"]["mean radius"]["min"] == 6.981
    assert summary["numeric"]["mean radius"]["max"] == 28.11
    assert summary["numeric"]["target"] == {"min": 0, "max": 1, "mean": pytest.approx(357 / 569)}
    assert result["tool"]["name"] == "modelchain.checks"
    assert result["parameters"]["ranges"]["mean radius"] == [0, 100]


def test_csv_and_parquet_of_the_same_table_give_the_same_evidence(
    cancer: pa.Table, tmp_path: Path
) -> None:
    a = run_quality_checks(write(cancer, tmp_path / "c.csv"), **clean_args(cancer))
    b = run_quality_checks(write(cancer, tmp_path / "c.parquet"), **clean_args(cancer))
    assert canonical(a) == canonical(b)


def _nulls(t: pa.Table) -> pa.Table:
    values = t.column("mean texture").to_pylist()
    for i in (3, 50, 400):
        values[i] = None
    return replace(t, "mean texture", values)


def _out_of_range(t: pa.Table) -> pa.Table:
    values = t.column("mean radius").to_pylist()
    values[5], values[6] = 1000.0, -1.0
    return replace(t, "mean radius", values)


def _duplicates(t: pa.Table) -> pa.Table:
    return pa.concat_tables([t, t.take([0, 10])])


def _wrong_type(t: pa.Table) -> pa.Table:
    values = [str(v) for v in t.column("mean area").to_pylist()]
    values[7] = "unknown"
    return replace(t, "mean area", values)


def _missing_column(t: pa.Table) -> pa.Table:
    return t.drop_columns(["worst symmetry"])


def _extra_column(t: pa.Table) -> pa.Table:
    return t.append_column("notes", pa.array(["ok"] * t.num_rows))


def _too_few_rows(t: pa.Table) -> pa.Table:
    return t.slice(0, 50)


FAULTS: dict[str, tuple[Callable[[pa.Table], pa.Table], str, dict[str, Any]]] = {
    "nulls": (
        _nulls,
        "nulls",
        {
            "failed": {
                "mean texture": {
                    "nulls": 3,
                    "fraction": pytest.approx(3 / 569),
                    "max_fraction": 0.0,
                }
            },
            "missing": [],
        },
    ),
    "out_of_range": (
        _out_of_range,
        "ranges",
        {
            "failed": {
                "mean radius": {
                    "out_of_range": 2,
                    "below_min": 1,
                    "above_max": 1,
                    "min": 0,
                    "max": 100,
                }
            },
            "missing": [],
            "not_numeric": {},
        },
    ),
    "duplicates": (
        _duplicates,
        "duplicates",
        {
            "duplicates": 2,
            "allowed": False,
            "examples": [{"row": 569, "duplicate_of": 0}, {"row": 570, "duplicate_of": 10}],
        },
    ),
    "wrong_type": (
        _wrong_type,
        "schema",
        {
            "missing": [],
            "extra": [],
            "mismatched": {"mean area": {"expected": "float", "actual": "string"}},
        },
    ),
    "missing_column": (
        _missing_column,
        "schema",
        {"missing": ["worst symmetry"], "extra": [], "mismatched": {}},
    ),
    "extra_column": (
        _extra_column,
        "schema",
        {"missing": [], "extra": ["notes"], "mismatched": {}},
    ),
    "too_few_rows": (_too_few_rows, "row_count", {"rows": 50, "min_rows": 100}),
}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_each_fault_fails_exactly_its_check(
    cancer: pa.Table, tmp_path: Path, fmt: str, fault: str
) -> None:
    inject, check, expected = FAULTS[fault]
    path = write(inject(cancer), tmp_path / f"bad.{fmt}")
    result = run_quality_checks(path, **clean_args(cancer))
    assert result["passed"] is False
    failed = failing(result)
    assert list(failed) == [check]
    details = failed[check]
    if check == "schema":
        details = {k: v for k, v in details.items() if k != "actual"}
    assert details == expected


def test_columns_the_file_lacks_fail_their_checks_instead_of_raising(
    cancer: pa.Table, tmp_path: Path
) -> None:
    path = write(cancer.append_column("id", pa.array(["x"] * 569)), tmp_path / "c.parquet")
    result = run_quality_checks(
        path,
        max_null_fraction={"nope": 0.5},
        ranges={"nope": (None, 1), "id": (0, 1), "target": (0, None)},
    )
    failed = failing(result)
    assert list(failed) == ["nulls", "ranges"]
    assert failed["nulls"] == {"failed": {}, "missing": ["nope"]}
    assert failed["ranges"] == {"failed": {}, "missing": ["nope"], "not_numeric": {"id": "string"}}


def test_null_limits_are_inclusive_and_per_column(tmp_path: Path) -> None:
    table = pa.table({"a": [1, None, 3, 4, 5, 6, 7, 8, 9, 10], "b": [1.0] * 9 + [float("nan")]})
    path = write(table, tmp_path / "n.parquet")
    assert run_quality_checks(path, max_null_fraction=0.1)["passed"]
    result = run_quality_checks(path, max_null_fraction={"a": 0.1})
    assert failing(result) == {
        "nulls": {
            "failed": {"b": {"nulls": 1, "fraction": 0.1, "max_fraction": 0.0}},
            "missing": [],
        }
    }
    assert result["summary"]["nulls"] == {"a": 1, "b": 1}
    assert not run_quality_checks(path, max_null_fraction=0.09)["passed"]


def test_schema_types_from_csv_inference(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text(
        "\ufeffi,f,s,b,d,ts,empty\n"
        "1,1.5,x,true,2024-01-01,2024-01-01 10:00:00,\n"
        "2,2,,false,2024-01-02,2024-01-02 11:30:00,\n"
    )
    schema = {
        "i": "int",
        "f": "float",
        "s": "string",
        "b": "bool",
        "d": "date",
        "ts": "timestamp",
        "empty": "int",
    }
    result = run_quality_checks(path, schema=schema, max_null_fraction=1.0)
    assert result["passed"], failing(result)
    assert result["checks"][0]["details"]["actual"] == {**schema, "empty": "null"}
    # an int column is a valid float column, not the other way round
    assert run_quality_checks(path, schema={**schema, "i": "float"}, max_null_fraction=1)["passed"]
    bad = run_quality_checks(path, schema={**schema, "f": "int"}, max_null_fraction=1)
    assert failing(bad)["schema"]["mismatched"] == {"f": {"expected": "int", "actual": "float"}}


def test_duplicates_compare_values_of_every_type(tmp_path: Path) -> None:
    nan, day = float("nan"), 86_400
    table = pa.table(
        {
            "f": pa.array([nan, nan, 0.0, -0.0, None, None, 1.0, 1.0], pa.float32()),
            "u": pa.array([2**64 - 1] * 8, pa.uint64()),
            "s": pa.array(["a", "a", "b", "b", None, None, "c", "c"]).dictionary_encode(),
            "l": pa.array([[1], [1], [], [], None, None, [2, None], [2, None]]),
            "st": pa.array([{"x": 1}] * 8),
            "ts": pa.array([day, day, 0, 0, None, None, 1, 1], pa.timestamp("s", tz="UTC")),
            "dec": pa.array([1, 1, 2, 2, None, None, 3, 3], pa.int64()).cast(pa.decimal128(22, 2)),
        }
    )
    path = write(table, tmp_path / "d.parquet")
    result = run_quality_checks(path, max_null_fraction=1)
    assert result["summary"]["duplicates"] == 4
    assert failing(result)["duplicates"]["examples"] == [
        {"row": 1, "duplicate_of": 0},
        {"row": 3, "duplicate_of": 2},
        {"row": 5, "duplicate_of": 4},
        {"row": 7, "duplicate_of": 6},
    ]
    # change one value in one column of one pair: that pair is no longer a duplicate
    changed = replace(table, "l", [[1], [1], [], [], None, None, [2, None], [2, 3]])
    path = write(changed, tmp_path / "e.parquet")
    assert run_quality_checks(path, max_null_fraction=1)["summary"]["duplicates"] == 3
    assert run_quality_checks(path, max_null_fraction=1, allow_duplicates=True)["passed"]


def test_duplicate_count_matches_a_python_reference(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    n = 20_000

    def column(values: Any) -> pa.Array:
        return pa.array(values, mask=rng.random(n) < 0.05)

    table = pa.table(
        {
            "a": column(rng.integers(0, 4, n)),
            "b": column(rng.integers(0, 3, n).astype(np.float64) / 2),
            "c": column(rng.choice(["x", "y", "z"], n)),
            "d": column(rng.integers(0, 2, n).astype(bool)),
        }
    )
    # small row groups: several chunks per column, each with its own dictionary
    path = tmp_path / "r.parquet"
    pq.write_table(table, path, row_group_size=3_000)
    seen: dict[tuple[Any, ...], int] = {}
    expected = []
    for i, row in enumerate(
        zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True)
    ):
        earlier = seen.setdefault(row, i)
        if earlier != i:
            expected.append({"row": i, "duplicate_of": earlier})
    result = run_quality_checks(path, max_null_fraction=1)
    assert result["summary"]["duplicates"] == len(expected) > 0
    assert failing(result)["duplicates"]["examples"] == expected[:10]


def test_a_hash_collision_never_miscounts() -> None:
    keys = [np.array([5, 6, 5, 7, 6, 5], np.int64), np.array([1, 1, 1, 1, 1, 2], np.int64)]
    colliding = np.zeros(6, np.uint64)
    assert _find_duplicates(keys, colliding) == (2, [(2, 0), (4, 1)])


def test_ranges_compare_exactly_whatever_the_column_type(tmp_path: Path) -> None:
    table = pa.table(
        {
            "u": pa.array([0, 5, 2**64 - 1], pa.uint64()),
            "i8": pa.array([1, -5, 100], pa.int8()),
            "h": pa.array([1, None, 3], pa.float16()),
        }
    )
    path = write(table, tmp_path / "u.parquet")
    ranges = {"u": (1, 2**64 - 2), "i8": (-5, 2**70), "h": (1.5, 1e30)}
    result = run_quality_checks(path, ranges=ranges, max_null_fraction=0.5)
    failed = failing(result)["ranges"]["failed"]
    assert {c: (f["below_min"], f["above_max"]) for c, f in failed.items()} == {
        "u": (1, 1),
        "h": (1, 0),
    }
    assert result["summary"]["numeric"]["u"]["max"] == pytest.approx(2.0**64)
    assert result["summary"]["numeric"]["h"] == {"min": 1.0, "max": 3.0, "mean": 2.0}


def test_nonfinite_numbers_become_null_and_results_reproduce(tmp_path: Path) -> None:
    table = pa.table({"x": [1.0, float("inf"), float("nan"), None, 2.0], "y": [1, 2, 3, 4, 5]})
    path = write(table, tmp_path / "x.parquet")
    runs = [run_quality_checks(path, max_null_fraction=0.5) for _ in range(2)]
    assert canonical(runs[0]) == canonical(runs[1])
    assert runs[0]["summary"]["numeric"]["x"] == {"min": 1.0, "max": None, "mean": None}
    assert runs[0]["summary"]["nulls"] == {"x": 2, "y": 0}
    assert runs[0]["summary"]["numeric"]["y"] == {"min": 1, "max": 5, "mean": 3.0}


def test_numbers_are_rounded_to_twelve_significant_digits(tmp_path: Path) -> None:
    path = write(pa.table({"x": [1.0, 2.0, 2.0 / 3.0 + 1e-15]}), tmp_path / "x.parquet")
    mean = run_quality_checks(path, allow_duplicates=True)["summary"]["numeric"]["x"]["mean"]
    assert mean == 1.22222222222


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"schema": {"a": "integer"}}, "known types: bool, date, float, int, string, timestamp"),
        ({"ranges": {"a": (2, 1)}}, "above max"),
        ({"ranges": {"a": (0,)}}, "(min, max) pair"),
        ({"ranges": {"a": (0, float("nan"))}}, "numbers or None"),
        ({"max_null_fraction": 1.5}, "fraction from 0 to 1"),
        ({"max_null_fraction": {"a": -0.1}}, "fraction from 0 to 1"),
        ({"min_rows": -1}, "min_rows"),
        ({"allow_duplicates": "yes"}, "allow_duplicates"),
    ],
)
def test_bad_arguments_are_usage_errors(tmp_path: Path, kwargs: Any, message: str) -> None:
    path = write(pa.table({"a": [1]}), tmp_path / "a.parquet")
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run_quality_checks(path, **kwargs)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("model.txt", b"not a table"),
        ("bad.csv", b"a,b\n1,2\n3\n"),
        ("empty.csv", b""),
        ("twice.csv", b"a,a\n1,2\n"),
        ("bad.parquet", b"PAR1 but no more"),
    ],
)
def test_unreadable_files_are_artifact_errors(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ArtifactError):
        run_quality_checks(path)


# --- evaluation -----------------------------------------------------------------------


def features_and_target(table: pa.Table, target: str) -> tuple[np.ndarray, np.ndarray]:
    names = [n for n in table.column_names if n != target]
    X = np.column_stack([table.column(n).to_numpy() for n in names])
    return X, table.column(target).to_numpy()


@pytest.fixture(scope="module")
def iris_model(iris: pa.Table, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    X, y = features_and_target(iris, "species")
    model = LogisticRegression(max_iter=1000).fit(X, y)
    path = tmp_path_factory.mktemp("models") / "iris.joblib"
    joblib.dump(model, path)
    return path, model


@pytest.mark.parametrize("fmt", FORMATS)
def test_sklearn_classifier_metrics_match_sklearn(
    iris: pa.Table, iris_model: tuple[Path, Any], tmp_path: Path, fmt: str
) -> None:
    model_path, model = iris_model
    data = write(iris, tmp_path / f"iris.{fmt}")
    names = ("accuracy", "f1_macro", "precision_macro", "recall_macro", "roc_auc")
    result = evaluate_sklearn(model_path, data, target="species", metrics=names)
    X, y = features_and_target(iris, "species")
    predicted = model.predict(X)
    expected = {
        "accuracy": skm.accuracy_score(y, predicted),
        "f1_macro": skm.f1_score(y, predicted, average="macro"),
        "precision_macro": skm.precision_score(y, predicted, average="macro"),
        "recall_macro": skm.recall_score(y, predicted, average="macro"),
        "roc_auc": skm.roc_auc_score(y, model.predict_proba(X), multi_class="ovr"),
    }
    assert list(result["metrics"]) == list(names)
    assert result["metrics"] == pytest.approx(expected, rel=1e-11)
    assert 0.9 < result["metrics"]["accuracy"] < 1.0
    assert (result["rows"], result["target"]) == (150, "species")
    assert result["tool"] == checks.quality.tool_info()


def test_sklearn_binary_roc_auc_and_string_labels_match_sklearn(
    cancer: pa.Table, tmp_path: Path
) -> None:
    names = np.array(["benign", "malignant"])
    labelled = replace(cancer, "target", names[cancer.column("target").to_numpy()].tolist())
    X, y = features_and_target(labelled, "target")
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    joblib.dump(model, tmp_path / "m.joblib")
    result = evaluate_sklearn(
        tmp_path / "m.joblib",
        write(labelled, tmp_path / "c.csv"),
        target="target",
        metrics=["roc_auc", "accuracy", "f1_macro"],
    )
    predicted = model.predict(X)
    assert result["metrics"] == pytest.approx(
        {
            "roc_auc": skm.roc_auc_score(y, model.predict_proba(X)[:, 1]),
            "accuracy": skm.accuracy_score(y, predicted),
            "f1_macro": skm.f1_score(y, predicted, average="macro"),
        },
        rel=1e-11,
    )


def test_sklearn_regressor_metrics_match_sklearn(iris: pa.Table, tmp_path: Path) -> None:
    table = iris.drop_columns(["species"])
    X, y = features_and_target(table, "petal width (cm)")
    model = LinearRegression().fit(X, y)
    joblib.dump(model, tmp_path / "r.joblib")
    data = write(table, tmp_path / "r.parquet")
    result = evaluate_sklearn(
        tmp_path / "r.joblib", data, target="petal width (cm)", metrics=["mse", "mae", "r2"]
    )
    predicted = model.predict(X)
    assert result["metrics"] == pytest.approx(
        {
            "mse": skm.mean_squared_error(y, predicted),
            "mae": skm.mean_absolute_error(y, predicted),
            "r2": skm.r2_score(y, predicted),
        },
        rel=1e-11,
    )
    assert result["metrics"]["r2"] > 0.9


def test_evaluations_are_deterministic_json(
    iris: pa.Table, iris_model: tuple[Path, Any], tmp_path: Path
) -> None:
    data = write(iris, tmp_path / "iris.csv")
    runs = [
        evaluate_sklearn(iris_model[0], data, target="species", metrics=METRICS[:5])
        for _ in range(2)
    ]
    assert canonical(runs[0]) == canonical(runs[1])


def _mlp() -> torch.nn.Sequential:
    return torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))


def test_torch_classifier_matches_a_manual_computation(iris: pa.Table, tmp_path: Path) -> None:
    X, y = features_and_target(iris, "species")
    torch.manual_seed(0)
    trained = _mlp()
    optimiser = torch.optim.Adam(trained.parameters(), lr=0.05)
    inputs, labels = torch.tensor(X, dtype=torch.float32), torch.tensor(y)
    for _ in range(60):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(trained(inputs), labels).backward()
        optimiser.step()
    save_file(trained.state_dict(), tmp_path / "mlp.safetensors")
    model = _mlp()  # as an evaluator would: build the module, load the registered weights
    model.load_state_dict(load_file(tmp_path / "mlp.safetensors"))

    data = write(iris, tmp_path / "iris.parquet")
    names = ("accuracy", "f1_macro", "roc_auc")
    result = evaluate_torch(model, data, target="species", metrics=names, batch_size=32)
    assert model.training  # the caller's mode is left as it was
    with torch.no_grad():
        logits = model(inputs)
    predicted = logits.argmax(dim=1).numpy()
    expected = {
        "accuracy": float((predicted == y).mean()),
        "f1_macro": skm.f1_score(y, predicted, average="macro"),
        "roc_auc": skm.roc_auc_score(
            y, torch.softmax(logits, 1).double().numpy(), multi_class="ovr"
        ),
    }
    assert result["metrics"] == pytest.approx(expected, rel=1e-6)
    assert result["metrics"]["accuracy"] > 0.8
    other = evaluate_torch(model, data, target="species", metrics=names, batch_size=7)
    assert canonical(other) == canonical(result)


def test_torch_regressor_matches_a_manual_computation(iris: pa.Table, tmp_path: Path) -> None:
    table = iris.drop_columns(["species"])
    torch.manual_seed(1)
    model = torch.nn.Linear(3, 1)
    result = evaluate_torch(
        model, write(table, tmp_path / "r.csv"), target="petal width (cm)", metrics=["mse", "r2"]
    )
    X, y = features_and_target(table, "petal width (cm)")
    with torch.no_grad():
        out = model(torch.tensor(X, dtype=torch.float32)).double().numpy().reshape(-1)
    residual = float(((y - out) ** 2).sum())
    expected = {
        "mse": residual / len(y),
        "r2": 1 - residual / float(((y - y.mean()) ** 2).sum()),
    }
    assert result["metrics"] == pytest.approx(expected, rel=1e-9)


def test_evaluation_errors(iris: pa.Table, iris_model: tuple[Path, Any], tmp_path: Path) -> None:
    data = write(iris, tmp_path / "iris.csv")
    with pytest.raises(UsageError, match="known metrics: accuracy, f1_macro"):
        evaluate_sklearn(iris_model[0], data, target="species", metrics=["accuracy", "auc"])
    with pytest.raises(UsageError, match="known metrics"):
        evaluate_torch(_mlp(), data, target="species", metrics=["top5"])
    with pytest.raises(ArtifactError, match="no target column 'label'"):
        evaluate_sklearn(iris_model[0], data, target="label")
    with pytest.raises(ArtifactError, match="no target column 'label'"):
        evaluate_torch(_mlp(), data, target="label")
    joblib.dump({"not": "a model"}, tmp_path / "dict.joblib")
    with pytest.raises(ArtifactError, match="not an estimator"):
        evaluate_sklearn(tmp_path / "dict.joblib", data, target="species")
    (tmp_path / "junk.joblib").write_bytes(b"junk")
    with pytest.raises(ArtifactError, match="cannot load"):
        evaluate_sklearn(tmp_path / "junk.joblib", data, target="species")
    with pytest.raises(ArtifactError, match="one output per class"):
        evaluate_torch(torch.nn.Linear(4, 1), data, target="species")
    with pytest.raises(ArtifactError, match="failed to run"):
        evaluate_torch(torch.nn.Linear(3, 3), data, target="species")
    with_gap = replace(iris, "sepal width (cm)", [None, *iris.column(1).to_pylist()[1:]])
    with pytest.raises(ArtifactError, match="nulls or NaN cannot feed a torch model: 'sepal wid"):
        evaluate_torch(_mlp(), write(with_gap, tmp_path / "g.parquet"), target="species")
    labelled = replace(iris, "species", ["a"] * 150)
    with pytest.raises(ArtifactError, match="class indices"):
        evaluate_torch(_mlp(), write(labelled, tmp_path / "s.csv"), target="species")
    with pytest.raises(UsageError, match="batch_size"):
        evaluate_torch(_mlp(), data, target="species", batch_size=0)


def test_metrics_agree() -> None:
    a = {"accuracy": 0.91, "f1_macro": 0.90}
    b = {"accuracy": 0.915, "f1_macro": 0.905}
    assert metrics_agree([a, b, a], tolerance=0.01)
    assert not metrics_agree([a, b], tolerance=0.001)
    assert not metrics_agree([a, {"accuracy": 0.91}], tolerance=1)
    assert metrics_agree([a], tolerance=0)
    assert metrics_agree([{"roc_auc": None}, {"roc_auc": None}], tolerance=0)
    assert not metrics_agree([{"roc_auc": None}, {"roc_auc": 0.5}], tolerance=1)
    for bad in ([], [a, "accuracy"]):
        with pytest.raises(UsageError):
            metrics_agree(bad, tolerance=0.1)  # type: ignore[arg-type]
    for tolerance in (-0.1, math.nan):
        with pytest.raises(UsageError):
            metrics_agree([a, b], tolerance=tolerance)


def test_public_surface() -> None:
    assert sorted(checks.__all__) == sorted(set(checks.__all__))
    for name in checks.__all__:
        assert hasattr(checks, name)


# --- entry points and folders ---------------------------------------------------------


def _entry_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> str:
    """Write a module holding ``returns(model_path, data_path, *, target)`` whose body is
    ``body``, put it on sys.path, and name it as an entry point."""
    name = f"entry_{hashlib.sha256(body.encode()).hexdigest()[:12]}"
    code = "import math\nimport numpy as np\n\ndef returns(model_path, data_path, *, target):\n"
    (tmp_path / f"{name}.py").write_text(code + f"    return {body}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return f"{name}:returns"


def test_an_entry_point_returns_numbers_as_the_evidence_records_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = '{"rows": np.int64(150), "mse": np.float32(0.25), "acc": 2 / 3}'
    spec = _entry_module(tmp_path, monkeypatch, body)
    result = evaluate_entry(spec, tmp_path / "model", tmp_path / "data.csv", target="y")
    assert result["metrics"] == {"acc": 0.666666666667, "mse": 0.25, "rows": 150}
    assert result["target"] == "y" and result["tool"]["entry"] == spec
    assert json.dumps(result["metrics"])  # plain JSON numbers


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("[0.9]", "returned a list"),
        ("{}", "returned a dict ({})"),
        ('{"accuracy": True}', "returned a bool (True) for metric 'accuracy'"),
        ('{"accuracy": None}', "returned a NoneType (None)"),
        ('{"accuracy": math.inf}', "returned a float (inf)"),
        ('{"accuracy": np.array([0.9])}', "returned a ndarray"),
        ("{1: 0.9}", "a metric named 1"),
    ],
)
def test_an_entry_point_must_return_finite_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str, says: str
) -> None:
    spec = _entry_module(tmp_path, monkeypatch, body)
    with pytest.raises(ArtifactError, match=re.escape(says)):
        evaluate_entry(spec, tmp_path / "model", tmp_path / "data.csv", target="y")


def test_model_file_in_decides_or_says_why_not(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    assert model_file_in(folder, ["clf.joblib", "README.md"]) == folder / "clf.joblib"
    assert model_file_in(tmp_path / "clf.pkl", ["."]) == tmp_path / "clf.pkl"
    with pytest.raises(UsageError, match=re.escape("net.pt holds .pt weights, which alone")):
        model_file_in(tmp_path / "net.pt", ["."])
    with pytest.raises(UsageError, match=r"weights \(shard-1.safetensors, shard-2.safetensors\)"):
        model_file_in(folder, ["clf.joblib", "shard-2.safetensors", "shard-1.safetensors"])
    with pytest.raises(UsageError, match=r"several model files \(a.pkl, b/c.joblib\)"):
        model_file_in(folder, ["b/c.joblib", "a.pkl"])
    with pytest.raises(UsageError, match="it has no model file"):
        model_file_in(folder, ["config.json"])
