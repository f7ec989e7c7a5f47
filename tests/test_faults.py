"""Fault injection: what an unlucky operator's machine does to a ledger.

A store lock held past the busy timeout, a full disk, a WAL emptied, deleted,
truncated or bit-flipped after a SIGKILL, a published checkpoint the store does
not reach, and a disk that fails under the writer. Each must end in a clear
error with nothing lost or half-written, never in a dead writer, a hung
shutdown, or a checkpoint that conflicts with one already published.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from conftest import ORIGIN, make_signer, run_cli
from serving import running_server
from test_crash import ADMIN_SEED, WriterRun, cli_verify
from wal_damage import DAMAGES

import modelchain as mc
from modelchain import errors
from modelchain.core.checkpoint import Checkpoint
from modelchain.core.identity import Ed25519Signer
from modelchain.core.merkle import leaf_hash
from modelchain.core.note import parse_note
from modelchain.core.tx import Transaction
from modelchain.ledger.ledger import new_nonce
from modelchain.node.node import NodeConfig, system_clock_ms
from modelchain.storage.heads import Heads
from modelchain.storage.sqlite import SqliteStore

alice = make_signer("alice")
WAIT_S = 60.0  # generous: the suite must pass on a loaded machine
FAILURES = "modelchain_checkpoint_failures"


def _event(n: int, signer: Ed25519Signer = alice) -> bytes:
    tx = Transaction(
        ledger=ORIGIN,
        type="event.record",
        actor=signer.name,
        nonce=new_nonce(),
        time=system_clock_ms(),
        body={"event": "fault.test", "data": {"n": n}},
    )
    return tx.sign(signer).to_bytes()


def _wait_for(what: str, condition: Callable[[], bool], timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _metric(url: str, name: str) -> float:
    text = httpx.get(url + "/metrics").text
    m = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert m is not None, f"no metric {name}"
    return float(m.group(1))


def _checkpoint_size(url: str) -> int:
    return Checkpoint.from_text(parse_note(httpx.get(url + "/checkpoint").content).text).size


def _verify(ledger: Path) -> subprocess.CompletedProcess[str]:
    proc = cli_verify(ledger)
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode()
    )


@contextmanager
def _store_lock(db: Path) -> Iterator[Callable[[], None]]:
    """Another process that will take the store's write lock when told, and
    hold it until released; yields the function that takes it."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys\n"
            "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "sys.stdin.readline(); db.execute('BEGIN IMMEDIATE'); print('locked', flush=True)\n"
            "sys.stdin.readline(); db.execute('ROLLBACK')\n",
            str(db),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None and holder.stdout is not None

    def take() -> None:
        assert holder.stdin is not None and holder.stdout is not None
        holder.stdin.write("lock\n")
        holder.stdin.flush()
        assert holder.stdout.readline() == "locked\n"

    try:
        yield take
    finally:
        holder.stdin.write("release\n")
        holder.stdin.close()
        holder.wait(30)
        holder.stdout.close()


def _open_ledger(tmp_path: Path, name: str = "ledger") -> Path:
    led = mc.init(tmp_path / name, ORIGIN, alice, org="acme")
    led.close()
    return tmp_path / name


# -- a lock held past the busy timeout ------------------------------------------


def test_lock_held_past_busy_timeout_answers_503_and_the_writer_goes_on(tmp_path: Path) -> None:
    ledger = _open_ledger(tmp_path)
    log = tmp_path / "server.log"
    args = ("--reads", "open", "--busy-timeout", "0.3", "--checkpoint-interval", "3")
    with running_server(ledger, *args, log=log) as url, _store_lock(ledger / "ledger.db") as take:
        first = httpx.post(url + "/v1/entries", content=_event(1))
        assert first.status_code == 200, first.text
        before = int(httpx.get(url + "/v1/ledger").json()["size"])
        take()  # before the checkpoint of entry 1 is due
        # A write while the lock is held: 503 with Retry-After, nothing written.
        busy = httpx.post(url + "/v1/entries", content=_event(2))
        assert busy.status_code == 503, busy.text
        assert busy.json()["error"]["code"] == "storage_busy"
        assert int(busy.headers["Retry-After"]) >= 1
        assert str(ledger) not in busy.text
        # The checkpoint due meanwhile fails, is counted, and the node stays up.
        _wait_for("a failed checkpoint", lambda: _metric(url, FAILURES) > 0)
        assert httpx.get(url + "/healthz").status_code == 200
        assert _checkpoint_size(url) < before
    with running_server(ledger, *args, log=log) as url:
        pass  # (the first server shut down without hanging: the context waited for it)
    with running_server(ledger, *args, log=log) as url:
        # After the lock is gone, writes go on and the checkpoint is published.
        again = httpx.post(url + "/v1/entries", content=_event(3))
        assert again.status_code == 200, again.text
        _wait_for("the checkpoint", lambda: _checkpoint_size(url) == again.json()["index"] + 1)
    text = log.read_text()
    assert "Exception in thread" not in text and "Traceback" not in text.split("publishing")[0]
    assert _verify(ledger).returncode == 0


def test_lock_released_lets_the_same_writer_publish_its_checkpoint(tmp_path: Path) -> None:
    """Within one server process: the failed checkpoint is retried, not lost."""
    ledger = _open_ledger(tmp_path)
    args = ("--reads", "open", "--busy-timeout", "0.2", "--checkpoint-interval", "3")
    with running_server(ledger, *args) as url:
        with _store_lock(ledger / "ledger.db") as take:
            ack = httpx.post(url + "/v1/entries", content=_event(1)).json()
            take()
            _wait_for(
                "a failed checkpoint", lambda: _metric(url, "modelchain_checkpoint_failures") > 0
            )
        _wait_for("the retried checkpoint", lambda: _checkpoint_size(url) == ack["index"] + 1)
        assert httpx.post(url + "/v1/entries", content=_event(2)).status_code == 200
        assert httpx.get(url + "/healthz").json()["status"] == "ok"


# -- a full disk -----------------------------------------------------------------


@contextmanager
def _small_disk(tmp_path: Path, size: str = "8m") -> Iterator[Path]:
    mount = tmp_path / "small-disk"
    mount.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def _fill(directory: Path) -> Path:
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as f:
        try:
            while f.write(b"\0" * 4096):
                pass
        except OSError as exc:
            assert exc.errno == 28  # ENOSPC
    return filler


def test_disk_full_answers_507_and_writes_resume_once_space_is_freed(tmp_path: Path) -> None:
    with _small_disk(tmp_path) as disk:
        ledger = _open_ledger(disk)
        args = ("--reads", "open", "--checkpoint-interval", "0.2")
        with running_server(ledger, *args, log=tmp_path / "server.log") as url:
            acked = [httpx.post(url + "/v1/entries", content=_event(i)).json() for i in range(5)]
            _wait_for("the checkpoint", lambda: _checkpoint_size(url) == acked[-1]["index"] + 1)
            size = int(httpx.get(url + "/v1/ledger").json()["size"])
            filler = _fill(disk)
            refused = 0
            for i in range(20):  # the first writes may still fit in pages SQLite holds
                r = httpx.post(url + "/v1/entries", content=_event(100 + i))
                if r.status_code == 200:
                    acked.append(r.json())
                    continue
                assert r.status_code == 507, r.text
                assert r.json()["error"]["code"] == "storage_full"
                assert "Retry-After" in r.headers
                refused += 1
            assert refused > 0, "a full disk refused nothing"
            assert int(httpx.get(url + "/v1/ledger").json()["size"]) == size + len(acked) - 5
            assert httpx.get(url + "/healthz").status_code == 200
            filler.unlink()
            r = httpx.post(url + "/v1/entries", content=_event(999))
            assert r.status_code == 200, r.text
            acked.append(r.json())
            _wait_for("the checkpoint", lambda: _checkpoint_size(url) == acked[-1]["index"] + 1)
        assert _verify(ledger).returncode == 0
        with mc.open(ledger, readonly=True) as led:
            for ack in acked:
                assert leaf_hash(led.entry_bytes(ack["index"])).hex() == ack["leaf_hash"]


def test_init_on_a_full_disk_is_one_line_and_leaves_nothing(
    tmp_path: Path, env: dict[str, str]
) -> None:
    with _small_disk(tmp_path, "1m") as disk:
        _fill(disk)
        proc = run_cli(
            env,
            "init",
            "--ledger",
            str(disk / "l"),
            "--origin",
            ORIGIN,
            "--admin",
            "alice",
            ok=False,
        )
        # The log key is the first thing written: a key-store error, in one line.
        assert proc.returncode == errors.KeyStoreError.exit_code, proc.stderr
        errors_said = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(errors_said) == 1 and "No space left on device" in errors_said[0]
        assert "Traceback" not in proc.stderr
        assert list((disk / "l").iterdir()) == []


def test_a_read_only_filesystem_is_one_line_and_the_storage_exit_code(
    tmp_path: Path, env: dict[str, str]
) -> None:
    with _small_disk(tmp_path) as disk:
        run_cli(env, "init", "--ledger", str(disk / "l"), "--origin", ORIGIN, "--admin", "alice")
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        proc = run_cli(
            env, "event", "record", "x.y", "--body", "{}", "--ledger", str(disk / "l"), ok=False
        )
        assert proc.returncode == errors.StorageError.exit_code, proc.stderr
        assert "Traceback" not in proc.stderr
        said = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(said) == 1 and "Read-only file system" in said[0], proc.stderr
        # Reading still works.
        assert run_cli(env, "log", "verify", "--ledger", str(disk / "l")).returncode == 0


def test_ledger_files_are_private_to_their_owner(tmp_path: Path) -> None:
    ledger = _open_ledger(tmp_path)
    with mc.open(ledger) as led:
        led.submit(_event(1))
        led.checkpoint()
        assert (ledger.stat().st_mode & 0o777) == 0o700
        for name in ("ledger.db", "ledger.db-wal", "ledger.db-shm", "ledger.db.lock"):
            assert (ledger / name).stat().st_mode & 0o777 == 0o600, name
        for name in ("ledger.checkpoint", "ledger.head", "log.key"):
            assert (ledger / name).stat().st_mode & 0o777 == 0o600, name


# -- a damaged WAL after a SIGKILL --------------------------------------------------


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_wal_after_sigkill_is_refused_and_never_signed_over(
    tmp_path: Path, damage: str
) -> None:
    ledger = tmp_path / "ledger"
    refusals = 0
    for round_no in range(2):
        if ledger.exists():
            shutil.rmtree(ledger)
        run = WriterRun(ledger, round_no, tmp_path / f"writer-{round_no}.stderr")
        assert run.first_ack.wait(WAIT_S), (tmp_path / f"writer-{round_no}.stderr").read_text()
        _wait_for("a few hundred acks", lambda: len(run.lines) >= 200)  # noqa: B023
        assert run.kill() == -signal.SIGKILL
        acked = run.acks()
        wal = ledger / "ledger.db-wal"
        assert wal.exists() and wal.stat().st_size > 4096, "the kill left no WAL to damage"
        backup = tmp_path / "backup"
        shutil.rmtree(backup, ignore_errors=True)
        shutil.copytree(ledger, backup)  # what an operator restores from
        published = (ledger / "ledger.checkpoint").read_bytes()
        DAMAGES[damage](wal)

        store = SqliteStore(ledger / "ledger.db", readonly=True)
        held = store.size
        store.close()
        lost = [i for i in acked if i >= held]
        heads = Heads(ledger, "ledger")
        promised = max(heads.acked().size, heads.published()[0].size)  # type: ignore[union-attr]
        try:
            led = mc.open(ledger)
        except errors.RollbackError as exc:
            refusals += 1
            assert held < promised, "refused a store that holds all that was promised"
            assert "went back" in exc.message or "altered" in exc.message, exc.message
            assert "Recovering a store" in exc.message
            # log verify fails too, naming the sizes; nothing was signed over.
            proc = _verify(ledger)
            assert proc.returncode == errors.AuditError.exit_code, proc.stdout + proc.stderr
            assert "are lost" in proc.stderr or "another root" in proc.stderr, proc.stderr
            assert (ledger / "ledger.checkpoint").read_bytes() == published
            # The operator restores the copy: everything acknowledged is back.
            shutil.rmtree(ledger)
            shutil.copytree(backup, ledger)
            led = mc.open(ledger)
        else:
            assert not lost, f"acked entries {lost[:5]}... were lost and the store opened"
            assert held >= promised
        with led:
            assert led.audit().size == led.size
            for index, digest in acked.items():
                assert leaf_hash(led.entry_bytes(index)) == digest
            led.submit(_crash_event(led))  # and the log goes on from there
    # An emptied or deleted WAL loses whatever was committed since SQLite last
    # copied the WAL into the database: at 200 acks and more, some of it. A
    # truncated or flipped one may have lost only frames SQLite no longer
    # reads (the WAL is reused from its start), and then opening is right.
    if damage in ("emptied", "deleted"):
        assert refusals >= 1, f"the {damage} WAL never lost what was acknowledged"


def _crash_event(led: mc.Ledger) -> bytes:
    admin = Ed25519Signer("admin", bytes.fromhex(ADMIN_SEED))
    return (
        led.transaction("event.record", {"event": "after.recovery", "data": 1}, "admin")
        .sign(admin)
        .to_bytes()
    )


def test_store_swapped_for_an_older_copy_is_refused(tmp_path: Path) -> None:
    ledger = _open_ledger(tmp_path)
    old = tmp_path / "old.db"
    with mc.open(ledger) as led:
        led.checkpoint()
        with sqlite3.connect(ledger / "ledger.db") as src, sqlite3.connect(old) as dst:
            src.backup(dst)  # an operator's backup, taken while the node runs
        for i in range(5):
            led.submit(_event(i))
        led.checkpoint()
    for side in ("ledger.db-wal", "ledger.db-shm"):
        (ledger / side).unlink(missing_ok=True)
    shutil.copy(old, ledger / "ledger.db")
    # (In other processes: this one's SQLite still holds the replaced files open.)
    proc = _verify(ledger)
    assert proc.returncode == errors.AuditError.exit_code
    assert "the log has 1 entries but the ledger published a checkpoint of 6" in proc.stderr
    env = {**os.environ, "MODELCHAIN_LEDGER": str(ledger)}
    proc = subprocess.run(
        [sys.executable, "-m", "modelchain", "event", "record", "x.y", "--body", "{}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == errors.StorageError.exit_code, proc.stderr
    assert "holds 1 entries" in proc.stderr and "Traceback" not in proc.stderr


# -- a checkpoint that would conflict ----------------------------------------------


def test_a_published_checkpoint_beyond_the_store_stops_writes_not_the_server(
    tmp_path: Path,
) -> None:
    """Someone replaces ledger.checkpoint under a running node with a longer
    log's: the node refuses to sign below it, stops taking writes (503,
    /healthz fails), keeps serving reads, shuts down cleanly, and will not
    start on that directory again."""
    ledger = _open_ledger(tmp_path)
    longer = _open_ledger(tmp_path, "longer")
    with mc.open(longer) as led:
        for i in range(10):
            led.submit(_event(i))
        led.checkpoint()
    log = tmp_path / "server.log"
    args = ("--reads", "open", "--checkpoint-interval", "0.1")
    with running_server(ledger, *args, log=log) as url:
        shutil.copy(longer / "ledger.checkpoint", ledger / "ledger.checkpoint")
        r = httpx.post(url + "/v1/entries", content=_event(1))
        assert r.status_code == 200  # written; its checkpoint is what is refused
        _wait_for("/healthz to fail", lambda: httpx.get(url + "/healthz").status_code == 503)
        assert httpx.get(url + "/healthz").json()["error"]["code"] == "node_stopped"
        refused = httpx.post(url + "/v1/entries", content=_event(2))
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "node_stopped"
        assert _metric(url, "modelchain_writes_stopped") == 1
        assert httpx.get(url + "/v1/entries/0").status_code == 200  # reads go on ...
        uncovered = httpx.get(url + "/v1/entries/1")  # ... but no checkpoint is signed for 1
        assert uncovered.status_code == 503, uncovered.text
        assert uncovered.json()["error"]["code"] == "node_stopped"
        assert _checkpoint_size(url) == 1  # nothing was signed below the published 11
    proc = subprocess.run(
        [sys.executable, "-m", "modelchain", "serve", "--ledger", str(ledger), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == errors.StorageError.exit_code, proc.stderr
    assert "holds 2 entries but this ledger published a checkpoint of 11" in proc.stderr


def test_store_refuses_a_checkpoint_that_does_not_extend_the_published_one(
    tmp_path: Path,
) -> None:
    ledger = _open_ledger(tmp_path)
    with mc.open(ledger) as led:
        led.submit(_event(1))
        note = led.checkpoint()
        size = led.size
        with pytest.raises(errors.RollbackError, match="after one of 2"):
            led.store.put_checkpoint(1, led.store.root(), note)
        with pytest.raises(errors.RollbackError, match="with another root"):
            led.store.put_checkpoint(size, bytes(32), note)


# -- a disk that fails under the writer ----------------------------------------------


class _FailingStore(SqliteStore):
    """A store on a disk that fails reads on command (the only double here: the
    operating system's failure, injected at the one boundary it crosses)."""

    failing = False

    def used_nonces(self, nonces: object) -> dict[str, int]:  # type: ignore[override]
        if self.failing:
            raise OSError(5, "Input/output error")
        return super().used_nonces(nonces)  # type: ignore[arg-type]

    def check_writable(self) -> None:
        if self.failing:
            raise errors.StorageError("the store cannot be read back")
        super().check_writable()


def test_a_failing_disk_stops_writes_cleanly_and_nothing_hangs(tmp_path: Path) -> None:
    ledger = _open_ledger(tmp_path)
    led = mc.open(ledger, config=NodeConfig(checkpoint_interval_ms=50))
    led._store.__class__ = _FailingStore  # the same open store, now on a failing disk
    try:
        assert led.submit(_event(1)).outcome.accepted
        _FailingStore.failing = True
        fut = led.node.submit_async(_event(2))
        with pytest.raises(errors.StorageError):
            fut.result(WAIT_S)
        _wait_for("the writer to stop", lambda: led.node.fault is not None)
        with pytest.raises(errors.NodeStoppedError, match="stopped taking writes"):
            led.node.submit_async(_event(3))
    finally:
        _FailingStore.failing = False
        led.close()  # returns: nothing waits on the stopped writer
    with mc.open(ledger) as led:
        assert led.size == 2 and led.audit().size == 2


def test_a_failed_append_fails_its_batch_and_the_writer_goes_on(tmp_path: Path) -> None:
    ledger = _open_ledger(tmp_path)
    with mc.open(ledger, busy_timeout_ms=100) as led, _store_lock(ledger / "ledger.db") as take:
        take()
        futures = led.node.submit_many([_event(i) for i in range(3)])
        for fut in futures:
            with pytest.raises(errors.StorageBusyError):
                fut.result(WAIT_S)
        assert led.node.fault is None
    with mc.open(ledger) as led:
        size = led.size
        assert led.submit(_event(9)).index == size
        assert led.audit().size == size + 1
