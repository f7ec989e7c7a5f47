"""The node: admission, ordering, execution, storage and checkpoints of one
ledger, plus its verified replica and the audit that replays a log."""

from .sequencer import LocalSequencer, MemorySequencer, Sequencer
from .verifier import InlineVerifier, ProcessVerifier, SignatureVerifier, default_verifier

__all__ = [
    "InlineVerifier",
    "LocalSequencer",
    "MemorySequencer",
    "ProcessVerifier",
    "Sequencer",
    "SignatureVerifier",
    "default_verifier",
]
