"""The model lifecycle from the command line, under the default policies."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import joblib
from conftest import run_cli as run
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression


def test_lifecycle_from_the_command_line(env: dict[str, str], tmp_path: Path) -> None:
    iris = load_iris()
    data = tmp_path / "iris.csv"
    with data.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["a", "b", "c", "d", "species"])
        for row, y in zip(iris.data.tolist(), iris.target.tolist(), strict=True):
            w.writerow([*row, y])
    model = tmp_path / "clf.joblib"
    joblib.dump(LogisticRegression(max_iter=500).fit(iris.data, iris.target), model)

    people = {
        "risk": "approver,approver:risk@bank",
        "lead": "approver,approver:ml-lead@acme",
        "ops": "deployer@acme",
        "mon": "monitor@bank",
        "ev": "evaluator@lab",
    }
    for name in people:
        run(env, "identity", "new", name)
    run(
        env,
        "init",
        "--origin",
        "ledger.example.org/life",
        "--admin",
        "alice",
        "--admin-roles",
        "data-steward,validator,trainer,approver:ml",
        *[a for n, spec in people.items() for a in ("--member", f"{n}:{spec}")],
    )
    assert "model.deploy:production" in run(env, "policy", "show").stdout

    run(env, "dataset", "register", "iris", str(data))
    run(
        env,
        "run",
        "record",
        "r1",
        "--output",
        str(model),
        "--dataset",
        "iris@1",
        "--code-dir",
        str(tmp_path),
    )
    denied = run(env, "model", "register", "clf", str(model), "--run", "r1", ok=False)
    assert denied.returncode == 8 and "policy_denied" in denied.stderr
    run(
        env,
        "attest",
        "quality",
        "iris@1",
        "--data",
        str(data),
        "--range",
        "a=0:10",
        "--allow-duplicates",
    )
    # without a run there are no datasets, and a rule over none must not pass
    shadow = run(env, "model", "register", "shadow-clf", str(model), ok=False)
    assert shadow.returncode == 8 and "run != null && size(datasets) > 0" in shadow.stderr
    run(env, "model", "register", "clf", str(model), "--run", "r1")
    out = json.loads(
        run(
            env,
            "attest",
            "eval",
            "clf@1",
            "--model-path",
            str(model),
            "--dataset",
            "iris@1",
            "--data",
            str(data),
            "--target",
            "species",
            "--as",
            "ev",
            "--json",
        ).stdout
    )
    assert out["result"] == "accepted"

    assert (
        run(env, "deploy", "clf@1", "--env", "production", "--as", "ops", ok=False).returncode == 8
    )
    own = run(env, "approve", "clf@1", "--env", "production", "--role", "ml", ok=False)
    assert own.returncode == 8
    assert "model.approve:production v1 denies it: actor.name != model.by" in own.stderr
    run(env, "approve", "clf@1", "--env", "production", "--role", "risk", "--as", "risk")
    run(env, "approve", "clf@1", "--env", "production", "--role", "ml-lead", "--as", "lead")
    run(
        env,
        "deploy",
        "clf@1",
        "--env",
        "production",
        "--as",
        "ops",
        "--rollback-rule",
        "metrics.error_rate > 0.1",
    )
    rolled = run(
        env,
        "monitor",
        "report",
        "clf",
        "--env",
        "production",
        "--metric",
        "error_rate=0.3",
        "--as",
        "mon",
    ).stdout
    assert "production runs clf@-" in rolled
    events = json.loads(run(env, "history", "clf", "--json").stdout)
    assert [e["action"] for e in events] == ["deploy", "rollback"]
    assert "ok: " in run(env, "verify", str(model), "--model", "clf").stdout
    denied_list = json.loads(run(env, "audit", "denied", "--json").stdout)
    assert {d["code"] for d in denied_list} == {"policy_denied"}
    assert [d["type"] for d in denied_list] == [
        "model.register",
        "model.register",
        "model.deploy",
        "model.approve",
    ]
    # the trail less some types: whole names, and a prefix ending in a dot
    deploys = run(env, "audit", "denied", "--exclude", "model.register", "--exclude",
                  "model.approve", "--json").stdout  # fmt: skip
    assert [d["type"] for d in json.loads(deploys)] == ["model.deploy"]
    none = run(env, "audit", "denied", "--exclude", "model.", "--json").stdout
    assert json.loads(none) == []
    too_many = [a for i in range(21) for a in ("--exclude", f"t{i}")]
    refused = run(env, "audit", "denied", *too_many, ok=False)
    assert refused.returncode == 2 and "exclude at most 20 types" in refused.stderr
    # the whole trail, newest first, with the same exclusions and filters
    whole = json.loads(run(env, "audit", "trail", "--json").stdout)
    indexes = [e["index"] for e in whole["entries"]]
    assert indexes == sorted(indexes, reverse=True) and whole["next_before"] is None
    kept = json.loads(run(env, "audit", "trail", "--exclude", "model.", "--json").stdout)
    assert kept["entries"] == [e for e in whole["entries"] if not e["type"].startswith("model.")]
    assert {e["type"] for e in whole["entries"]} > {e["type"] for e in kept["entries"]}
    rejected = json.loads(
        run(env, "audit", "trail", "--outcome", "rejected", "--exclude", "model.register",
            "--json").stdout
    )  # fmt: skip
    assert [e["type"] for e in rejected["entries"]] == ["model.approve", "model.deploy"]
    paged = run(env, "audit", "trail", "--limit", "2", "--exclude", "model.register")
    assert len(paged.stdout.splitlines()) == 2 and "older entries: --before" in paged.stderr
    assert "ok:" in run(env, "log", "verify").stdout


def test_guard_watch_reports_drift(env: dict[str, str], tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "w.bin").write_bytes(b"weights")
    for name in ("ops", "mon"):
        run(env, "identity", "new", name)
    run(
        env,
        "init",
        "--origin",
        "ledger.example.org/guard",
        "--admin",
        "alice",
        "--no-default-policies",
        "--member",
        "ops:deployer",
        "--member",
        "mon:monitor",
    )
    run(env, "model", "register", "m", str(model))
    run(env, "deploy", "m@1", "--env", "edge", "--as", "ops")
    watch = ("guard", "watch", str(model), "--model", "m", "--env", "edge")
    once = ("--interval", "0", "--rounds", "1", "--as", "mon")
    ok = run(env, *watch, *once).stdout
    assert "round 1: ok" in ok
    (model / "w.bin").write_bytes(b"tampered")
    drift = run(env, *watch, *once).stdout
    assert "DRIFT changed w.bin" in drift and "(reported)" in drift
    events = json.loads(run(env, "audit", "denied", "--json").stdout)
    assert events == []


def _size(env: dict[str, str]) -> tuple[int, int]:
    summary = json.loads(run(env, "log", "verify", "--json").stdout)
    return summary["size"], summary["rejected"]


def test_mistakes_fail_locally_and_denials_are_logged(env: dict[str, str], tmp_path: Path) -> None:
    for name in ("ops", "risk"):
        run(env, "identity", "new", name)
    run(
        env,
        "init",
        "--origin",
        "ledger.example.org/typos",
        "--admin",
        "alice",
        "--admin-roles",
        "trainer",
        "--member",
        "ops:deployer@acme",
        "--member",
        "risk:approver,approver:risk@bank",
    )
    run(env, "policy", "set", "model.register", "null")  # a model without a run, for brevity
    weights = tmp_path / "clf.bin"
    weights.write_bytes(b"weights")
    run(env, "model", "register", "clf", str(weights))
    before = _size(env)

    # A model or version that does not exist: exit 3, one error line, nothing signed or written.
    mistakes = [
        ("approve", "clfx@1", "--env", "production", "--role", "risk", "--as", "risk"),
        ("approve", "clf@9", "--env", "production", "--role", "risk", "--as", "risk"),
        ("reject", "clf@9", "--env", "production", "--role", "risk", "--as", "risk"),
        ("deploy", "clf@9", "--env", "staging", "--as", "ops"),
        ("deploy", "clfx@1", "--env", "staging", "--as", "ops"),
        ("rollback", "clfx", "--env", "staging", "--as", "ops"),
        ("rollback", "clf", "--env", "staging", "--as", "ops"),
        ("revoke", "clf@9", "--reason", "typo", "--as", "alice"),
        ("revoke", "clfx@1", "--reason", "typo", "--as", "alice"),
    ]
    for args in mistakes:
        out = run(env, *args, ok=False)
        assert out.returncode == 3, (args, out.stderr)
        assert out.stderr.startswith("error: ") and len(out.stderr.splitlines()) == 1
        assert "clfx" in out.stderr or "version 9" in out.stderr or "not deployed" in out.stderr
    assert _size(env) == before, "no mistake was logged"
    # Checked before any key is opened: no passphrase needed to be told of a typo.
    bare = {k: v for k, v in env.items() if k != "MODELCHAIN_KEY_PASSPHRASE"}
    for args in mistakes:
        out = run(bare, *args, ok=False)
        assert out.returncode == 3, (args, out.stderr)

    # A policy denial of a real version is evidence: still submitted and logged.
    denied = run(env, "deploy", "clf@1", "--env", "production", "--as", "ops", ok=False)
    assert denied.returncode == 8 and "policy_denied" in denied.stderr
    assert _size(env) == (before[0] + 1, before[1] + 1)
    found = json.loads(run(env, "audit", "denied", "--json").stdout)
    assert [(d["type"], d["actor"], d["code"]) for d in found] == [
        ("model.deploy", "ops", "policy_denied")
    ]
    said = run(env, "reject", "clf@1", "--env", "production", "--role", "risk", "--as", "risk")
    assert said.stdout.startswith("rejected clf@1 for production as risk (entry ")
