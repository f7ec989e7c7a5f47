"""The Annex IV document as typed values: statements citing entries, sections,
what only the provider can say; read back from JSON and written as JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...errors import MalformedError, NotFoundError
from .._evidence import CheckpointRef, CitedEntry

__all__ = [
    "ANNEX_IV_FORMAT",
    "REGULATION",
    "TO_COMPLETE",
    "AnnexIV",
    "ProviderItem",
    "Section",
    "Statement",
    "render_json",
]

ANNEX_IV_FORMAT = "modelchain.dev/annex-iv/v1"
TO_COMPLETE = "to be completed by the provider"
REGULATION = "Regulation (EU) 2024/1689 (AI Act), Annex IV"


@dataclass(frozen=True)
class Statement:
    """One fact, in words and as data, and the entries that prove it."""

    kind: str
    text: str
    entries: tuple[int, ...]
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "text": self.text,
            "entries": list(self.entries),
            "data": dict(self.data),
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Statement:
        return cls(obj["kind"], obj["text"], tuple(obj["entries"]), dict(obj["data"]))


@dataclass(frozen=True)
class ProviderItem:
    """Something Annex IV asks for that only the provider can say."""

    point: str  # e.g. "1(a)"
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"point": self.point, "text": self.text, "status": TO_COMPLETE}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> ProviderItem:
        return cls(obj["point"], obj["text"])


@dataclass(frozen=True)
class Section:
    """A part of the document the ledger fills, and the Annex IV points it serves."""

    number: int
    key: str
    title: str
    annex: tuple[str, ...]
    statements: tuple[Statement, ...]
    notes: tuple[str, ...]  # what the ledger does not hold; absence has no inclusion proof
    to_complete: tuple[ProviderItem, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "key": self.key,
            "title": self.title,
            "annex_iv": list(self.annex),
            "statements": [s.to_json() for s in self.statements],
            "notes": list(self.notes),
            "to_complete": [p.to_json() for p in self.to_complete],
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Section:
        return cls(
            obj["number"],
            obj["key"],
            obj["title"],
            tuple(obj["annex_iv"]),
            tuple(Statement.from_json(s) for s in obj["statements"]),
            tuple(obj["notes"]),
            tuple(ProviderItem.from_json(p) for p in obj["to_complete"]),
        )


@dataclass(frozen=True)
class AnnexIV:
    """The technical documentation of one model version, against one checkpoint."""

    model: str
    version: int
    origin: str
    checkpoint: CheckpointRef
    sections: tuple[Section, ...]
    provider_sections: tuple[ProviderItem, ...]
    entries: tuple[CitedEntry, ...]

    def entry(self, index: int) -> CitedEntry:
        for e in self.entries:
            if e.index == index:
                return e
        raise NotFoundError(f"entry {index} is not cited by this document")

    def section(self, key: str) -> Section:
        for s in self.sections:
            if s.key == key:
                return s
        raise NotFoundError(f"no section {key!r}")

    def to_json(self) -> dict[str, Any]:
        return {
            "format": ANNEX_IV_FORMAT,
            "regulation": REGULATION,
            "model": self.model,
            "version": self.version,
            "origin": self.origin,
            "checkpoint": self.checkpoint.to_json(),
            "sections": [s.to_json() for s in self.sections],
            "provider_sections": [p.to_json() for p in self.provider_sections],
            "entries": [e.to_json() for e in self.entries],
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> AnnexIV:
        """Read a document back (e.g. one fetched from a server) to render it."""
        if not isinstance(obj, Mapping) or obj.get("format") != ANNEX_IV_FORMAT:
            raise MalformedError(f"not an Annex IV document of format {ANNEX_IV_FORMAT}")
        try:
            return cls(
                obj["model"],
                obj["version"],
                obj["origin"],
                CheckpointRef.from_json(obj["checkpoint"]),
                tuple(Section.from_json(s) for s in obj["sections"]),
                tuple(ProviderItem.from_json(p) for p in obj["provider_sections"]),
                tuple(CitedEntry.from_json(e) for e in obj["entries"]),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise MalformedError(f"malformed Annex IV document: {exc!r}") from exc


def render_json(doc: AnnexIV) -> bytes:
    """The document as JSON, the same bytes from the CLI, the dashboard and the PDF."""
    return (json.dumps(doc.to_json(), indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
