"""Benchmark: what committing personal fields costs a write, and what erasing one costs.

    python bench/personal.py                 # 5 rounds of 50 writes each (about a minute)
    python bench/personal.py --rounds 3 --writes 20

The same write, a dataset location handed out with a free-text purpose
(``access.log``, one signed transaction, durable before it returns), on two embedded
ledgers in the same run, in interleaved rounds so that load falls on both alike:

- **committed**: contract-set version 8, where the purpose becomes a salted commitment
  and its disclosure goes to the encrypted vault (a fresh data key wrapped by the KEK,
  written to the key store, the ciphertext to the vault file);
- **reference**: version 7, where the purpose is logged as text.

Also: reading the dataset back with its committed fields revealed, against reading it
on the version-7 ledger, and erasing one entry's fields (``record.erase`` signed by a
steward and an admin, then the vault's rows and data key destroyed). Medians.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ORIGIN = "bench.example/personal"
PURPOSE = "re-identification check requested by Dr. Jane Roe (ticket 4711)"


def _signer(name: str, seed: int) -> Any:
    from modelchain.core.identity import Ed25519Signer

    return Ed25519Signer(name, bytes([seed]) * 32)


def _ledger(path: Path, version: int | None) -> Any:
    import modelchain
    from modelchain.contracts.policy import DEFAULT_POLICIES
    from modelchain.core.identity import verifier_of
    from modelchain.ledger import ledger as ledger_mod
    from modelchain.ledger.ledger import Founder

    members = [
        Founder(verifier_of(_signer("steward", 2)), "acme", ("data-steward",)),
        Founder(verifier_of(_signer("dave", 3)), "bank", ("admin",)),
    ]
    made = ledger_mod.genesis_body
    if version is not None:

        def body(*args: Any, **kw: Any) -> dict[str, Any]:
            return made(*args, **kw, contracts=version)

        ledger_mod.genesis_body = body  # type: ignore[assignment]
    try:
        led = modelchain.init(
            path / "l",
            ORIGIN,
            _signer("admin", 1),
            members=members,
            policies={"record.erase": DEFAULT_POLICIES["record.erase"]},
            home=path / "home",
        )
    finally:
        ledger_mod.genesis_body = made  # type: ignore[assignment]
    data = path / "d.csv"
    data.write_text("id,x\n1,2\n")
    led.datasets.register(
        "patients", data, source="ward 4, St. Mary's", signer=_signer("steward", 2)
    )
    return led


def _each(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--writes", type=int, default=50, help="writes per ledger per round")
    args = ap.parse_args()
    steward = _signer("steward", 2)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        new = _ledger(root / "v8", None)
        old = _ledger(root / "v7", 7)
        write: dict[str, list[float]] = {"committed": [], "reference": []}
        read: dict[str, list[float]] = {"committed": [], "reference": []}
        erase: list[float] = []
        for _ in range(args.rounds):
            for name, led in (("committed", new), ("reference", old)):

                def locate(led: Any = led) -> None:
                    led.datasets.locate("patients", 1, purpose=PURPOSE, signer=steward)

                write[name] += _each(locate, args.writes)
                read[name] += _each(lambda led=led: led.datasets.info("patients"), args.writes)
            index = new.size - 1
            start = time.perf_counter()
            new.artifacts.erase_fields(index, "asked", signers=[steward, _signer("dave", 3)])
            erase.append(time.perf_counter() - start)
        assert PURPOSE.encode() not in new.entry_bytes(new.size - 2)
        new.close()
        old.close()
    print(f"# {platform.node()}, Python {platform.python_version()}, {args.rounds} rounds")
    w8, w7 = statistics.median(write["committed"]), statistics.median(write["reference"])
    r8, r7 = statistics.median(read["committed"]), statistics.median(read["reference"])
    print(f"write, purpose committed (v8)     {w8 * 1e3:8.2f} ms")
    print(f"write, purpose as text (v7)       {w7 * 1e3:8.2f} ms")
    print(f"  ratio                           {w8 / w7:8.2f}x  (+{(w8 - w7) * 1e3:.2f} ms)")
    print(f"read dataset, revealed (v8)       {r8 * 1e3:8.2f} ms")
    print(f"read dataset, text (v7)           {r7 * 1e3:8.2f} ms")
    print(f"  ratio                           {r8 / r7:8.2f}x")
    print(f"erase one entry's fields          {statistics.median(erase) * 1e3:8.2f} ms")


if __name__ == "__main__":
    main()
