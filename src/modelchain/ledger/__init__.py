"""The Python API of a ledger: ``Ledger`` (embedded or remote) and the
facades it offers (datasets, runs, models, deployments, members, policies)."""

from .ledger import DB_NAME, LOG_KEY_NAME, Founder, Ledger, init, new_nonce, open

__all__ = ["DB_NAME", "LOG_KEY_NAME", "Founder", "Ledger", "init", "new_nonce", "open"]
