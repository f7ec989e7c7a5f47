"""The audit trail: a ledger's entries with filters, newest first, paged.

The one implementation behind the SDK (``Ledger.denied``, which takes
``exclude=`` as the API does), the CLI (``audit denied --exclude``), the API
(``/v1/audit``, ``/v1/denied``) and the dashboard. Filters are answered from
the store's audit-trail index where it covers the log, so a query reads only
the entries it returns; nothing is cached between queries.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..contracts.state import MEMBERS_KEY, member_key
from ..core.merkle import leaf_hash
from ..core.tx import LogEntry
from ..errors import UsageError
from ..storage.protocols import type_excluded
from .port import LedgerPort

__all__ = [
    "EXCLUDE_MAX",
    "TrailFilter",
    "TrailPage",
    "entry_summary",
    "exclusions",
    "member_orgs",
    "rejected",
    "trail",
]

_SCAN_CHUNK = 512
EXCLUDE_MAX = 20  # types one query may exclude
_TYPE_MAX = 128  # characters of one excluded type


def exclusions(given: Iterable[str]) -> tuple[str, ...]:
    """The types to exclude from what a user gave (repeated, or separated by
    commas or spaces), once each; a UsageError past ``EXCLUDE_MAX`` of them or
    for one over 128 characters."""
    found: list[str] = []
    for item in given:
        for t in item.replace(",", " ").split():
            if len(t) > _TYPE_MAX:
                raise UsageError(f"an excluded type is at most {_TYPE_MAX} characters")
            if t not in found:
                found.append(t)
    if len(found) > EXCLUDE_MAX:
        raise UsageError(f"exclude at most {EXCLUDE_MAX} types")
    return tuple(found)


@dataclass(frozen=True)
class TrailFilter:
    """Filters of the audit trail; every given one must match.

    ``type`` matches a transaction type or a prefix ending in a dot
    (``model.`` for every model transaction); ``exclude`` drops types named the
    same way (``inference.batch``: receipt batches swamp a trail); times are
    milliseconds, inclusive. Entries come newest first; ``before`` pages on
    (entries below that index)."""

    actor: str | None = None
    org: str | None = None
    type: str | None = None
    outcome: str | None = None  # "accepted" or "rejected"
    since: int | None = None
    until: int | None = None
    before: int | None = None
    limit: int = 100
    exclude: tuple[str, ...] = ()


def entry_summary(index: int, data: bytes, orgs: dict[str, str]) -> dict[str, Any]:
    """One entry as the trail lists it."""
    entry = LogEntry.decode(data)
    tx = entry.transaction
    return {
        "index": index,
        "type": tx.type,
        "actor": tx.actor,
        "org": orgs.get(tx.actor, ""),
        "time": tx.time,
        "nonce": tx.nonce,
        "signers": [s.keyid for s in entry.envelope.signatures],
        "outcome": entry.outcome.to_json(),
        "body": tx.body,
        "leaf_hash": leaf_hash(data).hex(),
    }


def member_orgs(led: LedgerPort) -> dict[str, str]:
    """Every member's organisation, by member name."""
    names = led.store.get_state(MEMBERS_KEY)
    out: dict[str, str] = {}
    for name in names if isinstance(names, list) else []:
        member = led.store.get_state(member_key(name))
        if isinstance(name, str) and isinstance(member, dict):
            out[name] = str(member.get("org", ""))
    return out


@dataclass(frozen=True)
class TrailPage:
    """Matching entries, newest first; ``next_before`` is where to go on from
    (None when the scan reached the start of the log)."""

    entries: list[dict[str, Any]]
    next_before: int | None


def trail(led: LedgerPort, f: TrailFilter, max_scan: int | None = None) -> TrailPage:
    """Entries matching ``f``, newest first: at most ``f.limit`` of them. A query
    examines at most ``max_scan`` entries (or, from the store's index, a hundred
    times as many index rows), so that a filter matching little never reads the
    whole log in one request; the page says where to go on from."""
    orgs = member_orgs(led)
    wanted_actors = None
    if f.org is not None:
        wanted_actors = {name for name, org in orgs.items() if org == f.org}
    end = led.size if f.before is None else max(0, min(f.before, led.size))
    if led.store.indexed() >= end:
        return _from_index(led, f, wanted_actors, orgs, end, max_scan)
    out: list[dict[str, Any]] = []
    budget = max_scan if max_scan is not None else end
    while end > 0 and len(out) < f.limit and budget > 0:
        start = max(0, end - min(_SCAN_CHUNK, budget))
        for index, data in reversed(list(led.store.entries(start, end))):
            end = index
            budget -= 1
            summary = _match(index, data, f, wanted_actors, orgs)
            if summary is not None:
                out.append(summary)
                if len(out) >= f.limit:
                    break
    return TrailPage(out, end if end > 0 else None)


# An index row costs SQLite about a hundredth of what decoding an entry costs here.
_INDEX_ROWS_PER_ENTRY = 100


def _from_index(
    led: LedgerPort,
    f: TrailFilter,
    org_actors: set[str] | None,
    orgs: dict[str, str],
    end: int,
    max_scan: int | None,
) -> TrailPage:
    actors = None
    if f.actor is not None:
        actors = [f.actor] if org_actors is None or f.actor in org_actors else []
    elif org_actors is not None:
        actors = sorted(org_actors)
    if f.outcome not in (None, "accepted", "rejected"):
        actors = []  # matches nothing, as a scan would find
    prefix = f.type is not None and f.type.endswith(".")
    start = 0 if max_scan is None else max(0, end - max_scan * _INDEX_ROWS_PER_ENTRY)
    found = led.store.find(
        start,
        end,
        f.limit,
        actors=actors,
        type_=None if prefix else f.type,
        type_prefix=f.type if prefix else None,
        accepted=None if f.outcome is None else f.outcome == "accepted",
        since=f.since,
        until=f.until,
        exclude=f.exclude,
    )
    out = [entry_summary(i, led.store.entry(i), orgs) for i in found]
    if found and len(found) >= f.limit:
        return TrailPage(out, found[-1] or None)
    return TrailPage(out, start if start > 0 else None)


def _match(
    index: int,
    data: bytes,
    f: TrailFilter,
    actors: set[str] | None,
    orgs: dict[str, str],
) -> dict[str, Any] | None:
    s = entry_summary(index, data, orgs)
    if f.actor is not None and s["actor"] != f.actor:
        return None
    if actors is not None and s["actor"] not in actors:
        return None
    if f.type is not None:
        t = f.type
        if not (s["type"] == t or (t.endswith(".") and s["type"].startswith(t))):
            return None
    if type_excluded(s["type"], f.exclude):
        return None
    if f.outcome is not None and s["outcome"]["result"] != f.outcome:
        return None
    if f.since is not None and s["time"] < f.since:
        return None
    if f.until is not None and s["time"] > f.until:
        return None
    return s


def rejected(
    led: LedgerPort,
    before: int | None = None,
    limit: int = 100,
    max_scan: int | None = None,
    exclude: Iterable[str] = (),
) -> TrailPage:
    """Rejected entries below index ``before``, newest first, at most ``limit``:
    every denied attempt, with who tried what and the rule or reason; less the
    types ``exclude`` names (as ``exclusions`` reads them)."""
    f = TrailFilter(outcome="rejected", before=before, limit=limit, exclude=exclusions(exclude))
    return trail(led, f, max_scan)
