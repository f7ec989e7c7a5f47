"""Benchmark: hashing a 2 GiB single-file model and a 4 x 512 MiB model folder, page cache warm.

    python bench/hashing.py            # full run (about 1 minute on 2 cores; 5 GiB of temp files)
    python bench/hashing.py --quick    # 64 MiB and 4 x 16 MiB, for a smoke check

Compares, in the same run and interleaved round by round (medians of 3): modelchain's
default (plain SHA-256 per file, OMS files mode), Python hashlib on one thread (the
single-core ceiling), model-signing's own hashing API in files mode, the blake3 package's
multi-threaded mmap hashing against modelchain's BLAKE3 mode, and registering the folder
again after its README changed (digest cache) against the first registration.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import blake3
import numpy as np

from modelchain.artifacts import DigestCache, hash_path
from modelchain.core.manifest import BLAKE3, sharded

MiB = 1 << 20
GB = 1e9


def write_random(path: Path, size: int, rng: np.random.Generator) -> None:
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 64 * MiB)
            f.write(rng.bytes(n))
            left -= n


def write_safetensors(path: Path, size: int, tensors: int, rng: np.random.Generator) -> None:
    """A safetensors file of ``tensors`` equal F32 tensors (header written by hand)."""
    import json

    each = size // tensors // 4 * 4
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    for i in range(tensors):
        header[f"layers.{i}.weight"] = {
            "dtype": "F32",
            "shape": [each // 4],
            "data_offsets": [i * each, (i + 1) * each],
        }
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw)
        for _ in range(tensors):
            f.write(rng.bytes(each))


def warm(paths: list[Path]) -> None:
    """Read every file, so that each round starts with them in the page cache."""
    buf = bytearray(16 * MiB)
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass


def hashlib_single_thread(paths: list[Path]) -> None:
    for p in paths:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            while chunk := f.read(MiB):
                h.update(chunk)
        h.hexdigest()


def blake3_package(paths: list[Path]) -> None:
    for p in paths:
        blake3.blake3(max_threads=blake3.blake3.AUTO).update_mmap(p).hexdigest()


def model_signing_files(path: Path) -> Callable[[], object]:
    from model_signing import hashing as ms_hashing

    config = ms_hashing.Config().use_file_serialization(hashing_algorithm="sha256")
    return lambda: config.hash(path)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke check")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where to write the temporary files")
    args = ap.parse_args()

    single_size = 64 * MiB if args.quick else 2048 * MiB
    part_size = 16 * MiB if args.quick else 512 * MiB
    st_size = 64 * MiB if args.quick else 1024 * MiB
    shard = single_size // 2

    tmp = Path(tempfile.mkdtemp(prefix="modelchain-bench-", dir=args.dir))
    try:
        rng = np.random.default_rng(2026)
        single = tmp / "model.bin"
        write_random(single, single_size, rng)
        folder = tmp / "model"
        folder.mkdir()
        parts = [folder / f"model-{i + 1:05d}-of-00004.bin" for i in range(4)]
        for p in parts:
            write_random(p, part_size, rng)
        readme = folder / "README.md"
        readme.write_text("# bench model\n")
        folder_files = [*parts, readme]
        st_file = tmp / "tensors" / "model.safetensors"
        st_file.parent.mkdir()
        write_safetensors(st_file, st_size, 64, rng)
        everything = [single, *folder_files, st_file]
        time.sleep(0.2)  # let the files age past the digest cache's racy window

        folder_bytes = sum(p.stat().st_size for p in folder_files)
        cases: dict[str, tuple[int, Callable[[], object]]] = {
            "single hashlib": (single_size, lambda: hashlib_single_thread([single])),
            "single modelchain": (single_size, lambda: hash_path(single)),
            "single model-signing": (single_size, model_signing_files(single)),
            "single modelchain sharded": (
                single_size,
                lambda: hash_path(single, algorithm=sharded(shard)),
            ),
            "single blake3 package": (single_size, lambda: blake3_package([single])),
            "single modelchain blake3": (single_size, lambda: hash_path(single, algorithm=BLAKE3)),
            "folder hashlib": (folder_bytes, lambda: hashlib_single_thread(folder_files)),
            "folder modelchain": (folder_bytes, lambda: hash_path(folder)),
            "folder model-signing": (folder_bytes, model_signing_files(folder)),
            "folder blake3 package": (folder_bytes, lambda: blake3_package(folder_files)),
            "folder modelchain blake3": (folder_bytes, lambda: hash_path(folder, algorithm=BLAKE3)),
            "safetensors with tensors": (st_size, lambda: hash_path(st_file)),
            "safetensors file only": (st_size, lambda: hash_path(st_file, tensors=False)),
        }
        seconds: dict[str, list[float]] = {name: [] for name in cases}
        first_reg: list[float] = []
        again_reg: list[float] = []
        for r in range(args.rounds):
            warm(everything)
            for name, (_, fn) in cases.items():
                seconds[name].append(timed(fn))
            cache = DigestCache(tmp / f"cache-{r}.sqlite")
            readme.write_text(f"# bench model, round {r}\n")
            time.sleep(0.2)  # the first registration may cache the README too
            first_reg.append(timed(lambda c=cache: hash_path(folder, cache=c)))  # type: ignore[misc]
            readme.write_text(f"# bench model, round {r}, edited\n")
            again_reg.append(timed(lambda c=cache: hash_path(folder, cache=c)))  # type: ignore[misc]
            cache.close()

        rate = {n: cases[n][0] / statistics.median(s) / GB for n, s in seconds.items()}
        print(
            f"modelchain hashing benchmark: {platform.python_implementation()} "
            f"{platform.python_version()}, {os.cpu_count()} cores, median of {args.rounds}, "
            f"page cache warm"
        )
        print(
            f"single file {single_size / MiB:.0f} MiB; folder 4 x {part_size / MiB:.0f} MiB"
            f" + README; safetensors {st_size / MiB:.0f} MiB in 64 tensors\n"
        )
        width = max(map(len, cases))
        for name in cases:
            print(f"  {name:<{width}}  {rate[name]:6.2f} GB/s")
        print()

        checks = [
            ("single: modelchain / hashlib", "single modelchain", "single hashlib", 0.95),
            ("folder: modelchain / hashlib", "folder modelchain", "folder hashlib", 1.8),
            (
                "folder: modelchain / model-signing",
                "folder modelchain",
                "folder model-signing",
                1.5,
            ),
            (
                "single: modelchain blake3 / blake3 package",
                "single modelchain blake3",
                "single blake3 package",
                0.9,
            ),
        ]
        info = [
            ("single: model-signing / hashlib", "single model-signing", "single hashlib"),
            ("single: sharded / hashlib", "single modelchain sharded", "single hashlib"),
            ("folder: model-signing / hashlib", "folder model-signing", "folder hashlib"),
            (
                "folder: modelchain blake3 / blake3 package",
                "folder modelchain blake3",
                "folder blake3 package",
            ),
            (
                "safetensors: with tensors / file only",
                "safetensors with tensors",
                "safetensors file only",
            ),
        ]
        failed = 0
        for label, a, b, target in checks:
            ratio = rate[a] / rate[b]
            ok = ratio >= target
            failed += not ok
            print(f"  {label:<44} {ratio:5.2f}x  target >= {target:<4}  {'ok' if ok else 'MISSED'}")
        first, again = statistics.median(first_reg), statistics.median(again_reg)
        ratio = first / again
        ok = ratio >= 50
        failed += not ok
        print(
            f"  {'re-register after a README change':<44} {ratio:5.0f}x  target >= 50    "
            f"{'ok' if ok else 'MISSED'}  ({first * 1000:.0f} ms, then {again * 1000:.1f} ms)"
        )
        print()
        for label, a, b in info:
            print(f"  {label:<44} {rate[a] / rate[b]:5.2f}x")
        print(f"\n{failed} target(s) missed" if failed else "\nall targets met")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
