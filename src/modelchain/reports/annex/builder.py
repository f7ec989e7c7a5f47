"""Building the document: read the ledger as of the checkpoint, fill each
section, cite every entry a statement rests on."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .gaps import PROVIDER_SECTIONS, fill_from_card, provider_items
from .history import approvals, changes, monitoring
from .model import AnnexIV
from .sections import data, development, general, validation
from .source import LineageWalk, Source

if TYPE_CHECKING:
    from ...ledger.ledger import Ledger

__all__ = ["annex_iv"]


def annex_iv(led: Ledger, model: str, version: int | None = None) -> AnnexIV:
    """The Annex IV technical documentation the ledger can fill for ``model``
    (``version``, default the latest one covered by the checkpoint).

    Raises NotFoundError for an unknown model or version."""
    return _build(Source(led, model, version))


def _build(src: Source) -> AnnexIV:
    lineage = src.led.models.lineage(src.model, src.subject["version"])
    walk = LineageWalk(lineage)
    dataset_names = {d.name for d in walk.datasets}
    eval_sets = {e["dataset"]["name"] for e in src.subject["evaluations"]}
    seen = src.scan(dataset_names | eval_sets)
    ledger_parts = (
        general(src, walk),
        development(src, walk),
        data(src, walk, seen),
        validation(src, walk),
        approvals(src, seen),
        changes(src),
        monitoring(src, seen),
    )
    parts, provider = fill_from_card(src.subject, ledger_parts, provider_items(PROVIDER_SECTIONS))
    for section in parts:
        for statement in section.statements:
            for index in statement.entries:
                src.ev.cite(index)
    return AnnexIV(
        model=src.model,
        version=int(src.subject["version"]),
        origin=src.led.origin,
        checkpoint=src.ev.ref,
        sections=parts,
        provider_sections=provider,
        entries=src.ev.cited(),
    )
