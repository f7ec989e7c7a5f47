"""Benchmark: putting a file into the local artifact store and pulling it back, against a
plain file copy of the same bytes, page cache warm; and peak memory while moving it.

    python bench/store.py              # a 2 GiB file, medians of 3 (about 1 minute on 2 cores)
    python bench/store.py --size 256   # a 256 MiB file, for a quicker look

In the same run, interleaved round by round: ``shutil.copyfile`` (the ceiling: the
kernel copies, nothing is hashed), the same copy followed by fsync (what the store
does to keep an object durable), a copy through user space (read, write, fsync: what
any copy that looks at the bytes does), hashing alone (``hash_path``), a put (``hash_path``
with the store as its tee: one read, hashed and written, fsynced, renamed under its
digest) and a get (``pull_manifest``: fetched, hashed against the manifest, fsynced,
moved into place). Peak memory is measured in a fresh process (VmHWM less the resident
size before the work) while it puts the file and pulls it back.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from modelchain.artifacts.hashing import hash_path
from modelchain.storage.artifacts import open_store, pull_manifest

MiB = 1 << 20
GB = 1e9

CHILD = """
import os, sys
from modelchain.artifacts.hashing import hash_path
from modelchain.storage.artifacts import open_store, pull_manifest

src, work = sys.argv[1], sys.argv[2]
store = open_store(os.path.join(work, "mem-store"))
small = os.path.join(work, "small.bin")
with open(small, "wb") as f:
    f.write(os.urandom(1 << 20))
pull_manifest([store], hash_path(small, tee=store), os.path.join(work, "mem-warm"))
base = int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
manifest = hash_path(src, tee=store)
pull_manifest([store], manifest, os.path.join(work, "mem-out"))
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(int(status["VmHWM"].split()[0]) * 1024 - base)
"""


def write_file(path: Path, size: int) -> None:
    """Real content, cheaply: one random MiB, each copy numbered."""
    block = bytearray(os.urandom(MiB))
    with open(path, "wb") as f:
        for i in range(size // MiB):
            block[:8] = i.to_bytes(8, "little")
            f.write(block)


def warm(path: Path) -> None:
    buf = bytearray(16 * MiB)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buf):
            pass


def copy_fsync(src: Path, dst: Path) -> None:
    shutil.copyfile(src, dst)
    fd = os.open(dst, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_write_fsync(src: Path, dst: Path) -> None:
    """A copy through user space, as a store must make one to hash it, made durable."""
    buf = bytearray(4 * MiB)
    with open(src, "rb", buffering=0) as f, open(dst, "wb", buffering=0) as g:
        while n := f.readinto(buf):
            g.write(memoryview(buf)[:n])
        os.fsync(g.fileno())


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size", type=int, default=2048, help="file size in MiB (default 2048)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where to write the temporary files")
    args = ap.parse_args()
    size = args.size * MiB

    tmp = Path(tempfile.mkdtemp(prefix="modelchain-bench-store-", dir=args.dir))
    try:
        src = tmp / "model.bin"
        write_file(src, size)
        store_dir = tmp / "store"
        store = open_store(store_dir)
        manifest = hash_path(src)

        def clear_store() -> None:
            shutil.rmtree(store_dir, ignore_errors=True)

        def clear_out() -> None:
            shutil.rmtree(tmp / "out", ignore_errors=True)
            if not store.has(ref):
                hash_path(src, tee=store)  # the object to get

        def nothing() -> None:
            (tmp / "copy.bin").unlink(missing_ok=True)

        ref = f"{manifest.algorithm}:{manifest.files[0].digest}"
        # name -> (what to do before the clock starts, what is timed)
        cases: dict[str, tuple[Callable[[], None], Callable[[], object]]] = {
            "copy (shutil.copyfile)": (nothing, lambda: shutil.copyfile(src, tmp / "copy.bin")),
            "copy + fsync": (nothing, lambda: copy_fsync(src, tmp / "copy.bin")),
            "read + write + fsync": (nothing, lambda: read_write_fsync(src, tmp / "copy.bin")),
            "hash only": (nothing, lambda: hash_path(src)),
            "put (hash + store, one read)": (clear_store, lambda: hash_path(src, tee=store)),
            "get (fetch + verify + place)": (
                clear_out,
                lambda: pull_manifest([store], manifest, tmp / "out"),
            ),
        }
        seconds: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, (prepare, fn) in cases.items():
                prepare()
                os.sync()  # no write-back left over from the case before
                warm(src)
                seconds[name].append(timed(fn))

        child = subprocess.run(
            [sys.executable, "-c", CHILD, str(src), str(tmp)],
            capture_output=True,
            text=True,
            check=True,
        )
        peak = int(child.stdout.split()[-1])

        rate = {n: size / statistics.median(s) / GB for n, s in seconds.items()}
        print(
            f"modelchain artifact store benchmark: {platform.python_implementation()} "
            f"{platform.python_version()}, {os.cpu_count()} cores, median of {args.rounds}, "
            f"page cache warm, one {size / MiB:.0f} MiB file, local store on the same disk\n"
        )
        width = max(map(len, cases))
        for name in cases:
            median = statistics.median(seconds[name])
            print(f"  {name:<{width}}  {rate[name]:6.2f} GB/s  ({median:.2f} s)")
        print()
        copy = rate["copy (shutil.copyfile)"]
        put_ratio = rate["put (hash + store, one read)"] / copy
        ok_put = put_ratio >= 0.9
        ok_mem = peak < 64 * MiB
        verdict = "ok" if ok_put else "MISSED"
        print(f"  {'put / copy':<28} {put_ratio:5.2f}x  target >= 0.9   {verdict}")
        print(
            f"  {'peak memory moving the file':<28} {peak / MiB:5.1f} MiB  target < 64 MiB  "
            f"{'ok' if ok_mem else 'MISSED'}"
        )
        print()
        synced = rate["copy + fsync"]
        user = rate["read + write + fsync"]
        for label, value in (
            ("get / copy", rate["get (fetch + verify + place)"] / copy),
            ("put / (copy + fsync)", rate["put (hash + store, one read)"] / synced),
            ("put / (read+write+fsync)", rate["put (hash + store, one read)"] / user),
            ("get / (copy + fsync)", rate["get (fetch + verify + place)"] / synced),
            ("put / hash only", rate["put (hash + store, one read)"] / rate["hash only"]),
        ):
            print(f"  {label:<28} {value:5.2f}x")
        failed = (not ok_put) + (not ok_mem)
        print(f"\n{failed} target(s) missed" if failed else "\nall targets met")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
