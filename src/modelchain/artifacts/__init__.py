"""Model and dataset artifacts on disk: hashing them into manifests, verifying them, and
naming their format."""

from __future__ import annotations

from .cache import DigestCache, default_cache
from .formats import FORMATS, detect_format
from .hashing import DEFAULT_IGNORES, Progress, hash_path, verify_path

__all__ = [
    "DEFAULT_IGNORES",
    "FORMATS",
    "DigestCache",
    "Progress",
    "default_cache",
    "detect_format",
    "hash_path",
    "verify_path",
]
