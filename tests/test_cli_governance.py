"""Governance from the command line: two admins co-sign a member change offline;
the role map and contract-set versions change only with the quorum."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import run_cli as run
from serving import running_server

from modelchain.contracts.genesis import DEFAULT_PERMISSIONS
from modelchain.contracts.types import CONTRACTS_ACTIVATE, DATASET_ATTEST, EVENT, MODEL_APPROVE
from modelchain.contracts.versions import CURRENT_VERSION, KNOWN_VERSIONS


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


# -- the role map and contract-set versions -------------------------------------------


def _two_admins_and_an_auditor(env: dict[str, str], origin: str) -> None:
    """alice and dave are admins (quorum 2); carl is an auditor."""
    for name in ("dave", "carl"):
        run(env, "identity", "new", name)
    run(
        env,
        "init",
        "--origin",
        origin,
        "--admin",
        "alice",
        "--member",
        "dave:admin@bank",
        "--member",
        "carl:auditor@audit-co",
    )


def _permissions(env: dict[str, str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = json.loads(run(env, "permissions", "list", "--json").stdout)
    return found


def _note(env: dict[str, str], who: str) -> subprocess.CompletedProcess[str]:
    return run(env, "event", "record", "note", "--body", "{}", "--as", who, ok=False)


def test_permissions_list_shows_the_role_map(env: dict[str, str]) -> None:
    run(env, "init", "--origin", "ledger.example.org/map", "--admin", "alice")
    assert _permissions(env) == DEFAULT_PERMISSIONS
    lines = run(env, "permissions", "list").stdout.splitlines()
    assert f"{MODEL_APPROVE}\t*" in lines
    assert f"{DATASET_ATTEST}\tvalidator" in lines
    assert lines[-1].startswith("* is any member")


def test_permissions_set_needs_the_quorum(env: dict[str, str], tmp_path: Path) -> None:
    _two_admins_and_an_auditor(env, "ledger.example.org/perm")
    before = _permissions(env)
    assert "auditor" not in before[EVENT]
    assert _note(env, "carl").returncode == 8

    size, rejected = _log_size(env)
    alone = run(env, "permissions", "set", EVENT, "auditor", "--as", "alice", ok=False)
    assert alone.returncode == 8 and "quorum_not_met" in alone.stderr
    assert _permissions(env) == before, "the role map did not change"
    assert _log_size(env) == (size + 1, rejected + 1)  # only the rejection was logged

    for args in ((EVENT,), (EVENT, "auditor", "--none")):
        bad = run(env, "permissions", "set", *args, "--as", "alice", ok=False)
        assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "--none" in bad.stderr
    assert _log_size(env) == (size + 1, rejected + 1)

    # With dave's signature too, the auditor may record events from the next entry on.
    draft = tmp_path / "perm.json"
    roles = [*before[EVENT], "auditor"]
    run(env, "permissions", "set", EVENT, *roles, "--as", "alice", "--draft", str(draft))
    assert "2 signatures" in run(env, "tx", "sign", str(draft), "--as", "dave").stdout
    out = json.loads(run(env, "tx", "submit", str(draft), "--json").stdout)
    assert out["result"] == "accepted"
    assert _permissions(env)[EVENT] == roles
    assert _note(env, "carl").returncode == 0

    # --none takes the type from everyone, admins included.
    run(env, "permissions", "set", EVENT, "--none", "--as", "alice", "--draft", str(draft))
    run(env, "tx", "sign", str(draft), "--as", "dave")
    run(env, "tx", "submit", str(draft))
    assert _permissions(env)[EVENT] == []
    denied = _note(env, "alice")
    assert denied.returncode == 8 and "not_permitted" in denied.stderr
    assert "(nobody)" in run(env, "permissions", "list").stdout
    assert "ok:" in run(env, "log", "verify").stdout


def _status(env: dict[str, str]) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(run(env, "contracts", "status", "--json").stdout)
    return found


def test_contracts_status_on_a_new_ledger(env: dict[str, str]) -> None:
    run(env, "init", "--origin", "ledger.example.org/cs", "--admin", "alice")
    status = _status(env)
    assert status["active"] == CURRENT_VERSION
    assert status["known"] == sorted(KNOWN_VERSIONS)
    assert [(s["version"], s["from"], s["by"]) for s in status["schedule"]] == [
        (CURRENT_VERSION, 0, ["alice"])
    ]
    shown = run(env, "contracts", "status")
    lines = shown.stdout.splitlines()
    assert lines[0].startswith(f"active:   version {CURRENT_VERSION} (entry ")
    assert lines[1] == f"schedule: version {CURRENT_VERSION} from entry 0 (set at entry 0 by alice)"
    assert lines[2] == "known:    " + ", ".join(str(v) for v in sorted(KNOWN_VERSIONS))
    assert not shown.stderr


def test_contracts_activate(env: dict[str, str], tmp_path: Path) -> None:
    _two_admins_and_an_auditor(env, "ledger.example.org/activate")
    size, _ = _log_size(env)

    unknown = CURRENT_VERSION + 1
    refused = run(env, "contracts", "activate", str(unknown), "--at", str(size + 5), ok=False)
    assert refused.returncode == 2
    assert f"does not know contract-set version {unknown}" in refused.stderr
    past = run(env, "contracts", "activate", str(CURRENT_VERSION), "--at", "1", ok=False)
    assert past.returncode == 2 and "--at 1 is not after the activation" in past.stderr
    assert _log_size(env)[0] == size, "nothing was logged"

    # Another release's quorum schedules a version this one does not know ...
    at = size + 10
    pending = str(tmp_path / "v3.json")
    body = json.dumps({"version": unknown, "at": at})
    run(env, "tx", "draft", CONTRACTS_ACTIVATE, "--body", body, "--actor", "alice", "-o", pending)
    run(env, "tx", "sign", pending, "--as", "alice")
    run(env, "tx", "sign", pending, "--as", "dave")
    run(env, "tx", "submit", pending)
    assert [(s["version"], s["from"]) for s in _status(env)["schedule"]] == [
        (CURRENT_VERSION, 0),
        (unknown, at),
    ]
    shown = run(env, "contracts", "status")
    step = f"version {unknown} from entry {at} (set at entry {size} by alice, dave)  pending"
    assert " " * 10 + step in shown.stdout.splitlines()
    assert f"does not know version {unknown}: it stops at entry {at}" in shown.stderr

    # ... one admin cannot withdraw it; the quorum does, naming the active version.
    alone = run(env, "contracts", "activate", str(CURRENT_VERSION), "--at", str(at), ok=False)
    assert alone.returncode == 8 and "quorum_not_met" in alone.stderr
    draft = tmp_path / "withdraw.json"
    run(
        env,
        "contracts",
        "activate",
        str(CURRENT_VERSION),
        "--at",
        str(at),
        "--as",
        "alice",
        "--draft",
        str(draft),
    )
    run(env, "tx", "sign", str(draft), "--as", "dave")
    assert json.loads(run(env, "tx", "submit", str(draft), "--json").stdout)["result"] == "accepted"
    status = _status(env)
    assert status["active"] == CURRENT_VERSION
    assert [(s["version"], s["from"]) for s in status["schedule"]] == [(CURRENT_VERSION, 0)]
    assert not run(env, "contracts", "status").stderr


# -- signing offline and drafting beside a running server -------------------------------


def test_tx_sign_needs_only_the_signers_key(env: dict[str, str], tmp_path: Path) -> None:
    for name in ("dave", "erin"):
        run(env, "identity", "new", name)
    run(env, "init", "--origin", "ledger.example.org/offline", "--admin", "alice")
    run(env, "member", "add", "dave", "--role", "admin", "--org", "bank")
    draft = tmp_path / "add-erin.json"
    run(env, "member", "add", "erin", "--role", "evaluator", "--as", "alice", "--draft", str(draft))

    # dave signs where his key is: no ledger directory, no server, and the
    # passphrase of his key only (erin's key has another, never asked for).
    away = dict(env, MODELCHAIN_LEDGER=str(tmp_path / "no-ledger-here"))
    away.pop("MODELCHAIN_SERVER", None)
    run(dict(env, MODELCHAIN_KEY_PASSPHRASE="other"), "identity", "new", "frank")
    signed = run(away, "tx", "sign", str(draft), "--as", "dave").stdout
    assert signed.startswith(f"signed {draft} as dave: member.add by alice")
    assert "for ledger ledger.example.org/offline" in signed and "(2 signatures)" in signed
    assert not (tmp_path / "no-ledger-here").exists()
    nowhere = str(tmp_path / "no-ledger-here")  # older scripts pass --ledger: ignored
    again = run(away, "tx", "sign", str(draft), "--as", "dave", "--ledger", nowhere).stdout
    assert "already signed by dave; nothing written" in again
    assert json.loads(draft.read_text())["signatures"].__len__() == 2

    nobody = run(away, "tx", "sign", str(draft), ok=False)
    assert nobody.returncode == 2 and "--as NAME" in nobody.stderr

    # Anything but a transaction draft is refused, and left as it was.
    for text in (
        "not json",
        "{}",
        json.dumps({"payload": "e30=", "payloadType": "x/y", "signatures": []}),
    ):
        other = tmp_path / "other.json"
        other.write_text(text)
        refused = run(away, "tx", "sign", str(other), "--as", "dave", ok=False)
        assert refused.returncode in (2, 4) and refused.stderr.startswith("error: ")
        assert other.read_text() == text

    out = json.loads(run(env, "tx", "submit", str(draft), "--json").stdout)
    assert out["result"] == "accepted"


def _draft_at_once(
    env: dict[str, str], *commands: list[str]
) -> list[subprocess.CompletedProcess[str]]:
    """Start every command, then wait for each: they run at the same time."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "modelchain", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in commands
    ]
    done = []
    for args, p in zip(commands, procs, strict=True):
        out, err = p.communicate(timeout=120)
        done.append(subprocess.CompletedProcess(args, p.returncode, out, err))
    return done


def test_drafts_take_no_write_lock(env: dict[str, str], tmp_path: Path) -> None:
    _two_admins_and_an_auditor(env, "ledger.example.org/drafts")
    run(env, "identity", "new", "erin")
    ledger = Path(env["MODELCHAIN_LEDGER"])
    policy_file = tmp_path / "policy.txt"
    policy_file.write_text(run(env, "log", "policy").stdout)
    size, _ = _log_size(env)
    drafts = {
        name: tmp_path / f"{name}.json" for name in ("add", "revoke", "pol", "perm", "act", "cp")
    }
    with running_server(ledger, env=env):
        # The server holds the ledger for writing: a write from here is refused ...
        held = run(env, "member", "revoke", "carl", "--reason", "x", "--as", "alice", ok=False)
        assert held.returncode == 7 and "open for writing by another process" in held.stderr
        # ... but every kind of draft reads state only, and two admins draft at once.
        first = _draft_at_once(
            env,
            [
                "member",
                "add",
                "erin",
                "--role",
                "evaluator",
                "--as",
                "alice",
                "--draft",
                str(drafts["add"]),
            ],
            [
                "member",
                "revoke",
                "carl",
                "--reason",
                "left",
                "--as",
                "dave",
                "--draft",
                str(drafts["revoke"]),
            ],
            ["policy", "set", EVENT, "true", "--as", "alice", "--draft", str(drafts["pol"])],
        )
        second = _draft_at_once(
            env,
            ["permissions", "set", EVENT, "admin", "--as", "dave", "--draft", str(drafts["perm"])],
            [
                "contracts",
                "activate",
                str(CURRENT_VERSION),
                "--at",
                str(size + 50),
                "--as",
                "alice",
                "--draft",
                str(drafts["act"]),
            ],
            [
                "checkpoint-policy",
                "set",
                str(policy_file),
                "--as",
                "dave",
                "--draft",
                str(drafts["cp"]),
            ],
        )
        for done in (*first, *second):
            assert done.returncode == 0, done.stderr
            assert "(1 signature)" in done.stdout
        for path in drafts.values():
            assert json.loads(path.read_text())["signatures"].__len__() == 1
    assert _log_size(env)[0] == size, "drafting wrote nothing"
    # The drafts are real: co-signed and submitted, one is accepted.
    run(env, "tx", "sign", str(drafts["add"]), "--as", "dave")
    assert (
        json.loads(run(env, "tx", "submit", str(drafts["add"]), "--json").stdout)["result"]
        == "accepted"
    )


def test_server_and_json_go_anywhere(env: dict[str, str]) -> None:
    run(env, "init", "--origin", "ledger.example.org/anywhere", "--admin", "alice")
    run(env, "event", "record", "a", "--body", "{}")
    ledger = Path(env["MODELCHAIN_LEDGER"])
    local = json.loads(run(env, "member", "list", "--json").stdout)
    assert json.loads(run(env, "--json", "member", "list").stdout) == local
    assert json.loads(run(env, "member", "--json", "list").stdout) == local
    refused = run(env, "--json", "roles", ok=False)
    assert refused.returncode == 2 and "has no JSON output" in refused.stderr

    away = dict(env, MODELCHAIN_LEDGER=str(ledger.parent / "not-here"))
    key = run(env, "log", "vkey").stdout.strip()
    with running_server(ledger, "--reads", "open", env=env) as url:
        for args in (
            ("--server", url, "member", "list", "--json"),
            ("member", "list", "--json", "--server", url),
            ("member", "list", "--server", url, "--log-key", key, "--json"),
            ("member", "--server", url, "list", "--json"),
        ):
            assert json.loads(run(away, *args).stdout) == local, args
        assert (
            json.loads(run(dict(away, MODELCHAIN_SERVER=url), "--json", "member", "list").stdout)
            == local
        )
    # Given after the command, --server is used: here one nobody serves.
    gone = run(away, "member", "list", "--server", url, "--log-key", key, ok=False)
    assert gone.returncode == 69 and "cannot reach" in gone.stderr


def test_text_output_says_times_in_iso_8601(env: dict[str, str]) -> None:
    run(env, "init", "--origin", "ledger.example.org/times", "--admin", "alice")
    run(env, "policy", "set", "event.record", "false")
    run(env, "event", "record", "a", "--body", "{}", ok=False)
    iso = re.compile(r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z\b")
    shown = run(env, "log", "show", "0").stdout
    assert iso.search(shown.split("time:")[1].splitlines()[0])
    denied = run(env, "audit", "denied").stdout
    assert iso.search(denied) and not re.search(r"\b\d{13}\b", denied)
