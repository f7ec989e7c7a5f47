"""Compliance exports: EU AI Act Annex IV technical documentation (JSON, HTML,
PDF) and the Article 12 record-keeping export of the log as JSON Lines, and
the offline checks of both.

Every statement cites the ledger entries that prove it, each with an inclusion
proof against one signed checkpoint; what the ledger cannot know is listed as
to be completed by the provider, never guessed.
"""

from ._evidence import CheckpointRef, CitedEntry, parse_time, rfc3339
from ._html import render_html
from ._logs import LOGS_FORMAT, LogsCheck, export_logs, verify_logs
from ._pdf import render_pdf
from .annex import (
    ANNEX_IV_FORMAT,
    TO_COMPLETE,
    AnnexCheck,
    AnnexIV,
    ProviderItem,
    Section,
    Statement,
    annex_iv,
    read_annex_iv,
    render_json,
    verify_annex_iv,
)

__all__ = [
    "ANNEX_IV_FORMAT",
    "LOGS_FORMAT",
    "TO_COMPLETE",
    "AnnexCheck",
    "AnnexIV",
    "CheckpointRef",
    "CitedEntry",
    "LogsCheck",
    "ProviderItem",
    "Section",
    "Statement",
    "annex_iv",
    "export_logs",
    "parse_time",
    "read_annex_iv",
    "render_html",
    "render_json",
    "render_pdf",
    "rfc3339",
    "verify_annex_iv",
    "verify_logs",
]
