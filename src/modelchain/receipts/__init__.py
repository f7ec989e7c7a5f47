"""Inference receipts: one verifiable, privately revealable record per model decision."""

from __future__ import annotations

from .log import (
    DURABILITY,
    RECEIPT_VERSION,
    ReceiptLog,
    decode_value,
    encode_value,
    reveal,
    salted_hash,
    verify_inference_receipt,
    verify_reveal,
)
from .log import (
    _build_batch as _build_batch,  # the leaf tests; moves to receipts.journal
)
from .log import (
    _Session as _Session,
)

__all__ = [
    "DURABILITY",
    "RECEIPT_VERSION",
    "ReceiptLog",
    "decode_value",
    "encode_value",
    "reveal",
    "salted_hash",
    "verify_inference_receipt",
    "verify_reveal",
]
