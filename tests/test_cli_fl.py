"""``modelchain fl`` from the command line: members register their Flower nodes,
a coordinator creates a task from a TOML file, and status, rounds and
attribution read back what the rounds recorded (attribution as CSV and JSON)."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest
from conftest import run_cli as run
from test_fl_contracts import p256_key

import modelchain as mc
from modelchain.cli.common import keystore, passphrase_for
from modelchain.core.identity import Signer
from modelchain.errors import MalformedError, NotFoundError
from modelchain.fl.arrays import arrays_digest

NODE_A = str(2**64 - 1)  # Flower's node ids take all 64 bits


def _signer(name: str) -> Signer:
    keys = keystore()
    return keys.signer(name, passphrase_for(name, keys))


def test_a_task_from_the_command_line(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("hosp-a", "hosp-b"):
        run(env, "identity", "new", name)
    run(
        env,
        "init",
        "--origin",
        "ledger.example.org/fl",
        "--admin",
        "alice",
        "--admin-roles",
        "fl-coordinator,trainer",
        "--member",
        "hosp-a:fl-participant@hospital-a",
        "--member",
        "hosp-b:fl-participant@hospital-b",
        "--no-default-policies",
    )
    key = tmp_path / "a.pub"
    key.write_text(p256_key(0) + " node-a\n")
    out = run(
        env,
        "fl",
        "participant",
        "register",
        "--node-id",
        NODE_A,
        "--public-key",
        str(key),
        "--as",
        "hosp-a",
        "--json",
    ).stdout
    assert json.loads(out)["node_id"] == NODE_A
    run(
        env,
        "fl",
        "participant",
        "register",
        "--node-id",
        "5",
        "--public-key",
        p256_key(1),
        "--as",
        "hosp-b",
    )
    shown = json.loads(run(env, "fl", "participant", "show", "hosp-a", "--json").stdout)
    assert shown["public_key"] == p256_key(0)  # the comment is not the key
    ed = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    bad = run(
        env,
        "fl",
        "participant",
        "register",
        "--node-id",
        "6",
        "--public-key",
        ed,
        "--as",
        "hosp-b",
        ok=False,
    )
    assert bad.returncode == MalformedError.exit_code and "P-256" in bad.stderr

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    weights = tmp_path / "w0.bin"
    weights.write_bytes(b"\x00" * 16)
    with mc.open(env["MODELCHAIN_LEDGER"], home=env["MODELCHAIN_HOME"]) as led:
        led.models.register("triage", weights, signer=_signer("alice"))

    task_file = tmp_path / "task.toml"
    task_file.write_text(
        'model = "triage@1"\n'
        'participants = ["hosp-a", "hosp-b"]\n'
        "rounds = 1\n"
        'acceptance = "update.norm < 10.0"\n'
        'description = "triage across two hospitals"\n'
    )
    created = json.loads(
        run(
            env,
            "fl",
            "task",
            "create",
            "triage-fl",
            "--file",
            str(task_file),
            "--as",
            "alice",
            "--json",
        ).stdout
    )
    assert created["min_participants"] == 2 and created["aggregation"] == "FedAvg"
    missing = run(env, "fl", "task", "create", "t2", "--rounds", "1", "--as", "alice", ok=False)
    assert missing.returncode == 2 and "--model" in missing.stderr

    with mc.open(env["MODELCHAIN_LEDGER"], home=env["MODELCHAIN_HOME"]) as led:
        for name, n, norm in (("hosp-a", 30, 1.0), ("hosp-b", 10, 2.0)):
            led.fl.commit_update(
                "triage-fl",
                1,
                digest=arrays_digest([]) if name == "hosp-a" else "sha256:" + "ab" * 32,
                examples=n,
                figures={"norm": norm, "distance": None, "cosine": None},
                signer=_signer(name),
            )
        led.fl.aggregate("triage-fl", 1, digest="sha256:" + "cd" * 32, signer=_signer("alice"))
        led.fl.credit_by_examples("triage-fl", 1, signer=_signer("alice"))

    status = json.loads(run(env, "fl", "status", "triage-fl", "--json").stdout)
    assert (status["status"], status["aggregated"]) == ("complete", 1)
    assert "participants:" in run(env, "fl", "status", "triage-fl").stdout
    text = run(env, "fl", "rounds", "triage-fl").stdout
    assert "round 1: aggregate sha256:cdcdcd" in text and "signed by itself" in text
    # by node id: 5 before 2**64 - 1
    rounds = json.loads(run(env, "fl", "rounds", "triage-fl", "--json").stdout)
    assert [u["participant"] for u in rounds[0]["aggregate"]["updates"]] == ["hosp-b", "hosp-a"]

    rows = list(
        csv.DictReader(io.StringIO(run(env, "fl", "attribution", "triage-fl", "--csv").stdout))
    )
    per_round = {r["participant"]: float(r["share"]) for r in rows if r["round"] == "1"}
    assert per_round == {"hosp-a": 0.75, "hosp-b": 0.25}
    assert math.isclose(sum(float(r["share"]) for r in rows if r["round"] == "all"), 1.0)
    att = json.loads(run(env, "fl", "attribution", "triage-fl", "--json").stdout)
    assert att["cumulative"] == {"hosp-a": 0.75, "hosp-b": 0.25}
    assert "0.7500" in run(env, "fl", "attribution", "triage-fl").stdout
    none = run(env, "fl", "attribution", "triage-fl", "--method", "shapley-mc").stdout
    assert "no shapley-mc credit" in none

    unknown = run(env, "fl", "status", "nope", ok=False)
    assert unknown.returncode == NotFoundError.exit_code
