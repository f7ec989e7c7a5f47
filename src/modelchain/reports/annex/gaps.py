"""What only the provider knows: the Annex IV points the ledger cannot fill,
listed in each section as to be completed, never guessed; and those that the
model card recorded with the version answers, filled from it and cited."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from .model import ProviderItem, Section, Statement
from .wording import fmt

__all__ = [
    "APPROVAL_GAPS",
    "CARD_FIELDS",
    "CHANGE_GAPS",
    "DATA_GAPS",
    "DEVELOPMENT_GAPS",
    "GENERAL_GAPS",
    "MONITORING_GAPS",
    "PROVIDER_SECTIONS",
    "VALIDATION_GAPS",
    "fill_from_card",
    "provider_items",
]

GENERAL_GAPS = (
    (
        "1(a)",
        "Intended purpose of the AI system, and the name of the provider (the ledger "
        "records members and their organisations, not who places the system on the market).",
    ),
    (
        "1(b)",
        "How the system interacts with hardware or software, including other AI "
        "systems, that are not part of it.",
    ),
    (
        "1(c)",
        "Requirements related to version updates (the software versions recorded with "
        "the training runs are listed above).",
    ),
    (
        "1(d)",
        "All forms in which the system is placed on the market or put into service "
        "(packages, downloads, APIs).",
    ),
    ("1(e)", "Hardware on which the system is intended to run."),
    (
        "1(f)",
        "Where the system is a component of products: photographs or illustrations of "
        "their external features, marking and internal layout.",
    ),
    ("1(g)", "Basic description of the user interface provided to the deployer."),
    ("1(h)", "Instructions for use for the deployer."),
)
DEVELOPMENT_GAPS = (
    (
        "2(a)",
        "How pre-trained systems or third-party tools were used, integrated or modified, "
        "and development steps not recorded as training runs.",
    ),
)
DATA_GAPS = (
    (
        "2(d)",
        "Datasheets: a general description of the data sets, their scope and main "
        "characteristics, how the data were obtained and selected, labelling procedures and "
        "data cleaning methodologies (the ledger proves which bytes were used, from where, "
        "and which checks a validator signed).",
    ),
)
VALIDATION_GAPS = (
    (
        "2(g)",
        "The validation and testing procedures, the main characteristics of the test "
        "data, and the metrics for robustness and for potentially discriminatory impacts, "
        "where the evaluations above do not cover them.",
    ),
    (
        "3",
        "Degrees of accuracy for specific persons or groups of persons on which the "
        "system is intended to be used, and the overall expected level of accuracy.",
    ),
)
APPROVAL_GAPS = (
    (
        "2(g)",
        "Test logs and reports beyond the signed results on the ledger, and who is "
        "responsible for them in the provider's organisation.",
    ),
)
CHANGE_GAPS = (("6", "Why each change was made, and whether it is a substantial modification."),)
MONITORING_GAPS = (
    (
        "3",
        "Capabilities and limitations in performance, foreseeable unintended outcomes and "
        "sources of risks to health, safety and fundamental rights, the human oversight "
        "measures (Article 14) and the specifications on input data.",
    ),
    (
        "9",
        "The post-market monitoring plan (Article 72(3)) and the system that evaluates "
        "performance in the post-market phase; the records above are its evidence.",
    ),
)
PROVIDER_SECTIONS = (
    (
        "2(b)",
        "Design specifications: the general logic of the system and its algorithms, "
        "key design choices with their rationale and assumptions, what the system is designed "
        "to optimise for, and the trade-offs made.",
    ),
    (
        "2(c)",
        "System architecture: how software components build on or feed into each "
        "other; the computational resources used to develop, train, test and validate the "
        "system (and their energy use, where known).",
    ),
    (
        "2(e)",
        "Assessment of the human oversight measures needed (Article 14), including the "
        "technical measures that help deployers interpret outputs (Article 13(3)(d)).",
    ),
    (
        "2(f)",
        "Pre-determined changes to the system and its performance, and the technical "
        "solutions that keep it compliant through them.",
    ),
    ("2(h)", "Cybersecurity measures put in place."),
    ("4", "Why the performance metrics used are appropriate for this system."),
    ("5", "The risk management system (Article 9)."),
    (
        "7",
        "The harmonised standards applied, or the other solutions adopted to meet the "
        "requirements of Chapter III, Section 2.",
    ),
    ("8", "A copy of the EU declaration of conformity (Article 47)."),
)


def provider_items(pairs: Iterable[tuple[str, str]]) -> tuple[ProviderItem, ...]:
    return tuple(ProviderItem(p, t) for p, t in pairs)


# The model card fields that answer an Annex IV point the ledger cannot prove,
# by point. Only points with one meaning across the document are listed.
CARD_FIELDS: dict[str, tuple[str, ...]] = {
    "1(a)": ("intended_purpose", "intended_use", "intended_uses", "provider"),
    "1(b)": ("interactions", "dependencies"),
    "1(e)": ("hardware",),
    "1(g)": ("user_interface",),
    "1(h)": ("instructions_for_use", "instructions"),
    "2(b)": ("design", "design_specifications"),
    "2(c)": ("architecture", "computational_resources", "energy"),
    "2(e)": ("human_oversight",),
    "2(h)": ("cybersecurity",),
    "4": ("metrics_rationale",),
    "5": ("risk_management",),
}


def fill_from_card(
    subject: Mapping[str, Any],
    sections: tuple[Section, ...],
    provider: tuple[ProviderItem, ...],
) -> tuple[tuple[Section, ...], tuple[ProviderItem, ...]]:
    """Fill the points that the model card recorded with the version (``subject``,
    its record) answers: each becomes a statement citing the registration, in
    the section that listed it (those of the provider's list go to the first
    section), and leaves the to-be-completed lists. The card is the registrant's
    declaration: the statement says so, and the ledger proves only who made it
    and when. Another version's card is never used: it describes other bytes."""
    card = subject.get("card")
    if not isinstance(card, Mapping) or not card:
        return sections, provider
    answered = {
        point: {f: card[f] for f in names if card.get(f) not in (None, "", [], {})}
        for point, names in CARD_FIELDS.items()
    }
    answered = {p: fields for p, fields in answered.items() if fields}
    if not answered:
        return sections, provider

    def statement(point: str) -> Statement:
        fields = answered[point]
        said = "; ".join(f"{k}: {fmt(v)}" for k, v in fields.items())
        return Statement(
            "model_card_point",
            f"Annex IV {point}, from the model card recorded with version "
            f"{subject['version']} by {subject['by']} (the registrant's declaration: the "
            f"ledger proves who declared it and when, not that it is so): {said}.",
            (int(subject["index"]),),
            {"point": point, "version": subject["version"], "fields": dict(fields)},
        )

    out = []
    for section in sections:
        filled = [p.point for p in section.to_complete if p.point in answered]
        out.append(
            dataclasses.replace(
                section,
                statements=(*section.statements, *(statement(p) for p in filled)),
                to_complete=tuple(p for p in section.to_complete if p.point not in answered),
            )
        )
    from_provider = [p.point for p in provider if p.point in answered]
    if from_provider and out:
        first = out[0]
        extra = tuple(statement(p) for p in from_provider)
        out[0] = dataclasses.replace(first, statements=(*first.statements, *extra))
    return tuple(out), tuple(p for p in provider if p.point not in answered)
