"""Benchmark: checkpoint cosignatures per second, Ed25519 (type 0x04) against ML-DSA-44 (0x06).

    python bench/cosign.py              # 2 s of cosigning per algorithm a run, 3 runs
    python bench/cosign.py --seconds 0.5

Each run times ``checkpoint.cosign`` (building the signed message, signing, and
the signature line) for each algorithm over the same checkpoints, then, in the
same way, ``verify_cosignature`` on what it made. Algorithms alternate within a
run so that load on the machine falls on both alike. The figures are medians
over the runs; the ratio is Ed25519's rate over ML-DSA-44's. ML-DSA-44 signing is
hedged (randomised), so its time varies with the rejection loop: hence a fixed
time rather than a fixed count.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import statistics
import time
from collections.abc import Callable

from modelchain.core.checkpoint import Checkpoint, cosign, verify_cosignature
from modelchain.core.identity import Cosigner, Ed25519Signer, MlDsa44Signer, cosigner_of

ORIGIN = "bench.example/cosign"
CHECKPOINTS = [Checkpoint(ORIGIN, n, hashlib.sha256(str(n).encode()).digest()) for n in range(16)]
T = 1_800_000_000


def _rate(work: Callable[[Checkpoint], object], seconds: float) -> float:
    """Calls of ``work`` per second, over at least ``seconds``."""
    done = 0
    start = time.perf_counter()
    while True:
        for cp in CHECKPOINTS:
            work(cp)
        done += len(CHECKPOINTS)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs (default 3)")
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement (default 2)")
    args = parser.parse_args()

    signers: dict[str, Cosigner] = {
        "Ed25519 (0x04)": Ed25519Signer("w.example/ed25519", bytes([1]) * 32),
        "ML-DSA-44 (0x06)": MlDsa44Signer("w.example/ml-dsa-44", bytes([2]) * 32),
    }
    signed: dict[str, list[float]] = {name: [] for name in signers}
    verified: dict[str, list[float]] = {name: [] for name in signers}
    for _ in range(args.runs):
        for name, signer in signers.items():
            key = cosigner_of(signer)
            sigs = {cp.size: cosign(cp, signer, T) for cp in CHECKPOINTS}
            signed[name].append(_rate(lambda cp, s=signer: cosign(cp, s, T), args.seconds))
            verified[name].append(
                _rate(lambda cp, k=key, g=sigs: verify_cosignature(cp, g[cp.size], k), args.seconds)
            )

    print(f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs")
    print(f"medians of {args.runs} runs of {args.seconds:g} s each, one thread")
    print(f"{'cosignature':<18} {'signed/s':>10} {'verified/s':>11}")
    for name in signers:
        sign_rate, verify_rate = statistics.median(signed[name]), statistics.median(verified[name])
        print(f"{name:<18} {sign_rate:10,.0f} {verify_rate:11,.0f}")
    ed, pq = (statistics.median(signed[name]) for name in signers)
    ed_v, pq_v = (statistics.median(verified[name]) for name in signers)
    print(f"Ed25519 / ML-DSA-44: {ed / pq:.1f}x signing, {ed_v / pq_v:.1f}x verifying")


if __name__ == "__main__":
    main()
