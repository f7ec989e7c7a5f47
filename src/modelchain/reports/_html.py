"""Annex IV documents as one standalone HTML page: inline CSS, no scripts, no
external assets, every ledger value escaped, entry links relative
(``entries/123``) so that whoever serves the page decides where entries live."""

from __future__ import annotations

from html import escape

from ._evidence import CheckpointRef, CitedEntry
from .annex import REGULATION, TO_COMPLETE, AnnexIV, ProviderItem, Section, Statement

__all__ = ["render_html"]

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:62rem;
margin:2rem auto;padding:0 1rem;color:#1b1f24;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:1px solid #ccd;
padding-bottom:.2rem}h3{font-size:1rem;margin-bottom:.3rem}
.meta{color:#555}.annex{color:#555;font-size:.9rem;margin-top:-.4rem}
code,pre{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,monospace;font-size:.82rem}
pre{background:#f5f6f8;border:1px solid #dde;padding:.6rem;white-space:pre-wrap;
word-break:break-all}
li{margin:.35rem 0}a.cite{font-size:.85rem;text-decoration:none;white-space:nowrap}
a.cite code{color:#0645ad}.todo{border-left:4px solid #d98c00;background:#fff7e6;
padding:.4rem .8rem;margin:.8rem 0}.todo strong{color:#8a5a00}
.note{color:#555;font-style:italic}.entry{border-top:1px solid #eee;padding:.4rem 0}
details summary{cursor:pointer;color:#0645ad}
@media print{details{display:block}a{color:inherit}}
"""


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _cite(index: int, entry: CitedEntry | None) -> str:
    title = f"leaf hash {entry.leaf_hash}" if entry is not None else ""
    return (
        f'<a class="cite" href="entries/{index}" title="{_e(title)}"><code>#{index}</code></a>'
        f' <a class="cite" href="#entry-{index}" title="inclusion proof">&#x2713;</a>'
    )


def _statement(st: Statement, doc: AnnexIV) -> str:
    entries = {e.index: e for e in doc.entries}
    cites = " ".join(_cite(i, entries.get(i)) for i in st.entries)
    return f'<li data-kind="{_e(st.kind)}">{_e(st.text)} <span class="cites">{cites}</span></li>'


def _todo(items: tuple[ProviderItem, ...]) -> str:
    if not items:
        return ""
    rows = "".join(f"<li><strong>Annex IV {_e(p.point)}</strong>: {_e(p.text)}</li>" for p in items)
    return (
        f'<div class="todo"><strong>{_e(TO_COMPLETE.capitalize())}:</strong><ul>{rows}</ul></div>'
    )


def _section(section: Section, doc: AnnexIV) -> str:
    points = ", ".join(section.annex)
    body = "".join(_statement(s, doc) for s in section.statements)
    notes = "".join(f'<li class="note">{_e(n)}</li>' for n in section.notes)
    return (
        f'<section id="{_e(section.key)}"><h2>{section.number}. {_e(section.title)}</h2>'
        f'<p class="annex">Annex IV point(s) {_e(points)}</p>'
        + (f"<ul>{body}{notes}</ul>" if body or notes else "")
        + _todo(section.to_complete)
        + "</section>"
    )


def _entry(e: CitedEntry) -> str:
    outcome = " ".join(f"{k}: {v}" for k, v in e.outcome.items())
    return (
        f'<div class="entry" id="entry-{e.index}"><h3><a href="{_e(e.link)}">Entry {e.index}</a>'
        f" &middot; {_e(e.type)} &middot; {_e(e.actor)} &middot; {_e(e.time)}</h3>"
        f"<p>Outcome: {_e(outcome)}<br>Leaf hash (SHA-256 of 0x00 || entry): "
        f"<code>{_e(e.leaf_hash)}</code></p>"
        f"<details><summary>Inclusion proof (C2SP tlog-proof)</summary>"
        f"<pre>{_e(e.proof)}</pre></details></div>"
    )


def _cluster(cp: CheckpointRef) -> str:
    """For a cluster's checkpoint: the policy it counts under (nothing for one log)."""
    if cp.policy is None:
        return ""
    return (
        "<p>The ledger is a cluster: each node signs as the log with its own key, and a "
        "checkpoint counts only once a quorum of nodes cosigned it. Check it under the "
        f"cluster's checkpoint policy, not one log key:</p><pre>{_e(cp.policy)}</pre>"
    )


def render_html(doc: AnnexIV) -> str:
    """The document as a standalone HTML page."""
    cp = doc.checkpoint
    title = f"Annex IV technical documentation: {doc.model} version {doc.version}"
    toc = "".join(
        f'<li value="{s.number}"><a href="#{_e(s.key)}">{_e(s.title)}</a></li>'
        for s in doc.sections
    )
    provider = _todo(doc.provider_sections)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        "<header><h1>Technical documentation</h1>",
        f'<p class="meta">{_e(REGULATION)}: the parts a modelchain ledger proves, for '
        f"<strong>{_e(doc.model)}</strong> version <strong>{doc.version}</strong> on ledger "
        f"<code>{_e(doc.origin)}</code>.</p>",
        "<p>Every statement cites the ledger entries that prove it: "
        "<code>#N</code> opens entry N, &#x2713; jumps to its leaf hash and its inclusion proof "
        "against the checkpoint below. What the ledger cannot know is marked "
        f"<em>{_e(TO_COMPLETE)}</em>; nothing here is filled in for the provider.</p>",
        f"<h2>Checkpoint</h2><p>Produced against the tree of <strong>{cp.size}</strong> entries "
        f"with root <code>{_e(cp.root)}</code>, signed by the log key "
        f"<code>{_e(cp.log_key)}</code>:</p><pre>{_e(cp.note)}</pre>{_cluster(cp)}</header>",
        f"<nav><h2>Contents</h2><ol>{toc}</ol>"
        '<p><a href="#provider">Points to be completed by the provider</a> &middot; '
        '<a href="#entries">Cited entries and proofs</a></p></nav>',
        *(_section(s, doc) for s in doc.sections),
        '<section id="provider"><h2>Points to be completed by the provider</h2>'
        "<p>Annex IV also asks for the following, which the ledger does not hold:</p>"
        f"{provider}</section>",
        '<section id="entries"><h2>Cited entries and inclusion proofs</h2>'
        "<p>To check one offline: fetch the entry bytes, compute "
        "SHA-256(0x00 || bytes), compare with the leaf hash, and verify the proof against the "
        f"{'checkpoint policy' if cp.policy else 'log key'} "
        "(<code>modelchain.core.tlogproof.verify_tlog_proof</code>).</p>",
        *(_entry(e) for e in doc.entries),
        "</section></body></html>",
    ]
    return "\n".join(parts) + "\n"
