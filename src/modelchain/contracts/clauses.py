"""Naming the clause of a CEL rule that fails: its top-level ``&&`` conjuncts,
evaluated one by one. For messages only (the CLI, ``policy test``, ``gate``):
what a contract logs when a policy denies is decided in ``policy`` and never here.

The ``cel`` package exposes no parser, so the split is a small scanner that
knows CEL's string literals (quoted, triple-quoted, raw), ``//`` comments and
brackets. ``&&`` binds tighter than ``||`` and ``? :``, so a rule with either
at the top level is one clause.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import Rejected
from .policy import evaluate

__all__ = ["conjuncts", "failing_clause"]

_OPEN = {"(": ")", "[": "]", "{": "}"}


def conjuncts(rule: str) -> tuple[str, ...]:
    """The top-level conjuncts of ``rule``, stripped, in order. A conjunct that is
    wholly in parentheses is split in turn (``&&`` is associative); a rule that
    is not a top-level conjunction (or does not scan) is one clause, itself."""
    parts = _split(rule)
    if parts is None:
        return (rule.strip(),)
    out: list[str] = []
    for part in parts:
        inner = _unwrapped(part)
        out.extend(conjuncts(inner) if inner is not None else (part,))
    return tuple(out)


def failing_clause(rule: str, context: Mapping[str, Any]) -> str | None:
    """The first conjunct of ``rule`` that is false in ``context``; where none is
    false, the first that fails to evaluate (CEL's ``&&`` is false if any side
    is, whatever errors the others raise); None where every conjunct holds."""
    errored: str | None = None
    for clause in conjuncts(rule):
        try:
            if not evaluate(clause, context):
                return clause
        except Rejected:
            errored = errored or clause
    return errored


def _split(rule: str) -> list[str] | None:
    """``rule`` cut at its top-level ``&&``; None where it has a top-level ``||``
    or ``?`` (one clause), unbalanced brackets or an unterminated string."""
    parts: list[str] = []
    stack: list[str] = []
    start = i = 0
    n = len(rule)
    while i < n:
        c = rule[i]
        if c in "\"'":
            end = _string_end(rule, i)
            if end is None:
                return None
            i = end
            continue
        if rule.startswith("//", i):
            newline = rule.find("\n", i)
            i = n if newline < 0 else newline + 1
            continue
        if c in _OPEN:
            stack.append(_OPEN[c])
        elif c in ")]}":
            if not stack or stack.pop() != c:
                return None
        elif not stack:
            if rule.startswith("&&", i):
                parts.append(rule[start:i].strip())
                start = i = i + 2
                continue
            if rule.startswith("||", i) or c == "?":
                return None
        i += 1
    if stack:
        return None
    parts.append(rule[start:].strip())
    return parts if all(parts) else None


def _string_end(rule: str, i: int) -> int | None:
    """The index just past the string literal whose quote is at ``i`` (a raw
    prefix ``r``/``R`` before it turns escapes off); None if it never ends."""
    raw = (
        i > 0
        and rule[i - 1] in "rR"
        and (i < 2 or not (rule[i - 2].isalnum() or rule[i - 2] == "_"))
    )
    quote = rule[i] * 3 if rule.startswith(rule[i] * 3, i) else rule[i]
    j = i + len(quote)
    while j < len(rule):
        if rule[j] == "\\" and not raw:
            j += 2
            continue
        if rule.startswith(quote, j):
            return j + len(quote)
        if len(quote) == 1 and rule[j] == "\n":
            return None
        j += 1
    return None


def _word_char(c: str) -> bool:
    return bool(c) and (c.isalnum() or c == "_")


def _unwrapped(part: str) -> str | None:
    """The inside of ``part`` where one pair of parentheses encloses all of it."""
    if not (part.startswith("(") and part.endswith(")")):
        return None
    depth = 0
    i = 0
    while i < len(part):
        c = part[i]
        if c in "\"'":
            end = _string_end(part, i)
            if end is None:
                return None
            i = end
            continue
        if c in _OPEN:
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0 and i != len(part) - 1:
                return None  # "(a) && (b)" is closed before its end
        i += 1
    return part[1:-1].strip()
