"""Rows of CSV and Parquet files as canonical JSON objects, and their record-level Merkle roots.

Owns how a row becomes a JSON object (the ``modelchain-records-v1`` row canonicalisation)
and streams files through ``core.records`` so memory stays bounded whatever the row count.
pyarrow is needed for Parquet only, and is imported when a Parquet file is read.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..core.b64 import b64
from ..core.records import RecordProof, RecordTree, verify_record_proof
from ..errors import ArtifactError, NotFoundError

__all__ = ["iter_records", "prove_record", "record_root", "table_kind"]

StrPath = str | os.PathLike[str]

_PARQUET_SUFFIXES = frozenset({".parquet", ".parq", ".pq"})
_PARQUET_MAGIC = b"PAR1"
# Rows per Arrow record batch: bounds memory to one batch of Python objects.
_BATCH_ROWS = 16_384
_MAX_SAFE_INT = 2**53 - 1


def table_kind(path: StrPath) -> str:
    """``"csv"`` or ``"parquet"``: by extension (.csv; .parquet, .parq, .pq), else by the
    Parquet magic ``PAR1``; anything else is an ArtifactError."""
    p = Path(path)
    if not p.is_file():
        raise ArtifactError(f"{p}: not a file")
    suffix = p.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in _PARQUET_SUFFIXES:
        return "parquet"
    try:
        with p.open("rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise ArtifactError(f"{p}: cannot read: {exc.strerror or exc}") from exc
    if head == _PARQUET_MAGIC:
        return "parquet"
    raise ArtifactError(
        f"{p}: record roots need a CSV (.csv) or Parquet (.parquet) file; this is neither"
    )


def iter_records(path: StrPath) -> Iterator[dict[str, Any]]:
    """Each row of a CSV or Parquet file as a JSON object (column name -> value), in order.

    CSV: UTF-8 (a leading byte order mark is dropped), RFC 4180 quoting as Python's csv
    module reads it in strict mode, first non-blank row the header. Every value is the
    string exactly as read: an empty field is ``""``, never null, and nothing is converted
    to a number. Blank lines are skipped. Empty or duplicate column names, a row whose
    field count differs from the header's, bad quoting, bad UTF-8 and fields over the csv
    module's field size limit (128 KiB unless raised) are ArtifactErrors.

    Parquet (read a record batch at a time; memory holds one row group's Arrow data and
    one batch of rows, never the whole file): null -> None; bool; integers ->
    int, except beyond +-(2**53-1), which become the decimal string; floats -> float
    (float16 and float32 widened to float64 exactly), with NaN and infinities as the
    strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``; strings; binary ->
    ``{"base64": <standard base64>}``; decimals -> fixed-point string with the column's
    scale (``"1.20"``); date -> ``"YYYY-MM-DD"``; timestamp -> ``"YYYY-MM-DDTHH:MM:SS"``
    with as many fraction digits as the unit has (none, 3, 6, 9) and ``"Z"`` when the
    column has a time zone (values are UTC instants; the zone name is not kept); time of
    day -> ``"HH:MM:SS"`` plus the unit's fraction digits; years outside 0000-9999 are
    written ``+YYYYYY``/``-YYYYYY``; dictionary columns -> their values; lists -> arrays;
    structs -> objects; maps -> arrays of ``{"key": k, "value": v}``. Other types
    (durations, intervals, unions, extension types) are ArtifactErrors.

    Canonical JSON does not keep types apart: the int 1 and the float 1.0, or the float NaN
    and the string "NaN", give the same leaf. A record proof says which JSON row was in the
    table, not which Arrow type held it.
    """
    kind = table_kind(path)
    if kind == "csv":
        return _csv_records(Path(path))
    return _parquet_records(Path(path))


def _scan(path: StrPath, record_key: bytes, keep: int | None) -> RecordTree:
    tree = RecordTree(record_key, keep)
    append = tree.append
    for record in iter_records(path):
        append(record)
    return tree


def record_root(path: StrPath, record_key: bytes) -> tuple[bytes, int]:
    """The ``modelchain-records-v1`` root of a CSV or Parquet file and its row count.

    Streams the file: memory is one batch of rows (for Parquet, one row group's Arrow data),
    32 bytes per 65,536 rows and one 2 MiB chunk of leaf hashes. Use a fresh
    ``record_key`` for every dataset version; leaves of equal rows under the same key and
    index are equal, so proofs from two versions would show which other rows are unchanged.
    """
    tree = _scan(path, record_key, None)
    return tree.root(), tree.count


def prove_record(path: StrPath, record_key: bytes, row: int) -> RecordProof:
    """A proof that row ``row`` (0-based) of the file is in its record tree.

    NotFoundError when the file has no such row. The proof reveals that row, its salt and
    hashes that, without ``record_key``, say nothing about the other rows.
    """
    if isinstance(row, bool) or not isinstance(row, int) or row < 0:
        raise NotFoundError(f"{path}: row {row!r} is not a row number (0, 1, 2, ...)")
    tree = _scan(path, record_key, row)
    if row >= tree.count:
        raise NotFoundError(f"{path}: has {tree.count} rows, so no row {row} (rows count from 0)")
    proof = tree.proof()
    verify_record_proof(proof)
    return proof


# --- CSV -------------------------------------------------------------------------------


def _csv_records(path: Path) -> Iterator[dict[str, Any]]:
    try:
        f = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    with f:
        reader = csv.reader(f, strict=True)
        header: list[str] | None = None
        try:
            for fields in reader:
                if not fields:
                    continue
                if header is None:
                    header = _csv_header(path, fields)
                    width = len(header)
                    continue
                if len(fields) != width:
                    raise ArtifactError(
                        f"{path}: line {reader.line_num}: {len(fields)} fields, "
                        f"but the header has {width}"
                    )
                yield dict(zip(header, fields, strict=True))
        except csv.Error as exc:
            raise ArtifactError(f"{path}: line {reader.line_num}: bad CSV: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise ArtifactError(
                f"{path}: not UTF-8 at or after line {reader.line_num + 1} ({exc.reason})"
            ) from exc
        except OSError as exc:
            raise ArtifactError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if header is None:
        raise ArtifactError(f"{path}: no header row; a CSV file must name its columns")


def _csv_header(path: Path, names: list[str]) -> list[str]:
    for i, name in enumerate(names):
        if not name:
            raise ArtifactError(f"{path}: column {i + 1} of the header has an empty name")
    _check_unique(path, names)
    return names


def _check_unique(path: Path, names: list[str], where: str = "") -> None:
    dup = sorted(n for n, k in Counter(names).items() if k > 1)
    if dup:
        raise ArtifactError(f"{path}: duplicate column names{where}: {', '.join(map(repr, dup))}")


# --- Parquet ---------------------------------------------------------------------------


def _arrow() -> tuple[Any, Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ArtifactError("reading Parquet files needs pyarrow: pip install pyarrow") from exc
    return pa, pc, pq


def _parquet_records(path: Path) -> Iterator[dict[str, Any]]:
    pa, pc, pq = _arrow()
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise ArtifactError(f"{path}: not a readable Parquet file: {exc}") from exc
    try:
        names: list[str] = list(pf.schema_arrow.names)
        _check_unique(path, names)
        convert = _Converter(path, pa, pc)
        batches = pf.iter_batches(batch_size=_BATCH_ROWS)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                break
            except (pa.ArrowException, OSError) as exc:
                raise ArtifactError(f"{path}: cannot read Parquet data: {exc}") from exc
            columns = [convert.column(batch.column(i), name) for i, name in enumerate(names)]
            if columns:
                yield from (
                    dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)
                )
            else:
                yield from ({} for _ in range(batch.num_rows))
    finally:
        pf.close()


class _Converter:
    """Arrow arrays to lists of JSON values, a column at a time (no ``as_py`` on temporal
    values: it changes with the unit and with whether pandas is installed)."""

    def __init__(self, path: Path, pa: Any, pc: Any) -> None:
        self.path = path
        self.pa = pa
        self.pc = pc
        self.dates: dict[int, str] = {}

    def column(self, arr: Any, name: str) -> list[Any]:
        try:
            return self._values(arr, name)
        except (self.pa.ArrowException, ValueError, OverflowError) as exc:
            raise ArtifactError(f"{self.path}: column {name!r}: cannot convert: {exc}") from exc

    def _values(self, arr: Any, where: str) -> list[Any]:
        pa, types = self.pa, self.pa.types
        t = arr.type
        if types.is_dictionary(t):
            return self._values(arr.dictionary_decode(), where)
        if types.is_null(t):
            return [None] * len(arr)
        if types.is_boolean(t) or types.is_string(t) or types.is_large_string(t):
            return list(arr.to_pylist())
        if types.is_string_view(t):
            return list(arr.to_pylist())
        if types.is_integer(t):
            ints: list[Any] = arr.to_pylist()
            if t.bit_width < 64:
                return ints
            m = _MAX_SAFE_INT
            return [v if v is None or -m <= v <= m else str(v) for v in ints]
        if types.is_floating(t):
            floats: list[Any] = arr.cast(pa.float64()).to_pylist()
            # x - x is 0.0 for finite x, NaN for NaN and the infinities.
            return [v if v is None or v - v == 0 else _nonfinite(v) for v in floats]
        if (
            types.is_binary(t)
            or types.is_large_binary(t)
            or types.is_fixed_size_binary(t)
            or types.is_binary_view(t)
        ):
            return [None if v is None else {"base64": b64(v)} for v in arr.to_pylist()]
        if types.is_decimal(t):
            return [None if v is None else format(v, "f") for v in arr.to_pylist()]
        if types.is_date32(t):
            return self._days(arr.cast(pa.int32()).to_pylist(), 1)
        if types.is_date64(t):
            return self._days(arr.cast(pa.int64()).to_pylist(), 86_400_000)
        if types.is_timestamp(t):
            suffix = "Z" if t.tz is not None else ""
            return self._timestamps(arr.cast(pa.int64()).to_pylist(), t.unit, suffix)
        if types.is_time32(t) or types.is_time64(t):
            width = pa.int32() if types.is_time32(t) else pa.int64()
            per_second, digits = _UNITS[t.unit]
            return [
                None if v is None else _clock(v, per_second, digits)
                for v in arr.cast(width).to_pylist()
            ]
        if types.is_map(t):
            entry = pa.struct(
                [pa.field("key", t.key_type, nullable=False), pa.field("value", t.item_type)]
            )
            return self._values(arr.cast(pa.list_(entry)), where)
        if (
            types.is_list(t)
            or types.is_large_list(t)
            or types.is_fixed_size_list(t)
            or types.is_list_view(t)
            or types.is_large_list_view(t)
        ):
            flat = self._values(arr.flatten(), where + "[]")
            out: list[Any] = []
            pos = 0
            for n in self.pc.list_value_length(arr).to_pylist():
                if n is None:
                    out.append(None)
                else:
                    out.append(flat[pos : pos + n])
                    pos += n
            return out
        if types.is_struct(t):
            names = [t.field(i).name for i in range(t.num_fields)]
            _check_unique(self.path, names, f" in struct {where!r}")
            fields = [
                self._values(child, f"{where}.{name}")
                for child, name in zip(arr.flatten(), names, strict=True)
            ]
            if fields:
                rows: list[Any] = [
                    dict(zip(names, v, strict=True)) for v in zip(*fields, strict=True)
                ]
            else:
                rows = [{} for _ in range(len(arr))]
            if arr.null_count:
                for i, null in enumerate(arr.is_null().to_pylist()):
                    if null:
                        rows[i] = None
            return rows
        raise ArtifactError(
            f"{self.path}: column {where!r} has type {t}, which has no record encoding"
        )

    def _days(self, values: list[Any], per_day: int) -> list[Any]:
        cache = self.dates
        out: list[Any] = []
        for v in values:
            if v is None:
                out.append(None)
                continue
            day = v // per_day
            text = cache.get(day)
            if text is None:
                if len(cache) > 100_000:
                    cache.clear()
                text = cache[day] = _iso_date(day)
            out.append(text)
        return out

    def _timestamps(self, values: list[Any], unit: str, suffix: str) -> list[Any]:
        per_second, digits = _UNITS[unit]
        per_day = 86_400 * per_second
        days = self._days(values, per_day)
        return [
            None if v is None else f"{d}T{_clock(v % per_day, per_second, digits)}{suffix}"
            for v, d in zip(values, days, strict=True)
        ]


_UNITS = {"s": (1, 0), "ms": (1_000, 3), "us": (1_000_000, 6), "ns": (1_000_000_000, 9)}


def _nonfinite(v: float) -> str:
    if v != v:
        return "NaN"
    return "Infinity" if v > 0 else "-Infinity"


def _clock(ticks: int, per_second: int, digits: int) -> str:
    seconds, fraction = divmod(ticks, per_second)
    minutes, s = divmod(seconds, 60)
    h, m = divmod(minutes, 60)
    text = f"{h:02d}:{m:02d}:{s:02d}"
    return f"{text}.{fraction:0{digits}d}" if digits else text


def _iso_date(days: int) -> str:
    """Proleptic Gregorian date of a day count from 1970-01-01, for any year
    (H. Hinnant's civil_from_days), so no value is out of range."""
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    y = yoe + era * 400 + (m <= 2)
    year = f"{y:04d}" if 0 <= y <= 9999 else f"{y:+07d}"
    return f"{year}-{m:02d}-{d:02d}"
