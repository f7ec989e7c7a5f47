"""Tamper evidence: one changed byte anywhere in the store is reported by `log verify`.

A ledger of 604 entries (two full level-0 tiles, a partial one, a level-1 tile,
eight checkpoints) is built once; each case copies it, changes it with sqlite3
directly, as an attacker with the file would, and audits the copy read-only.
"""

from __future__ import annotations

import base64
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import make_signer

import modelchain as mc
from modelchain.core import canonical
from modelchain.core.checkpoint import Checkpoint, sign_checkpoint
from modelchain.core.identity import verifier_of
from modelchain.core.merkle import leaf_hash
from modelchain.core.note import parse_note
from modelchain.core.tiles import TileWriter
from modelchain.errors import AuditError
from modelchain.keys import FileSigner
from modelchain.ledger.ledger import Founder
from modelchain.node.node import NodeConfig

ORIGIN = "ledger.example.org/tamper"
SIZE = 604  # 256 + 256 + 92: tiles 0/0 and 0/1 full, 0/2 partial, and 1/0 with two hashes
LAST = SIZE - 1
REJECTED = 602  # carol, an auditor, may not record events: an entry with a rejected outcome
CHECKPOINTS = (1, 101, 201, 301, 401, 501, 601, 604)
HASH = 32

Apply = Callable[[sqlite3.Connection], None]


# -- the ledger under attack ---------------------------------------------------


def _build(path: Path) -> None:
    alice, bob, carol = make_signer("alice"), make_signer("bob"), make_signer("carol")
    members = [
        Founder(verifier_of(bob), "acme", ("trainer",)),
        Founder(verifier_of(carol), "audit-co", ("auditor",)),
    ]
    # Checkpoints only when asked, so their sizes are known.
    config = NodeConfig(checkpoint_every=10**9, checkpoint_interval_ms=10**9)
    with mc.init(path, ORIGIN, alice, org="acme", members=members, config=config) as led:
        for batch in range(6):
            signer = alice if batch % 2 == 0 else bob
            envelopes = [
                led.transaction(
                    "event.record", {"event": "train.step", "data": {"i": i}}, signer.name
                ).sign(signer)
                for i in range(batch * 100, batch * 100 + 100)
            ]
            led.submit_many(envelopes)
            led.checkpoint()
        led.record_event("eval.done", {"score": 0.93}, alice)
        assert not led.record_event("model.peek", {}, carol).outcome.accepted
        led.record_event("deploy.done", {"where": "prod"}, bob)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pristine") / "ledger"
    _build(path)
    db = sqlite3.connect(path / "ledger.db")
    try:
        tiles = db.execute("SELECT level, n, length(hashes) FROM tiles ORDER BY level, n")
        assert tiles.fetchall() == [(0, 0, 8192), (0, 1, 8192), (0, 2, 92 * HASH), (1, 0, 2 * HASH)]
        sizes = [row[0] for row in db.execute("SELECT size FROM checkpoints ORDER BY size")]
        assert tuple(sizes) == CHECKPOINTS
    finally:
        db.close()
    return path


@pytest.fixture
def copy(pristine: Path, tmp_path: Path) -> Path:
    target = tmp_path / "ledger"
    shutil.copytree(pristine, target)
    return target


def _tamper(path: Path, apply: Apply) -> None:
    db = sqlite3.connect(path / "ledger.db", isolation_level=None)
    try:
        db.execute("BEGIN")
        apply(db)
        db.execute("COMMIT")
    finally:
        db.close()


def _audit_error(path: Path) -> AuditError:
    """The AuditError a read-only full audit raises; fails the test if there is none."""
    with mc.open(path, readonly=True) as led, pytest.raises(AuditError) as caught:
        led.audit()
    return caught.value


def _cli_verify(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelchain", "log", "verify", "--ledger", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


# -- ways to change one byte ---------------------------------------------------


def _flip(data: bytes, pos: int, xor: int = 0x01) -> bytes:
    out = bytearray(data)
    out[pos] ^= xor
    assert bytes(out) != data
    return bytes(out)


def _blob(db: sqlite3.Connection, sql: str, *key: object) -> bytes:
    row = db.execute(sql, key).fetchone()
    assert row is not None, (sql, key)
    return bytes(row[0])


def _near(data: bytes, marker: bytes, offset: int) -> int:
    """The position ``offset`` bytes after ``marker`` ends, or ``-offset`` before it starts."""
    start = data.index(marker)
    return start + len(marker) + offset if offset >= 0 else start + offset


def _entry_byte(idx: int, marker: bytes, offset: int = 0, xor: int = 0x01) -> Apply:
    def apply(db: sqlite3.Connection) -> None:
        data = _blob(db, "SELECT data FROM entries WHERE idx=?", idx)
        pos = _near(data, marker, offset)
        db.execute("UPDATE entries SET data=? WHERE idx=?", (_flip(data, pos, xor), idx))

    return apply


def _entry_signature_padding_bits(idx: int) -> Apply:
    """Re-spell the entry's signature with non-zero padding bits: new bytes, same signature.

    A 64-byte signature is 86 base64 characters and ``==``; the last character
    carries 2 bits of signature and 4 that decoders ignore."""

    def apply(db: sqlite3.Connection) -> None:
        data = _blob(db, "SELECT data FROM entries WHERE idx=?", idx)
        start = data.index(SIG) + len(SIG)
        end = data.index(b'"', start)
        sig = data[start:end]
        assert sig.endswith(b"==")
        last = _B64.index(sig[-3:-2])
        respelled = sig[:-3] + _B64[last ^ 1 : (last ^ 1) + 1] + b"=="
        assert base64.b64decode(respelled) == base64.b64decode(sig)
        db.execute(
            "UPDATE entries SET data=? WHERE idx=?", (data[:start] + respelled + data[end:], idx)
        )

    return apply


def _tile_byte(level: int, n: int, hash_no: int, byte: int = 7) -> Apply:
    def apply(db: sqlite3.Connection) -> None:
        sql = "SELECT hashes FROM tiles WHERE level=? AND n=?"
        data = _blob(db, sql, level, n)
        db.execute(
            "UPDATE tiles SET hashes=? WHERE level=? AND n=?",
            (_flip(data, hash_no * HASH + byte), level, n),
        )

    return apply


def _checkpoint_byte(size: int, line: int, offset: int) -> Apply:
    """Flip byte ``offset`` of line ``line`` (0: origin, 1: size, 2: root, 4: signature);
    a negative offset counts from the end of the line."""

    def apply(db: sqlite3.Connection) -> None:
        note = _blob(db, "SELECT note FROM checkpoints WHERE size=?", size)
        lines = note.split(b"\n")
        pos = sum(len(x) + 1 for x in lines[:line]) + offset % len(lines[line])
        db.execute("UPDATE checkpoints SET note=? WHERE size=?", (_flip(note, pos), size))

    return apply


def _state_byte(key: str, marker: bytes, offset: int = 0) -> Apply:
    def apply(db: sqlite3.Connection) -> None:
        data = _blob(db, "SELECT value FROM state WHERE key=?", key)
        pos = _near(data, marker, offset)
        db.execute("UPDATE state SET value=? WHERE key=?", (_flip(data, pos), key))

    return apply


def _sql(*statements: str) -> Apply:
    def apply(db: sqlite3.Connection) -> None:
        for statement in statements:
            db.execute(statement)

    return apply


def _swap_entries(a: int, b: int) -> Apply:
    def apply(db: sqlite3.Connection) -> None:
        data_a = _blob(db, "SELECT data FROM entries WHERE idx=?", a)
        data_b = _blob(db, "SELECT data FROM entries WHERE idx=?", b)
        db.execute("UPDATE entries SET data=? WHERE idx=?", (data_b, a))
        db.execute("UPDATE entries SET data=? WHERE idx=?", (data_a, b))

    return apply


def _then_rebuild_tiles(apply: Apply) -> Apply:
    """Tamper, then recompute every tile from the stored entries: tiles are unsigned,
    so anyone who can edit the file can make them agree with edited entries."""

    def rebuilt(db: sqlite3.Connection) -> None:
        apply(db)
        leaves = [
            leaf_hash(bytes(d)) for (d,) in db.execute("SELECT data FROM entries ORDER BY idx")
        ]
        tiles = TileWriter().append(leaves)
        db.execute("DELETE FROM tiles")
        db.executemany(
            "INSERT INTO tiles (level, n, hashes) VALUES (?, ?, ?)",
            ((level, n, h) for (level, n), h in tiles.items()),
        )

    return rebuilt


def _entry_outcome_rewritten(idx: int) -> Apply:
    def apply(db: sqlite3.Connection) -> None:
        data = _blob(db, "SELECT data FROM entries WHERE idx=?", idx)
        forged = canonical.dumps({"result": "rejected", "code": "forged", "reason": "forged"})
        new = data.replace(b'{"result":"accepted"}', forged)
        assert new != data
        db.execute("UPDATE entries SET data=? WHERE idx=?", (new, idx))

    return apply


@dataclass(frozen=True)
class Tamper:
    id: str
    apply: Apply
    index: int | None  # the entry AuditError must name, where it names one
    says: str  # a pattern the message must match, so a user can find the damage


PAYLOAD, SIG, KEYID = b'"payload":"', b'"sig":"', b'"keyid":"'
_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

TAMPERS = [
    # (a) entries: first, middle, last; payload, signature, outcome, structure
    Tamper("entry-0-payload", _entry_byte(0, PAYLOAD, 3), 0, "entry 0"),
    Tamper("entry-0-signature", _entry_byte(0, SIG, 30), 0, "entry 0"),
    Tamper("entry-0-outcome", _entry_byte(0, b'"result":"', 2), 0, "entry 0"),
    Tamper("entry-1-payload", _entry_byte(1, PAYLOAD, 200), 1, "entry 1"),
    Tamper("entry-300-payload", _entry_byte(300, PAYLOAD, 60), 300, "entry 300"),
    Tamper("entry-300-payload-end", _entry_byte(300, b'","payloadType"', -1), 300, "entry 300"),
    Tamper("entry-300-payload-type", _entry_byte(300, b'"payloadType":"', 20), 300, "entry 300"),
    Tamper("entry-300-signature", _entry_byte(300, SIG, 40), 300, "entry 300"),
    Tamper(
        "entry-300-signature-padding-bits", _entry_signature_padding_bits(300), 300, "entry 300"
    ),
    Tamper("entry-300-keyid", _entry_byte(300, KEYID, 2), 300, "entry 300"),
    Tamper("entry-300-outcome", _entry_byte(300, b'"outcome":{"'), 300, "entry 300"),
    Tamper("entry-300-index-digit", _entry_byte(300, b'"index":'), 300, "entry 300"),
    Tamper("entry-300-open-brace", _entry_byte(300, b""), 300, "entry 300"),
    Tamper("entry-300-colon", _entry_byte(300, b'"envelope"'), 300, "entry 300"),
    Tamper("entry-300-not-utf8", _entry_byte(300, PAYLOAD, 10, xor=0x80), 300, "entry 300"),
    Tamper(
        "entry-rejected-reason",
        _entry_byte(REJECTED, b'"reason":"', 5),
        REJECTED,
        f"entry {REJECTED}",
    ),
    Tamper(
        "entry-rejected-code", _entry_byte(REJECTED, b'"code":"', 1), REJECTED, f"entry {REJECTED}"
    ),
    Tamper("entry-last-payload", _entry_byte(LAST, PAYLOAD, 100), LAST, f"entry {LAST}"),
    Tamper("entry-last-signature", _entry_byte(LAST, SIG, 5), LAST, f"entry {LAST}"),
    Tamper("entry-last-close-brace", _entry_byte(LAST, b'"accepted"}'), LAST, f"entry {LAST}"),
    # (b) tree hashes: full level-0 tiles, the partial one, the level-1 tile
    Tamper("tile-0/0-first-hash", _tile_byte(0, 0, 0), 0, "entry 0"),
    Tamper("tile-0/0-full", _tile_byte(0, 0, 17), 17, "entry 17"),
    Tamper("tile-0/1-full", _tile_byte(0, 1, 200, byte=31), 456, "entry 456"),
    Tamper("tile-0/2-partial", _tile_byte(0, 2, 40, byte=0), 552, "entry 552"),
    Tamper("tile-0/2-partial-last-hash", _tile_byte(0, 2, 91), LAST, f"entry {LAST}"),
    Tamper("tile-1/0-first-hash", _tile_byte(1, 0, 0), None, "tile 1/0"),
    Tamper("tile-1/0-second-hash", _tile_byte(1, 0, 1, byte=31), None, "tile 1/0"),
    # (c) checkpoints: root, size and signature lines, old and latest
    Tamper("checkpoint-301-root", _checkpoint_byte(301, 2, 10), None, "checkpoint at size 301"),
    Tamper("checkpoint-301-size", _checkpoint_byte(301, 1, 0), None, "checkpoint at size 301"),
    Tamper("checkpoint-301-origin", _checkpoint_byte(301, 0, 4), None, "checkpoint at size 301"),
    Tamper("checkpoint-301-signature", _checkpoint_byte(301, 4, 40), None, "size 301"),
    Tamper("checkpoint-604-root", _checkpoint_byte(604, 2, 0), None, "checkpoint at size 604"),
    Tamper("checkpoint-604-signature", _checkpoint_byte(604, 4, -3), None, "size 604"),
    Tamper(
        "checkpoint-row-size",
        _sql("UPDATE checkpoints SET size = 300 WHERE size = 301"),
        None,
        "checkpoint at size 300",
    ),
    # (d) contract state and the nonce index
    Tamper("state-member-roles", _state_byte("member/bob", b'"roles":["', 1), None, "member/bob"),
    Tamper("state-member-status", _state_byte("member/bob", b'"status":"', 0), None, "member/bob"),
    Tamper(
        "state-keyid",
        _state_byte("keyid/" + verifier_of(make_signer("bob")).key_id_hex, b'"'),
        None,
        "keyid/",
    ),
    Tamper(
        "state-row-deleted",
        _sql("DELETE FROM state WHERE key = 'member/carol'"),
        None,
        "member/carol",
    ),
    Tamper(
        "state-row-added",
        _sql("INSERT INTO state VALUES ('member/mallory', x'7b7d')"),
        None,
        "member/mallory",
    ),
    Tamper("nonce-row-deleted", _sql("DELETE FROM nonces WHERE idx = 300"), None, "nonce"),
    Tamper("nonce-moved", _sql("UPDATE nonces SET idx = 301 WHERE idx = 300"), None, "nonce"),
    # (d') the audit-trail index: a rejected attempt hidden from the trail's filters
    Tamper(
        "trail-rejected-shown-accepted",
        _sql(f"UPDATE trail SET accepted = 1 WHERE idx = {REJECTED}"),
        REJECTED,
        "audit-trail index",
    ),
    Tamper(
        "trail-actor-changed",
        _sql("UPDATE trail SET actor = 'bob' WHERE idx = 300"),
        300,
        "audit-trail index",
    ),
    Tamper("trail-row-deleted", _sql("DELETE FROM trail WHERE idx = 300"), 300, "audit-trail"),
    Tamper("trail-last-deleted", _sql(f"DELETE FROM trail WHERE idx = {LAST}"), LAST, "ends"),
    Tamper(
        "trail-row-added",
        _sql(f"INSERT INTO trail VALUES ({SIZE}, 'event.record', 'bob', 0, 1)"),
        None,
        f"entry {SIZE}, beyond the log",
    ),
    # (e) gaps, (f) reordering and copies
    Tamper("gap-first", _sql("DELETE FROM entries WHERE idx = 0"), 0, "entry 0 is missing"),
    Tamper("gap-middle", _sql("DELETE FROM entries WHERE idx = 300"), 300, "entry 300 is missing"),
    Tamper("swap-100-400", _swap_entries(100, 400), 100, "entry 100"),
    Tamper("swap-neighbours", _swap_entries(301, 302), 301, "entry 301"),
    Tamper(
        "entry-replaced-by-copy",
        _sql(
            "UPDATE entries SET data = (SELECT data FROM entries WHERE idx = 299) WHERE idx = 300"
        ),
        300,
        "entry 300",
    ),
    Tamper(
        "tile-row-deleted", _sql("DELETE FROM tiles WHERE level = 0 AND n = 0"), None, "tile 0/0"
    ),
]


# Tiles made to agree with the edited entries: the entry checks themselves, or the
# signed checkpoints, must still catch the change.
REBUILT = [
    Tamper("rebuilt-tiles/entry-300-payload", _entry_byte(300, PAYLOAD, 60), 300, "entry 300"),
    Tamper("rebuilt-tiles/entry-300-signature", _entry_byte(300, SIG, 40), 300, "entry 300"),
    Tamper("rebuilt-tiles/entry-300-outcome", _entry_outcome_rewritten(300), 300, "entry 300"),
    Tamper("rebuilt-tiles/swap-neighbours", _swap_entries(301, 302), 301, "entry 301"),
    # Same signature bytes, respelled: the checkpoints covering entry 300 notice
    # (and so would a check that entries are canonically encoded).
    Tamper(
        "rebuilt-tiles/entry-300-signature-padding-bits",
        _entry_signature_padding_bits(300),
        None,
        "checkpoint at size 301 signs a root the entries do not give|entry 300",
    ),
]
TAMPERS += [Tamper(t.id, _then_rebuild_tiles(t.apply), t.index, t.says) for t in REBUILT]


def test_pristine_copy_verifies(copy: Path) -> None:
    with mc.open(copy, readonly=True) as led:
        report = led.audit()
    assert (report.size, report.checkpoints) == (SIZE, len(CHECKPOINTS))
    assert (report.accepted, report.rejected) == (SIZE - 1, 1)
    proc = _cli_verify(copy)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"ok: {SIZE} entries"), proc.stdout


def test_targets_are_distinct() -> None:
    assert len({t.id for t in TAMPERS}) == len(TAMPERS)


@pytest.mark.parametrize("tamper", TAMPERS, ids=lambda t: t.id)
def test_one_changed_byte_fails_the_audit(copy: Path, tamper: Tamper) -> None:
    _tamper(copy, tamper.apply)
    err = _audit_error(copy)
    assert re.search(tamper.says, err.message), err.message
    if tamper.index is not None:
        assert err.index == tamper.index, err.message


@pytest.mark.parametrize(
    ("size", "says"),
    [
        (301, "checkpoint at size 301 signs a root the entries do not give"),
        (700, "size 700"),
    ],
    ids=["wrong-root", "beyond-the-log"],
)
def test_checkpoint_signed_with_the_log_key_must_match_the_entries(
    copy: Path, size: int, says: str
) -> None:
    # The log key sits in the ledger directory, so whoever can edit the store
    # can also sign checkpoints: their roots are still checked against the entries.
    log_signer = FileSigner.load(ORIGIN, copy / "log.key", None)
    with mc.open(copy, readonly=True) as led:
        root = _flip(Checkpoint.from_text(parse_note(led.checkpoint()).text).root, 0)
    note = sign_checkpoint(Checkpoint(ORIGIN, size, root), log_signer).to_bytes()
    _tamper(
        copy,
        lambda db: db.execute(
            "INSERT OR REPLACE INTO checkpoints (size, note) VALUES (?, ?)", (size, note)
        ),
    )
    err = _audit_error(copy)
    assert says in err.message


CLI_CASES = [
    "entry-300-payload",
    "tile-0/1-full",
    "tile-1/0-second-hash",
    "checkpoint-301-root",
    "gap-middle",
    "state-member-roles",
]


@pytest.mark.parametrize("tamper", [t for t in TAMPERS if t.id in CLI_CASES], ids=lambda t: t.id)
def test_cli_log_verify_reports_the_damage(copy: Path, tamper: Tamper) -> None:
    _tamper(copy, tamper.apply)
    proc = _cli_verify(copy)
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert re.search(tamper.says, lines[0]), lines[0]


# -- every byte of an entry ----------------------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Genesis and three events: cheap enough to audit once per byte of an entry."""
    path = tmp_path_factory.mktemp("small") / "ledger"
    alice, bob = make_signer("alice"), make_signer("bob")
    members = [Founder(verifier_of(bob), "acme", ("trainer",))]
    with mc.init(path, ORIGIN, alice, org="acme", members=members) as led:
        led.record_event("train.step", {"epoch": 1, "loss": 0.25}, bob)
        led.record_event("eval.done", {"score": 0.93}, alice)
        led.record_event("deploy.done", {"where": "prod"}, bob)
    return path


def _each_byte_flipped(path: Path, idx: int, xor: int) -> Iterator[int]:
    """Flip each byte of entry ``idx`` in turn (one at a time); yield its position."""
    db = sqlite3.connect(path / "ledger.db", isolation_level=None)
    try:
        original = _blob(db, "SELECT data FROM entries WHERE idx=?", idx)
        for pos in range(len(original)):
            db.execute("UPDATE entries SET data=? WHERE idx=?", (_flip(original, pos, xor), idx))
            yield pos
    finally:
        db.close()


@pytest.mark.parametrize(
    "idx",
    [
        pytest.param(0, id="genesis"),
        pytest.param(1, id="event-by-member"),
        pytest.param(3, id="last-event"),
    ],
)
def test_every_single_byte_change_of_an_entry_is_an_audit_error(small: Path, idx: int) -> None:
    copy = small.parent / f"sweep-{idx}"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(small, copy)
    for pos in _each_byte_flipped(copy, idx, 0x01):
        with mc.open(copy, readonly=True) as led:
            try:
                led.audit()
            except AuditError as exc:
                assert exc.index == idx, (pos, exc.message)
            else:
                pytest.fail(f"flipping byte {pos} of entry {idx} went unnoticed")


# -- damage that must not stop `log verify` from opening the ledger -------------


@pytest.mark.parametrize(
    ("marker", "offset"),
    [(b',"', 0), (b'"log_key":"', -1)],
    ids=["log-key-field-name", "json-comma"],
)
def test_tampered_ledger_state_fails_the_audit(copy: Path, marker: bytes, offset: int) -> None:
    # The read-only opener must not trust derived state for the log key.
    _tamper(copy, _state_byte("ledger", marker, offset))
    assert "'ledger'" in _audit_error(copy).message
    proc = _cli_verify(copy)
    assert proc.returncode == 1 and "'ledger'" in proc.stderr, proc.stderr


def test_truncated_tail_fails_the_audit(copy: Path) -> None:
    # The tail entry is gone and the partial tile no longer fits the size; the
    # checkpoint signed at 604 still says the entry existed.
    _tamper(copy, _sql(f"DELETE FROM entries WHERE idx = {LAST}"))
    err = _audit_error(copy)
    assert f"size {SIZE}" in err.message
    assert err.index == LAST
    proc = _cli_verify(copy)
    assert proc.returncode == 1 and f"size {SIZE}" in proc.stderr, proc.stderr


def test_respelled_entry_after_the_last_checkpoint_fails_the_audit(copy: Path) -> None:
    # Same signature, new spelling; tiles rebuilt; the one checkpoint covering it removed.
    respell = _then_rebuild_tiles(_entry_signature_padding_bits(LAST))
    _tamper(copy, respell)
    _tamper(copy, _sql(f"DELETE FROM checkpoints WHERE size = {SIZE}"))
    err = _audit_error(copy)
    assert err.index == LAST
