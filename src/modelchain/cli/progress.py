"""Progress on stderr for the CLI's long work (hashing, auditing, batches).

Drawn on a terminal; anywhere else only when asked for, with ``--progress``
(in any position on the command line) or ``$MODELCHAIN_PROGRESS=1``.
"""

from __future__ import annotations

import os
import sys
import time
from types import TracebackType
from typing import Literal

import click

__all__ = ["PROGRESS_ENV", "ProgressLine", "progress_forced", "size_text"]

PROGRESS_ENV = "MODELCHAIN_PROGRESS"


def progress_forced() -> bool:
    """Whether progress was asked for outside a terminal: ``--progress`` or
    ``$MODELCHAIN_PROGRESS=1``."""
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root().obj if ctx is not None else None
    if isinstance(root, dict) and root.get("progress"):
        return True
    return os.environ.get(PROGRESS_ENV) == "1"


def size_text(n: float) -> str:
    """A byte count as people read it: ``512 B``, ``1.5 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


class ProgressLine:
    """Work done, total and rate on stderr, called as ``progress(done, total)``.

    On a terminal the line is redrawn in place at most 10 times a second, and
    only for work of at least ``min_total`` (small work finishes before a bar
    would help). When forced (``progress_forced``) it is drawn whatever the
    size, and off a terminal as whole lines at most once a second, so that a
    CI log gets readable lines rather than carriage returns."""

    def __init__(
        self, label: str, unit: Literal["bytes", "items"] = "items", min_total: int = 0
    ) -> None:
        self.label = label
        self.unit = unit
        self.min_total = min_total
        self.forced = progress_forced()
        self.terminal = sys.stderr.isatty()
        self._start = time.monotonic()
        self._last = -1.0
        self._last_done = -1
        self._drawn = False

    def enabled(self, total: int) -> bool:
        return self.forced or (self.terminal and total >= self.min_total)

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled(total) or done == self._last_done:
            return
        now = time.monotonic()
        interval = 0.1 if self.terminal else 1.0
        if self._drawn and now - self._last < interval and done < total:
            return
        self._last, self._last_done = now, done
        rate = done / max(now - self._start, 1e-6)
        width = 30
        filled = width if total <= 0 else min(width, int(width * done / total))
        bar = "#" * filled + "." * (width - filled)
        if self.unit == "bytes":
            amounts = f"{size_text(done)} / {size_text(total)}  {size_text(rate)}/s"
        else:
            amounts = f"{done} / {total}  {rate:.0f}/s"
        line = f"{self.label} [{bar}] {amounts}"
        sys.stderr.write(f"\r{line} " if self.terminal else f"{line}\n")
        sys.stderr.flush()
        self._drawn = True

    def close(self) -> None:
        """End the line that was redrawn in place, if any."""
        if self._drawn and self.terminal:
            sys.stderr.write("\n")
            sys.stderr.flush()
        self._drawn = False

    def __enter__(self) -> ProgressLine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
