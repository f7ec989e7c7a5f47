"""modelchain: a verifiable provenance ledger for ML models and datasets.

``modelchain.open(path)`` returns an embedded ledger; ``modelchain.init`` makes
one. Everything else is reached through those objects or the CLI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .core.identity import Signer, VerifierKey
from .errors import Error
from .ledger.ledger import Founder, Ledger, init, open
from .node.node import Ack

if TYPE_CHECKING:
    from .ledger.remote import RemoteLedger

__all__ = [
    "Ack",
    "Error",
    "Founder",
    "Ledger",
    "Signer",
    "VerifierKey",
    "connect",
    "init",
    "open",
]


def connect(url: str, identity: Signer | None = None, **kwargs: Any) -> RemoteLedger:
    """The ledger served at ``url``, with the interface of ``open(path)``; every
    answer is verified against checkpoints signed by the log key (see
    ``modelchain.ledger.remote``)."""
    from .ledger.remote import connect as _connect

    return _connect(url, identity, **kwargs)


__version__ = "0.1.0"
