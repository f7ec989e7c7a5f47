"""Worker processes (modelchain.node.workers): the one way signature verification and
receipt batches start a helper Python process and stop it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

import modelchain
from modelchain.node.workers import start_worker, stop_worker


def _run(argv: list[str], *, quiet: bool = False) -> tuple[bytes, int | None]:
    proc = start_worker(argv, quiet=quiet)
    assert proc.stdout is not None
    out = proc.stdout.read()
    stop_worker(proc, 60)
    return out, proc.returncode


def test_the_worker_imports_this_modelchain_whatever_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PYTHONPATH", raising=False)
    out, code = _run(["-c", "import modelchain; print(modelchain.__file__)"])
    assert code == 0
    assert Path(out.decode().strip()) == Path(modelchain.__file__).resolve()


def test_the_worker_runs_in_its_own_session() -> None:
    out, code = _run(["-c", "import os; print(os.getsid(0))"])
    assert code == 0 and int(out) != os.getsid(0)


def test_a_worker_ends_when_its_stdin_closes() -> None:
    proc = start_worker(["-c", "import sys; sys.stdin.buffer.read()"])
    stop_worker(proc, 60)
    assert proc.returncode == 0


def test_a_worker_that_does_not_end_is_killed() -> None:
    proc = start_worker(["-c", "import time; print('up', flush=True); time.sleep(600)"])
    assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
    stop_worker(proc, 0)
    assert proc.returncode == -signal.SIGKILL


def test_quiet_workers_keep_their_complaints_to_themselves(
    capfd: pytest.CaptureFixture[str],
) -> None:
    _run(["-c", "import sys; sys.stderr.write('loud')"])
    assert "loud" in capfd.readouterr().err
    _run(["-c", "import sys; sys.stderr.write('quiet')"], quiet=True)
    assert "quiet" not in capfd.readouterr().err


def test_no_python_to_start_is_an_oserror(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setattr(sys, "executable", "")
    with pytest.raises(OSError, match="no Python"):
        start_worker(["-c", "pass"])
