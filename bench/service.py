"""Benchmark: the node over HTTP (a real `modelchain serve` process on loopback)
against the same node in-process, measured in the same run.

    python bench/service.py            # full run (about 2 minutes on 2 cores)
    python bench/service.py --quick    # smaller counts, for a smoke check

Figures (medians of several runs):
- submissions per second one per request (16 client connections) vs in-process
  ``submit_async`` from 4 threads (bench/append.py's "single" figure);
- submissions per second in batches of 500 per request (4 connections) vs
  in-process ``submit_many`` from one thread;
- read latency p50/p99 of an entry with its inclusion proof, under a bounded
  write load of 300 tx/s, vs the same read in-process (``receipt`` + entry bytes).
Envelopes are signed before timing: only the node's work is measured.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from append import _signed_envelopes, _submit_all
from serving import running_server

import modelchain as mc
from modelchain.core.identity import Ed25519Signer
from modelchain.node.node import NodeConfig

ORIGIN = "bench.example.org/service"
SIGNER = Ed25519Signer("alice", b"\x01" * 32)
CONFIG = NodeConfig(max_backlog=50_000, checkpoint_every=10_000)


def _post_all(url: str, envs: list[bytes], connections: int, batch: int) -> float:
    """POST every envelope from ``connections`` keep-alive connections, ``batch``
    per request (1: /v1/entries, else /v1/entries:batch); seconds until all are
    acknowledged (that is, durable). The client is the standard library's
    http.client: httpx would spend a core of its own on this 2-core machine."""
    host, port = url.removeprefix("http://").split(":")
    parts = [envs[i::connections] for i in range(connections)]
    errors: list[str] = []
    path = "/v1/entries" if batch == 1 else "/v1/entries:batch"
    headers = {"Content-Type": "application/json"}

    def work(mine: list[bytes]) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=120)
        try:
            for lo in range(0, len(mine), batch):
                chunk = mine[lo : lo + batch]
                body = chunk[0] if batch == 1 else b"[" + b",".join(chunk) + b"]"
                while True:
                    conn.request("POST", path, body=body, headers=headers)
                    r = conn.getresponse()
                    text = r.read()
                    if r.status == 503:
                        time.sleep(float(r.getheader("retry-after", "1")) / 20)
                        continue
                    if r.status != 200 or (batch > 1 and b'"error"' in text):
                        errors.append(text.decode()[:200])
                    break
        finally:
            conn.close()

    start = time.perf_counter()
    workers = [threading.Thread(target=work, args=(p,)) for p in parts]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise SystemExit(f"submissions failed: {errors[:3]}")
    return elapsed


def _fresh_ledger(directory: Path, warm: int) -> Path:
    """A closed ledger holding ``warm`` entries, for a server to open."""
    with mc.init(directory, ORIGIN, SIGNER, config=CONFIG) as led:
        for f in led.node.submit_many(_signed_envelopes(led, SIGNER, warm)):
            f.result()
    return directory


def _envelopes(directory: Path, n: int) -> list[bytes]:
    with mc.open(directory, readonly=True) as led:
        return _signed_envelopes(led, SIGNER, n)


def bench_submit(n: int, runs: int, root: Path) -> dict[str, float]:
    out: dict[str, list[float]] = {k: [] for k in ("inproc_1", "http_1", "inproc_b", "http_b")}
    for run in range(runs):
        for batch, key in ((1, "1"), (500, "b")):
            # in-process
            with mc.init(root / f"in-{run}-{key}", ORIGIN, SIGNER, config=CONFIG) as led:
                warm = _signed_envelopes(led, SIGNER, 1000)
                for f in led.node.submit_many(warm):
                    f.result()
                envs = _signed_envelopes(led, SIGNER, n)
                threads = 4 if batch == 1 else 1
                out[f"inproc_{key}"].append(n / _submit_all(led, envs, threads, batch))
            # over HTTP
            directory = _fresh_ledger(root / f"http-{run}-{key}", 0)
            envs = _envelopes(directory, n + 1000)
            args = ("--reads", "open", "--max-backlog", "50000")
            with running_server(directory, *args) as url:
                # warm up the server as the in-process node is (its verification workers)
                _post_all(url, envs[n:], 1, 500)
                connections = 16 if batch == 1 else 4
                out[f"http_{key}"].append(n / _post_all(url, envs[:n], connections, batch))
    med = {k: statistics.median(v) for k, v in out.items()}
    return {
        "http_single_per_s": med["http_1"],
        "inproc_single_per_s": med["inproc_1"],
        "single_ratio": med["http_1"] / med["inproc_1"],
        "http_batch_per_s": med["http_b"],
        "inproc_batch_per_s": med["inproc_b"],
        "batch_ratio": med["http_b"] / med["inproc_b"],
    }


def _load(
    submit: Callable[[bytes], object], envs: list[bytes], rate: float, stop: threading.Event
) -> threading.Thread:
    """Submit ``envs`` at ``rate`` per second in the background until ``stop``."""

    def run() -> None:
        start = time.perf_counter()
        for i, data in enumerate(envs):
            if stop.is_set():
                return
            due = start + i / rate
            now = time.perf_counter()
            if due > now:
                time.sleep(due - now)
            submit(data)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _quantiles(samples: list[float]) -> tuple[float, float]:
    qs = statistics.quantiles(samples, n=100)
    return qs[49] * 1000, qs[98] * 1000


def bench_reads(reads: int, rate: float, root: Path) -> dict[str, float]:
    size = 5000
    rng = random.Random(11)
    load_n = int(rate * 30)
    # in-process: the same question answered without HTTP, under the same load
    with mc.init(root / "read-in", ORIGIN, SIGNER, config=CONFIG) as led:
        for f in led.node.submit_many(_signed_envelopes(led, SIGNER, size)):
            f.result()
        node = led.node
        stop = threading.Event()
        load = _signed_envelopes(led, SIGNER, load_n)
        loader = _load(lambda d: node.submit_async(d).result(), load, rate, stop)
        lat = []
        for _ in range(reads):
            i = rng.randrange(size)
            t = time.perf_counter()
            receipt = led.tlog_proof(i)
            data = led.entry_bytes(i)
            json.dumps({"entry": data.hex(), "proof": [h.hex() for h in receipt.proof]})
            lat.append(time.perf_counter() - t)
        in_p50, in_p99 = _quantiles(lat)
        stop.set()
        loader.join()
    directory = _fresh_ledger(root / "read-http", size)
    envs = _envelopes(directory, load_n)
    with running_server(directory, "--reads", "open", "--max-backlog", "50000") as url:
        writer = httpx.Client(base_url=url, timeout=60)
        stop = threading.Event()
        loader = _load(
            lambda d: writer.post("/v1/entries", content=d).raise_for_status(), envs, rate, stop
        )
        lat = []
        with httpx.Client(base_url=url, timeout=60) as client:
            for _ in range(reads):
                i = rng.randrange(size)
                t = time.perf_counter()
                r = client.get(f"/v1/entries/{i}")
                r.raise_for_status()
                lat.append(time.perf_counter() - t)
        http_p50, http_p99 = _quantiles(lat)
        stop.set()
        loader.join()
        writer.close()
    return {
        "load_tx_per_s": rate,
        "http_read_p50_ms": http_p50,
        "http_read_p99_ms": http_p99,
        "inproc_read_p50_ms": in_p50,
        "inproc_read_p99_ms": in_p99,
        "p50_ratio": http_p50 / in_p50,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts")
    args = parser.parse_args()
    n, runs, reads = (1000, 1, 300) if args.quick else (5000, 3, 2000)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("MODELCHAIN_HOME", str(Path(tmp) / "home"))
        root = Path(tmp)
        sub = bench_submit(n, runs, root)
        print(
            f"submit one per request: {sub['http_single_per_s']:,.0f} tx/s over HTTP, "
            f"{sub['inproc_single_per_s']:,.0f} in-process (ratio {sub['single_ratio']:.2f})"
        )
        print(
            f"submit 500 per request: {sub['http_batch_per_s']:,.0f} tx/s over HTTP, "
            f"{sub['inproc_batch_per_s']:,.0f} in-process (ratio {sub['batch_ratio']:.2f})"
        )
        rd = bench_reads(reads, 300.0, root)
        print(
            f"read entry+proof under {rd['load_tx_per_s']:.0f} tx/s: p50/p99 "
            f"{rd['http_read_p50_ms']:.2f}/{rd['http_read_p99_ms']:.2f} ms over HTTP, "
            f"{rd['inproc_read_p50_ms']:.3f}/{rd['inproc_read_p99_ms']:.3f} ms in-process "
            f"(p50 ratio {rd['p50_ratio']:.1f})"
        )
        print(json.dumps({"submit": sub, "reads": rd}, indent=2))


if __name__ == "__main__":
    main()
