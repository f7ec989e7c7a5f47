"""JSON text for people and HTTP answers: any depth, never hashed or signed.

The standard encoders recurse, so a value nested deeper than the interpreter's
recursion limit (a log entry written before the nesting limit existed) would
fail to display; this one falls back to an explicit stack. Canonical bytes are
made only in ``canonical``.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["dumps"]


class _Text(str):
    """Literal output on the work stack, told apart from string values."""


def dumps(
    value: Any,
    *,
    indent: int | None = None,
    sort_keys: bool = False,
    ensure_ascii: bool = True,
    separators: tuple[str, str] | None = None,
) -> str:
    """``json.dumps(value, ...)`` with the same arguments and output, at any depth.

    NaN and the infinities are refused (ValueError), as JSON cannot carry them."""
    item_sep, key_sep = separators or ((",", ": ") if indent is not None else (", ", ": "))
    try:
        return json.dumps(
            value,
            indent=indent,
            sort_keys=sort_keys,
            ensure_ascii=ensure_ascii,
            separators=(item_sep, key_sep),
            allow_nan=False,
        )
    except RecursionError:
        return _iterative(value, indent, sort_keys, ensure_ascii, item_sep, key_sep)


def _iterative(
    value: Any, indent: int | None, sort_keys: bool, ensure_ascii: bool, item_sep: str, key_sep: str
) -> str:
    """What json.dumps writes, with a work stack instead of recursion."""

    def scalar(v: Any) -> str:
        return json.dumps(v, ensure_ascii=ensure_ascii, allow_nan=False)

    out: list[str] = []
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        v, level = stack.pop()
        if type(v) is _Text:
            out.append(v)
            continue
        if not isinstance(v, dict | list | tuple):
            out.append(scalar(v))
            continue
        is_dict = isinstance(v, dict)
        if not v:
            out.append("{}" if is_dict else "[]")
            continue
        inner = outer = ""
        if indent is not None:
            inner = "\n" + " " * (indent * (level + 1))
            outer = "\n" + " " * (indent * level)
        out.append("{" if is_dict else "[")
        stack.append((_Text(outer + ("}" if is_dict else "]")), level))
        items: list[tuple[Any, Any]]
        if isinstance(v, dict):
            items = sorted(v.items()) if sort_keys else list(v.items())
        else:
            items = [(None, x) for x in v]
        for i in range(len(items) - 1, -1, -1):
            key, child = items[i]
            prefix = inner if i == 0 else item_sep + inner
            if is_dict:
                prefix += scalar(key if isinstance(key, str) else scalar(key)) + key_sep
            stack.append((child, level + 1))
            stack.append((_Text(prefix), level))
    return "".join(out)
