"""Worker processes: the one way modelchain starts a helper Python process and stops it.

Signature verification (``node.verifier``) and receipt batches (``receipts.worker``)
each run plain subprocesses of this interpreter that speak a small protocol over stdin
and stdout and exit when stdin closes; nothing depends on how the caller's program was
started (no multiprocessing, which re-imports ``__main__``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["start_worker", "stop_worker"]

# The folder that holds the modelchain package, put first on the worker's PYTHONPATH: the
# worker imports this modelchain, however the caller put it on sys.path.
_SOURCE_ROOT = str(Path(__file__).resolve().parent.parent.parent)


def start_worker(argv: Sequence[str], *, quiet: bool = False) -> subprocess.Popen[bytes]:
    """Start ``python ARGV...`` with pipes on its stdin and stdout; OSError if it cannot.

    The worker runs in its own session, so a Ctrl-C meant for the caller does not cut a
    job short: the caller stops it by closing its stdin (``stop_worker``), and its stdin
    closes anyway when the caller dies. ``quiet`` sends its stderr nowhere, for workers
    started inside someone else's program (where ``sys.executable`` may not even be a
    Python, and its complaints are not the user's business)."""
    if not sys.executable:
        raise OSError("no Python executable to start")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_SOURCE_ROOT, env.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL if quiet else None,
        env=env,
        start_new_session=True,
    )


def stop_worker(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Close the worker's pipes (its signal to finish), wait up to ``timeout`` seconds
    for it to exit, then kill it."""
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            with contextlib.suppress(OSError):  # BrokenPipeError: the worker died first
                pipe.close()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
