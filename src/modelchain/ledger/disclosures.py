"""Personal fields, as the SDK sees them (contract-set version 8 on, ADR 18):
``led.disclosures``.

Building a transaction commits its personal fields (``contracts.personal``): each
non-empty value becomes ``{"_sd": DIGEST}`` and its disclosure goes to the disclosure
vault (``storage.vault``) of the ledger's home, or, on a served ledger, to the
server once the entry is logged. Reading reveals them: the value where the vault
holds it, ``[erased]`` where the ledger records the field's erasure (on every node),
``[withheld]`` where this side holds no disclosure (another organisation's entry).
Erasing (``led.artifacts.erase_fields``, or an artifact's erasure) records it on the
ledger, then ``shred`` destroys the disclosures.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from ..contracts.personal import PERSONAL_FIELDS, committed_fields
from ..contracts.state import erased_field_key
from ..contracts.versions import PERSONAL_VERSION, active_version
from ..core.canonical import JSONValue
from ..core.disclosure import (
    COMMITMENT_KEY,
    Disclosure,
    commitment,
    disclose,
    is_commitment,
    open_disclosure,
)
from ..core.tx import LogEntry, Transaction
from ..errors import MalformedError

if TYPE_CHECKING:
    from ..storage.vault import DisclosureVault

__all__ = ["ERASED", "MARK", "WITHHELD", "Disclosures"]

ERASED = "[erased]"  # what an erased personal field reads as, everywhere
WITHHELD = "[withheld]"  # a committed field whose disclosure this side does not hold
MARK = b'{"_sd":'  # how a commitment starts in canonical JSON


def _holds_commitment(value: object) -> bool:
    """Whether a commitment is anywhere in ``value``: a walk that copies nothing."""
    if isinstance(value, dict):
        if COMMITMENT_KEY in value:
            return True
        return any(isinstance(v, dict | list) and _holds_commitment(v) for v in value.values())
    if isinstance(value, list):
        return any(isinstance(v, dict | list) and _holds_commitment(v) for v in value)
    return False


class _State(Protocol):
    @property
    def size(self) -> int: ...

    def get_state(self, key: str) -> JSONValue | None: ...


class Disclosures:
    """The personal fields of a ledger's entries: commit, keep, reveal, shred.

    ``state`` gives the ledger's state as logged (never revealed), ``entry`` one
    logged entry, ``vault(create)`` this side's vault (None where there is none and
    ``create`` is false: reading makes no vault, nor a key). Every side keeps the
    disclosures of the transactions it builds in its own vault: an embedded ledger's
    is the ledger's, a client of a served ledger hands them over as well
    (``held_for``)."""

    def __init__(
        self,
        state: Callable[[], _State],
        entry: Callable[[int], LogEntry],
        vault: Callable[[bool], DisclosureVault | None],
    ) -> None:
        self._raw = state
        self._entry = entry
        self._open_vault = vault
        self._vault: DisclosureVault | None = None

    # -- writing -----------------------------------------------------------------

    def commits(self) -> bool:
        """Whether new transactions commit their personal fields (version 8 on)."""
        raw = self._raw()
        return active_version(raw, raw.size) >= PERSONAL_VERSION

    def commit(self, type_: str, body: dict[str, Any]) -> tuple[dict[str, Any], list[Disclosure]]:
        """``body`` with its non-empty personal fields committed, and their disclosures."""
        fields = PERSONAL_FIELDS.get(type_, ())
        made: list[Disclosure] = []
        if not fields:
            return body, made
        out = dict(body)
        for f in fields:
            value = out.get(f)
            if isinstance(value, str) and value != "":
                d = disclose(f, value, secrets.token_bytes(16))
                made.append(d)
                out[f] = commitment(d.digest)
        return out, made

    def keep(self, disclosures: Iterable[Disclosure]) -> None:
        """Put disclosures into this side's vault."""
        items = list(disclosures)
        if items:
            self.vault.put(items)

    def held_for(self, tx: Transaction) -> list[str]:
        """The disclosures this side's vault holds of ``tx``'s committed fields: what
        a client hands a server once ``tx`` is logged."""
        digests = committed_fields(tx).values()
        vault = self._existing_vault() if digests else None
        found = [vault.get(d) for d in digests] if vault is not None else []
        return [d.text for d in found if d is not None]

    def accept(self, index: int, texts: Sequence[object]) -> int:
        """Keep the disclosures a client sends for its logged entry ``index``: each must
        open, and commit to one of the entry's committed fields under that field's
        name (MalformedError otherwise; nothing kept). The number kept."""
        tx = self._entry(index).transaction
        wanted = committed_fields(tx)
        by_digest = {d: f for f, d in wanted.items()}
        opened = []
        for text in texts:
            d = open_disclosure(text)
            if by_digest.get(d.digest) != d.field:
                raise MalformedError(
                    f"a disclosure for field {d.field!r} commits to none of entry {index}'s "
                    "committed fields"
                )
            opened.append(d)
        self.keep(opened)
        return len(opened)

    # -- reading -----------------------------------------------------------------

    @property
    def vault(self) -> DisclosureVault:
        """This side's vault, made on first use (with the KEK, if that is new too)."""
        if self._vault is None:
            self._vault = self._open_vault(True)
            assert self._vault is not None
        return self._vault

    def _existing_vault(self) -> DisclosureVault | None:
        if self._vault is None:
            self._vault = self._open_vault(False)
        return self._vault

    def erasure(self, digest: str) -> dict[str, Any] | None:
        """The ledger's record of a committed field's erasure, or None."""
        found = self._raw().get_state(erased_field_key(digest))
        return found if isinstance(found, dict) else None

    def field(self, value: Any) -> Any:
        """A personal field's value: text as is; a commitment opened from the vault,
        else ``[erased]`` or ``[withheld]``."""
        if not is_commitment(value):
            return value
        digest = value["_sd"]
        if self.erasure(digest) is not None:
            return ERASED
        vault = self._existing_vault()
        found = vault.get(digest) if vault is not None else None
        if found is not None:
            return found.value
        return WITHHELD

    def reveal(self, value: Any) -> Any:
        """``value`` (any JSON) with every commitment in it replaced by ``field``;
        ``value`` itself, not a copy, where it holds none (most reads)."""
        return self._revealed(value) if _holds_commitment(value) else value

    def _revealed(self, value: Any) -> Any:
        if is_commitment(value):
            return self.field(value)
        if isinstance(value, dict):
            return {k: self._revealed(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._revealed(v) for v in value]
        return value

    # -- erasing -----------------------------------------------------------------

    def committed(self, index: int) -> dict[str, str]:
        """The committed fields of entry ``index``: {field: digest}."""
        return committed_fields(self._entry(index).transaction)

    def shred(self, digests: Iterable[str]) -> int:
        """Delete from this side's vault the disclosures of fields whose erasure the
        ledger records (idempotent: run it wherever a copy may live)."""
        doomed = [d for d in digests if self.erasure(d) is not None]
        vault = self._existing_vault() if doomed else None
        return vault.erase(doomed) if vault is not None else 0
