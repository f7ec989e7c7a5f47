"""What the API's routes share: JSON written at any depth, cache headers."""

from __future__ import annotations

from typing import Any

from fastapi import Response

from ...core import jsontext

__all__ = ["IMMUTABLE", "NO_STORE", "JSONText"]

IMMUTABLE = {"Cache-Control": "public, max-age=31536000, immutable"}
NO_STORE = {"Cache-Control": "no-store"}


class JSONText(Response):
    """A JSON answer written by ``core.jsontext``: any depth of ledger value fits."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return jsontext.dumps(content, ensure_ascii=False, separators=(",", ":")).encode()
