"""Benchmark: inference receipts from one thread, against a SHA-256-only floor.

    python bench/receipts.py            # 500,000 records
    python bench/receipts.py --quick    # 50,000 records, for a smoke check

In the same run: records per second of ``ReceiptLog.record()`` (the loop alone, and
to the end of the final flush, i.e. every batch written to the receipt store and
submitted to an embedded ledger), and the latency of each call (p50/p99), against a
loop that only computes SHA-256 of the same inputs and outputs (the floor). The
added latency is record()'s percentile minus the floor's. Inputs are 256 random
bytes and a short string output (the ``--array`` option uses a float32[64] array).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--array", action="store_true", help="inputs are float32[64] arrays")
    ap.add_argument("--batch-size", type=int, default=4096)
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
    sha = hashlib.sha256
    as_bytes = [x if isinstance(x, bytes) else x.tobytes() for x in pool]
    floor_inputs = [as_bytes[i & 1023] for i in range(n)]

    with tempfile.TemporaryDirectory() as tmp:
        admin = Ed25519Signer("admin", hashlib.sha256(b"bench").digest())
        led = mc.init(Path(tmp) / "l", "bench.example/receipts", admin, contracts=contracts())
        weights = Path(tmp) / "w.bin"
        weights.write_bytes(b"w")
        led.models.register("fraud", weights, signer=admin)
        log = ReceiptLog(
            led, "fraud", signer=admin, store=Path(tmp) / "r.sqlite", batch_size=args.batch_size
        )
        record = log.record

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
        batches = led.size
        led.close()

    print(f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs")
    kind = "float32[64] array" if args.array else "256-byte"
    print(f"{n:,} records, {kind} input, batch size {args.batch_size}, {batches} log entries")
    print(f"floor  sha256 only      : {n / floor_s:12,.0f} records/s")
    print(
        f"record() loop           : {n / loop_s:12,.0f} records/s  ({floor_s / loop_s:.2f}x floor)"
    )
    print(
        f"record() + final flush  : {n / total_s:12,.0f} records/s  "
        f"({floor_s / total_s:.2f}x floor; batches written and submitted)"
    )
    fp50, fp99 = pct(floor_lat, 0.5), pct(floor_lat, 0.99)
    rp50, rp99 = pct(rec_lat, 0.5), pct(rec_lat, 0.99)
    print(f"latency floor  p50/p99  : {fp50:6.2f} / {fp99:6.2f} us")
    print(f"latency record p50/p99  : {rp50:6.2f} / {rp99:6.2f} us")
    print(f"added per call p50/p99  : {rp50 - fp50:6.2f} / {rp99 - fp99:6.2f} us")


if __name__ == "__main__":
    main()
