"""Deterministic contracts: the state machine every node runs over the log.

A ``ContractSet`` dispatches each transaction by type. Handlers read state
through a ``StateReader`` and write into a per-transaction overlay; a handler
that raises ``Rejected`` leaves no writes and the entry is logged as rejected.
Type names are in ``contracts.types``, state keys in ``contracts.state``, the
genesis rules in ``contracts.genesis``, contract-set versions in
``contracts.versions``.
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
from .ledger import default_contracts
from .state import member_key
from .types import GENESIS
from .versions import CURRENT_VERSION, KNOWN_VERSIONS

__all__ = [
    "CURRENT_VERSION",
    "GENESIS",
    "KNOWN_VERSIONS",
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
