"""Benchmark of the hardening: counts, not timings. SIGKILLs survived with
nothing acknowledged lost, WALs damaged after a kill (emptied, deleted,
truncated, bit-flipped) and what each led to, and the cost of keeping the
acknowledged head outside SQLite.

    python bench/faults.py             # 40 kills, 40 damaged WALs, append cost
    python bench/faults.py --rounds 8  # fewer, for a smoke check

Every kill lands on a writer with several threads submitting; after it the
ledger is reopened as the next writer would. An outcome is "lost silently"
when the store opened although an acknowledged entry was gone or changed:
that count must be 0. The append cost is tx/s with the acknowledged-head
record (the default) against the same store with it switched off, measured
in the same run.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import modelchain as mc
from modelchain.core.identity import Ed25519Signer
from modelchain.core.merkle import leaf_hash
from modelchain.errors import RollbackError
from modelchain.service.node import NodeConfig
from modelchain.storage.sqlite import SqliteStore

ORIGIN = "bench.example.org/faults"
SEED = bytes(range(32))
CONFIG = NodeConfig(checkpoint_every=50, checkpoint_interval_ms=20)


def _writer(path: Path) -> None:
    """Append events from three threads until killed; print each ack as it returns."""
    admin = Ed25519Signer("admin", SEED)
    if (path / "ledger.db").exists():
        led = mc.open(path, config=CONFIG)
    else:
        led = mc.init(path, ORIGIN, admin, org="bench", config=CONFIG)
    out = threading.Lock()

    def run(worker: int) -> None:
        rng = random.Random(worker)
        while True:
            n = rng.randint(1, 16)
            batch = [
                led.transaction("event.record", {"event": "bench.fault", "data": i}, "admin")
                .sign(admin)
                .to_bytes()
                for i in range(n)
            ]
            acks = [f.result() for f in led.node.submit_many(batch)]
            with out:
                sys.stdout.write("".join(f"{a.index} {a.leaf_hash.hex()}\n" for a in acks))
                sys.stdout.flush()

    threads = [threading.Thread(target=run, args=(w,), daemon=True) for w in range(3)]
    for t in threads:
        t.start()
    time.sleep(3600)


def _empty(wal: Path) -> None:
    wal.write_bytes(b"")


def _delete(wal: Path) -> None:
    wal.unlink()


def _truncate(wal: Path) -> None:
    with wal.open("r+b") as f:
        f.truncate(max(32, wal.stat().st_size - 3000))


def _flip(wal: Path) -> None:
    data = bytearray(wal.read_bytes())
    data[len(data) - 2000] ^= 0x40
    wal.write_bytes(bytes(data))


DAMAGES = {"emptied": _empty, "deleted": _delete, "truncated": _truncate, "bit-flipped": _flip}


def _kill_round(path: Path, rng: random.Random) -> dict[int, bytes]:
    """Run a writer, kill it mid-write, return what it acknowledged."""
    proc = subprocess.Popen(
        [sys.executable, "-u", __file__, "--writer", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    lines: list[bytes] = []
    out = proc.stdout
    reader = threading.Thread(target=lambda: lines.extend(out), daemon=True)
    reader.start()
    deadline = time.monotonic() + 60
    while len(lines) < 50 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(rng.uniform(0.05, 0.5))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    reader.join()
    proc.stdout.close()
    acked: dict[int, bytes] = {}
    for line in lines:
        if line.endswith(b"\n"):
            index, digest = line.split()
            acked[int(index)] = bytes.fromhex(digest.decode())
    return acked


def _check(path: Path, acked: dict[int, bytes]) -> str:
    """What reopening after the kill (and any damage) led to."""
    try:
        led = mc.open(path)
    except RollbackError:
        return "refused"
    with led:
        led.audit()
        intact = all(
            i < led.size and leaf_hash(led.entry_bytes(i)) == digest for i, digest in acked.items()
        )
    return "opened, nothing lost" if intact else "lost silently"


def _faults(rounds: int, work: Path) -> None:
    rng = random.Random(7)
    kills: Counter[str] = Counter()
    acked_total = 0
    ledger = work / "killed"
    for _ in range(rounds):
        acked = _kill_round(ledger, rng)
        acked_total += len(acked)
        kills[_check(ledger, acked)] += 1
    print(f"SIGKILL mid-write, reopened: {rounds} kills, {acked_total:,} acks checked")
    for outcome, n in sorted(kills.items()):
        print(f"  {outcome:<22} {n}")

    print(f"WAL damaged after a SIGKILL ({rounds} rounds per kind):")
    for name, damage in DAMAGES.items():
        outcomes: Counter[str] = Counter()
        for r in range(rounds):
            target = work / f"{name}-{r}"
            acked = _kill_round(target, rng)
            damage(target / "ledger.db-wal")
            store = SqliteStore(target / "ledger.db", readonly=True)
            lost = any(i >= store.size for i in acked)
            store.close()
            outcome = _check(target, acked)
            if outcome == "opened, nothing lost" and lost:
                outcome = "lost silently"
            outcomes[outcome] += 1
            shutil.rmtree(target)
        print(f"  {name:<12} " + ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items())))


def _append_rate(path: Path, n: int, acked_head: bool) -> float:
    admin = Ed25519Signer("admin", SEED)
    led = mc.init(path, ORIGIN, admin, org="bench")
    if not acked_head:
        # The store's acknowledged-head record switched off: the reference.
        led.store.heads.acknowledge = lambda size, root: None  # type: ignore[method-assign]
    try:
        batch = [
            led.transaction("event.record", {"event": "bench.append", "data": i}, "admin")
            .sign(admin)
            .to_bytes()
            for i in range(n)
        ]
        start = time.perf_counter()
        futures = [led.node.submit_async(b) for b in batch]
        for f in futures:
            f.result()
        return n / (time.perf_counter() - start)
    finally:
        led.close()


def _append_cost(work: Path, n: int, runs: int) -> None:
    with_head, without = [], []
    for r in range(runs):
        without.append(_append_rate(work / f"plain-{r}", n, acked_head=False))
        with_head.append(_append_rate(work / f"head-{r}", n, acked_head=True))
    a, b = statistics.median(with_head), statistics.median(without)
    print(f"appends, {n:,} submitted at once, median of {runs}:")
    print(f"  with the acknowledged head (default)  {a:>9,.0f} tx/s")
    print(f"  without it (reference)                {b:>9,.0f} tx/s   ratio {a / b:.2f}")
    single_with = statistics.median(
        _single_rate(work / f"s-head-{r}", 300, True) for r in range(runs)
    )
    single_without = statistics.median(
        _single_rate(work / f"s-plain-{r}", 300, False) for r in range(runs)
    )
    print("appends one at a time, each waited for (one group commit each):")
    print(f"  with the acknowledged head (default)  {single_with:>9,.0f} tx/s")
    print(
        f"  without it (reference)                {single_without:>9,.0f} tx/s   "
        f"ratio {single_with / single_without:.2f}"
    )


def _single_rate(path: Path, n: int, acked_head: bool) -> float:
    admin = Ed25519Signer("admin", SEED)
    led = mc.init(path, ORIGIN, admin, org="bench")
    if not acked_head:
        led.store.heads.acknowledge = lambda size, root: None  # type: ignore[method-assign]
    try:
        start = time.perf_counter()
        for i in range(n):
            tx = led.transaction("event.record", {"event": "bench.one", "data": i}, "admin")
            led.submit(tx.sign(admin))
        return n / (time.perf_counter() - start)
    finally:
        led.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=40, help="kills, and damaged WALs per kind")
    ap.add_argument("--appends", type=int, default=20_000, help="transactions per append run")
    ap.add_argument("--writer", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.writer is not None:
        _writer(args.writer)
        return
    with tempfile.TemporaryDirectory(prefix="modelchain-faults-") as tmp:
        work = Path(tmp)
        _faults(args.rounds, work)
        _append_cost(work, args.appends, runs=3)


if __name__ == "__main__":
    main()
