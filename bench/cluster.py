"""Benchmark: a three-node cluster ordered through a three-member etcd cluster.

    python bench/cluster.py            # full run (about 3 minutes on 2 cores)
    python bench/cluster.py --quick    # smaller counts, for a smoke check

Starts a development cluster (``modelchain cluster up``: three etcd members and
three node processes on loopback, 2 of 3 cosignatures make a checkpoint final)
for each setting, submits pre-signed transactions over HTTP in batches to the
three nodes, and prints:

- committed transactions per second: until every node has executed and stored
  every transaction (each node executes and stores everything);
- finality: from a batch's submission until a final (2-of-3 cosigned)
  checkpoint on the node it was sent to covers it, p50 and p99, at full load
  and at a steady offered rate (nodes are polled every 20 ms: the resolution);
- how both move with the client batch size and the checkpoint interval;
- the single-node embedded figure of bench/append.py (submit_many(1000)),
  measured in the same run, and the ratio.

Everything shares this machine's cores: three etcd members, three nodes and the
client. Targets (issue 12): 4,000 committed tx/s, finality p50 < 500 ms, p99 < 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from append import bench_appends

from modelchain.cluster.dev import cluster_down, cluster_up
from modelchain.contracts.types import EVENT
from modelchain.core.tx import Transaction
from modelchain.keys.files import KeyStore
from modelchain.ledger.ledger import new_nonce


def _envelopes(admin: Any, origin: str, n: int) -> list[dict[str, Any]]:
    out = []
    now = time.time_ns() // 10**6
    for i in range(n):
        body = {
            "event": "inference.decision",
            "data": {"model": "fraud", "version": 7, "request": f"req-{i:08d}", "score": 0.8125},
        }
        tx = Transaction(origin, EVENT, "admin", new_nonce(), now, body)
        out.append(json.loads(tx.sign(admin).to_bytes()))
    return out


class Monitor:
    """Polls each node's final checkpoint size; answers when a size became final."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.timeline: dict[str, list[tuple[float, int, int]]] = {u: [] for u in urls}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=5.0) as http:
            while not self._stop.is_set():
                for u in self.urls:
                    try:
                        s = http.get(u + "/cluster/status").json()
                    except (httpx.HTTPError, ValueError):
                        continue
                    self.timeline[u].append((time.perf_counter(), s["final_size"], s["size"]))
                self._stop.wait(0.02)

    def final_at(self, url: str, size: int) -> float | None:
        for t, final, _ in self.timeline[url]:
            if final >= size:
                return t
        return None

    def all_applied(self, size: int) -> float | None:
        """When every node had applied ``size`` entries."""
        times = []
        for u in self.urls:
            t = next((t for t, _, applied in self.timeline[u] if applied >= size), None)
            if t is None:
                return None
            times.append(t)
        return max(times)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def run(directory: Path, n: int, batch: int, interval_ms: int, inflight: int) -> dict[str, float]:
    info = cluster_up(directory, nodes=3, threshold=2, checkpoint_interval_ms=interval_ms)
    try:
        admin = KeyStore(Path(info.data["admin"]["home"])).signer("admin")
        urls = [node["url"] for node in info.nodes]
        envs = _envelopes(admin, info.data["origin"], n)
        # Bodies encoded before the clock starts: the client's JSON is not the cluster's work.
        chunks = [json.dumps(envs[i : i + batch]).encode() for i in range(0, n, batch)]
        sent: list[tuple[str, float, int]] = []  # url, submitted at, highest index
        lock = threading.Lock()
        monitor = Monitor(urls)
        start = time.perf_counter()

        def worker(k: int) -> None:
            url = urls[k % len(urls)]
            with httpx.Client(timeout=60.0) as http:
                for chunk in chunks[k::inflight]:
                    t0 = time.perf_counter()
                    answer = http.post(
                        url + "/v1/entries:batch",
                        content=chunk,
                        headers={"content-type": "application/json"},
                    )
                    answer.raise_for_status()
                    top = max(item["index"] for item in answer.json())
                    with lock:
                        sent.append((url, t0, top))

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(inflight)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        total = 1 + n  # the genesis, then every transaction
        deadline = time.monotonic() + 120
        while monitor.all_applied(total) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        deadline = time.monotonic() + 30
        while any(monitor.final_at(u, top + 1) is None for u, _, top in sent):
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        monitor.stop()
        applied = monitor.all_applied(total)
        if applied is None:
            raise RuntimeError("the nodes did not all apply every transaction")
        finality = []
        for url, t0, top in sent:
            t = monitor.final_at(url, top + 1)
            if t is not None:
                finality.append((t - t0) * 1000)
        finality.sort()
        return {
            "batch": batch,
            "interval_ms": interval_ms,
            "committed_per_s": n / (applied - start),
            "final_p50_ms": statistics.median(finality),
            "final_p99_ms": finality[min(len(finality) - 1, int(len(finality) * 0.99))],
            "batches": len(sent),
        }
    finally:
        cluster_down(directory)


def steady(directory: Path, rate: int, seconds: float, batch: int = 50) -> dict[str, float]:
    """Finality at an offered ``rate`` (tx/s) below saturation: a batch every
    ``batch / rate`` seconds, to the nodes in turn."""
    info = cluster_up(directory, nodes=3, threshold=2, checkpoint_interval_ms=50)
    try:
        admin = KeyStore(Path(info.data["admin"]["home"])).signer("admin")
        urls = [node["url"] for node in info.nodes]
        count = int(rate * seconds) // batch
        envs = _envelopes(admin, info.data["origin"], count * batch)
        bodies = [json.dumps(envs[i * batch : (i + 1) * batch]).encode() for i in range(count)]
        monitor = Monitor(urls)
        sent: list[tuple[str, float, int]] = []
        start = time.perf_counter()
        with httpx.Client(timeout=60.0) as http:
            for i, body in enumerate(bodies):
                due = start + i * batch / rate
                while (now := time.perf_counter()) < due:
                    time.sleep(due - now)
                url = urls[i % len(urls)]
                t0 = time.perf_counter()
                answer = http.post(
                    url + "/v1/entries:batch",
                    content=body,
                    headers={"content-type": "application/json"},
                )
                answer.raise_for_status()
                sent.append((url, t0, max(item["index"] for item in answer.json())))
        deadline = time.monotonic() + 30
        while any(monitor.final_at(u, top + 1) is None for u, _, top in sent):
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        monitor.stop()
        finality = sorted(
            (t - t0) * 1000
            for url, t0, top in sent
            if (t := monitor.final_at(url, top + 1)) is not None
        )
        return {
            "rate": rate,
            "final_p50_ms": statistics.median(finality),
            "final_p99_ms": finality[min(len(finality) - 1, int(len(finality) * 0.99))],
            "achieved_per_s": len(sent) * batch / (time.perf_counter() - start),
        }
    finally:
        cluster_down(directory)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small counts, for a smoke check")
    ap.add_argument("--inflight", type=int, default=6, help="batches in flight (default 6)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    n, runs = (3_000, 1) if args.quick else (20_000, 3)
    settings = [(500, 200)] if args.quick else [(100, 200), (500, 200), (500, 50), (500, 1000)]
    results = []
    with tempfile.TemporaryDirectory(prefix="mc-bench-cluster-") as tmp:
        base = Path(tmp)
        single = bench_appends(n, runs, 2, 1000, base)
        for batch, interval in settings:
            rows = [run(base / f"c-{batch}-{interval}-{r}", n, batch, interval, args.inflight)
                    for r in range(runs)]  # fmt: skip
            results.append({
                key: statistics.median(float(r[key]) for r in rows) for key in rows[0]
            })  # fmt: skip
        calm = steady(base / "steady", 1_000, 3.0 if args.quick else 10.0)
    out = {
        "single_node_per_s": single["appends_per_s"],
        "cluster": results,
        "steady": calm,
        "cpus": os.cpu_count(),
    }
    if args.json:
        json.dump(out, sys.stdout, indent=2)
        print()
        return
    print(f"3 nodes + 3 etcd members on {os.cpu_count()} cores, {n:,} transactions, "
          f"median of {runs}; {args.inflight} batches in flight")  # fmt: skip
    print(f"  single node, embedded (bench/append.py): {single['appends_per_s']:>8,.0f} tx/s")
    for r in results:
        ratio = r["committed_per_s"] / single["appends_per_s"]
        print(
            f"  batch {r['batch']:>4.0f}, checkpoint every {r['interval_ms']:>4.0f} ms: "
            f"{r['committed_per_s']:>7,.0f} tx/s committed on all 3 ({ratio:.2f} x single); "
            f"final p50 {r['final_p50_ms']:>5.0f} ms, p99 {r['final_p99_ms']:>6.0f} ms"
        )
    print(
        f"  steady {calm['rate']:,.0f} tx/s offered (batches of 50, checkpoint every 50 ms): "
        f"final p50 {calm['final_p50_ms']:.0f} ms, p99 {calm['final_p99_ms']:.0f} ms"
    )
    print("  targets: 4,000 tx/s; final p50 < 500 ms, p99 < 2,000 ms")


if __name__ == "__main__":
    main()
