"""Governance from the command line: two admins co-sign a member change offline."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_cli as run


def test_two_admins_co_sign_offline(env: dict[str, str], tmp_path: Path) -> None:
    for name in ("dave", "erin"):
        run(env, "identity", "new", name)
    run(
        env,
        "init",
        "--origin",
        "ledger.example.org/gov",
        "--admin",
        "alice",
        "--member",
        "dave:admin@bank",
    )
    listed = json.loads(run(env, "member", "list", "--json").stdout)
    assert listed["quorum"] == 2

    alone = run(env, "member", "add", "erin", "--role", "evaluator", "--as", "alice", ok=False)
    assert alone.returncode == 8 and "quorum_not_met" in alone.stderr

    draft = tmp_path / "add-erin.json"
    run(
        env,
        "member",
        "add",
        "erin",
        "--role",
        "evaluator",
        "--org",
        "lab",
        "--as",
        "alice",
        "--draft",
        str(draft),
    )
    signed = run(env, "tx", "sign", str(draft), "--as", "dave").stdout
    assert "2 signatures" in signed
    out = json.loads(run(env, "tx", "submit", str(draft), "--json").stdout)
    assert out["result"] == "accepted"
    erin = json.loads(run(env, "member", "show", "erin", "--json").stdout)
    assert erin["roles"] == ["evaluator"] and erin["status"] == "active"

    # Submitting it again (a retry) answers the entry it already has and writes nothing.
    before = run(env, "log", "verify").stdout.split(" entries")[0]
    again = json.loads(run(env, "tx", "submit", str(draft), "--json").stdout)
    assert (again["index"], again["result"]) == (out["index"], "accepted")
    assert run(env, "log", "verify").stdout.split(" entries")[0] == before

    generic = tmp_path / "revoke.json"
    run(
        env,
        "tx",
        "draft",
        "member.revoke",
        "--body",
        '{"name": "erin", "reason": "contract ended"}',
        "--actor",
        "dave",
        "-o",
        str(generic),
    )
    unsigned = run(env, "tx", "submit", str(generic), ok=False)
    assert unsigned.returncode == 2 and "no signatures" in unsigned.stderr
    run(env, "tx", "sign", str(generic), "--as", "dave")
    run(env, "tx", "sign", str(generic), "--as", "alice")
    run(env, "tx", "submit", str(generic))
    assert json.loads(run(env, "member", "show", "erin", "--json").stdout)["status"] == "revoked"
    assert "ok:" in run(env, "log", "verify").stdout


def test_policy_commands(env: dict[str, str], tmp_path: Path) -> None:
    run(env, "init", "--origin", "ledger.example.org/pol", "--admin", "alice")
    run(
        env,
        "policy",
        "set",
        "event.record",
        "tx.body.data.level <= 3",
        "--description",
        "no alerts above 3",
    )
    shown = json.loads(run(env, "policy", "show", "event.record", "--json").stdout)
    assert shown["version"] == 1 and shown["by"] == ["alice"]
    draft = tmp_path / "e.json"
    run(
        env,
        "tx",
        "draft",
        "event.record",
        "--body",
        '{"event": "a", "data": {"level": 5}}',
        "--actor",
        "alice",
        "-o",
        str(draft),
    )
    denied = run(env, "policy", "test", str(draft), ok=False)
    assert denied.returncode == 1 and denied.stdout.startswith("deny: event.record")
    bad = run(env, "policy", "set", "event.record", "1 +", ok=False)
    assert bad.returncode == 4 and "does not compile" in bad.stderr
    rejected = run(env, "event", "record", "a", "--body", '{"level": 5}', "--json", ok=False)
    assert rejected.returncode == 8 and json.loads(rejected.stdout)["code"] == "policy_denied"


def _log_size(env: dict[str, str]) -> tuple[int, int]:
    summary = json.loads(run(env, "log", "verify", "--json").stdout)
    return summary["size"], summary["rejected"]


def test_a_named_approver_holds_the_approver_role(env: dict[str, str]) -> None:
    for name in ("rita", "carl"):
        run(env, "identity", "new", name)
    run(
        env,
        "init",
        "--origin",
        "ledger.example.org/roles",
        "--admin",
        "alice",
        "--member",
        "rita:approver:risk@bank",
        "--member",
        "carl:auditor@audit-co",
    )
    out = run(env, "event", "record", "review.done", "--body", "{}", "--as", "rita", "--json")
    assert json.loads(out.stdout)["result"] == "accepted"
    # the one role that may not record events still may not
    size = _log_size(env)
    auditor = run(env, "event", "record", "x", "--body", "{}", "--as", "carl", ok=False)
    assert auditor.returncode == 8
    assert "needs one of the roles" in auditor.stderr and "carl has auditor" in auditor.stderr
    assert _log_size(env) == (size[0] + 1, size[1] + 1)


def test_event_record_exits_8_when_an_entry_is_rejected(
    env: dict[str, str], tmp_path: Path
) -> None:
    run(env, "init", "--origin", "ledger.example.org/events", "--admin", "alice")
    run(env, "policy", "set", "event.record", "tx.body.data.level <= 3")
    size, rejected = _log_size(env)

    plain = run(env, "event", "record", "alert", "--body", '{"level": 5}', ok=False)
    assert plain.returncode == 8
    assert plain.stdout == f"{size}\trejected policy_denied: " + (
        "policy event.record v1 denies it: tx.body.data.level <= 3\n"
    )
    assert "event.record was rejected (policy_denied)" in plain.stderr
    assert f"the rejection is entry {size}" in plain.stderr
    assert _log_size(env) == (size + 1, rejected + 1)

    batch = tmp_path / "events.jsonl"
    batch.write_text('{"level": 1}\n{"level": 9}\n{"level": 2}\n')
    out = run(env, "event", "record", "alert", "--from-file", str(batch), "--json", ok=False)
    assert out.returncode == 8
    results = json.loads(out.stdout)
    assert [r["result"] for r in results] == ["accepted", "rejected", "accepted"]
    assert "1 of 3 events were rejected" in out.stderr
    assert f"entry {results[1]['index']}" in out.stderr
    assert _log_size(env) == (size + 4, rejected + 2)

    batch.write_text('{"level": 1}\n{"level": 2}\n')
    fine = run(env, "event", "record", "alert", "--from-file", str(batch))
    assert [line.split("\t")[1] for line in fine.stdout.splitlines()] == ["accepted"] * 2
