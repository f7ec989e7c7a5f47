"""A signature-verification worker process: ``python -m modelchain.node.verify_worker``.

Reads batches of signature checks from stdin and answers on stdout, one byte
per check (1 where it verifies); the framing is in modelchain.node.verifier.
"""

from __future__ import annotations

import sys
from typing import BinaryIO

from ..core.identity import verify_batch
from .verifier import decode_request

__all__ = ["serve"]


def serve(stdin: BinaryIO, stdout: BinaryIO) -> None:
    while True:
        try:
            checks = decode_request(stdin)
        except EOFError:
            return
        stdout.write(bytes(verify_batch(checks)))
        stdout.flush()


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
