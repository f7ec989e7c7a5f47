"""Sequencers: the global order of admitted transactions.

A sequencer orders envelopes; it does not choose log indexes. A node submits
batches of admitted envelopes (each gets a future of its positions in the
order) and consumes the ordered stream from a position on, applying it with
the executor; deduplication and the genesis rule are applied there, after
ordering, identically on every node. ``LocalSequencer`` is the embedded
ledger's in-process stream; ``MemorySequencer`` is one order shared by several
nodes in one process (what the etcd sequencer replaces).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol

from ..core.dsse import Envelope
from ..core.tx import Transaction

__all__ = ["Admitted", "LocalSequencer", "MemorySequencer", "Ordered", "Sequencer"]


@dataclass(frozen=True, slots=True)
class Admitted:
    """An envelope in the order, with its decoded transaction. ``checked``
    says its signatures were verified (by this node's admission); one that
    another node ordered is not, and is checked where it is executed."""

    envelope: Envelope
    tx: Transaction
    checked: bool = True


Ordered = tuple[int, Admitted]  # a position in the global order and what holds it


class Sequencer(Protocol):
    # Whether the order outlives this process: a node then keeps how far it
    # applied it with its entries and resumes from there.
    durable: bool

    def submit(self, batch: Sequence[Admitted]) -> Future[range]:
        """Put ``batch`` into the global order; the future resolves to its
        positions once they are decided (and, for a replicated order, durable)."""
        ...

    def read(self, start: int, limit: int, stop: threading.Event) -> list[Ordered]:
        """At most ``limit`` items of the order from position ``start`` on, in
        order; waits until there is one or ``stop`` is set (then maybe none)."""
        ...

    def wake(self) -> None:
        """Make readers waiting in ``read`` look at their ``stop`` event again."""
        ...

    def applied(self, position: int) -> None:
        """This node applied the order up to ``position`` (exclusive) durably."""
        ...


def _done(positions: range) -> Future[range]:
    fut: Future[range] = Future()
    fut.set_result(positions)
    return fut


class LocalSequencer:
    """The order of one node in one process: positions are assigned as
    batches arrive, and items are forgotten once read (one reader, no history)."""

    durable = False

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._items: deque[Admitted] = deque()
        self._first = 0  # position of _items[0]

    def submit(self, batch: Sequence[Admitted]) -> Future[range]:
        with self._cond:
            start = self._first + len(self._items)
            self._items.extend(batch)
            self._cond.notify_all()
        return _done(range(start, start + len(batch)))

    def read(self, start: int, limit: int, stop: threading.Event) -> list[Ordered]:
        with self._cond:
            items = self._items
            while start > self._first and items:  # read before: forget it
                items.popleft()
                self._first += 1
            while not items and not stop.is_set():
                self._cond.wait()
            count = min(limit, len(items))
            first = self._first
            got = [(first + i, items.popleft()) for i in range(count)]
            self._first += count
            return got

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def applied(self, position: int) -> None:
        pass


class MemorySequencer:
    """One global order in memory, read by every node attached to it: each
    reads the whole stream from its own position."""

    durable = False

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._items: list[Admitted] = []

    def submit(self, batch: Sequence[Admitted]) -> Future[range]:
        with self._cond:
            start = len(self._items)
            self._items.extend(batch)
            self._cond.notify_all()
        return _done(range(start, start + len(batch)))

    def read(self, start: int, limit: int, stop: threading.Event) -> list[Ordered]:
        with self._cond:
            while len(self._items) <= start and not stop.is_set():
                self._cond.wait()
            end = min(len(self._items), start + limit)
            return [(i, self._items[i]) for i in range(start, end)]

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def applied(self, position: int) -> None:
        pass

    def __len__(self) -> int:
        return len(self._items)
