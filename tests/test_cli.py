"""The CLI as a user runs it: the real `modelchain` console script in a subprocess."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelchain.core.checkpoint import open_checkpoint
from modelchain.core.identity import VerifierKey
from modelchain.core.merkle import leaf_hash
from modelchain.core.tlogproof import TlogProof, verify_tlog_proof

ORIGIN = "ledger.example.org/cli"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = dict(os.environ)
    e.update(
        MODELCHAIN_HOME=str(tmp_path / "home"),
        MODELCHAIN_LEDGER=str(tmp_path / "ledger"),
        MODELCHAIN_KEY_PASSPHRASE="correct horse",
    )
    e.pop("MODELCHAIN_IDENTITY", None)
    return e


def run(env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(
        [sys.executable, "-m", "modelchain", *args], env=env, capture_output=True, timeout=60
    )
    if ok:
        assert proc.returncode == 0, proc.stderr.decode()
    return proc


@pytest.fixture
def initialised(env: dict[str, str]) -> dict[str, str]:
    run(env, "identity", "new", "bob")
    run(
        env,
        "init",
        "--origin",
        ORIGIN,
        "--admin",
        "alice",
        "--org",
        "acme",
        "--member",
        "bob:trainer@acme",
    )
    return env


def test_init_and_identities(initialised: dict[str, str], tmp_path: Path) -> None:
    env = initialised
    listed = json.loads(run(env, "identity", "list", "--json").stdout)
    assert [i["name"] for i in listed] == ["alice", "bob"]
    shown = json.loads(run(env, "identity", "show", "alice", "--json").stdout)
    vk = VerifierKey.from_string(shown["vkey"])
    assert (vk.name, vk.key_id_hex) == ("alice", shown["key_id"])
    key_file = tmp_path / "home" / "keys" / "alice.key"
    assert key_file.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert not list((tmp_path / "ledger").glob("alice*")), "member keys stay out of the ledger"


def test_event_checkpoint_proof_round_trip(initialised: dict[str, str]) -> None:
    env = initialised
    out = json.loads(
        run(env, "event", "record", "pipeline.step", "--body", '{"step": 1}', "--json").stdout
    )
    assert out["index"] == 1 and out["result"] == "accepted"
    vkey = VerifierKey.from_string(run(env, "log", "vkey").stdout.decode())
    assert vkey.name == ORIGIN
    note = run(env, "log", "checkpoint").stdout
    cp, _ = open_checkpoint(note, vkey)
    assert cp.size == 2
    raw = run(env, "log", "show", "1", "--raw").stdout
    assert leaf_hash(raw).hex() == out["leaf_hash"]
    receipt = TlogProof.from_text(run(env, "log", "proof", "1").stdout.decode())
    assert verify_tlog_proof(receipt, leaf_hash(raw), vkey).size == 2
    as_json = json.loads(run(env, "log", "proof", "1", "--json").stdout)
    assert as_json["tlog_proof"] == receipt.to_text()
    assert as_json["leaf_hash"] == out["leaf_hash"]
    shown = json.loads(run(env, "log", "show", "1", "--json").stdout)
    assert shown["transaction"]["body"] == {"event": "pipeline.step", "data": {"step": 1}}


def test_batch_from_file_and_signing_as_another_member(
    initialised: dict[str, str], tmp_path: Path
) -> None:
    env = initialised
    lines = tmp_path / "events.jsonl"
    lines.write_text("".join(json.dumps({"n": i}) + "\n" for i in range(40)))
    out = json.loads(
        run(
            env,
            "event",
            "record",
            "sensor.read",
            "--from-file",
            str(lines),
            "--as",
            "bob",
            "--json",
        ).stdout
    )
    assert [o["index"] for o in out] == list(range(1, 41))
    old_size = 41
    run(env, "event", "record", "x", "--body", "{}")
    proof = run(env, "log", "consistency", str(old_size), "42").stdout.decode().split()
    assert all(len(base64.b64decode(p)) == 32 for p in proof) and proof
    as_json = json.loads(run(env, "log", "consistency", str(old_size), "42", "--json").stdout)
    assert as_json["proof"] == proof
    verified = run(env, "log", "verify", "--json")
    assert json.loads(verified.stdout)["size"] == 42


def test_a_bad_line_in_a_batch_writes_nothing(initialised: dict[str, str], tmp_path: Path) -> None:
    env = initialised
    lines = tmp_path / "events.jsonl"
    lines.write_text('{"ok": 1}\n{"broken": \n')
    proc = run(env, "event", "record", "x", "--from-file", str(lines), ok=False)
    assert proc.returncode == 4
    assert b"events.jsonl:2" in proc.stderr
    assert b"Traceback" not in proc.stderr
    cp = run(env, "log", "checkpoint").stdout.decode().splitlines()
    assert cp[1] == "1"


def test_errors_are_one_line_with_distinct_exit_codes(
    initialised: dict[str, str], tmp_path: Path
) -> None:
    env = initialised
    missing = run(env, "log", "show", "99", ok=False)
    assert missing.returncode == 3
    assert missing.stderr.decode().count("\n") == 1 and missing.stderr.startswith(b"error: ")
    bad = run(env, "event", "record", "x", "--body", "{nope", ok=False)
    assert bad.returncode == 4
    nobody = run(env, "event", "record", "x", "--body", "{}", "--as", "zed", ok=False)
    assert nobody.returncode == 3 and b"zed" in nobody.stderr
    no_ledger = run(env, "log", "verify", "--ledger", str(tmp_path / "none"), ok=False)
    assert no_ledger.returncode == 3 and b"modelchain init" in no_ledger.stderr
    wrong = dict(env, MODELCHAIN_KEY_PASSPHRASE="wrong")
    refused = run(wrong, "event", "record", "x", "--body", "{}", ok=False)
    assert refused.returncode == 6 and b"wrong passphrase" in refused.stderr
    usage = run(env, "event", "record", "x", ok=False)
    assert usage.returncode == 2


def test_unencrypted_keys_need_the_explicit_flag(env: dict[str, str], tmp_path: Path) -> None:
    no_pass = dict(env)
    del no_pass["MODELCHAIN_KEY_PASSPHRASE"]
    proc = subprocess.run(
        [sys.executable, "-m", "modelchain", "identity", "new", "dave"],
        env=no_pass,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert proc.returncode == 6 and b"MODELCHAIN_KEY_PASSPHRASE" in proc.stderr
    run(no_pass, "identity", "new", "dave", "--unencrypted")
    key = (tmp_path / "home" / "keys" / "dave.key").read_bytes()
    assert key.startswith(b"-----BEGIN PRIVATE KEY-----")


def test_help_explains_every_command(env: dict[str, str]) -> None:
    for args in (
        ["--help"],
        ["log", "--help"],
        ["event", "record", "--help"],
        ["init", "--help"],
        ["identity", "new", "--help"],
    ):
        out = run(env, *args).stdout.decode()
        assert "Usage:" in out
    assert "--ledger" in run(env, "log", "verify", "--help").stdout.decode()


def test_member_keys_may_not_live_inside_the_ledger(env: dict[str, str], tmp_path: Path) -> None:
    inside = dict(env, MODELCHAIN_HOME=str(tmp_path / "ledger" / "keys"))
    proc = run(inside, "init", "--origin", ORIGIN, "--admin", "alice", ok=False)
    assert proc.returncode == 2 and b"never live with the ledger" in proc.stderr
    assert not (tmp_path / "ledger" / "ledger.db").exists()
