"""Benchmark of the hardening: counts, not timings. SIGKILLs survived with
nothing acknowledged lost, WALs damaged after a kill (emptied, deleted,
truncated, bit-flipped) and what each led to, and the cost of keeping the
acknowledged head outside SQLite.

    python bench/faults.py             # 40 kills, 40 damaged WALs per kind, append cost
    python bench/faults.py --rounds 8  # fewer, for a smoke check

Every kill lands on the crash test's writer (tests/crash_writer.py: several
threads submitting single transactions and batches) after its first ack; after it the
ledger is reopened as the next writer would. An outcome is "lost silently"
when the store opened although an acknowledged entry was gone or changed:
that count must be 0. The append cost is tx/s with the acknowledged-head
record (the default) against the same store with it switched off, measured
in the same run.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import modelchain as mc
from modelchain.core.identity import Ed25519Signer
from modelchain.core.merkle import leaf_hash
from modelchain.errors import RollbackError
from modelchain.storage.sqlite import SqliteStore

# The crash test's writer and the fault tests' ways of damaging a WAL.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from test_crash import WriterRun
from wal_damage import DAMAGES

ORIGIN = "bench.example.org/faults"
SEED = bytes(range(32))


def _kill_round(path: Path, round_no: int, rng: random.Random) -> dict[int, bytes]:
    """Run the crash test's writer, kill it mid-write, return what it acknowledged."""
    run = WriterRun(path, round_no, path.parent / "writer.stderr")
    if not run.first_ack.wait(60):
        run.kill()
        raise RuntimeError((path.parent / "writer.stderr").read_text())
    time.sleep(rng.uniform(0.1, 0.6))
    run.kill()
    return run.acks()


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
    for r in range(rounds):
        acked = _kill_round(ledger, r, rng)
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
            acked = _kill_round(target, r, rng)
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


def _append_rate(path: Path, n: int, acked_head: bool, at_once: bool) -> float:
    """tx/s appending ``n`` events: all submitted at once (group commits of
    many), or one at a time, each waited for (a group commit each)."""
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
        if at_once:
            for f in [led.node.submit_async(b) for b in batch]:
                f.result()
        else:
            for b in batch:
                led.submit(b)
        return n / (time.perf_counter() - start)
    finally:
        led.close()


def _append_cost(work: Path, n: int, runs: int) -> None:
    for at_once, count, what in (
        (True, n, f"appends, {n:,} submitted at once"),
        (False, n // 20, f"appends one at a time, {n // 20:,} each waited for"),
    ):
        rates: dict[bool, list[float]] = {True: [], False: []}
        for r in range(runs):
            for head in (False, True):
                target = work / f"append-{at_once}-{head}-{r}"
                rates[head].append(_append_rate(target, count, head, at_once))
        a, b = statistics.median(rates[True]), statistics.median(rates[False])
        print(f"{what}, median of {runs}:")
        print(f"  with the acknowledged head (default)  {a:>9,.0f} tx/s")
        print(f"  without it (reference)                {b:>9,.0f} tx/s   ratio {a / b:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=40, help="kills, and damaged WALs per kind")
    ap.add_argument("--appends", type=int, default=20_000, help="transactions per append run")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="modelchain-faults-") as tmp:
        work = Path(tmp)
        _faults(args.rounds, work)
        _append_cost(work, args.appends, runs=3)


if __name__ == "__main__":
    main()
