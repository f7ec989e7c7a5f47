"""Times as users write them and as the ledger records them (UTC milliseconds)."""

from __future__ import annotations

import datetime as dt

from ..errors import UsageError

__all__ = ["human_time", "iso_time", "parse_time", "rfc3339"]

_DAY_MS = 86_400_000


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
