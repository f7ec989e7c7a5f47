"""Benchmark: inference receipts from one thread, against a SHA-256-only floor.

    python bench/receipts.py            # 500,000 records a run, 3 runs
    python bench/receipts.py --quick    # 50,000 records a run, for a smoke check

Each run measures, in the same process and on the same inputs: records per second of
``ReceiptLog.record()`` (the loop alone, and to the end of the final flush, i.e. every
record journaled, every batch built, written to the receipt store and submitted to an
embedded ledger), and the latency of each call (p50/p99), against a loop that only
computes SHA-256 of the same inputs and outputs (the floor). The added latency is
record()'s percentile minus the floor's. Each run uses a fresh receipt store, so the
end-to-end figure includes starting the batch-writing worker process. The summary is
the median over the runs. Inputs are 256 random bytes and a short string output (the
``--array`` option uses a float32[64] array).
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import modelchain as mc
from modelchain.contracts import ContractSet, default_contracts
from modelchain.contracts.inference import inference_rules
from modelchain.contracts.ledger import authorize, resolve_signer
from modelchain.contracts.policy import enforce
from modelchain.core.identity import Ed25519Signer
from modelchain.receipts import ReceiptLog


def contracts() -> ContractSet:
    base = default_contracts()
    rules: dict[str, Any] = {t: base.rule(t) for t in base.types}
    return ContractSet({**rules, **inference_rules()}, resolve_signer, authorize, enforce)


def pct(values: list[int], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] / 1000


def one_run(
    led: mc.Ledger,
    admin: Ed25519Signer,
    store: Path,
    inputs: list[Any],
    floor_inputs: list[bytes],
    outputs: list[str],
    options: dict[str, Any],
) -> dict[str, float]:
    n = len(inputs)
    sha = hashlib.sha256
    log = ReceiptLog(led, "fraud", signer=admin, store=store, **options)
    record = log.record
    before = led.size

    # Throughput: floor, then record(), each over the same n inputs.
    t0 = time.perf_counter()
    for a, b in zip(floor_inputs, outputs, strict=True):
        sha(a).digest()
        sha(b.encode()).digest()
    floor_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    for a, b in zip(inputs, outputs, strict=True):
        record(a, b)
    loop_s = time.perf_counter() - t0
    left = log.flush()
    total_s = time.perf_counter() - t0
    assert left == 0, log.last_error
    batches = led.size - before

    # Latency per call, timed one by one (timer overhead subtracted).
    m = min(n, 200_000)
    clock = time.perf_counter_ns
    overhead = []
    for _ in range(m):
        t = clock()
        overhead.append(clock() - t)
    base = sorted(overhead)[m // 2]
    floor_lat, rec_lat = [], []
    for i in range(m):
        a, b = floor_inputs[i], outputs[i]
        t = clock()
        sha(a).digest()
        sha(b.encode()).digest()
        floor_lat.append(clock() - t - base)
    for i in range(m):
        a2, b = inputs[i], outputs[i]
        t = clock()
        record(a2, b)
        rec_lat.append(clock() - t - base)
    log.close()
    fp50, fp99 = pct(floor_lat, 0.5), pct(floor_lat, 0.99)
    rp50, rp99 = pct(rec_lat, 0.5), pct(rec_lat, 0.99)
    return {
        "floor": n / floor_s,
        "loop": n / loop_s,
        "total": n / total_s,
        "batches": batches,
        "fp50": fp50,
        "fp99": fp99,
        "rp50": rp50,
        "rp99": rp99,
        "add50": rp50 - fp50,
        "add99": rp99 - fp99,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--array", action="store_true", help="inputs are float32[64] arrays")
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument(
        "--worker",
        choices=["auto", "on", "off"],
        default="auto",
        help="the ReceiptLog worker option (auto: as shipped)",
    )
    args = ap.parse_args()
    n = 50_000 if args.quick else 500_000
    if args.array:
        import numpy as np

        rng = np.random.default_rng(1)
        pool: list[Any] = [rng.random(64, dtype=np.float32) for _ in range(1024)]
    else:
        pool = [os.urandom(256) for _ in range(1024)]
    outs = ["fraud" if i % 7 == 0 else "ok" for i in range(1024)]
    inputs = [pool[i & 1023] for i in range(n)]
    outputs = [outs[i & 1023] for i in range(n)]
    as_bytes = [x if isinstance(x, bytes) else x.tobytes() for x in pool]
    floor_inputs = [as_bytes[i & 1023] for i in range(n)]
    options: dict[str, Any] = {"batch_size": args.batch_size}
    if args.worker != "auto":
        options["worker"] = args.worker == "on"
    # The same bench runs against older ReceiptLogs, for before/after figures.
    accepted = inspect.signature(ReceiptLog).parameters
    options = {k: v for k, v in options.items() if k in accepted}

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        admin = Ed25519Signer("admin", hashlib.sha256(b"bench").digest())
        led = mc.init(Path(tmp) / "l", "bench.example/receipts", admin, contracts=contracts())
        weights = Path(tmp) / "w.bin"
        weights.write_bytes(b"w")
        led.models.register("fraud", weights, signer=admin)
        for i in range(args.runs):
            r = one_run(
                led, admin, Path(tmp) / f"r{i}.sqlite", inputs, floor_inputs, outputs, options
            )
            runs.append(r)
            print(
                f"run {i + 1}: floor {r['floor']:,.0f}/s, record() loop {r['loop']:,.0f}/s,"
                f" end to end {r['total']:,.0f}/s, added p50/p99"
                f" {r['add50']:.2f} / {r['add99']:.2f} us",
                flush=True,
            )
        led.close()

    def med(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    print(f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs")
    kind = "float32[64] array" if args.array else "256-byte"
    print(
        f"{n:,} records a run, {kind} input, batch size {args.batch_size},"
        f" {med('batches'):.0f} log entries a run, options {options};"
        f" medians of {len(runs)} runs:"
    )
    floor, loop, total = med("floor"), med("loop"), med("total")
    print(f"floor  sha256 only      : {floor:12,.0f} records/s")
    print(f"record() loop           : {loop:12,.0f} records/s  ({loop / floor:.2f}x floor)")
    print(
        f"record() + final flush  : {total:12,.0f} records/s  "
        f"({total / floor:.2f}x floor; batches written and submitted)"
    )
    print(f"latency floor  p50/p99  : {med('fp50'):6.2f} / {med('fp99'):6.2f} us")
    print(f"latency record p50/p99  : {med('rp50'):6.2f} / {med('rp99'):6.2f} us")
    print(f"added per call p50/p99  : {med('add50'):6.2f} / {med('add99'):6.2f} us")


if __name__ == "__main__":
    main()
