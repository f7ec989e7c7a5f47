"""The lineage of a model version drawn as an SVG picture, on the server.

Datasets, runs, model versions (parents too) and deployments become boxes in
columns left to right, each a link to its dashboard page, joined by arrows.
Every text that reaches the markup is escaped here: names, URIs and
environments come from signed but untrusted transactions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from html import escape
from typing import Any
from urllib.parse import quote

from ..ledger.lineage import DatasetNode, Lineage, LineageInput, ModelNode

__all__ = ["LineageBox", "lineage_boxes", "lineage_svg"]

BOX_W = 188
BOX_H = 46
COL_GAP = 64
ROW_GAP = 18
PAD = 12
LABEL_MAX = 26  # characters; the full text is in the box's <title>

_COLOURS = {
    # kind: (fill, stroke)
    "dataset": ("#e8f1fb", "#3b6ea5"),
    "run": ("#fdf3e1", "#b07a1c"),
    "model": ("#eaf6ec", "#3d8a4c"),
    "deployment": ("#f3ecf9", "#7a4ea3"),
    "external": ("#f2f2f2", "#777777"),
}


@dataclass
class LineageBox:
    """One box of the picture: what it is, its text, where it links, and the
    boxes its arrows come from."""

    key: str
    kind: str
    title: str  # first line: what it is
    label: str  # second line: which one
    href: str | None
    sources: list[str] = field(default_factory=list)
    parent: str | None = None  # the source that is this model version's parent version
    focus: bool = False
    column: int = 0
    row: int = 0


def _seg(value: object) -> str:
    return quote(str(value), safe="")


def _model_key(name: object, version: object) -> str:
    return f"model/{name}@{version}"


def lineage_boxes(
    lineage: Lineage, deployments: Iterable[Mapping[str, Any]] = ()
) -> list[LineageBox]:
    """The boxes of ``lineage`` (from ``led.models.lineage``) and of the
    environments the version was deployed to (``{"env", "current"}`` each), in
    columns by their longest path from a source, so that every arrow points right."""
    boxes: dict[str, LineageBox] = {}

    def add(box: LineageBox) -> LineageBox:
        found = boxes.get(box.key)
        if found is None:
            boxes[box.key] = box
            return box
        return found

    def edge(src: str, dst: str) -> None:
        target = boxes[dst]
        if src not in target.sources:
            target.sources.append(src)

    def visit(node: LineageInput) -> str:
        if isinstance(node, DatasetNode):
            key = f"dataset/{node.name}@{node.version}"
            add(
                LineageBox(
                    key,
                    "dataset",
                    "dataset",
                    f"{node.name}@{node.version}",
                    f"/ui/datasets/{_seg(node.name)}#v{_seg(node.version)}",
                )
            )
            return key
        if isinstance(node, ModelNode):
            key = _model_key(node.name, node.version)
            add(
                LineageBox(
                    key,
                    "model",
                    "model version",
                    f"{node.name}@{node.version}",
                    f"/ui/models/{_seg(node.name)}/versions/{_seg(node.version)}",
                )
            )
            if node.parent is not None:
                parent_key = visit(node.parent)
                edge(parent_key, key)
                boxes[key].parent = parent_key
            run = node.run
            if run is not None:
                run_box = f"run/{run.id}"
                add(
                    LineageBox(
                        run_box,
                        "run",
                        "training run",
                        str(run.id),
                        f"/ui/runs/{_seg(run.id)}",
                    )
                )
                for item in run.inputs:
                    edge(visit(item), run_box)
                edge(run_box, key)
            return key
        uri = str(node.uri or "?")
        key = f"external/{uri}"
        add(LineageBox(key, "external", "external input", uri, None))
        return key

    focus = visit(lineage)
    boxes[focus].focus = True
    for d in deployments:
        env = str(d["env"])
        key = f"deployment/{env}"
        state = "now serving" if d.get("current") else "deployed before"
        add(
            LineageBox(
                key,
                "deployment",
                f"deployment ({state})",
                env,
                f"/ui/models/{_seg(lineage.name)}/versions/{_seg(lineage.version)}#env-{_seg(env)}",
            )
        )
        edge(focus, key)
    _layout(boxes)
    return list(boxes.values())


def _layout(boxes: dict[str, LineageBox]) -> None:
    # Longest-path layering: a box sits one column right of its rightmost
    # source, so every arrow points right. The graph is acyclic (lineage is
    # checked when written, and the registry cuts repeated nodes), but a cycle
    # must not hang the page, hence the stack.
    memo: dict[str, int] = {}

    def column(key: str, stack: frozenset[str]) -> int:
        if key in memo:
            return memo[key]
        sources = [s for s in boxes[key].sources if s in boxes and s not in stack]
        value = 1 + max((column(s, stack | {key}) for s in sources), default=-1)
        memo[key] = value
        return value

    for key, box in boxes.items():
        box.column = column(key, frozenset())
    # A dataset only the latest run used sits just left of that run, not at
    # the far left with a long arrow across the picture.
    targets: dict[str, list[int]] = {}
    for box in boxes.values():
        for src in box.sources:
            targets.setdefault(src, []).append(box.column)
    for key, box in boxes.items():
        if not box.sources and key in targets:
            box.column = max(0, min(targets[key]) - 1)
    # Rows: each column in the order of its sources' rows, so arrows cross little.
    order = list(boxes)
    for col in sorted({b.column for b in boxes.values()}):
        members = [b for b in boxes.values() if b.column == col]

        def weight(b: LineageBox, col: int = col) -> tuple[float, int]:
            rows = [boxes[s].row for s in b.sources if s in boxes and boxes[s].column < col]
            return (sum(rows) / len(rows) if rows else float(len(boxes)), order.index(b.key))

        for row, b in enumerate(sorted(members, key=weight)):
            b.row = row


def _clip(text: str) -> str:
    return text if len(text) <= LABEL_MAX else text[: LABEL_MAX - 1] + "\u2026"


def lineage_svg(
    lineage: Lineage,
    deployments: Iterable[Mapping[str, Any]] = (),
) -> str:
    """An inline ``<svg>`` of the lineage, each box linking to its page."""
    boxes = sorted(lineage_boxes(lineage, deployments), key=lambda b: (b.column, b.row))
    by_key = {b.key: b for b in boxes}
    columns = 1 + max(b.column for b in boxes)
    rows = 1 + max(b.row for b in boxes)
    width = PAD * 2 + columns * BOX_W + (columns - 1) * COL_GAP
    height = PAD * 2 + rows * BOX_H + (rows - 1) * ROW_GAP
    at = {
        b.key: (PAD + b.column * (BOX_W + COL_GAP), PAD + b.row * (BOX_H + ROW_GAP)) for b in boxes
    }
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="lineage" role="img" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'font-family="system-ui, sans-serif" font-size="12">',
        "<title>Lineage of " + escape(f"{lineage.name}@{lineage.version}") + "</title>",
        '<defs><marker id="lineage-arrow" viewBox="0 0 10 10" refX="10" refY="5" '
        'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        '<path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
    ]
    for b in boxes:
        x2, y2 = at[b.key]
        for src in b.sources:
            x1, y1 = at[src]
            sx, sy, ex, ey = x1 + BOX_W, y1 + BOX_H / 2, x2, y2 + BOX_H / 2
            if b.column - by_key[src].column > 1:
                # Jumping over a column: pass under its boxes, not behind them.
                dip = BOX_H / 2 + ROW_GAP / 2 + 12
                curve = f"C{sx + 50},{sy + dip} {ex - 50},{ey + dip} {ex},{ey}"
            else:
                mid = (sx + ex) / 2
                curve = f"C{mid},{sy} {mid},{ey} {ex},{ey}"
            if src == b.parent:
                kind, extra, what = (
                    "lineage-edge lineage-parent",
                    ' stroke-dasharray="5 3"',
                    "parent",
                )
            else:
                kind, extra, what = "lineage-edge", "", "input"
            out.append(
                f'<path class="{kind}" d="M{sx},{sy} {curve}" fill="none" stroke="#555" '
                f'stroke-width="1.4"{extra} marker-end="url(#lineage-arrow)">'
                f"<title>{what}</title></path>"
            )
    for b in boxes:
        x, y = at[b.key]
        fill, stroke = _COLOURS.get(b.kind, _COLOURS["external"])
        width_attr = "3" if b.focus else "1.4"
        focus = " lineage-focus" if b.focus else ""
        group = [
            f'<g class="lineage-node lineage-{escape(b.kind)}{focus}" data-key="{escape(b.key)}">',
            f"<title>{escape(b.title)}: {escape(b.label)}</title>",
            f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="6" '
            f'fill="{fill}" stroke="{stroke}" stroke-width="{width_attr}"/>',
            f'<text x="{x + 10}" y="{y + 17}" fill="#444" font-size="10">{escape(b.title)}</text>',
            f'<text class="lineage-label" x="{x + 10}" y="{y + 35}" fill="#111" '
            f'font-weight="600">{escape(_clip(b.label))}</text>',
            "</g>",
        ]
        if b.href is not None:
            group = [f'<a href="{escape(b.href)}">', *group, "</a>"]
        out.extend(group)
    out.append("</svg>")
    return "\n".join(out)
