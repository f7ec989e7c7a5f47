"""Data-quality checks on a CSV or Parquet file: schema, nulls, ranges, duplicate rows and
row count, as one deterministic JSON object that a validator signs and submits.

Also owns how the checks read a table and how their results stay reproducible (numbers
rounded to 12 significant digits, NaN and infinities as null); ``evaluation`` reuses both.
pyarrow and numpy are imported when a check runs, so importing this module needs neither.
"""

from __future__ import annotations

import importlib.metadata
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from ..artifacts.tables import StrPath, table_kind
from ..errors import ArtifactError, UsageError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = [
    "SCHEMA_TYPES",
    "Check",
    "json_number",
    "read_table",
    "require_numpy",
    "run_quality_checks",
    "tool_info",
    "type_name",
]

# The type names a schema may ask for. "float" also accepts an integer column (every value
# is a valid float), and a column whose values are all null matches any type: the nulls
# check is the one that reports it.
SCHEMA_TYPES = ("bool", "date", "float", "int", "string", "timestamp")

# Duplicate rows shown in the evidence; the count covers all of them.
_MAX_EXAMPLES = 10
_MAX_SAFE_INT = 2**53 - 1
_SIGNIFICANT_DIGITS = 12


@dataclass(frozen=True)
class Check:
    """The outcome of one named check; ``details`` is JSON-able and names the columns at fault."""

    name: str
    passed: bool
    details: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "details": self.details}


def run_quality_checks(
    path: StrPath,
    *,
    schema: Mapping[str, str] | None = None,
    max_null_fraction: float | Mapping[str, float] = 0.0,
    ranges: Mapping[str, Sequence[float | None]] | None = None,
    allow_duplicates: bool = False,
    min_rows: int = 1,
) -> dict[str, Any]:
    """Check a CSV or Parquet file and return the evidence as a JSON object.

    The file is read whole with pyarrow; CSV columns get pyarrow's inferred types, and an
    empty field (or ``NA``, ``null``, ``NaN``, ...) is a null in every column, strings
    included. Checks, in this order:

    - ``schema``: with ``schema`` (column -> one of ``SCHEMA_TYPES``), fails on columns it
      names that the file lacks (``missing``), columns the file has that it does not name
      (``extra``) and type mismatches (``mismatched``). Without it, passes and lists the
      types found.
    - ``nulls``: fails on each column whose fraction of nulls (NaN counts as null) is above
      ``max_null_fraction``: one number for every column, or a mapping column -> fraction
      where unnamed columns allow none. A named column the file lacks fails the check.
    - ``ranges``: column -> (min, max), both inclusive, None for no bound; fails on columns
      with values outside, that the file lacks, or that are not integer or float columns.
      Nulls and NaN are left to the nulls check.
    - ``duplicates``: counts rows equal to an earlier row (null equals null, NaN equals NaN,
      0.0 equals -0.0); fails on any unless ``allow_duplicates``.
    - ``row_count``: fails below ``min_rows`` rows.

    Returns ``{"passed", "checks": [{"name", "passed", "details"}, ...], "summary": {"rows",
    "columns", "nulls": {column: n}, "duplicates", "numeric": {column: {"min", "max",
    "mean"}}}, "parameters", "tool"}``; ``parameters`` echoes what was asked, so the
    evidence says what "passed" meant. UsageError for bad arguments, ArtifactError for a
    file that is not a readable CSV or Parquet table.
    """
    params = _Parameters.parse(schema, max_null_fraction, ranges, allow_duplicates, min_rows)
    table = read_table(path)
    names: list[str] = list(table.column_names)
    null_counts = {name: _null_count(table.column(name)) for name in names}
    duplicates, examples = _duplicate_rows(table)
    checks = [
        _check_schema(table, params.schema),
        _check_nulls(table.num_rows, null_counts, params),
        _check_ranges(table, params.ranges),
        Check(
            "duplicates",
            params.allow_duplicates or duplicates == 0,
            {
                "duplicates": duplicates,
                "allowed": params.allow_duplicates,
                "examples": [{"row": r, "duplicate_of": f} for r, f in examples],
            },
        ),
        Check(
            "row_count",
            table.num_rows >= params.min_rows,
            {"rows": table.num_rows, "min_rows": params.min_rows},
        ),
    ]
    return {
        "passed": all(c.passed for c in checks),
        "checks": [c.as_json() for c in checks],
        "summary": {
            "rows": table.num_rows,
            "columns": len(names),
            "nulls": null_counts,
            "duplicates": duplicates,
            "numeric": {
                name: _numeric_summary(table.column(name))
                for name in names
                if _is_numeric(table.column(name).type)
            },
        },
        "parameters": params.as_json(),
        "tool": tool_info(),
    }


# --- reading and JSON values, shared with evaluation ----------------------------------


def read_table(path: StrPath) -> Any:
    """The whole CSV or Parquet file as a ``pyarrow.Table`` (CSV types inferred; every
    empty field a null). ArtifactError when it is neither, cannot be read, or repeats a
    column name."""
    kind = table_kind(path)
    pa, pcsv, pq = _arrow()
    try:
        if kind == "csv":
            table = pcsv.read_csv(
                str(path), convert_options=pcsv.ConvertOptions(strings_can_be_null=True)
            )
        else:
            pf = pq.ParquetFile(str(path))
            try:
                table = pf.read()
            finally:
                pf.close()
    except (pa.ArrowException, OSError) as exc:
        raise ArtifactError(f"{path}: not a readable {kind.upper()} table: {exc}") from exc
    repeated = sorted(n for n, k in Counter(table.column_names).items() if k > 1)
    if repeated:
        raise ArtifactError(
            f"{path}: duplicate column names: {', '.join(map(repr, repeated))}; "
            "checks need every column named once"
        )
    return table


def json_number(value: Any) -> int | float | None:
    """A number as the evidence records it: integers within +-(2**53-1) as they are, other
    numbers rounded to 12 significant digits (so results reproduce across machines and
    library versions), NaN and infinities as None."""
    if value is None:
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
        return value
    x = float(value)
    if not math.isfinite(x):
        return None
    # + 0.0 turns -0.0 into 0.0
    return float(f"{x:.{_SIGNIFICANT_DIGITS}g}") + 0.0


def tool_info() -> dict[str, str]:
    """The ``tool`` field of every result: which code produced the evidence."""
    try:
        version = importlib.metadata.version("modelchain")
    except importlib.metadata.PackageNotFoundError:
        version = "0"
    return {"name": "modelchain.checks", "version": version}


def type_name(arrow_type: Any) -> str:
    """A column's type as the schema check names it (``SCHEMA_TYPES``, ``"null"`` for a
    column of nulls only, ``"decimal"``, else Arrow's own name)."""
    _, types = _types()
    t = arrow_type.value_type if types.is_dictionary(arrow_type) else arrow_type
    if types.is_boolean(t):
        return "bool"
    if types.is_integer(t):
        return "int"
    if types.is_floating(t):
        return "float"
    if types.is_decimal(t):
        return "decimal"
    if types.is_string(t) or types.is_large_string(t) or types.is_string_view(t):
        return "string"
    if types.is_date(t):
        return "date"
    if types.is_timestamp(t):
        return "timestamp"
    if types.is_null(t):
        return "null"
    return str(t)


def _arrow() -> tuple[Any, Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.csv as pcsv
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ArtifactError("data checks need pyarrow: pip install pyarrow numpy") from exc
    return pa, pcsv, pq


def _types() -> tuple[Any, Any]:
    pa, _, _ = _arrow()
    return pa, pa.types


def require_numpy() -> None:
    """ArtifactError with an install hint when numpy is missing."""
    try:
        import numpy  # noqa: F401
    except ImportError as exc:
        raise ArtifactError("data checks need numpy: pip install numpy") from exc


# --- parameters -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Parameters:
    schema: dict[str, str] | None
    null_default: float
    null_by_column: dict[str, float] | None
    ranges: dict[str, tuple[float | None, float | None]]
    allow_duplicates: bool
    min_rows: int

    @classmethod
    def parse(
        cls,
        schema: Mapping[str, str] | None,
        max_null_fraction: float | Mapping[str, float],
        ranges: Mapping[str, Sequence[float | None]] | None,
        allow_duplicates: bool,
        min_rows: int,
    ) -> _Parameters:
        parsed_schema = None
        if schema is not None:
            if not isinstance(schema, Mapping):
                raise UsageError("schema must map column names to type names")
            parsed_schema = {}
            for column, wanted in schema.items():
                if wanted not in SCHEMA_TYPES:
                    raise UsageError(
                        f"schema: column {column!r} asks for type {wanted!r}; "
                        f"known types: {', '.join(SCHEMA_TYPES)}"
                    )
                parsed_schema[str(column)] = wanted
        if isinstance(max_null_fraction, Mapping):
            null_default = 0.0
            null_by_column: dict[str, float] | None = {
                str(c): _fraction(f, f"max_null_fraction[{c!r}]")
                for c, f in max_null_fraction.items()
            }
        else:
            null_default = _fraction(max_null_fraction, "max_null_fraction")
            null_by_column = None
        parsed_ranges: dict[str, tuple[float | None, float | None]] = {}
        if ranges is not None:
            if not isinstance(ranges, Mapping):
                raise UsageError("ranges must map column names to (min, max) pairs")
            for column, bounds in ranges.items():
                parsed_ranges[str(column)] = _bounds(column, bounds)
        if not isinstance(allow_duplicates, bool):
            raise UsageError(f"allow_duplicates must be True or False, not {allow_duplicates!r}")
        if isinstance(min_rows, bool) or not isinstance(min_rows, int) or min_rows < 0:
            raise UsageError(
                f"min_rows must be a whole number of rows (0 or more), not {min_rows!r}"
            )
        return cls(
            parsed_schema, null_default, null_by_column, parsed_ranges, allow_duplicates, min_rows
        )

    def null_limit(self, column: str) -> float:
        if self.null_by_column is None:
            return self.null_default
        return self.null_by_column.get(column, 0.0)

    def as_json(self) -> dict[str, Any]:
        nulls: Any = (
            json_number(self.null_default)
            if self.null_by_column is None
            else {c: json_number(f) for c, f in self.null_by_column.items()}
        )
        return {
            "schema": self.schema,
            "max_null_fraction": nulls,
            "ranges": {
                c: [json_number(lo), json_number(hi)] for c, (lo, hi) in self.ranges.items()
            },
            "allow_duplicates": self.allow_duplicates,
            "min_rows": self.min_rows,
        }


def _real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value)


def _fraction(value: Any, what: str) -> float:
    if not _real(value) or not 0 <= value <= 1:
        raise UsageError(f"{what} must be a fraction from 0 to 1, not {value!r}")
    return float(value)


def _bounds(column: Any, bounds: Any) -> tuple[float | None, float | None]:
    if isinstance(bounds, str | bytes) or not isinstance(bounds, Sequence) or len(bounds) != 2:
        raise UsageError(f"ranges[{column!r}] must be a (min, max) pair, not {bounds!r}")
    lo, hi = bounds
    for bound in (lo, hi):
        if bound is not None and not _real(bound):
            raise UsageError(f"ranges[{column!r}]: bounds must be numbers or None, not {bound!r}")
    if lo is not None and hi is not None and lo > hi:
        raise UsageError(f"ranges[{column!r}]: min {lo!r} is above max {hi!r}")
    return lo, hi


# --- the checks -----------------------------------------------------------------------


def _check_schema(table: Any, schema: dict[str, str] | None) -> Check:
    actual = {f.name: type_name(f.type) for f in table.schema}
    details: dict[str, Any] = {"actual": actual}
    if schema is None:
        return Check("schema", True, details)
    missing = [c for c in schema if c not in actual]
    extra = [c for c in actual if c not in schema]
    mismatched = {
        c: {"expected": wanted, "actual": actual[c]}
        for c, wanted in schema.items()
        if c in actual and not _type_matches(wanted, actual[c])
    }
    details.update(missing=missing, extra=extra, mismatched=mismatched)
    return Check("schema", not (missing or extra or mismatched), details)


def _type_matches(wanted: str, actual: str) -> bool:
    return actual in (wanted, "null") or (wanted == "float" and actual == "int")


def _check_nulls(rows: int, null_counts: dict[str, int], params: _Parameters) -> Check:
    failed: dict[str, Any] = {}
    for column, nulls in null_counts.items():
        limit = params.null_limit(column)
        # exact: 1 null in 10 rows is within a 0.1 limit
        if rows and Fraction(nulls, rows) > Fraction(limit):
            failed[column] = {
                "nulls": nulls,
                "fraction": json_number(nulls / rows),
                "max_fraction": json_number(limit),
            }
    missing = [c for c in (params.null_by_column or {}) if c not in null_counts]
    return Check("nulls", not (failed or missing), {"failed": failed, "missing": missing})


def _check_ranges(table: Any, ranges: dict[str, tuple[float | None, float | None]]) -> Check:
    failed: dict[str, Any] = {}
    missing: list[str] = []
    not_numeric: dict[str, str] = {}
    names = set(table.column_names)
    for column, (lo, hi) in ranges.items():
        if column not in names:
            missing.append(column)
            continue
        values = table.column(column)
        if not _is_numeric(values.type):
            not_numeric[column] = type_name(values.type)
            continue
        below, above = _outside(values, lo, hi)
        if below or above:
            failed[column] = {
                "out_of_range": below + above,
                "below_min": below,
                "above_max": above,
                "min": json_number(lo),
                "max": json_number(hi),
            }
    return Check(
        "ranges",
        not (failed or missing or not_numeric),
        {"failed": failed, "missing": missing, "not_numeric": not_numeric},
    )


def _outside(values: Any, lo: float | None, hi: float | None) -> tuple[int, int]:
    """How many values are below ``lo`` and above ``hi``; nulls and NaN are neither.

    numpy, not Arrow, compares: it compares integers with any Python int exactly, where
    Arrow's implicit casts fail on bounds outside the column's type."""
    require_numpy()
    import numpy as np

    pa, types = _types()
    present = values.drop_null()
    if types.is_floating(values.type):
        present = present.cast(pa.float64())
    array = present.to_numpy()
    below = 0 if lo is None else int(np.count_nonzero(array < lo))
    above = 0 if hi is None else int(np.count_nonzero(array > hi))
    return below, above


def _count_true(mask: Any) -> int:
    import pyarrow.compute as pc

    total = pc.sum(mask).as_py()
    return int(total or 0)


def _is_numeric(arrow_type: Any) -> bool:
    _, types = _types()
    return bool(types.is_integer(arrow_type) or types.is_floating(arrow_type))


def _null_count(values: Any) -> int:
    _, types = _types()
    nulls = int(values.null_count)
    if types.is_floating(values.type):
        import pyarrow.compute as pc

        nulls += _count_true(pc.is_nan(values))
    return nulls


def _numeric_summary(values: Any) -> dict[str, Any]:
    """min, max and mean of the values that are neither null nor NaN (None if none are).

    The mean is numpy's pairwise sum over one contiguous array, so it does not depend on how
    the reader happened to chunk the column."""
    require_numpy()
    import numpy as np
    import pyarrow.compute as pc

    pa, types = _types()
    present = values.drop_null()
    if types.is_floating(values.type):
        floats = present.cast(pa.float64()).to_numpy()
        floats = floats[~np.isnan(floats)]
        if not floats.size:
            return {"min": None, "max": None, "mean": None}
        low, high = float(floats.min()), float(floats.max())
    else:
        if not len(present):
            return {"min": None, "max": None, "mean": None}
        low_high = pc.min_max(present).as_py()  # exact, also beyond 2**53
        low, high = low_high["min"], low_high["max"]
        floats = present.cast(pa.float64(), safe=False).to_numpy()
    return {
        "min": json_number(low),
        "max": json_number(high),
        "mean": json_number(float(np.mean(floats))),
    }


# --- duplicate rows -------------------------------------------------------------------
#
# Each column becomes one or two int64 "key" arrays with equal keys exactly for equal values
# (the canonical form of a row is its tuple of keys). A 64-bit hash of each row's keys is
# sorted; rows with equal hashes are then compared key by key, so a hash collision costs
# time but never miscounts. All vectorised: about a second for a million rows.


def _duplicate_rows(table: Any) -> tuple[int, list[tuple[int, int]]]:
    """How many rows equal an earlier row, and the first few as (row, first equal row)."""
    require_numpy()
    keys = [key for name in table.column_names for key in _column_keys(table.column(name))]
    return _find_duplicates(keys, _row_hashes(keys, table.num_rows))


def _column_keys(values: Any) -> list[npt.NDArray[np.int64]]:
    import numpy as np
    import pyarrow.compute as pc

    pa, types = _types()
    t = values.type
    if types.is_dictionary(t):
        values = pa.chunked_array([c.dictionary_decode() for c in values.chunks], t.value_type)
        t = t.value_type
    if types.is_floating(t) or (types.is_integer(t) and not types.is_uint64(t)):
        if types.is_floating(t):
            floats = pc.fill_null(values.cast(pa.float64()), 0.0).to_numpy() + 0.0  # -0.0 -> 0.0
            floats[np.isnan(floats)] = np.nan  # one NaN bit pattern
            key = floats.view(np.int64)
        else:
            key = pc.fill_null(values, 0).to_numpy().astype(np.int64)
        if not values.null_count:
            return [key]
        return [key, values.is_null().to_numpy().astype(np.int64)]
    # Everything else: the index of the value in a dictionary of the column's distinct
    # values (null -> -1), unified across chunks so indices are comparable.
    try:
        encoded = pa.table({"v": values.dictionary_encode()}).unify_dictionaries().column(0)
    except pa.ArrowNotImplementedError:
        return [_python_keys(values.to_pylist())]
    if not encoded.num_chunks:
        return [np.zeros(0, dtype=np.int64)]
    indices = [pc.fill_null(c.indices, -1).to_numpy().astype(np.int64) for c in encoded.chunks]
    return [np.concatenate(indices)]


def _python_keys(values: list[Any]) -> npt.NDArray[np.int64]:
    """Keys for types Arrow cannot dictionary-encode (lists, structs, maps): by ``repr``."""
    import numpy as np

    index: dict[str, int] = {}
    return np.fromiter(
        (index.setdefault(repr(v), len(index)) for v in values), dtype=np.int64, count=len(values)
    )


def _row_hashes(keys: list[npt.NDArray[np.int64]], rows: int) -> npt.NDArray[np.uint64]:
    import numpy as np

    h = np.zeros(rows, dtype=np.uint64)
    for key in keys:
        h = _mix(h ^ key.view(np.uint64))
    return h


def _mix(z: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """splitmix64's finaliser: nonlinear, so small key differences do not cancel out."""
    import numpy as np

    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _find_duplicates(
    keys: list[npt.NDArray[np.int64]], hashes: npt.NDArray[np.uint64]
) -> tuple[int, list[tuple[int, int]]]:
    import numpy as np

    order = np.argsort(hashes, kind="stable")  # stable: equal hashes stay in row order
    ordered = hashes[order]
    # Positions p (in sorted order) whose successor has the same hash.
    same = np.flatnonzero(ordered[1:] == ordered[:-1])
    if not same.size:
        return 0, []
    first, second = order[same], order[same + 1]
    equal = np.ones(same.size, dtype=bool)
    for key in keys:
        equal &= key[first] == key[second]
    if equal.all():
        # Every run of equal hashes is one row value; its first row is the original.
        starts = np.concatenate(([0], np.flatnonzero(ordered[1:] != ordered[:-1]) + 1))
        run = np.searchsorted(starts, same + 1, side="right") - 1
        originals = order[starts[run]]
        shown = np.argsort(second, kind="stable")[:_MAX_EXAMPLES]
        return int(same.size), [(int(second[i]), int(originals[i])) for i in shown]
    # A hash collision: compare the rows that share a hash exactly, in Python.
    rows = np.unique(np.concatenate((first, second)))
    seen: dict[tuple[int, ...], int] = {}
    pairs: list[tuple[int, int]] = []
    for row in rows.tolist():
        canonical = tuple(int(key[row]) for key in keys)
        earlier = seen.setdefault(canonical, row)
        if earlier != row:
            pairs.append((row, earlier))
    return len(pairs), pairs[:_MAX_EXAMPLES]
