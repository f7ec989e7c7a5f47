"""A writer for the crash test: appends signed events until it is killed.

Usage: python -u crash_writer.py LEDGER_DIR ADMIN_SEED_HEX RNG_SEED [MAX_SECONDS]

Creates the ledger on first use, else reopens it. Several threads submit single
transactions and batches at once, so group commits overlap. Each acknowledged
append is printed as one line ``index leafhash_hex``, flushed as soon as the ack
returns: every printed line is a promise that the entry is durable.
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time
import traceback
from pathlib import Path

import modelchain as mc
from modelchain.contracts.types import EVENT
from modelchain.core.identity import Ed25519Signer
from modelchain.ledger.ledger import new_nonce
from modelchain.node.node import Ack, NodeConfig

ORIGIN = "ledger.example.org/crash"
ADMIN = "admin"
THREADS = 3
MAX_BATCH = 16
# A short random pause after each ack keeps the log small enough to audit after
# every kill.
MAX_PAUSE_S = 0.03
# Frequent checkpoints, so some kills land while one is being signed and stored.
CONFIG = NodeConfig(checkpoint_every=50, checkpoint_interval_ms=20)


def open_or_init(path: Path, admin: Ed25519Signer) -> mc.Ledger:
    if (path / "ledger.db").exists():
        return mc.open(path, config=CONFIG)
    return mc.init(path, ORIGIN, admin, org="crash-test", config=CONFIG)


def main(argv: list[str]) -> None:
    path, seed_hex, rng_seed = Path(argv[1]), argv[2], int(argv[3])
    max_seconds = float(argv[4]) if len(argv) > 4 else 60.0
    admin = Ed25519Signer(ADMIN, bytes.fromhex(seed_hex))
    led = open_or_init(path, admin)
    out = threading.Lock()
    # The threads line up before each submission, so their batches reach the
    # node together and several are in flight in one group commit.
    together = threading.Barrier(THREADS)

    def acknowledge(acks: list[Ack]) -> None:
        with out:
            sys.stdout.write("".join(f"{a.index} {a.leaf_hash.hex()}\n" for a in acks))
            sys.stdout.flush()

    def submit_forever(worker: int) -> None:
        rng = random.Random(rng_seed * 1000 + worker)
        try:
            serial = 0
            while True:
                count = 1 if rng.random() < 0.4 else rng.randint(2, MAX_BATCH)
                envelopes = []
                for _ in range(count):
                    serial += 1
                    body = {"event": "crash.step", "data": {"worker": worker, "serial": serial}}
                    tx = led.transaction(EVENT, body, ADMIN, new_nonce())
                    envelopes.append(tx.sign(admin))
                together.wait()
                if count == 1:
                    acknowledge([led.submit(envelopes[0])])
                else:
                    acknowledge(led.submit_many(envelopes))
                time.sleep(rng.uniform(0, MAX_PAUSE_S))
        except BaseException:
            # A writer that dies on its own is a failure the test must see, not a quiet stop.
            traceback.print_exc()
            sys.stderr.flush()
            os._exit(3)

    for worker in range(THREADS):
        threading.Thread(target=submit_forever, args=(worker,), daemon=True).start()
    # Never outlive a test that forgot us.
    time.sleep(max_seconds)
    os._exit(4)


if __name__ == "__main__":
    main(sys.argv)
