"""Crash safety: a writer SIGKILLed at random moments loses nothing it acknowledged.

Runs tests/crash_writer.py in a real process, kills it with SIGKILL again and
again, and after every kill reopens the ledger as the next writer would: the
audit passes and every acknowledged index holds the bytes that were promised.
"""

from __future__ import annotations

import itertools
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import modelchain as mc
from modelchain.core.merkle import leaf_hash

WRITER = Path(__file__).with_name("crash_writer.py")
ADMIN_SEED = bytes(range(100, 132)).hex()
ROUNDS = 25
# Every fifth round is killed at a random time after it starts, without waiting
# for an ack, so some kills land while it imports, opens or recovers the ledger;
# the other twenty are killed mid-write.
STARTUP_KILL_EVERY = 5
FIRST_ACK_TIMEOUT_S = 30.0
_ACK_LINE = re.compile(rb"(0|[1-9][0-9]*) ([0-9a-f]{64})\n")


class WriterRun:
    """One writer process and the ack lines it printed before it died."""

    def __init__(self, ledger: Path, round_no: int, stderr_path: Path) -> None:
        self.lines: list[bytes] = []
        self.first_ack = threading.Event()
        self._stderr = stderr_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-u", str(WRITER), str(ledger), ADMIN_SEED, str(round_no), "60"],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            self.first_ack.set()

    def kill(self) -> int:
        os.kill(self.proc.pid, signal.SIGKILL)
        code = self.proc.wait(timeout=30)
        self._reader.join(timeout=30)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self._stderr.close()
        return code

    def acks(self) -> dict[int, bytes]:
        """Index -> leaf hash for every complete line; a line cut by the kill is not an ack."""
        out: dict[int, bytes] = {}
        for line in self.lines:
            if not line.endswith(b"\n"):
                continue  # the kill interrupted this write; the writer never finished acking
            m = _ACK_LINE.fullmatch(line)
            assert m is not None, f"writer printed a garbled ack line {line!r}"
            index = int(m.group(1))
            assert index not in out, f"index {index} was acknowledged twice in one run"
            out[index] = bytes.fromhex(m.group(2).decode())
        return out


def cli_verify(ledger: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "modelchain", "log", "verify", "--ledger", str(ledger)],
        capture_output=True,
        timeout=120,
    )


def test_sigkilled_writer_loses_no_acknowledged_entry(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    rng = random.Random(20240601)
    acked: dict[int, bytes] = {}
    sizes: list[int] = []
    for round_no in range(ROUNDS):
        run = WriterRun(ledger, round_no, tmp_path / f"writer-{round_no}.stderr")
        startup_kill = round_no % STARTUP_KILL_EVERY == STARTUP_KILL_EVERY - 1
        if startup_kill:
            time.sleep(rng.uniform(0.05, 0.5))
        else:
            if not run.first_ack.wait(FIRST_ACK_TIMEOUT_S):
                run.kill()
                stderr = (tmp_path / f"writer-{round_no}.stderr").read_text()
                raise AssertionError(f"round {round_no}: the writer acked nothing\n{stderr}")
            time.sleep(rng.uniform(0.1, 0.8))
        code = run.kill()
        stderr = (tmp_path / f"writer-{round_no}.stderr").read_text()
        assert code == -signal.SIGKILL, (
            f"round {round_no}: writer exited {code} by itself\n{stderr}"
        )

        round_acks = run.acks()
        for index, digest in round_acks.items():
            assert acked.setdefault(index, digest) == digest, (
                f"round {round_no}: index {index} was acknowledged earlier with another entry"
            )
        if not startup_kill:
            assert round_acks, f"round {round_no}: killed after an ack, yet no ack was read"

        # Reopen writable, exactly as the next writer would, then audit everything.
        with mc.open(ledger) as led:
            report = led.audit()
            assert report.size == led.size
            assert report.rejected == 0 and report.checkpoints > 0
            for index, digest in acked.items():
                assert index < led.size, f"round {round_no}: acked entry {index} is gone"
                assert leaf_hash(led.entry_bytes(index)) == digest, (
                    f"round {round_no}: entry {index} is not the bytes that were acknowledged"
                )
            sizes.append(led.size)
        if round_no in (0, ROUNDS - 1):
            proc = cli_verify(ledger)
            assert proc.returncode == 0, proc.stderr.decode()
            assert proc.stdout.startswith(f"ok: {sizes[-1]} entries".encode()), proc.stdout

    # The kills must have landed on a writer that was writing: the log grew in
    # (nearly) every round and far more than a handful of entries were promised.
    grew = sum(1 for before, after in itertools.pairwise(sizes) if after > before)
    mid_write_rounds = ROUNDS - ROUNDS // STARTUP_KILL_EVERY
    assert grew >= mid_write_rounds - 1, sizes
    assert len(acked) >= 20 * ROUNDS, len(acked)
    assert max(acked) < sizes[-1]
