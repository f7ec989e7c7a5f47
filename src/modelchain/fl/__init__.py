"""Federated learning off the ledger: what anyone holding the updates computes
and the ledger records. ``arrays`` digests a list of arrays and recomputes an
aggregate bit for bit; ``attribution`` turns scores into shares that sum to one.
Both are pure (numpy in, values out) and are what a Flower strategy calls."""

from __future__ import annotations

__all__: list[str] = []
