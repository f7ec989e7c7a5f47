"""Engines behind small protocols: sequencers (local now, etcd later) and anchors."""

from .sequencer import LocalSequencer, Sequencer

__all__ = ["LocalSequencer", "Sequencer"]
