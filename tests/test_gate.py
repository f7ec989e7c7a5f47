"""CI gates: `gate deploy` (exit 0 or 8 naming the failing clause, nothing written),
the clause a refusal names, and attestations whose checks fail (exit 8, still recorded)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import joblib
import pytest
from conftest import run_cli as run
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from serving import running_server
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from modelchain.contracts.clauses import conjuncts, failing_clause
from modelchain.contracts.policy import compile_rule, evaluate
from modelchain.errors import MalformedError

RULE = '"deployer" in actor.roles && size(approvals) >= 1'


@pytest.mark.parametrize(
    ("rule", "parts"),
    [
        ("a && b", ("a", "b")),
        ('a && "x && y" == s', ("a", '"x && y" == s')),
        ("a && 'it''s' == s && b", ("a", "'it''s' == s", "b")),
        ("a && '''x ' && y''' == s", ("a", "'''x ' && y''' == s")),
        (r"a && r'\' == s && b", ("a", r"r'\' == s", "b")),
        ('a && "\\" && b" == s', ("a", '"\\" && b" == s')),
        ("(a && b) && c", ("a", "b", "c")),
        ("(a || b) && c", ("a || b", "c")),
        ("a && b || c", ("a && b || c",)),
        ("a || b && c", ("a || b && c",)),
        ("a ? b && c : d", ("a ? b && c : d",)),
        ("f(a && b) && [c && d][0]", ("f(a && b)", "[c && d][0]")),
        ("!(a && b) && c", ("!(a && b)", "c")),
        ("(a) || (b && c)", ("(a) || (b && c)",)),
        ("(a && b", ("(a && b",)),  # does not scan: left whole
        ('a && "open', ('a && "open',)),
        ("  a  ", ("a",)),
    ],
)
def test_conjuncts_split_only_at_top_level_and(rule: str, parts: tuple[str, ...]) -> None:
    assert conjuncts(rule) == parts


def test_failing_clause_is_the_first_false_conjunct() -> None:
    ctx = {"x": 5, "y": 1, "s": "a && b"}
    assert failing_clause('x > 1 && s == "a && b" && y > 2 && x > 9', ctx) == "y > 2"
    assert failing_clause("x > 1 && y >= 1", ctx) is None
    # CEL's && is false if any side is, whatever the others raise: the false one is named
    assert failing_clause("nope.q && y > 2", ctx) == "y > 2"
    assert failing_clause("x > 1 && nope.q", ctx) == "nope.q"
    assert failing_clause("x > 1 || y > 2", {"x": 0, "y": 0}) == "x > 1 || y > 2"


_ATOMS = st.sampled_from(["a", "b", "c", "true", "false", '"x && y" == s', "s == 'a || b'"])


def _expr(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(children, st.sampled_from([" && ", " || ", "&&", "||"]), children).map("".join),
        children.map(lambda e: f"({e})"),
        children.map(lambda e: f"!({e})"),
        st.tuples(children, children, children).map(lambda t: f"{t[0]} ? {t[1]} : {t[2]}"),
    )


@settings(max_examples=300, deadline=None)
@given(
    rule=st.recursive(_ATOMS, _expr, max_leaves=8),
    a=st.booleans(),
    b=st.booleans(),
    c=st.booleans(),
)
def test_conjuncts_hold_together_exactly_when_the_rule_does(
    rule: str, a: bool, b: bool, c: bool
) -> None:
    try:
        compile_rule(rule)
    except MalformedError:
        assume(False)  # CEL wants some nested conditionals in parentheses
    ctx = {"a": a, "b": b, "c": c, "s": "a || b"}
    parts = conjuncts(rule)
    assert all(p and p == p.strip() for p in parts)
    assert all(evaluate(p, ctx) for p in parts) == evaluate(rule, ctx)
    assert (failing_clause(rule, ctx) is None) == evaluate(rule, ctx)


def _size(env: dict[str, str]) -> int:
    return int(run(env, "log", "checkpoint").stdout.splitlines()[1])


def _iris(tmp_path: Path) -> tuple[Path, Path]:
    iris = load_iris()
    data = tmp_path / "iris.csv"
    with data.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["a", "b", "c", "d", "species"])
        for row, y in zip(iris.data.tolist(), iris.target.tolist(), strict=True):
            w.writerow([*row, y])
    model = tmp_path / "clf.joblib"
    joblib.dump(LogisticRegression(max_iter=500).fit(iris.data, iris.target), model)
    return data, model


def _ledger(env: dict[str, str], tmp_path: Path) -> tuple[Path, Path]:
    data, model = _iris(tmp_path)
    for name in ("ops", "dev", "val", "ev1", "ev2", "ev3"):
        run(env, "identity", "new", name)
    run(
        env,
        "init",
        "--origin",
        "ledger.example.org/gate",
        "--admin",
        "alice",
        "--admin-roles",
        "data-steward,validator,trainer,evaluator,approver:risk",
        "--no-default-policies",
        "--member",
        "ops:deployer@acme",
        "--member",
        "dev:trainer@acme",
        *("--member", "val:validator@lab"),
        *[a for ev in ("ev1", "ev2", "ev3") for a in ("--member", f"{ev}:evaluator@lab")],
    )
    run(env, "dataset", "register", "iris", str(data))
    run(env, "model", "register", "clf", str(model))
    run(env, "policy", "set", "model.deploy:staging", RULE, "--as", "alice")
    return data, model


def test_gate_deploy_says_what_a_deployment_would_meet(env: dict[str, str], tmp_path: Path) -> None:
    _ledger(env, tmp_path)
    before = _size(env)

    # no policy for dev, and ops may deploy: allowed
    ok = run(env, "gate", "deploy", "clf@1", "--env", "dev", "--as", "ops")
    assert "allowed: clf@1 to dev as ops (no policy)" in ok.stdout
    # staging: the first clause holds, the second does not
    denied = run(env, "gate", "deploy", "clf@1", "--env", "staging", "--as", "ops", ok=False)
    assert denied.returncode == 8, denied.stderr
    assert "the clause that failed: size(approvals) >= 1" in denied.stderr
    out = run(env, "gate", "deploy", "clf@1", "--env", "staging", "--as", "ops", "--json", ok=False)
    assert out.returncode == 8
    got = json.loads(out.stdout)
    assert got["allowed"] is False and got["clause"] == "size(approvals) >= 1"
    assert got["rule"] == RULE and got["reason"].startswith("policy_denied: ")
    # dev may not deploy at all: the role map refuses before any policy
    dev = run(env, "gate", "deploy", "clf@1", "--env", "staging", "--as", "dev", "--json", ok=False)
    assert dev.returncode == 8
    assert json.loads(dev.stdout)["reason"].startswith("not_permitted: ")
    assert json.loads(dev.stdout)["clause"] is None
    # a typo is not evidence: exit 3, and nothing written
    missing = run(env, "gate", "deploy", "clf@2", "--env", "staging", "--as", "ops", ok=False)
    assert missing.returncode == 3 and "has no version 2" in missing.stderr
    nobody = run(env, "gate", "deploy", "clf@1", "--env", "dev", "--as", "nobody", ok=False)
    assert nobody.returncode == 3 and "no member named 'nobody'" in nobody.stderr
    draft = tmp_path / "d.json"
    body = '{"model": "clf", "version": 1, "env": "staging", "rollback_rule": null}'
    run(env, "tx", "draft", "model.deploy", "--body", body, "--actor", "ops", "-o", str(draft))
    tested = run(env, "policy", "test", str(draft), "--json", ok=False)
    assert tested.returncode == 1 and json.loads(tested.stdout)["clause"] == "size(approvals) >= 1"
    assert _size(env) == before

    # a real deployment is refused, logged with the rule, and the error names the clause
    refused = run(env, "deploy", "clf@1", "--env", "staging", "--as", "ops", ok=False)
    assert refused.returncode == 8
    assert "the clause that failed: size(approvals) >= 1" in refused.stderr
    logged = json.loads(run(env, "audit", "denied", "--json").stdout)
    assert [d["reason"] for d in logged] == [f"policy model.deploy:staging v1 denies it: {RULE}"]
    assert "ok:" in run(env, "log", "verify").stdout

    run(env, "approve", "clf@1", "--env", "staging", "--role", "risk")
    allowed = run(env, "gate", "deploy", "clf@1", "--env", "staging", "--as", "ops", "--json")
    assert json.loads(allowed.stdout) == {
        "action": "model.deploy:staging",
        "allowed": True,
        "clause": None,
        "reason": "allowed",
        "rule": RULE,
        "version": 1,
    }
    run(env, "deploy", "clf@1", "--env", "staging", "--as", "ops")


def test_gate_deploy_over_a_server(env: dict[str, str], tmp_path: Path) -> None:
    _ledger(env, tmp_path)
    token = run(env, "token", "issue", "ops").stdout.strip()
    before = _size(env)
    client = {**env, "MODELCHAIN_TOKEN": token, "MODELCHAIN_HOME": str(tmp_path / "client")}
    with running_server(tmp_path / "ledger", env=env) as url:
        gate = ("--server", url, "gate", "deploy")
        ok = run(client, *gate, "clf@1", "--env", "dev", "--as", "ops")
        assert "allowed" in ok.stdout
        denied = run(client, *gate, "clf@1", "--env", "staging", "--as", "ops", "--json", ok=False)
        assert denied.returncode == 8, denied.stderr
        assert json.loads(denied.stdout)["clause"] == "size(approvals) >= 1"
        missing = run(client, *gate, "clf@9", "--env", "dev", "--as", "ops", ok=False)
        assert missing.returncode == 3, missing.stderr
        assert _size(env) == before
        # submitted over the server, refused and logged: the error names the clause
        deploy = ("--server", url, "deploy", "clf@1", "--env", "staging", "--as", "ops")
        refused = run({**env, "MODELCHAIN_TOKEN": token}, *deploy, ok=False)
        assert refused.returncode == 8, refused.stderr
        assert "the clause that failed: size(approvals) >= 1" in refused.stderr
    assert _size(env) == before + 1


def test_failed_checks_exit_8_and_stay_recorded(env: dict[str, str], tmp_path: Path) -> None:
    data, model = _ledger(env, tmp_path)
    quality = ("attest", "quality", "iris@1", "--data", str(data), "--allow-duplicates")
    bad = run(env, *quality, "--range", "a=0:1", "--json", ok=False)
    assert bad.returncode == 8, bad.stderr
    got = json.loads(bad.stdout)
    assert got["passed"] is False and got["result"] == "accepted"
    assert "failed: ranges" in bad.stderr and f"entry {got['index']}" in bad.stderr
    good = json.loads(run(env, *quality, "--range", "a=0:10", "--as", "val", "--json").stdout)
    assert good["passed"] is True
    shown = json.loads(run(env, "dataset", "show", "iris", "--json").stdout)
    assert [a["passed"] for a in shown["version"]["attestations"]] == [False, True]

    evaluate = (
        *("attest", "eval", "clf@1", "--model-path", str(model)),
        *("--dataset", "iris@1", "--data", str(data), "--target", "species"),
    )
    low = run(env, *evaluate, "--min", "accuracy=1.01", "--json", ok=False)
    assert low.returncode == 8, low.stderr
    assert json.loads(low.stdout)["passed"] is False and "accuracy" in low.stderr
    high = run(env, *evaluate, "--metric", "mse", "--max", "mse=-1", "--as", "ev1", ok=False)
    assert high.returncode == 8 and "mse" in high.stderr
    passed = run(env, *evaluate, "--min", "accuracy=0.5", "--as", "ev2", "--json")
    assert json.loads(passed.stdout)["passed"] is True
    assert json.loads(run(env, *evaluate, "--as", "ev3", "--json").stdout)["passed"] is True
    unknown = run(env, *evaluate, "--min", "f1_macro=0.5", ok=False)
    assert unknown.returncode == 2
    shown = json.loads(run(env, "model", "show", "clf", "--json").stdout)
    assert len(shown["evaluations"]) == 4


def test_a_refused_event_batch_names_the_clause(env: dict[str, str], tmp_path: Path) -> None:
    run(env, "init", "--origin", "ledger.example.org/events", "--admin", "alice")
    rule = 'tx.body.event == "alert" && tx.body.data.level <= 3'
    run(env, "policy", "set", "event.record", rule)
    batch = tmp_path / "events.jsonl"
    batch.write_text('{"level": 1}\n{"level": 9}\n')
    out = run(env, "event", "record", "alert", "--from-file", str(batch), ok=False)
    assert out.returncode == 8
    assert "1 of 2 events were rejected" in out.stderr
    assert "the clause that failed: tx.body.data.level <= 3" in out.stderr
    # the log keeps the reason the contract gave, the whole rule
    assert out.stdout.splitlines()[1].endswith(f"policy event.record v1 denies it: {rule}")
