"""`attest eval` on models that are folders, torch weights in safetensors, and the
evaluator's own entry point (`--entry MODULE:FUNCTION`)."""

from __future__ import annotations

import csv
import json
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path

import joblib
import pytest
import torch
from conftest import run_cli as run
from safetensors.torch import save_file
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from modelchain.checks.quality import json_number

# The evaluator's own code: it knows how to build the network the weights belong to.
ENTRY_MODULE = """
import csv
import math

import torch
from safetensors.torch import load_file


def evaluate(model_path, data_path, *, target):
    net = torch.nn.Linear(4, 3)
    net.load_state_dict(load_file(model_path / "model.safetensors"))
    with data_path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    features = torch.tensor([[float(r[k]) for k in "abcd"] for r in rows])
    truth = torch.tensor([int(r[target]) for r in rows])
    with torch.no_grad():
        hits = (net(features).argmax(dim=1) == truth).sum().item()
    return {"accuracy": hits / len(rows), "rows": len(rows)}


def words(model_path, data_path, *, target):
    return {"accuracy": "high"}


def not_a_number(model_path, data_path, *, target):
    return {"accuracy": math.nan}


def tensor(model_path, data_path, *, target):
    return {"accuracy": torch.tensor(0.5)}


def broken(model_path, data_path, *, target):
    raise RuntimeError("the network does not fit these weights")


NOT_CALLABLE = 3
"""


def _size(env: dict[str, str]) -> int:
    return int(run(env, "log", "checkpoint").stdout.splitlines()[1])


@dataclass(frozen=True)
class Registered:
    data: Path
    folder: Path
    accuracy: float  # the torch model's accuracy on the data, computed here


@pytest.fixture
def ledger(env: dict[str, str], tmp_path: Path) -> Registered:
    """A ledger with iris registered, a torch model registered as a folder holding
    safetensors weights, and the entry-point module on the evaluators' PYTHONPATH."""
    iris = load_iris()
    data = tmp_path / "iris.csv"
    with data.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["a", "b", "c", "d", "species"])
        for row, y in zip(iris.data.tolist(), iris.target.tolist(), strict=True):
            w.writerow([*row, y])
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 3)
    folder = tmp_path / "net"
    folder.mkdir()
    save_file(net.state_dict(), str(folder / "model.safetensors"))
    (folder / "config.json").write_text('{"layers": [4, 3]}')
    code = tmp_path / "code"
    code.mkdir()
    (code / "iris_entry.py").write_text(textwrap.dedent(ENTRY_MODULE))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(code), env.get("PYTHONPATH")]))

    for name in ("ev1", "ev2"):
        run(env, "identity", "new", name)
    run(
        env,
        *("init", "--origin", "ledger.example.org/eval", "--admin", "alice"),
        *("--admin-roles", "data-steward,trainer,evaluator", "--no-default-policies"),
        *("--member", "ev1:evaluator@lab", "--member", "ev2:evaluator@lab"),
    )
    run(env, "dataset", "register", "iris", str(data))
    run(env, "model", "register", "net", str(folder))
    with torch.no_grad():
        predicted = net(torch.tensor(iris.data, dtype=torch.float32)).argmax(dim=1)
    hits = int((predicted == torch.tensor(iris.target)).sum())
    return Registered(data, folder, hits / len(iris.target))


def _eval(ledger: Registered, model: str, path: Path, *extra: str) -> tuple[str, ...]:
    return (
        *("attest", "eval", model, "--model-path", str(path)),
        *("--dataset", "iris@1", "--data", str(ledger.data), "--target", "species"),
        *extra,
    )


def test_a_safetensors_folder_is_evaluated_by_its_entry_point(
    env: dict[str, str], ledger: Registered
) -> None:
    out = run(
        env,
        *_eval(
            ledger,
            "net@1",
            ledger.folder,
            "--entry",
            "iris_entry:evaluate",
            "--as",
            "ev1",
            "--json",
        ),
    )
    assert json.loads(out.stdout)["result"] == "accepted"
    shown = json.loads(run(env, "model", "show", "net", "--json").stdout)
    [evaluation] = shown["evaluations"]
    assert evaluation["by"] == "ev1"
    assert evaluation["metrics"] == {"accuracy": json_number(ledger.accuracy), "rows": 150}
    assert evaluation["tool"]["entry"] == "iris_entry:evaluate"
    # a bound on a metric the entry point returns is checked as for built-in metrics
    low = run(
        env,
        *_eval(
            ledger,
            "net@1",
            ledger.folder,
            "--entry",
            "iris_entry:evaluate",
            "--min",
            "accuracy=1.01",
            "--as",
            "ev2",
        ),
        ok=False,
    )
    assert low.returncode == 8 and "accuracy" in low.stderr


def test_weights_without_an_entry_point_are_refused(
    env: dict[str, str], ledger: Registered
) -> None:
    before = _size(env)
    out = run(env, *_eval(ledger, "net@1", ledger.folder), ok=False)
    assert out.returncode == 2, out.stderr
    assert "model.safetensors" in out.stderr and "--entry MODULE:FUNCTION" in out.stderr
    assert "Traceback" not in out.stderr
    assert _size(env) == before


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("iris_entry", "expected MODULE:FUNCTION"),
        ("iris_entry:", "expected MODULE:FUNCTION"),
        ("iris entry:evaluate", "expected MODULE:FUNCTION"),
        ("no_such_module:evaluate", "no module named 'no_such_module'"),
        ("iris_entry:nope", "has no 'nope'"),
        ("iris_entry:NOT_CALLABLE", "not a function"),
    ],
)
def test_a_bad_entry_point_exits_2_and_writes_nothing(
    env: dict[str, str], ledger: Registered, spec: str, says: str
) -> None:
    before = _size(env)
    out = run(env, *_eval(ledger, "net@1", ledger.folder, "--entry", spec), ok=False)
    assert out.returncode == 2, out.stderr
    assert says in out.stderr and "Traceback" not in out.stderr
    assert _size(env) == before


@pytest.mark.parametrize(
    ("function", "says"),
    [
        ("words", "returned a str ('high') for metric 'accuracy'"),
        ("not_a_number", "returned a float (nan) for metric 'accuracy'"),
        ("tensor", "returned a Tensor"),
        ("broken", "RuntimeError: the network does not fit these weights"),
    ],
)
def test_an_entry_point_that_gives_no_numbers_writes_nothing(
    env: dict[str, str], ledger: Registered, function: str, says: str
) -> None:
    before = _size(env)
    spec = f"iris_entry:{function}"
    out = run(env, *_eval(ledger, "net@1", ledger.folder, "--entry", spec), ok=False)
    assert out.returncode == 4, out.stderr
    assert says in out.stderr and "Traceback" not in out.stderr
    assert _size(env) == before


def test_entry_point_options_are_checked_before_signing(
    env: dict[str, str], ledger: Registered
) -> None:
    before = _size(env)
    entry = ("--entry", "iris_entry:evaluate")
    both = run(env, *_eval(ledger, "net@1", ledger.folder, *entry, "--metric", "mse"), ok=False)
    assert both.returncode == 2 and "returns its own" in both.stderr
    bound = run(env, *_eval(ledger, "net@1", ledger.folder, *entry, "--min", "f1=0.5"), ok=False)
    assert bound.returncode == 2 and "did not return" in bound.stderr
    assert _size(env) == before


def test_the_digest_is_checked_before_the_entry_point_runs(
    env: dict[str, str], ledger: Registered, tmp_path: Path
) -> None:
    folder = ledger.folder
    (folder / "config.json").write_text('{"layers": [4, 4]}')
    before = _size(env)
    out = run(env, *_eval(ledger, "net@1", folder, "--entry", "iris_entry:evaluate"), ok=False)
    assert out.returncode == 1 and "config.json" in out.stderr, out.stderr
    assert _size(env) == before


def test_a_folder_with_one_pickled_model_uses_the_built_in_evaluator(
    env: dict[str, str], ledger: Registered, tmp_path: Path
) -> None:
    iris = load_iris()
    one = tmp_path / "one"
    one.mkdir()
    joblib.dump(LogisticRegression(max_iter=500).fit(iris.data, iris.target), one / "clf.joblib")
    (one / "README.md").write_text("a classifier")
    two = tmp_path / "two"
    two.mkdir()
    joblib.dump(LogisticRegression(max_iter=500).fit(iris.data, iris.target), two / "a.joblib")
    joblib.dump(LogisticRegression(max_iter=500, C=0.5).fit(iris.data, iris.target), two / "b.pkl")
    run(env, "model", "register", "one", str(one))
    run(env, "model", "register", "two", str(two))
    before = _size(env)
    undecided = run(env, *_eval(ledger, "two@1", two), ok=False)
    assert undecided.returncode == 2, undecided.stderr
    assert "several model files (a.joblib, b.pkl)" in undecided.stderr
    assert "Traceback" not in undecided.stderr
    assert _size(env) == before
    out = json.loads(run(env, *_eval(ledger, "one@1", one, "--as", "ev1", "--json")).stdout)
    assert out["result"] == "accepted"
    [evaluation] = json.loads(run(env, "model", "show", "one", "--json").stdout)["evaluations"]
    assert set(evaluation["metrics"]) == {"accuracy"} and evaluation["metrics"]["accuracy"] > 0.9
