"""Engines behind small protocols: sequencers (local now, etcd later) and anchors."""

from .sequencer import LocalSequencer, Sequencer
from .verifier import InlineVerifier, ProcessVerifier, SignatureVerifier, default_verifier

__all__ = [
    "InlineVerifier",
    "LocalSequencer",
    "ProcessVerifier",
    "Sequencer",
    "SignatureVerifier",
    "default_verifier",
]
