"""Progress on stderr outside a terminal: only when asked for, with
``--progress`` in any position or ``MODELCHAIN_PROGRESS=1``."""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path

import pytest
from conftest import run_cli as run

from modelchain.cli.progress import ProgressLine

ORIGIN = "ledger.example.org/progress"

# One whole line per update off a terminal: label, bar, done / total, rate.
LINE = re.compile(r"^verifying \[[#.]{30}\] (\d+) / (\d+)  \d+/s$")


def test_log_verify_draws_progress_only_when_asked(env: dict[str, str]) -> None:
    run(env, "init", "--origin", ORIGIN, "--admin", "alice", "--no-default-policies")
    run(env, "event", "record", "note", "--body", '{"n": 1}')

    quiet = run(env, "log", "verify")
    assert quiet.stderr == "", "no progress off a terminal unless asked"
    size = json.loads(run(env, "log", "verify", "--json").stdout)["size"]

    for how, args in (
        ({"MODELCHAIN_PROGRESS": "1"}, ("log", "verify")),
        ({}, ("--progress", "log", "verify")),
        ({}, ("log", "verify", "--progress")),
        ({}, ("log", "--progress", "verify", "--json")),
    ):
        proc = run({**env, **how}, *args)
        lines = proc.stderr.splitlines()
        assert lines, (how, args)
        assert all(LINE.match(line) for line in lines), proc.stderr
        last = LINE.match(lines[-1])
        assert last is not None and last.groups() == (str(size), str(size)), proc.stderr
        assert "\r" not in proc.stderr, "whole lines, not a redrawn bar, off a terminal"

    assert run({**env, "MODELCHAIN_PROGRESS": "0"}, "log", "verify").stderr == ""


def test_hashing_and_batches_honour_the_flag(env: dict[str, str], tmp_path: Path) -> None:
    run(env, "init", "--origin", ORIGIN, "--admin", "alice", "--no-default-policies")
    weights = tmp_path / "weights.bin"
    weights.write_bytes(bytes(range(256)) * 16)
    assert run(env, "hash", str(weights)).stderr == ""
    hashed = run(env, "hash", str(weights), "--no-cache", "--progress").stderr
    assert re.search(r"^hashing \[#{30}\] 4\.0 KiB / 4\.0 KiB ", hashed, re.M), hashed

    batch = tmp_path / "events.jsonl"
    batch.write_text("".join(json.dumps({"n": i}) + "\n" for i in range(3)))
    assert run(env, "event", "record", "note", "--from-file", str(batch)).stderr == ""
    recorded = run(
        {**env, "MODELCHAIN_PROGRESS": "1"}, "event", "record", "note", "--from-file", str(batch)
    ).stderr
    assert re.search(r"^recording \[#{30}\] 3 / 3 ", recorded, re.M), recorded


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_small_work_shows_no_bar_unless_forced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MODELCHAIN_PROGRESS", raising=False)
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with ProgressLine("verifying", min_total=20_000) as small:
        small(10, 10)
    assert terminal.getvalue() == ""
    with ProgressLine("verifying", min_total=20_000) as large:
        large(20_000, 20_000)
    drawn = terminal.getvalue()
    assert drawn.startswith("\rverifying [#") and drawn.endswith(" \n"), "redrawn in place"

    monkeypatch.setenv("MODELCHAIN_PROGRESS", "1")
    terminal.seek(0)
    terminal.truncate()
    with ProgressLine("verifying", min_total=20_000) as forced:
        forced(10, 10)
    assert terminal.getvalue().startswith("\rverifying [#")
