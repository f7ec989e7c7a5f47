"""Times as users write them and as the ledger records them (UTC milliseconds)."""

from __future__ import annotations

import datetime as dt

from ..errors import UsageError

__all__ = ["human_duration", "human_time", "iso_time", "parse_duration", "parse_time", "rfc3339"]

_DAY_MS = 86_400_000
_UNITS_MS = {"d": _DAY_MS, "h": 3_600_000, "m": 60_000, "s": 1000}


def rfc3339(ms: int) -> str:
    """UTC with millisecond precision: ``2026-11-20T12:00:00.000Z``."""
    seconds, millis = divmod(ms, 1000)
    t = dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis:03d}Z"


def human_time(ms: int) -> str:
    """UTC to the second, for people: ``2026-11-20 12:00:00``."""
    return dt.datetime.fromtimestamp(ms // 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def iso_time(ms: int) -> str:
    """ISO 8601 UTC to the second, for text output: ``2026-11-20T12:00:00Z``."""
    return dt.datetime.fromtimestamp(ms // 1000, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str, *, end: bool = False) -> int:
    """Milliseconds since the epoch from ms digits, an ISO 8601 / RFC 3339 time
    (UTC unless it gives an offset) or a date: the start of that UTC day, or
    with ``end`` its last millisecond, so that ``--to 2026-11-20`` includes it."""
    text = text.strip()
    if text.isascii() and text.isdigit():  # "²".isdigit() is true, int("²") fails
        if len(text) > 19:  # past any int64 (and Python's 4,300-digit limit for int())
            raise UsageError(f"{text[:24]}... is not a time: too many digits for milliseconds")
        return int(text)
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            ms = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()) * 1000
            return ms + _DAY_MS - 1 if end else ms
        t = dt.datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError as exc:
        raise UsageError(
            f"{text!r} is not a time: give an ISO 8601 time (2026-11-20T12:00:00Z), "
            "a date (2026-11-20) or milliseconds since the epoch"
        ) from exc
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return int(t.timestamp() * 1000)


def parse_duration(text: str) -> int:
    """Milliseconds from a span as people write it: ``7d``, ``36h``, ``90m``,
    ``30s`` (one number and one unit)."""
    text = text.strip().lower()
    number, unit = text[:-1], text[-1:]
    if unit not in _UNITS_MS or not (number.isascii() and number.isdigit()) or len(number) > 9:
        raise UsageError(
            f"{text!r} is not a duration: give a whole number and a unit, d, h, m or s "
            "(7d, 36h, 90m, 30s)"
        )
    return int(number) * _UNITS_MS[unit]


def human_duration(ms: int) -> str:
    """``7d``, ``3d 4h``, ``5m 30s``: a span read at a glance (two units at most)."""
    seconds = ms // 1000
    parts = []
    for unit, size in _UNITS_MS.items():
        if seconds * 1000 >= size:
            parts.append(f"{seconds * 1000 // size}{unit}")
            seconds %= size // 1000
    return " ".join(parts[:2]) or f"{ms}ms"
