"""EU AI Act Annex IV technical documentation, as far as the ledger can fill it.

The document follows the points of Annex IV to Regulation (EU) 2024/1689. Each
statement cites the entries that prove it, with inclusion proofs against one
checkpoint; the points the ledger cannot know are listed as to be completed by
the provider, never filled in.

``model`` holds the typed document, ``gaps`` what only the provider knows,
``builder`` fills it from ``source`` (the ledger as of the checkpoint) section
by section (``sections``, ``history``), ``verify`` checks it offline.
"""

from .builder import annex_iv
from .model import (
    ANNEX_IV_FORMAT,
    REGULATION,
    TO_COMPLETE,
    AnnexIV,
    ProviderItem,
    Section,
    Statement,
    render_json,
)
from .verify import AnnexCheck, read_annex_iv, verify_annex_iv

__all__ = [
    "ANNEX_IV_FORMAT",
    "REGULATION",
    "TO_COMPLETE",
    "AnnexCheck",
    "AnnexIV",
    "ProviderItem",
    "Section",
    "Statement",
    "annex_iv",
    "read_annex_iv",
    "render_json",
    "verify_annex_iv",
]
