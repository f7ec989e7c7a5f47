"""Benchmark: durable appends of signed transactions, latency, and proofs at 1M entries.

    python bench/append.py            # full run (about 2 minutes on 2 cores)
    python bench/append.py --quick    # smaller counts, for a smoke check

Prints medians of several runs and the ratio against raw SQLite inserts of the
same entry bytes at the same durability (WAL, synchronous=FULL, same batch
size), measured in the same run: that is the ceiling on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import modelchain as mc
from modelchain.core.identity import Ed25519Signer
from modelchain.core.merkle import inclusion_proof, leaf_hash, verify_inclusion
from modelchain.errors import PushbackError
from modelchain.node.node import Ack, NodeConfig
from modelchain.storage.sqlite import IndexRow, SqliteStore

ORIGIN = "bench.example.org/append"


def _signed_envelopes(led: mc.Ledger, signer: Ed25519Signer, n: int) -> list[bytes]:
    out = []
    for i in range(n):
        body = {
            "event": "inference.decision",
            "data": {"model": "fraud", "version": 7, "request": f"req-{i:08d}", "score": 0.8125},
        }
        out.append(led.transaction("event.record", body, signer.name).sign(signer).to_bytes())
    return out


def _submit_all(led: mc.Ledger, envs: list[bytes], threads: int, chunk: int) -> float:
    """Submit from ``threads`` threads, ``chunk`` envelopes per call (``chunk`` 1 means
    one ``submit_async`` per transaction); seconds until every append is durable."""
    parts = [envs[i::threads] for i in range(threads)]
    futures: list[list[Future[Ack]]] = [[] for _ in range(threads)]

    def work(k: int) -> None:
        mine = parts[k]
        for lo in range(0, len(mine), chunk):
            while True:
                try:
                    if chunk == 1:
                        futures[k].append(led.node.submit_async(mine[lo]))
                    else:
                        futures[k].extend(led.node.submit_many(mine[lo : lo + chunk]))
                    break
                except PushbackError as exc:
                    time.sleep(exc.retry_after / 50)

    start = time.perf_counter()
    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for fs in futures:
        for f in fs:
            f.result()
    return time.perf_counter() - start


def _raw_sqlite(entries: list[bytes], batch: int, directory: Path) -> float:
    """The ceiling: the same bytes inserted with the same durability and batching."""
    path = directory / f"raw-{random.random()}.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE entries (idx INTEGER PRIMARY KEY, data BLOB NOT NULL)")
    start = time.perf_counter()
    for lo in range(0, len(entries), batch):
        db.execute("BEGIN IMMEDIATE")
        db.executemany(
            "INSERT INTO entries (idx, data) VALUES (?, ?)",
            ((lo + i, e) for i, e in enumerate(entries[lo : lo + batch])),
        )
        db.execute("COMMIT")
    elapsed = time.perf_counter() - start
    db.close()
    return elapsed


def _latency(led: mc.Ledger, envs: list[bytes], rate: float) -> tuple[float, float, float]:
    """Open-loop load at ``rate`` tx/s: p50/p99 of submit-to-durable, and achieved rate."""
    lat: list[float] = []
    lock = threading.Lock()
    done = threading.Event()
    remaining = [len(envs)]

    def finished(t0: float) -> object:
        def cb(_f: Future[Ack]) -> None:
            with lock:
                lat.append(time.perf_counter() - t0)
                remaining[0] -= 1
                if remaining[0] == 0:
                    done.set()

        return cb

    start = time.perf_counter()
    for i, data in enumerate(envs):
        due = start + i / rate
        now = time.perf_counter()
        if due > now:
            time.sleep(due - now)
        t0 = time.perf_counter()
        led.node.submit_async(data).add_done_callback(finished(t0))  # type: ignore[arg-type]
    done.wait(60)
    elapsed = time.perf_counter() - start
    qs = statistics.quantiles(lat, n=100)
    return qs[49] * 1000, qs[98] * 1000, len(envs) / elapsed


def bench_appends(n: int, runs: int, threads: int, chunk: int, directory: Path) -> dict[str, float]:
    signer = Ed25519Signer("alice", b"\x01" * 32)
    rates, ceilings, batches = [], [], []
    for run in range(runs):
        config = NodeConfig(max_backlog=50_000, checkpoint_every=10_000)
        with mc.init(directory / f"led-{chunk}-{run}", ORIGIN, signer, config=config) as led:
            envs = _signed_envelopes(led, signer, n + 1000)
            # A node is long-lived: start its verification workers before timing.
            for f in led.node.submit_many(envs[n:]):
                f.result()
            envs = envs[:n]
            size0, commits0 = led.size, led.node.commits
            elapsed = _submit_all(led, envs, threads, chunk)
            assert led.size == size0 + n
            rates.append(n / elapsed)
            entries = [d for _, d in led.store.entries(size0)]
            batch = max(1, round(n / (led.node.commits - commits0)))
        batches.append(batch)
        ceilings.append(len(entries) / _raw_sqlite(entries, batch, directory))
    return {
        "appends_per_s": statistics.median(rates),
        "raw_sqlite_per_s": statistics.median(ceilings),
        "ratio": statistics.median(rates) / statistics.median(ceilings),
        "raw_batch": statistics.median(batches),
        "chunk": chunk,
    }


def bench_latency(n: int, rate: float, directory: Path) -> dict[str, float]:
    signer = Ed25519Signer("alice", b"\x01" * 32)
    with mc.init(directory / f"lat-{rate}", ORIGIN, signer) as led:
        envs = _signed_envelopes(led, signer, n)
        p50, p99, achieved = _latency(led, envs, rate)
    return {"rate": rate, "p50_ms": p50, "p99_ms": p99, "achieved_per_s": achieved}


def bench_proofs(size: int, samples: int, directory: Path) -> dict[str, float]:
    """Proofs at ``size`` entries. The store is filled directly (the tree and the
    SQLite layout are the same as through the node; signing 1M transactions
    would only measure Ed25519 again)."""
    store = SqliteStore(directory / "proofs.db", synchronous="NORMAL")
    entry = b'{"envelope":{"payload":"' + b"A" * 400 + b'"},"index":%d}'
    t0 = time.perf_counter()
    step = 20_000
    for lo in range(0, size, step):
        part = range(lo, min(size, lo + step))
        store.append(
            [entry % i for i in part], [], {}, [IndexRow("event", "a", i, True) for i in part]
        )
    fill = time.perf_counter() - t0
    root = store.root()
    reader = store.node_reader()
    rng = random.Random(7)
    gen, ver = [], []
    for _ in range(samples):
        i = rng.randrange(size)
        t = time.perf_counter()
        proof = inclusion_proof(reader, i, size)
        gen.append(time.perf_counter() - t)
        leaf = leaf_hash(entry % i)
        t = time.perf_counter()
        verify_inclusion(i, size, leaf, proof, root)
        ver.append(time.perf_counter() - t)
    store.close()
    q = statistics.quantiles
    return {
        "size": size,
        "fill_s": fill,
        "proof_p50_us": statistics.median(gen) * 1e6,
        "proof_p99_us": q(gen, n=100)[98] * 1e6,
        "verify_p50_us": statistics.median(ver) * 1e6,
        "verify_p99_us": q(ver, n=100)[98] * 1e6,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small counts, for a smoke check")
    ap.add_argument("--threads", type=int, default=2, help="submitting threads (default 2)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    n, runs, proof_size, samples = (
        (3_000, 1, 50_000, 200) if args.quick else (20_000, 3, 1_000_000, 2_000)
    )
    with tempfile.TemporaryDirectory(prefix="mc-bench-") as tmp:
        directory = Path(tmp)
        appends = [bench_appends(n, runs, args.threads, chunk, directory) for chunk in (1, 1000)]
        latency = [bench_latency(n // 2, rate, directory) for rate in (1_000, 5_000)]
        proofs = bench_proofs(proof_size, samples, directory)
    result = {"appends": appends, "latency": latency, "proofs": proofs, "cpus": os.cpu_count()}
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
        return
    print(f"durable signed appends, {args.threads} submitting threads, median of {runs} x {n}:")
    for a in appends:
        how = "submit_async, one at a time" if a["chunk"] == 1 else f"submit_many({a['chunk']:.0f})"
        print(f"  {how}:")
        print(f"    modelchain      {a['appends_per_s']:>10,.0f} tx/s  (target: 10,000)")
        print(
            f"    raw SQLite      {a['raw_sqlite_per_s']:>10,.0f} rows/s "
            f"(same bytes, WAL+FULL, {a['raw_batch']:.0f} rows/commit as the node made)"
        )
        print(f"    ratio           {a['ratio']:>10.2f}")
    for lat in latency:
        print(
            f"latency at {lat['rate']:,.0f} tx/s offered: p50 {lat['p50_ms']:.2f} ms, "
            f"p99 {lat['p99_ms']:.2f} ms (achieved {lat['achieved_per_s']:,.0f} tx/s)"
        )
    print(
        f"proofs at {proofs['size']:,} entries (filled in {proofs['fill_s']:.1f} s): "
        f"generate p50 {proofs['proof_p50_us']:.0f} us / p99 {proofs['proof_p99_us']:.0f} us; "
        f"verify p50 {proofs['verify_p50_us']:.0f} us / p99 {proofs['verify_p99_us']:.0f} us"
        " (target: under 1 ms)"
    )


if __name__ == "__main__":
    main()
