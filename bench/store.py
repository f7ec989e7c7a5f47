"""Benchmark: putting a file into the local artifact store and pulling it back, against a
plain file copy of the same bytes, page cache warm; and peak memory while moving it.

    python bench/store.py              # a 2 GiB file, medians of 3 (about 1 minute on 2 cores)
    python bench/store.py --size 256   # a 256 MiB file, for a quicker look
    python bench/store.py --algorithm blake3   # files' digests by BLAKE3 instead of SHA-256

In the same run, interleaved round by round: ``shutil.copyfile`` (the ceiling: the
kernel copies, nothing is hashed), the same copy followed by fsync (what the store
does to keep an object durable), a copy through user space (read, write, fsync: what
any copy that looks at the bytes does), hashing alone (``hash_path``), a put (``hash_path``
with the store as its tee: one read, hashed and written, fsynced, renamed under its
digest) and a get (``pull_manifest``: fetched, hashed against the manifest, fsynced,
moved into place). Encrypted (ADR 17): a put (``encrypt_file``: read once, plaintext
hashed against its digest, Tink's streaming AEAD, ciphertext hashed, written, fsynced,
renamed; ``register --encrypt`` hashes the file first, so its cost is "hash only" plus
this) and a get (``pull_manifest`` decrypting: ciphertext read and hashed, every segment
authenticated, plaintext hashed against the manifest, fsynced, moved into place). Peak
memory is measured in fresh processes (VmHWM less the resident size before the work)
while each puts the file and pulls it back, plain and encrypted.
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
from typing import Any

from modelchain.artifacts.hashing import hash_path
from modelchain.storage.artifacts import open_store, pull_manifest
from modelchain.storage.crypt import associated_data, decrypt_object, encrypt_file, new_data_key

MiB = 1 << 20
GB = 1e9

CHILD = """
import os, shutil, sys
from modelchain.artifacts.hashing import hash_path
from modelchain.storage.artifacts import open_store, pull_manifest
from modelchain.storage.crypt import associated_data, encrypt_file, new_data_key
sys.path.insert(0, os.path.dirname(sys.argv[4]))
from store import decrypting

src, work, mode, algorithm = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[5]
store = open_store(os.path.join(work, "mem-store-" + mode))
key = new_data_key()

def move(path, out):
    # Hashed with the store as its tee, even to encrypt: alone, a big file's BLAKE3 is
    # memory-mapped, and its mapped pages would count as the process's memory.
    manifest = hash_path(path, algorithm=algorithm, tee=store)
    ref = f"{manifest.algorithm}:{manifest.files[0].digest}"
    if mode == "plain":
        pull_manifest([store], manifest, out)
        return
    cref, csize = encrypt_file(store, path, ref, key, associated_data("model", "m", 1, ref))
    fetch = decrypting(cref, csize, key, associated_data("model", "m", 1, ref))
    pull_manifest([store], manifest, out, fetch_object=fetch)

small = os.path.join(work, "small.bin")
with open(small, "wb") as f:
    f.write(os.urandom(1 << 20))
move(small, os.path.join(work, "mem-warm-" + mode))
base = int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
move(src, os.path.join(work, "mem-out-" + mode))
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
print(int(status["VmHWM"].split()[0]) * 1024 - base)
shutil.rmtree(os.path.join(work, "mem-out-" + mode), ignore_errors=True)
shutil.rmtree(os.path.join(work, "mem-store-" + mode), ignore_errors=True)
"""


def decrypting(cref: str, csize: int, key: bytes, ad: bytes) -> Any:
    """A pull's way to fetch the one encrypted object (as ``led.artifacts.pull`` does)."""

    def fetch(stores: Any, ref: str, size: int, shown: str, path: Path, *_: Any) -> str:
        decrypt_object(stores[0], cref, csize, ref, size, key, ad, path)
        return str(stores[0].url)

    return fetch


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
    ap.add_argument(
        "--algorithm",
        default="sha256",
        choices=["sha256", "blake3"],
        help="the files' digest algorithm (default sha256; an encrypted object's own "
        "address is the SHA-256 of its ciphertext either way)",
    )
    args = ap.parse_args()
    algorithm = args.algorithm
    size = args.size * MiB

    tmp = Path(tempfile.mkdtemp(prefix="modelchain-bench-store-", dir=args.dir))
    try:
        src = tmp / "model.bin"
        write_file(src, size)
        store_dir = tmp / "store"
        store = open_store(store_dir)
        manifest = hash_path(src, algorithm=algorithm)

        def clear_store() -> None:
            shutil.rmtree(store_dir, ignore_errors=True)

        def clear_out() -> None:
            shutil.rmtree(tmp / "out", ignore_errors=True)
            if not store.has(ref):
                hash_path(src, algorithm=algorithm, tee=store)  # the object to get

        def nothing() -> None:
            (tmp / "copy.bin").unlink(missing_ok=True)

        ref = f"{manifest.algorithm}:{manifest.files[0].digest}"
        key = new_data_key()
        ad = associated_data("model", "m", 1, ref)
        cstore = open_store(tmp / "cstore")
        sealed: list[tuple[str, int]] = []

        def clear_cstore() -> None:
            shutil.rmtree(tmp / "cstore", ignore_errors=True)
            sealed.clear()

        def put_encrypted() -> None:
            sealed.append(encrypt_file(cstore, src, ref, key, ad))

        def clear_cout() -> None:
            shutil.rmtree(tmp / "cout", ignore_errors=True)
            if not sealed:
                put_encrypted()

        def get_encrypted() -> None:
            fetch = decrypting(sealed[-1][0], sealed[-1][1], key, ad)
            pull_manifest([cstore], manifest, tmp / "cout", fetch_object=fetch)

        # name -> (what to do before the clock starts, what is timed)
        cases: dict[str, tuple[Callable[[], None], Callable[[], object]]] = {
            "copy (shutil.copyfile)": (nothing, lambda: shutil.copyfile(src, tmp / "copy.bin")),
            "copy + fsync": (nothing, lambda: copy_fsync(src, tmp / "copy.bin")),
            "read + write + fsync": (nothing, lambda: read_write_fsync(src, tmp / "copy.bin")),
            "hash only": (nothing, lambda: hash_path(src, algorithm=algorithm)),
            "put (hash + store, one read)": (
                clear_store,
                lambda: hash_path(src, algorithm=algorithm, tee=store),
            ),
            "get (fetch + verify + place)": (
                clear_out,
                lambda: pull_manifest([store], manifest, tmp / "out"),
            ),
            "put encrypted (encrypt + store)": (clear_cstore, put_encrypted),
            "get encrypted (decrypt + verify)": (clear_cout, get_encrypted),
        }
        seconds: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, (prepare, fn) in cases.items():
                prepare()
                os.sync()  # no write-back left over from the case before
                warm(src)
                seconds[name].append(timed(fn))

        shutil.rmtree(tmp / "out", ignore_errors=True)
        shutil.rmtree(tmp / "cout", ignore_errors=True)
        shutil.rmtree(store_dir, ignore_errors=True)
        shutil.rmtree(tmp / "cstore", ignore_errors=True)
        peaks = {}
        for mode in ("plain", "encrypted"):
            child = subprocess.run(
                [sys.executable, "-c", CHILD, str(src), str(tmp), mode, __file__, algorithm],
                capture_output=True,
                text=True,
                check=True,
            )
            peaks[mode] = int(child.stdout.split()[-1])
        peak = max(peaks.values())

        rate = {n: size / statistics.median(s) / GB for n, s in seconds.items()}
        print(
            f"modelchain artifact store benchmark: {platform.python_implementation()} "
            f"{platform.python_version()}, {os.cpu_count()} cores, median of {args.rounds}, "
            f"{algorithm} digests, page cache warm, one {size / MiB:.0f} MiB file, "
            "local store on the same disk\n"
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
        enc_put = rate["put encrypted (encrypt + store)"] / copy
        enc_get = rate["get encrypted (decrypt + verify)"] / copy
        ok_enc = enc_put >= 0.7 and enc_get >= 0.7
        for label, value in (("encrypted put / copy", enc_put), ("encrypted get / copy", enc_get)):
            print(
                f"  {label:<28} {value:5.2f}x  target >= 0.7   {'ok' if value >= 0.7 else 'MISSED'}"
            )
        for mode, value in peaks.items():
            print(
                f"  {'peak memory, ' + mode:<28} {value / MiB:5.1f} MiB  target < 64 MiB  "
                f"{'ok' if value < 64 * MiB else 'MISSED'}"
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
        enc_hash = (
            size
            / (
                statistics.median(seconds["hash only"])
                + statistics.median(seconds["put encrypted (encrypt + store)"])
            )
            / GB
        )
        print(
            f"  {'register --encrypt (hash, then put encrypted)':<28} {enc_hash:6.2f} GB/s, "
            f"{enc_hash / copy:5.2f}x copy"
        )
        failed = (not ok_put) + (not ok_mem) + (not ok_enc)
        print(f"\n{failed} target(s) missed" if failed else "\nall targets met")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
