"""Record-level Merkle roots and proofs over real CSV and Parquet files."""

from __future__ import annotations

import base64
import csv
import dataclasses
import datetime
import decimal
import hashlib
import hmac
import json
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelchain.artifacts.tables import iter_records, prove_record, record_root, table_kind
from modelchain.core.canonical import dumps
from modelchain.core.merkle import EMPTY_ROOT, MemoryTree, leaf_hash, root_of
from modelchain.core.records import (
    RECORD_SCHEME,
    RecordProof,
    RecordTree,
    record_leaf,
    record_salt,
    verify_record_proof,
)
from modelchain.errors import ArtifactError, MalformedError, NotFoundError, ProofError

pa = pytest.importorskip("pyarrow")
pacsv = pytest.importorskip("pyarrow.csv")
pq = pytest.importorskip("pyarrow.parquet")

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def expected_root(key: bytes, records: list[dict[str, Any]]) -> bytes:
    """The root recomputed from the scheme's definition, independently of RecordTree."""
    return root_of(
        [leaf_hash(record_leaf(i, record_salt(key, i), r)) for i, r in enumerate(records)]
    )


def mixed_table() -> Any:
    return pa.table(
        {
            "id": pa.array([1, 2, None, 2**60], pa.int64()),
            "score": pa.array([0.5, float("nan"), float("-inf"), None]),
            "name": ["ada", "名前", None, "zoë"],
            "day": pa.array(
                [
                    datetime.date(2024, 2, 29),
                    None,
                    datetime.date(1, 1, 1),
                    datetime.date(1969, 12, 31),
                ]
            ),
            "tags": pa.array([["a", "b"], [], None, [None]], pa.list_(pa.string())),
        }
    )


MIXED_ROWS = [
    {"id": 1, "score": 0.5, "name": "ada", "day": "2024-02-29", "tags": ["a", "b"]},
    {"id": 2, "score": "NaN", "name": "名前", "day": None, "tags": []},
    {"id": None, "score": "-Infinity", "name": None, "day": "0001-01-01", "tags": None},
    {
        "id": "1152921504606846976",
        "score": None,
        "name": "zoë",
        "day": "1969-12-31",
        "tags": [None],
    },
]


@pytest.fixture
def parquet_file(tmp_path: Path) -> Path:
    path = tmp_path / "mixed.parquet"
    pq.write_table(mixed_table(), path)
    return path


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    path = tmp_path / "mixed.csv"
    # pyarrow's writer: nulls become empty fields, lists cannot be written.
    pacsv.write_csv(mixed_table().drop_columns(["tags"]), path)
    return path


# --- the scheme itself -------------------------------------------------------------------


def test_salt_is_hmac_of_domain_and_big_endian_row() -> None:
    want = hmac.new(KEY, b"modelchain/record-salt/v1" + bytes(7) + b"\x05", "sha256").digest()
    assert record_salt(KEY, 5) == want
    assert record_salt(KEY, 5) != record_salt(KEY, 6) != record_salt(OTHER_KEY, 6)
    with pytest.raises(MalformedError):
        record_salt(KEY[:16], 0)
    with pytest.raises(MalformedError):
        record_salt(KEY, -1)


def test_leaf_is_canonical_json_of_row_salt_and_record() -> None:
    salt = bytes(32)
    leaf = record_leaf(3, salt, {"z": "1", "a": [1.0, None], "é": True})
    assert leaf == (
        b'{"record":{"a":[1,null],"z":"1","\xc3\xa9":true},"row":3,'
        b'"salt":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}'
    )
    with pytest.raises(MalformedError):
        record_leaf(3, bytes(31), {})
    with pytest.raises(MalformedError):
        record_leaf(3, salt, {"x": float("nan")})


# --- canonicalising rows -----------------------------------------------------------------


def test_parquet_rows_become_json_objects(parquet_file: Path) -> None:
    assert list(iter_records(parquet_file)) == MIXED_ROWS


def test_csv_values_are_the_strings_as_read(csv_file: Path) -> None:
    assert list(iter_records(csv_file)) == [
        {"id": "1", "score": "0.5", "name": "ada", "day": "2024-02-29"},
        {"id": "2", "score": "nan", "name": "名前", "day": ""},
        {"id": "", "score": "-inf", "name": "", "day": "0001-01-01"},  # null was written as ""
        {"id": "1152921504606846976", "score": "", "name": "zoë", "day": "1969-12-31"},
    ]


def test_parquet_types(tmp_path: Path) -> None:
    utc_ns = pa.timestamp("ns", tz="UTC")
    table = pa.table(
        {
            "u64": pa.array([2**64 - 1, 7], pa.uint64()),
            "i8": pa.array([-128, None], pa.int8()),
            "f32": pa.array([0.1, -0.0], pa.float32()),
            "bin": pa.array([b"\x00\xff", None]),
            "dec": pa.array(
                [decimal.Decimal("1.20"), decimal.Decimal("-0.05")], pa.decimal128(5, 2)
            ),
            "ts": pa.array([1_500_000_001, -1], utc_ns),
            "ts_ms": pa.array([253402300800000, 0], pa.timestamp("ms")),  # 10000-01-01
            "t": pa.array([3_600_001, None], pa.time32("ms")),
            "st": pa.array([{"x": 1, "y": "a"}, None]),
            "m": pa.array([[("k", 1)], []], pa.map_(pa.string(), pa.int64())),
            "cat": pa.array(["red", "red"]).dictionary_encode(),
            "flag": [True, None],
        }
    )
    path = tmp_path / "types.parquet"
    pq.write_table(table, path)
    first, second = iter_records(path)
    assert first == {
        "u64": "18446744073709551615",
        "i8": -128,
        "f32": 0.10000000149011612,
        "bin": {"base64": "AP8="},
        "dec": "1.20",
        "ts": "1970-01-01T00:00:01.500000001Z",
        "ts_ms": "+010000-01-01T00:00:00.000",
        "t": "01:00:00.001",
        "st": {"x": 1, "y": "a"},
        "m": [{"key": "k", "value": 1}],
        "cat": "red",
        "flag": True,
    }
    assert second == {
        "u64": 7,
        "i8": None,
        "f32": -0.0,
        "bin": None,
        "dec": "-0.05",
        "ts": "1969-12-31T23:59:59.999999999Z",
        "ts_ms": "1970-01-01T00:00:00.000",
        "t": None,
        "st": None,
        "m": [],
        "cat": "red",
        "flag": None,
    }


@settings(max_examples=20, deadline=None)
@given(st.lists(st.dates(), min_size=1, max_size=30))
def test_dates_match_python_isoformat(days: list[datetime.date]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "days.parquet"
        pq.write_table(pa.table({"d": pa.array(days, pa.date32())}), path)
        assert [r["d"] for r in iter_records(path)] == [d.isoformat() for d in days]


def test_unsupported_arrow_type_is_an_artifact_error(tmp_path: Path) -> None:
    path = tmp_path / "dur.parquet"
    pq.write_table(pa.table({"d": pa.array([1], pa.duration("s"))}), path)
    with pytest.raises(ArtifactError, match="'d'"):
        list(iter_records(path))


# --- roots -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["parquet_file", "csv_file"])
def test_root_is_deterministic_and_keyed(name: str, request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue(name)
    root, count = record_root(path, KEY)
    assert count == 4
    assert record_root(path, KEY) == (root, 4)
    assert root == expected_root(KEY, list(iter_records(path)))
    assert record_root(path, OTHER_KEY)[0] != root


def test_empty_tables_have_the_empty_root(tmp_path: Path) -> None:
    header_only = tmp_path / "h.csv"
    header_only.write_text("a,b\n")
    assert record_root(header_only, KEY) == (EMPTY_ROOT, 0)
    empty = tmp_path / "e.parquet"
    pq.write_table(pa.table({"a": pa.array([], pa.int64())}), empty)
    assert record_root(empty, KEY) == (EMPTY_ROOT, 0)
    with pytest.raises(NotFoundError):
        prove_record(empty, KEY, 0)


def test_parquet_streams_across_row_groups(tmp_path: Path) -> None:
    path = tmp_path / "groups.parquet"
    n = 100
    pq.write_table(
        pa.table({"i": list(range(n)), "s": [f"r{i}" for i in range(n)]}), path, row_group_size=7
    )
    assert pq.ParquetFile(path).metadata.num_row_groups == 15
    it = iter_records(path)
    assert next(it) == {"i": 0, "s": "r0"}  # lazily, before the rest is read
    rows = [{"i": 0, "s": "r0"}, *it]
    assert rows == [{"i": i, "s": f"r{i}"} for i in range(n)]
    root, count = record_root(path, KEY)
    assert (root, count) == (expected_root(KEY, rows), n)
    for row in (0, 6, 7, 13, 14, 99):
        verify_record_proof(prove_record(path, KEY, row), root, count)


# --- proofs ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["parquet_file", "csv_file"])
def test_every_row_proves_and_survives_json(name: str, request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue(name)
    root, count = record_root(path, KEY)
    records = list(iter_records(path))
    for row in range(count):
        proof = prove_record(path, KEY, row)
        assert (proof.scheme, proof.row, proof.count, proof.root) == (
            RECORD_SCHEME,
            row,
            count,
            root,
        )
        assert proof.record == records[row]
        verify_record_proof(proof, root, count)
        for text in (json.dumps(proof.to_json()), dumps(proof.to_json()).decode()):
            again = RecordProof.from_json(json.loads(text))
            verify_record_proof(again, root, count)
            assert again.to_json() == json.loads(text)


def _flip(h: bytes) -> bytes:
    return bytes([h[0] ^ 1]) + h[1:]


TAMPERS: dict[str, Callable[[RecordProof], RecordProof]] = {
    "record value": lambda p: dataclasses.replace(p, record={**p.record, "name": "mallory"}),
    "record column": lambda p: dataclasses.replace(p, record={**p.record, "extra": 1}),
    "salt": lambda p: dataclasses.replace(p, salt=_flip(p.salt)),
    "short salt": lambda p: dataclasses.replace(p, salt=p.salt[:31]),
    "row": lambda p: dataclasses.replace(p, row=p.row + 1),
    "row past count": lambda p: dataclasses.replace(p, row=p.count),
    "path hash": lambda p: dataclasses.replace(p, path=(_flip(p.path[0]), *p.path[1:])),
    "path order": lambda p: dataclasses.replace(p, path=tuple(reversed(p.path))),
    "path length": lambda p: dataclasses.replace(p, path=p.path[:-1]),
    "root": lambda p: dataclasses.replace(p, root=_flip(p.root)),
    "count": lambda p: dataclasses.replace(p, count=p.count + 1),
    "scheme": lambda p: dataclasses.replace(p, scheme="modelchain-records-v0"),
    "bad record": lambda p: dataclasses.replace(p, record={"x": float("nan")}),
}


@pytest.mark.parametrize("tamper", sorted(TAMPERS))
def test_tampered_proof_fails(tamper: str, parquet_file: Path) -> None:
    proof = prove_record(parquet_file, KEY, 1)
    bad = TAMPERS[tamper](proof)
    with pytest.raises(ProofError):
        verify_record_proof(bad)
    with pytest.raises(ProofError):
        verify_record_proof(bad, proof.root, proof.count)


def test_proof_must_match_the_ledgers_root_and_count(parquet_file: Path) -> None:
    proof = prove_record(parquet_file, KEY, 2)
    verify_record_proof(proof, proof.root, proof.count)
    with pytest.raises(ProofError, match="root"):
        verify_record_proof(proof, _flip(proof.root), proof.count)
    with pytest.raises(ProofError, match="rows"):
        verify_record_proof(proof, proof.root, proof.count + 1)
    # A proof for the same rows under another key is for another root.
    with pytest.raises(ProofError):
        verify_record_proof(prove_record(parquet_file, OTHER_KEY, 2), proof.root, proof.count)


def test_proof_reveals_no_other_row(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["name", "diagnosis"])
        for i in range(8):
            w.writerow([f"person-{i}", ["flu", "none"][i % 2]])
    proof = prove_record(path, KEY, 3)
    text = json.dumps(proof.to_json())
    assert "person-3" in text
    for i in range(8):
        if i != 3:
            assert f"person-{i}" not in text
            assert base64.b64encode(record_salt(KEY, i)).decode() not in text
    # The sibling leaf (row 2) cannot be found by guessing its low-entropy content without
    # the key, though it can with it: the salt is what protects it.
    guess = {"name": "person-2", "diagnosis": "flu"}
    assert proof.path[0] == leaf_hash(record_leaf(2, record_salt(KEY, 2), guess))
    for wrong_salt in (bytes(32), record_salt(OTHER_KEY, 2), hashlib.sha256(b"2").digest()):
        assert proof.path[0] != leaf_hash(record_leaf(2, wrong_salt, guess))


def test_row_out_of_range(parquet_file: Path) -> None:
    for row in (4, 100, -1):
        with pytest.raises(NotFoundError):
            prove_record(parquet_file, KEY, row)


def _good_json(parquet_file: Path) -> dict[str, Any]:
    result: dict[str, Any] = prove_record(parquet_file, KEY, 0).to_json()
    return result


@pytest.mark.parametrize(
    "change",
    [
        lambda o: o.pop("salt"),
        lambda o: o.update(extra=1),
        lambda o: o.update(scheme="modelchain-records-v2"),
        lambda o: o.update(row=True),
        lambda o: o.update(row=-1),
        lambda o: o.update(count="4"),
        lambda o: o.update(record=[1]),
        lambda o: o.update(record={"x": float("inf")}),
        lambda o: o.update(salt="not base64!"),
        lambda o: o.update(salt=base64.b64encode(bytes(31)).decode()),
        lambda o: o.update(root=o["root"].rstrip("=")),
        lambda o: o.update(path="AAAA"),
        lambda o: o.update(path=[o["root"]] * 65),
        lambda o: o.update(path=[1]),
    ],
)
def test_from_json_is_strict(change: Callable[[dict[str, Any]], Any], parquet_file: Path) -> None:
    obj = _good_json(parquet_file)
    RecordProof.from_json(obj)
    change(obj)
    with pytest.raises(MalformedError):
        RecordProof.from_json(obj)


def test_from_json_refuses_non_objects() -> None:
    with pytest.raises(MalformedError):
        RecordProof.from_json([])


# --- CSV edge cases ----------------------------------------------------------------------


def test_csv_quoting(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_bytes(
        b'\xef\xbb\xbfa,b\r\n"x, y","line1\nline2"\r\n\r\n"say ""hi""",\r\n"crlf\r\ninside",""\r\n'
    )
    assert list(iter_records(path)) == [
        {"a": "x, y", "b": "line1\nline2"},
        {"a": 'say "hi"', "b": ""},
        {"a": "crlf\r\ninside", "b": ""},
    ]
    root, count = record_root(path, KEY)
    for row in range(count):
        verify_record_proof(prove_record(path, KEY, row), root, count)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "no header"),
        (b"\n\n", "no header"),
        (b"a,b\n1,2\n3,4\n5\n", "line 4: 1 fields, but the header has 2"),
        (b'a,b\n"multi\nline",2\n3,4,5\n', "line 4: 3 fields"),
        (b"a,a\n1,2\n", "duplicate column names: 'a'"),
        (b"a,,c\n1,2,3\n", "column 2 of the header has an empty name"),
        (b'a,b\n"x"y,2\n', "bad CSV"),
        (b'a,b\n"unterminated,2\n', "bad CSV"),
        (b"a,b\n\xff,2\n", "not UTF-8"),
    ],
)
def test_bad_csv_is_an_artifact_error(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(ArtifactError, match=match):
        record_root(path, KEY)


# --- file kinds --------------------------------------------------------------------------


def test_table_kind(tmp_path: Path, parquet_file: Path, csv_file: Path) -> None:
    assert table_kind(parquet_file) == "parquet"
    assert table_kind(csv_file) == "csv"
    renamed = tmp_path / "data.bin"
    renamed.write_bytes(parquet_file.read_bytes())
    assert table_kind(renamed) == "parquet"
    assert list(iter_records(renamed)) == MIXED_ROWS


@pytest.mark.parametrize(
    ("name", "content"),
    [("notes.txt", b"a,b\n1,2\n"), ("data.json", b"[]"), ("fake.parquet", b"PAR1 not really")],
)
def test_unsupported_file_is_an_artifact_error(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ArtifactError):
        record_root(path, KEY)


def test_missing_path_and_directory_are_artifact_errors(tmp_path: Path) -> None:
    for path in (tmp_path / "absent.csv", tmp_path):
        with pytest.raises(ArtifactError):
            table_kind(path)
        with pytest.raises(ArtifactError):
            prove_record(path, KEY, 0)


def test_bad_key_is_refused_before_reading(csv_file: Path) -> None:
    with pytest.raises(MalformedError):
        record_root(csv_file, b"short")


# --- properties --------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    count=st.integers(0, 300),
    chunk_height=st.integers(0, 4),
    data=st.data(),
)
def test_record_tree_matches_memory_tree(
    count: int, chunk_height: int, data: st.DataObject
) -> None:
    keep = data.draw(st.integers(0, count - 1)) if count else None
    records = [{"i": str(i)} for i in range(count)]
    tree = RecordTree(KEY, keep, chunk_height=chunk_height)
    for r in records:
        tree.append(r)
    leaves = [leaf_hash(record_leaf(i, record_salt(KEY, i), r)) for i, r in enumerate(records)]
    assert tree.root() == root_of(leaves)
    assert tree.count == count
    if keep is not None:
        proof = tree.proof()
        assert list(proof.path) == MemoryTree(leaves).inclusion_proof(keep)
        verify_record_proof(proof, root_of(leaves), count)


_names = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00\ufeff"),
    min_size=1,
    max_size=6,
)
_cells = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=8)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    names=st.lists(_names, min_size=1, max_size=4, unique=True),
    data=st.data(),
)
def test_random_csv_tables_prove_every_row(names: list[str], data: st.DataObject) -> None:
    rows = data.draw(
        st.lists(st.lists(_cells, min_size=len(names), max_size=len(names)), max_size=12)
    )
    records = [dict(zip(names, row, strict=True)) for row in rows]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(names)
            w.writerows(rows)
        # The csv module writes a lone empty field as "" (not a blank line), so no row is lost.
        assert list(iter_records(path)) == records
        root, count = record_root(path, KEY)
        assert (root, count) == (expected_root(KEY, records), len(records))
        for row in range(count):
            verify_record_proof(prove_record(path, KEY, row), root, count)


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
    if isinstance(v, int) and abs(v) > 2**53 - 1:
        return str(v)
    return v


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.none() | st.integers(-(2**63), 2**63 - 1),
            st.none() | st.floats(),
            st.none() | _cells,
            st.lists(st.none() | st.booleans(), max_size=3),
        ),
        max_size=12,
    )
)
def test_random_parquet_tables_prove_every_row(rows: list[tuple[Any, ...]]) -> None:
    names = ["i", "f", "s", "l"]
    columns: list[Any] = list(zip(*rows, strict=True)) if rows else [[], [], [], []]
    table = pa.table(
        {
            "i": pa.array(columns[0], pa.int64()),
            "f": pa.array(columns[1], pa.float64()),
            "s": pa.array(columns[2], pa.string()),
            "l": pa.array(columns[3], pa.list_(pa.bool_())),
        }
    )
    records = [{n: _json_value(v) for n, v in zip(names, row, strict=True)} for row in rows]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.parquet"
        pq.write_table(table, path, row_group_size=5)
        got = list(iter_records(path))
        assert dumps(got) == dumps(records)
        root, count = record_root(path, KEY)
        assert (root, count) == (expected_root(KEY, records), len(records))
        for row in range(count):
            verify_record_proof(prove_record(path, KEY, row), root, count)
