"""Inference receipts: one verifiable, privately revealable record per model decision.

``ReceiptLog`` (``log``) records decisions into a journal (``journal``), batches them
into the receipt store (``store``, written on a thread or by a worker process:
``worker``) and submits one ``inference.batch`` per batch; ``verify`` checks a receipt
or a reveal offline; ``encoding`` is what a record's salted hashes commit to.
"""

from __future__ import annotations

from .encoding import RECEIPT_VERSION, decode_value, encode_value, salted_hash
from .log import DURABILITY, ReceiptLog
from .store import default_store
from .verify import reveal, verify_inference_receipt, verify_reveal

__all__ = [
    "DURABILITY",
    "RECEIPT_VERSION",
    "ReceiptLog",
    "decode_value",
    "default_store",
    "encode_value",
    "reveal",
    "salted_hash",
    "verify_inference_receipt",
    "verify_reveal",
]
