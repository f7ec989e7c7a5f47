"""The port: what the facades (``datasets``, ``runs``, ``models``, ``deployments``,
``members``, ``policies``, ``lineage``, ``trail``) and receipts need of a ledger.

Submit, state and log reads, blobs, the clock, the default signer and the origin.
``Ledger`` provides it over any backend; the facades never see the backend or
its concrete store.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from ..contracts import ContractSet
from ..core.canonical import JSONValue
from ..core.dsse import Envelope
from ..core.identity import Signer
from ..core.tlogproof import TlogProof
from ..core.tx import LogEntry, Transaction
from ..errors import RejectedError, UsageError
from ..node.node import Ack
from ..storage.protocols import BlobStore
from .disclosures import Disclosures

__all__ = ["LedgerPort", "LedgerReads", "accepted", "rejection", "signer_of"]


class LedgerReads(Protocol):
    """The reads of a ledger's log and derived state, as verified on this side."""

    @property
    def size(self) -> int: ...

    def get_state(self, key: str) -> JSONValue | None: ...

    def state_prefix(self, prefix: str) -> Iterator[tuple[str, bytes]]: ...

    def entry(self, index: int) -> bytes: ...

    def entries(self, start: int = 0, end: int | None = None) -> Iterator[tuple[int, bytes]]: ...

    def indexed(self) -> int: ...

    def find(
        self,
        start: int,
        end: int,
        limit: int,
        *,
        actors: Sequence[str] | None = None,
        type_prefix: str | None = None,
        type_: str | None = None,
        accepted: bool | None = None,
        since: int | None = None,
        until: int | None = None,
        exclude: Sequence[str] = (),
    ) -> list[int]: ...

    def nonce_index(self, nonce: str) -> int | None: ...


class LedgerPort(Protocol):
    """What a facade may ask of the ledger it serves."""

    @property
    def origin(self) -> str: ...

    @property
    def identity(self) -> Signer | None:
        """The default signer of the facades' calls."""
        ...

    @property
    def home(self) -> Path:
        """Where off-ledger secrets and caches of this client live (record keys,
        the digest cache); given by the caller, never read from the environment here."""
        ...

    @property
    def contracts(self) -> ContractSet: ...

    @property
    def store(self) -> LedgerReads: ...

    @property
    def blobs(self) -> BlobStore: ...

    @property
    def disclosures(self) -> Disclosures:
        """Committed personal fields: their disclosures, erasures and reveal."""
        ...

    @property
    def size(self) -> int: ...

    def clock(self) -> int: ...

    def transaction(
        self, type: str, body: dict[str, Any], actor: str, nonce: str | None = None
    ) -> Transaction: ...

    def submit(self, envelope: Envelope | bytes) -> Ack: ...

    def submit_many(self, envelopes: Iterable[Envelope | bytes]) -> list[Ack]: ...

    def entry(self, index: int) -> LogEntry: ...

    def entry_bytes(self, index: int) -> bytes: ...

    def tlog_proof(self, index: int) -> TlogProof: ...


def signer_of(port: LedgerPort, signer: Signer | None) -> Signer:
    """``signer``, else the ledger's default identity."""
    found = signer or port.identity
    if found is None:
        raise UsageError("no signer: pass signer=... or open the ledger with identity=...")
    return found


def rejection(ack: Ack, what: str, clause: str | None = None) -> RejectedError:
    """The error for a rejected ``ack``: "<what> (<code>): <reason>[; the clause
    that failed: <clause>]; the rejection is entry N". The one place a rejected
    acknowledgement becomes an error."""
    failed = f"; the clause that failed: {clause}" if clause else ""
    return RejectedError(
        f"{what} ({ack.outcome.code}): {ack.outcome.reason}{failed}; "
        f"the rejection is entry {ack.index}",
        ack.index,
        ack.outcome.code,
    )


def accepted(ack: Ack, what: str) -> Ack:
    """``ack`` if a contract accepted its entry; else raise ``rejection(ack, what)``."""
    if not ack.outcome.accepted:
        raise rejection(ack, what)
    return ack
