"""modelchain: a verifiable provenance ledger for ML models and datasets.

``modelchain.open(path)`` returns an embedded ledger; ``modelchain.init`` makes
one. Everything else is reached through those objects or the CLI.
"""

from .core.identity import Signer, VerifierKey
from .errors import Error
from .ledger import Founder, Ledger, init, open
from .service.node import Ack

__all__ = ["Ack", "Error", "Founder", "Ledger", "Signer", "VerifierKey", "init", "open"]
__version__ = "0.1.0"
