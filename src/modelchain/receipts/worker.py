"""The receipt worker: a process that writes batches from journal segments into the store,
so that their leaves and trees are built outside the interpreter that calls ``record()``.

One JSON line per segment each way. It is started like every modelchain worker
(``node.workers``), in the background, and used once it says it is ready; it exits when
its input closes (the log's process ended or stopped it).
"""

from __future__ import annotations

import select
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..core import canonical
from ..errors import StorageError
from ..node.workers import start_worker, stop_worker
from .journal import Parsed, parse_segment
from .store import BatchWriter, connect

__all__ = ["BatchWorker", "serve"]

_MAIN = "from modelchain.receipts.worker import serve; serve()"
_START_S = 60.0


class BatchWorker:
    """A running receipt worker for the store at ``store``; OSError if it cannot start."""

    def __init__(self, store: Path) -> None:
        self.proc = start_worker(["-c", _MAIN, str(store)], quiet=True)
        self._ready = False
        self._deadline = time.monotonic() + _START_S
        self.failed = False

    def ready(self) -> bool:
        if not self._ready and not self.failed:
            out = self.proc.stdout
            assert out is not None
            if select.select([out], [], [], 0)[0]:
                self._ready = out.readline() == b"ready\n"
                self.failed = not self._ready
            else:
                # sys.executable is not always a Python that can run us (an embedding
                # server, say): give up on one that never answers.
                self.failed = time.monotonic() > self._deadline
        return self._ready

    def persist(self, path: Path, plain: bool) -> Parsed:
        """Have the worker write a segment's batch; OSError if it is gone."""
        out, inp = self.proc.stdout, self.proc.stdin
        assert out is not None and inp is not None
        try:
            inp.write(canonical.dumps({"path": str(path), "plain": plain}) + b"\n")
            inp.flush()
            line = out.readline()
        except ValueError as exc:  # a closed pipe
            raise OSError(str(exc)) from exc
        if not line:
            raise OSError("the receipt worker exited")
        reply = canonical.loads(line)
        if not isinstance(reply, dict):
            raise OSError(f"the receipt worker answered {line!r}")
        if reply.get("error"):
            raise StorageError(str(reply["error"]))
        return Parsed(problem=reply.get("problem"), damaged=bool(reply.get("damaged")))

    def stop(self) -> None:
        stop_worker(self.proc, 60 if self._ready else 0)


def serve() -> None:
    """The worker process: for each segment named on stdin, write its batch to the
    store named by argv[1] and answer one line."""
    path = Path(sys.argv[1])
    db = connect(path)
    writer = BatchWriter(db, threading.Lock(), path)
    out = sys.stdout.buffer
    out.write(b"ready\n")
    out.flush()
    for line in sys.stdin.buffer:
        reply: dict[str, Any]
        try:
            req = canonical.loads(line)
            with open(req["path"], "rb") as f:
                parsed = parse_segment(f.read(), plain=bool(req["plain"]))
            writer.store(parsed)
            reply = {"damaged": parsed.damaged, "problem": parsed.problem}
        except Exception as exc:  # reported to the log, which keeps the segment
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        out.write(canonical.dumps(reply) + b"\n")
        out.flush()
    db.close()
