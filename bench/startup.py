"""Benchmark: wall time of simple CLI commands against Python's own start-up.

    python bench/startup.py              # 15 runs of each command (about 20 s on 2 cores)
    python bench/startup.py --runs 5     # a quicker look

Each round runs ``python -c pass`` and every command once, interleaved, so that
load on the machine falls on all of them alike; the figures are medians over
the rounds, and the ratio is against ``python -c pass`` of the same run. The
commands run as ``python -m modelchain`` (what the console script does) on a
ledger of 20 events made first, with bytecode caches written by a warm-up run
(``PYTHONDONTWRITEBYTECODE`` is unset for the children: with it every run would
compile modelchain from source, which no installed copy does).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMMANDS: list[tuple[str, list[str]]] = [
    ("modelchain --help", ["--help"]),
    ("modelchain log checkpoint", ["log", "checkpoint"]),
    ("modelchain log show 0", ["log", "show", "0"]),
    ("modelchain log vkey", ["log", "vkey"]),
    ("modelchain member list", ["member", "list"]),
]


def _run(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="rounds (default 15)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.update(
            MODELCHAIN_HOME=str(Path(tmp) / "home"),
            MODELCHAIN_LEDGER=str(Path(tmp) / "ledger"),
            MODELCHAIN_KEY_PASSPHRASE="bench",
        )
        env.pop("MODELCHAIN_SERVER", None)
        env.pop("MODELCHAIN_IDENTITY", None)
        mc = [sys.executable, "-m", "modelchain"]
        subprocess.run(
            [*mc, "init", "--origin", "bench.example/startup", "--unencrypted"],
            env=env,
            check=True,
            capture_output=True,
        )
        for i in range(20):
            subprocess.run(
                [*mc, "event", "record", "bench.tick", "--body", f'{{"i": {i}}}'],
                env=env,
                check=True,
                capture_output=True,
            )
        baseline = [sys.executable, "-c", "pass"]
        for _, cmd in COMMANDS:  # warm-up: bytecode caches, page cache
            _run([*mc, *cmd], env)

        times: dict[str, list[float]] = {"python -c pass": []}
        times.update({name: [] for name, _ in COMMANDS})
        for _ in range(args.runs):
            times["python -c pass"].append(_run(baseline, env))
            for name, cmd in COMMANDS:
                times[name].append(_run([*mc, *cmd], env))

    base = statistics.median(times["python -c pass"])
    print(f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs")
    print(f"medians of {args.runs} interleaved runs")
    print(f"{'command':<28} {'median':>9} {'min':>9} {'x python':>9}")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"{name:<28} {med * 1000:7.1f}ms {min(values) * 1000:7.1f}ms {med / base:9.1f}")


if __name__ == "__main__":
    main()
