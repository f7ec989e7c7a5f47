"""Signature verifiers: where the Ed25519 arithmetic of admission runs.

Neither PyNaCl nor cryptography releases the GIL while verifying, so on a
multi-core machine bulk admission sends batches of checks to worker processes
(plain subprocesses speaking a small pipe protocol, so nothing depends on how
the caller's program was started) and the node keeps its core for parsing,
executing and storing.
"""

from __future__ import annotations

import os
import queue
import struct
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from typing import BinaryIO, Protocol

from ..core.identity import verify_batch
from .workers import start_worker, stop_worker

__all__ = [
    "InlineVerifier",
    "ProcessVerifier",
    "SignatureVerifier",
    "decode_request",
    "default_verifier",
    "encode_request",
]

Check = tuple[bytes, bytes, bytes]  # (public key, message, signature)

# The pipe protocol of modelchain.node.verify_worker: a request is a uint32
# count then, per check, a 32-byte public key, a 64-byte signature, a uint32
# message length and the message; the answer is one byte per check.
_U32 = struct.Struct(">I")


def encode_request(checks: Sequence[tuple[bytes, bytes, bytes]]) -> bytes:
    parts = [_U32.pack(len(checks))]
    for public_key, message, signature in checks:
        if len(public_key) != 32 or len(signature) != 64:
            # never valid; keep the frame aligned and let the worker say no
            public_key, signature = bytes(32), bytes(64)
        parts += (public_key, signature, _U32.pack(len(message)), message)
    return b"".join(parts)


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    data = stream.read(n)
    if data is None or len(data) != n:
        raise EOFError
    return data


def decode_request(stream: BinaryIO) -> list[tuple[bytes, bytes, bytes]]:
    (count,) = _U32.unpack(_read_exact(stream, 4))
    checks = []
    for _ in range(count):
        head = _read_exact(stream, 100)
        (length,) = _U32.unpack(head[96:])
        checks.append((head[:32], _read_exact(stream, length), head[32:96]))
    return checks


class SignatureVerifier(Protocol):
    def verify_many(self, checks: Sequence[Check]) -> Future[list[bool]]:
        """Verify each (public key, message, signature); True where it holds.

        The future fails (never hangs) if the verifier breaks."""
        ...

    def close(self) -> None: ...


class InlineVerifier:
    """Verifies in the calling thread."""

    def verify_many(self, checks: Sequence[Check]) -> Future[list[bool]]:
        fut: Future[list[bool]] = Future()
        fut.set_result(verify_batch(checks))
        return fut

    def close(self) -> None:
        return None


class _Worker:
    """One worker process and the thread that feeds it, one batch at a time."""

    def __init__(self) -> None:
        self.jobs: queue.Queue[tuple[Sequence[Check], Future[list[bool]]] | None] = queue.Queue()
        self.proc = start_worker(["-m", "modelchain.node.verify_worker"])
        self.thread = threading.Thread(target=self._run, name="modelchain-verify", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        while (job := self.jobs.get()) is not None:
            checks, fut = job
            try:
                self.proc.stdin.write(encode_request(checks))
                self.proc.stdin.flush()
                answer = self.proc.stdout.read(len(checks))
                if len(answer) != len(checks):
                    raise OSError("the verification worker stopped")
                fut.set_result([b == 1 for b in answer])
            except BaseException as exc:
                fut.set_exception(exc)
                self._drain(exc)
                return

    def _drain(self, exc: BaseException) -> None:
        while True:
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                job[1].set_exception(exc)

    def close(self) -> None:
        self.jobs.put(None)
        self.thread.join()
        stop_worker(self.proc, 5)


class ProcessVerifier:
    """Verifies in worker processes, started on first use."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: list[_Worker] = []
        self._lock = threading.Lock()

    def verify_many(self, checks: Sequence[Check]) -> Future[list[bool]]:
        out: Future[list[bool]] = Future()
        try:
            with self._lock:
                if not self._pool:
                    self._pool = [_Worker() for _ in range(self.workers)]
                pool = list(self._pool)
        except OSError as exc:
            out.set_exception(exc)
            return out
        n = len(pool)
        parts = [list(checks[i::n]) for i in range(n)]
        futures: list[Future[list[bool]]] = []
        for worker, part in zip(pool, parts, strict=True):
            if part:
                f: Future[list[bool]] = Future()
                worker.jobs.put((part, f))
                futures.append(f)
        remaining = [len(futures)]
        lock = threading.Lock()

        def done(_f: Future[list[bool]]) -> None:
            with lock:
                remaining[0] -= 1
                if remaining[0]:
                    return
            try:
                results = [f.result() for f in futures]
            except BaseException as exc:
                out.set_exception(exc)
                return
            merged = [False] * len(checks)
            for i, part in enumerate(results):
                merged[i::n] = part
            out.set_result(merged)

        if not futures:
            out.set_result([])
        for f in futures:
            f.add_done_callback(done)
        return out

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, []
        for worker in pool:
            worker.close()


def default_verifier() -> SignatureVerifier:
    """Worker processes for all but one core; inline on a single core."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = (cores or 1) - 1
    return ProcessVerifier(workers) if workers >= 1 else InlineVerifier()
