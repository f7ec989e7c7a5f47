"""The Python API of a ledger: ``Ledger`` over a backend (``LocalBackend``, or
``remote.RemoteBackend`` through ``modelchain.connect``) and the facades it
offers over a narrow port (datasets, runs, models, deployments, members,
policies, fl, lineage, trail)."""

from .backend import Backend
from .ledger import DB_NAME, LOG_KEY_NAME, Founder, Ledger, default_home, init, new_nonce, open
from .local import LocalBackend
from .port import LedgerPort, LedgerReads

__all__ = [
    "DB_NAME",
    "LOG_KEY_NAME",
    "Backend",
    "Founder",
    "Ledger",
    "LedgerPort",
    "LedgerReads",
    "LocalBackend",
    "default_home",
    "init",
    "new_nonce",
    "open",
]
