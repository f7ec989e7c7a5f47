"""DSSE envelopes: a payload, its type, and one or more signatures over the PAE.

Parsing is strict (standard base64, exact field set) so that a malformed
envelope is refused with a precise error before anything else looks at it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import Base64Error, MalformedError
from . import canonical
from .b64 import b64, unb64
from .identity import Signer, key_id

__all__ = ["Envelope", "EnvelopeSignature", "pae", "sign_envelope"]


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what signatures actually cover."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def _b64decode(text: object, what: str) -> bytes:
    return unb64(text, what, Base64Error, not_text=MalformedError)


@dataclass(frozen=True)
class EnvelopeSignature:
    """One DSSE signature; ``keyid`` is the signer's C2SP key id in hex."""

    keyid: str
    sig: bytes

    def to_json(self) -> dict[str, str]:
        return {"keyid": self.keyid, "sig": b64(self.sig)}


@dataclass(frozen=True)
class Envelope:
    payload_type: str
    payload: bytes
    signatures: tuple[EnvelopeSignature, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "payload": b64(self.payload),
            "payloadType": self.payload_type,
            "signatures": [s.to_json() for s in self.signatures],
        }

    def to_bytes(self) -> bytes:
        """Canonical JSON bytes of the envelope."""
        return canonical.dumps(self.to_json())

    def pae(self) -> bytes:
        return pae(self.payload_type, self.payload)

    def with_signature(self, signer: Signer) -> Envelope:
        """A copy with ``signer``'s signature added (multi-signature flows)."""
        return Envelope(self.payload_type, self.payload, (*self.signatures, _sign(self, signer)))

    @classmethod
    def from_json(cls, obj: object, allow_unsigned: bool = False) -> Envelope:
        """Parse an envelope; ``allow_unsigned`` accepts a draft awaiting signatures."""
        if not isinstance(obj, dict):
            raise MalformedError("a DSSE envelope must be a JSON object")
        extra = set(obj) - {"payload", "payloadType", "signatures"}
        if extra:
            raise MalformedError(f"unexpected envelope fields: {sorted(extra)}")
        ptype = obj.get("payloadType")
        if not isinstance(ptype, str):
            raise MalformedError("envelope payloadType must be a string")
        payload = _b64decode(obj.get("payload"), "envelope payload")
        sigs = obj.get("signatures")
        if not isinstance(sigs, list) or not (sigs or allow_unsigned):
            raise MalformedError("envelope needs a non-empty signatures list")
        parsed = []
        for s in sigs:
            if not isinstance(s, dict) or set(s) != {"keyid", "sig"}:
                raise MalformedError("each signature must be {keyid, sig}")
            if not isinstance(s["keyid"], str):
                raise MalformedError("signature keyid must be a string")
            parsed.append(EnvelopeSignature(s["keyid"], _b64decode(s["sig"], "signature")))
        return cls(ptype, payload, tuple(parsed))

    @classmethod
    def from_bytes(cls, data: bytes) -> Envelope:
        return cls.from_json(canonical.loads(data))


def _sign(env: Envelope, signer: Signer) -> EnvelopeSignature:
    kid = key_id(signer.name, 0x01, signer.public_key).hex()
    return EnvelopeSignature(kid, signer.sign(env.pae()))


def sign_envelope(payload_type: str, payload: bytes, signers: Iterable[Signer]) -> Envelope:
    env = Envelope(payload_type, payload, ())
    sigs = tuple(_sign(env, s) for s in signers)
    if not sigs:
        raise MalformedError("an envelope needs at least one signer")
    return Envelope(payload_type, payload, sigs)
