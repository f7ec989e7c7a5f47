"""Annex IV documents as PDF (fpdf2): the same content as the HTML page, with
every citation linked to an appendix that gives the signed checkpoint once and,
for each entry, its leaf hash and inclusion path (its tlog-proof less that
checkpoint), and the JSON document attached so the full proofs travel with it.

Fonts: DejaVu from the system (Debian's fonts-dejavu-core) when present, for
any script DejaVu covers; otherwise the PDF core fonts, where characters
outside Windows-1252 are printed as '?' (never an error). Output is
deterministic for a given document, fpdf2 version and font files.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.tlogproof import PROOF_HEADER
from ..errors import UsageError
from .annex import REGULATION, TO_COMPLETE, AnnexIV, ProviderItem, Statement, render_json

if TYPE_CHECKING:
    from fpdf import FPDF

__all__ = ["FONT_DIRS", "render_pdf"]

FONT_DIRS = (
    "/usr/share/fonts/truetype/dejavu",  # Debian, Ubuntu
    "/usr/share/fonts/dejavu-sans-fonts",  # Fedora
    "/usr/share/fonts/dejavu",
    "/usr/share/fonts/TTF",  # Arch
    "/usr/local/share/fonts",
    "/Library/Fonts",
)
_DEJAVU = {"sans": "DejaVuSans.ttf", "sansB": "DejaVuSans-Bold.ttf", "mono": "DejaVuSansMono.ttf"}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_BLUE = (6, 69, 173)
_AMBER = (138, 90, 0)


def _find_fonts(font_dir: str | os.PathLike[str] | None) -> dict[str, Path] | None:
    dirs: Sequence[str | os.PathLike[str]] = (font_dir,) if font_dir is not None else FONT_DIRS
    for d in dirs:
        paths = {k: Path(d) / name for k, name in _DEJAVU.items()}
        if all(p.is_file() for p in paths.values()):
            return paths
    if font_dir is not None:
        raise UsageError(f"{font_dir} does not hold {', '.join(_DEJAVU.values())}")
    return None


def _new_pdf(footer: str, font: str) -> FPDF:
    try:
        from fpdf import FPDF
    except ImportError as exc:
        raise UsageError(
            "PDF output needs fpdf2: pip install 'modelchain[server]' (or fpdf2)"
        ) from exc

    class _Pdf(FPDF):
        def footer(self) -> None:
            self.set_y(-12)
            self.set_font(font, size=7)
            self.set_text_color(110, 110, 110)
            self.cell(0, 5, f"{footer} · page {self.page_no()}/{{nb}}")
            self.set_text_color(0, 0, 0)

    return _Pdf(format="A4")


class _Writer:
    def __init__(self, doc: AnnexIV, fonts: dict[str, Path] | None) -> None:
        self.doc = doc
        self.unicode = fonts is not None
        self.sans, self.monospace = ("mc-sans", "mc-mono") if fonts else ("helvetica", "courier")
        self._covered: dict[str, set[int]] = {}
        pdf = _new_pdf(doc.origin, self.sans)  # an origin is printable ASCII
        self.pdf = pdf
        if fonts is not None:
            pdf.add_font("mc-sans", "", str(fonts["sans"]))
            pdf.add_font("mc-sans", "B", str(fonts["sansB"]))
            pdf.add_font("mc-mono", "", str(fonts["mono"]))
            # A character the font lacks would be dropped with a logged warning;
            # print '?' for it instead, as the core fonts do.
            for family in ("mc-sans", "mc-mono"):
                self._covered[family] = set(getattr(pdf.fonts[family], "cmap", {}))
        else:
            pdf.core_fonts_encoding = "windows-1252"
        self.bullet = "•"
        self.links: dict[int, int] = {}
        latest = max((e.time_ms for e in doc.entries), default=0)
        # The document's date is the newest fact it states, not the wall clock,
        # so the same document always renders to the same bytes.
        stamp = dt.datetime.fromtimestamp(latest / 1000, tz=dt.UTC)
        pdf.set_creation_date(stamp)
        pdf.set_title(f"Annex IV technical documentation: {doc.model} version {doc.version}")
        pdf.set_subject(REGULATION)
        pdf.set_creator("modelchain")
        pdf.set_lang("en")
        pdf.set_auto_page_break(True, margin=16)
        pdf.set_margins(16, 16, 16)
        pdf.embed_file(
            bytes=render_json(doc),
            basename="annex-iv.json",
            modification_date=stamp,
            creation_date=stamp,
            desc="The same document as JSON, with every inclusion proof",
            mime_type="application/json",
            compress=True,
        )

    def clean(self, text: str, family: str | None = None) -> str:
        text = _CONTROL.sub(" ", text.replace("\r\n", "\n").replace("\t", " "))
        if not self.unicode:
            return text.encode("cp1252", "replace").decode("cp1252")
        covered = self._covered[family or self.sans]
        return "".join(c if c == "\n" or ord(c) in covered else "?" for c in text)

    # -- primitives ---------------------------------------------------------------------

    def font(self, family: str, style: str = "", size: float = 9.5) -> None:
        self.pdf.set_font(family, style, size)

    def para(self, text: str, size: float = 9.5, style: str = "", h: float = 4.6) -> None:
        self.font(self.sans, style, size)
        self.pdf.multi_cell(0, h, self.clean(text), new_x="LMARGIN", new_y="NEXT", align="L")

    def mono(self, text: str, size: float = 6.8) -> None:
        self.font(self.monospace, "", size)
        self.pdf.multi_cell(
            0,
            size * 0.45,
            self.clean(text, self.monospace),
            new_x="LMARGIN",
            new_y="NEXT",
            align="L",
        )

    def heading(self, text: str, size: float = 13) -> None:
        if self.pdf.will_page_break(24):
            self.pdf.add_page()
        self.pdf.ln(3)
        self.font(self.sans, "B", size)
        self.pdf.multi_cell(
            0, size * 0.5, self.clean(text), new_x="LMARGIN", new_y="NEXT", align="L"
        )
        self.pdf.ln(1)

    def bullet_item(self, write: Callable[[], None]) -> None:
        pdf = self.pdf
        left = pdf.l_margin
        pdf.set_x(left)
        self.font(self.sans, "", 9.5)
        pdf.cell(5, 4.6, self.bullet)
        pdf.set_left_margin(left + 5)
        try:
            write()
        finally:
            pdf.set_left_margin(left)
        pdf.ln(5.6)

    def statement(self, st: Statement) -> None:
        def write() -> None:
            self.font(self.sans, "", 9.5)
            self.pdf.write(4.6, self.clean(st.text))
            self.pdf.set_text_color(*_BLUE)
            for i in st.entries:
                self.pdf.write(4.6, f" [#{i}]", self.links.get(i, ""))
            self.pdf.set_text_color(0, 0, 0)

        self.bullet_item(write)

    def todo(self, items: Sequence[ProviderItem]) -> None:
        for p in items:

            def write(p: ProviderItem = p) -> None:
                self.pdf.set_text_color(*_AMBER)
                self.font(self.sans, "B", 9.5)
                self.pdf.write(4.6, self.clean(f"Annex IV {p.point} ({TO_COMPLETE}): "))
                self.pdf.set_text_color(0, 0, 0)
                self.font(self.sans, "", 9.5)
                self.pdf.write(4.6, self.clean(p.text))

            self.bullet_item(write)

    # -- the document -------------------------------------------------------------------

    def render(self) -> bytes:
        doc, pdf, cp = self.doc, self.pdf, self.doc.checkpoint
        pdf.add_page()
        # Created on a page, pointed at their appendix entries once those are laid out.
        self.links = {e.index: pdf.add_link() for e in doc.entries}
        self.font(self.sans, "B", 18)
        pdf.multi_cell(0, 9, "Technical documentation", new_x="LMARGIN", new_y="NEXT", align="L")
        self.para(
            f"{REGULATION}: the parts a modelchain ledger proves, for {doc.model} version "
            f"{doc.version} on ledger {doc.origin}.",
            size=10.5,
        )
        pdf.ln(2)
        self.para(
            "Every statement cites the ledger entries that prove it; [#N] links to entry N in "
            "the appendix, with its leaf hash and its inclusion proof (C2SP tlog-proof) against "
            "the checkpoint below. The same document as JSON is attached to this PDF. What "
            f"the ledger cannot know is marked '{TO_COMPLETE}'; nothing is filled in for the "
            "provider."
        )
        self.heading("Checkpoint", 12)
        self.para(
            f"Produced against the tree of {cp.size} entries with root {cp.root}, signed by "
            f"the log key {cp.log_key}. The signed checkpoint itself is in the appendix."
        )
        for section in doc.sections:
            self.heading(f"{section.number}. {section.title}")
            self.para(f"Annex IV point(s) {', '.join(section.annex)}", size=8.5)
            pdf.ln(1)
            for st in section.statements:
                self.statement(st)
            for note in section.notes:
                self.bullet_item(functools.partial(self._italic, note))
            self.todo(section.to_complete)
        self.heading("Points to be completed by the provider")
        self.para("Annex IV also asks for the following, which the ledger does not hold:")
        pdf.ln(1)
        self.todo(doc.provider_sections)
        pdf.add_page()
        self._appendix()
        return bytes(pdf.output())

    def _appendix(self) -> None:
        # Every entry's tlog-proof ends with the same signed checkpoint: printed
        # whole each time, it filled most of the document. It is printed once
        # here; each entry gives the rest of its proof, and the attached JSON
        # keeps every proof whole for tools.
        doc, pdf, cp = self.doc, self.pdf, self.doc.checkpoint
        self.heading("Appendix A: the signed checkpoint")
        self.para(
            f"Every proof below is against this checkpoint: {cp.size} entries, root {cp.root}, "
            f"signed by the log key {cp.log_key}."
        )
        pdf.ln(1)
        self.mono(cp.note, 7.5)
        if cp.policy is not None:
            pdf.ln(1)
            self.para(
                "The ledger is a cluster: each node signs as the log with its own key, and a "
                "checkpoint counts only once a quorum of nodes cosigned it. Check it under the "
                "cluster's checkpoint policy, not one log key:"
            )
            pdf.ln(1)
            self.mono(cp.policy, 7.5)
        self.heading("Appendix B: cited entries and inclusion proofs")
        self.para(
            "To check one offline: fetch the entry bytes, compute SHA-256(0x00 || bytes), "
            "compare with the leaf hash, and verify the inclusion path against the checkpoint "
            "of appendix A. Each entry's lines are a C2SP tlog-proof (c2sp.org/tlog-proof@v1) "
            "less its checkpoint: append a blank line and the checkpoint of appendix A to have "
            "the whole proof, as the attached annex-iv.json gives it."
        )
        for e in doc.entries:
            if pdf.will_page_break(22):
                pdf.add_page()
            pdf.ln(1.5)
            pdf.set_link(self.links[e.index], y=pdf.get_y(), page=pdf.page)
            outcome = " ".join(f"{k}: {v}" for k, v in e.outcome.items())
            self.para(f"Entry {e.index} · {e.type} · {e.actor} · {e.time}", style="B")
            self.para(f"Outcome: {outcome} · leaf hash: {e.leaf_hash}", size=8.5, h=4)
            head, sep, checkpoint = e.proof.partition("\n\n")
            lines = head.split("\n")
            if lines and lines[0] == PROOF_HEADER:
                lines = lines[1:]
            if sep and checkpoint == cp.note:
                self.mono("\n".join(lines))
            else:  # not against the document's checkpoint: shown whole, as it is
                self.mono(e.proof)

    def _italic(self, text: str) -> None:
        self.pdf.set_text_color(85, 85, 85)
        self.pdf.write(4.6, self.clean(text))
        self.pdf.set_text_color(0, 0, 0)


def render_pdf(
    doc: AnnexIV,
    *,
    font_dir: str | os.PathLike[str] | None = None,
    core_fonts: bool = False,
) -> bytes:
    """The document as PDF bytes.

    ``font_dir`` names a folder holding DejaVuSans.ttf, DejaVuSans-Bold.ttf and
    DejaVuSansMono.ttf; by default the usual system folders are searched, and the
    PDF core fonts (Windows-1252 text, others printed as '?') are used when none
    has them, or when ``core_fonts`` asks for them."""
    return _Writer(doc, None if core_fonts else _find_fonts(font_dir)).render()
