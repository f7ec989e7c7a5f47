"""Sequencers: what assigns a global order to admitted transactions.

Ordering is kept apart from storage so that an embedded ledger (this local
counter) and a replicated one (etcd revisions) share the same node.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["LocalSequencer", "Sequencer"]


class Sequencer(Protocol):
    def sequence(self, count: int) -> int:
        """Reserve ``count`` consecutive log indexes; return the first."""
        ...

    def release(self, first: int, count: int) -> None:
        """Give back a reservation whose batch could not be stored."""
        ...


class LocalSequencer:
    """Single-process order: the next index after the store's durable size."""

    def __init__(self, next_index: int) -> None:
        self._next = next_index

    def sequence(self, count: int) -> int:
        first = self._next
        self._next += count
        return first

    def release(self, first: int, count: int) -> None:
        # Only the most recent reservation can be returned; anything else
        # would leave a hole in the log.
        if first + count != self._next:
            raise RuntimeError("only the latest reservation can be released")
        self._next = first
