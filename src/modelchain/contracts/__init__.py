"""Deterministic contracts: the state machine every node runs over the log.

A ``ContractSet`` dispatches each transaction by type. Handlers read state
through a ``StateReader`` and write into a per-transaction overlay; a handler
that raises ``Rejected`` leaves no writes and the entry is logged as rejected.
"""

from __future__ import annotations

from .base import (
    Call,
    ContractSet,
    Handler,
    Overlay,
    Rejected,
    StateReader,
    TypeRule,
)
from .ledger import GENESIS, default_contracts, member_key

__all__ = [
    "GENESIS",
    "Call",
    "ContractSet",
    "Handler",
    "Overlay",
    "Rejected",
    "StateReader",
    "TypeRule",
    "default_contracts",
    "member_key",
]
