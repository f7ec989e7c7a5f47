"""Inference receipts: batches proven offline, selective reveal, tampering, crashes and
an unreachable ledger."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import ORIGIN, make_signer

import modelchain as mc
from modelchain.contracts import ContractSet, default_contracts
from modelchain.contracts.inference import check_batch, inference_rules
from modelchain.contracts.ledger import authorize, resolve_signer
from modelchain.contracts.policy import enforce
from modelchain.contracts.state import inference_key
from modelchain.core.identity import verifier_of
from modelchain.errors import Error, MalformedError, NotFoundError, ProofError, UsageError
from modelchain.ledger.ledger import Founder
from modelchain.receipts import (
    ReceiptLog,
    decode_value,
    encode_value,
    reveal,
    verify_inference_receipt,
    verify_reveal,
)


def contracts() -> ContractSet:
    base = default_contracts()
    rules: dict[str, Any] = {t: base.rule(t) for t in base.types}
    return ContractSet({**rules, **inference_rules()}, resolve_signer, authorize, enforce)


ALICE = make_signer("alice")
BOB = make_signer("bob")


@pytest.fixture
def led(tmp_path: Path) -> Iterator[mc.Ledger]:
    ledger = mc.init(
        tmp_path / "l",
        ORIGIN,
        ALICE,
        members=[Founder(verifier_of(BOB), "acme", ("trainer",))],
        contracts=contracts(),
    )
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"weights-1")
    ledger.models.register("fraud", weights, signer=BOB)
    try:
        yield ledger
    finally:
        ledger.close()


def _log(led: mc.Ledger | None, store: Path, **kw: Any) -> ReceiptLog:
    kw.setdefault("signer", ALICE)
    kw.setdefault("version", 1)
    return ReceiptLog(led, "fraud", store=store, origin=ORIGIN, **kw)


def _values(i: int) -> tuple[Any, Any]:
    kinds: list[tuple[Any, Any]] = [
        (f"text {i}", b"\x00\x01" * i),
        (np.arange(i + 1, dtype=np.float32).reshape(1, -1), np.int64(i % 2)),
        ({"amount": i, "country": "FR", "tags": ["a", "é"]}, [0.25, i]),
        (b"raw" * i, "fraud" if i % 3 else "ok"),
    ]
    return kinds[i % len(kinds)]


def _key(led: mc.Ledger) -> str:
    return led.log_key.to_string()


def test_batches_verify_offline_with_only_the_log_key(led: mc.Ledger, tmp_path: Path) -> None:
    store = tmp_path / "r.sqlite"
    with _log(led, store, batch_size=7, batch_ms=50) as log:
        rids = [log.record(*_values(i)) for i in range(20)]
        rids.append(log.record("in", "out", meta={"user": "u1"}, request_id='odd "id" é'))
        # A meta that names another record's id does not confuse the lookup.
        rids.append(log.record("in", "out", meta={"request_id": rids[-2], "z": 1}))
        assert log.flush() == 0
        receipts = [json.dumps(log.receipt(r)) for r in rids]
    key = _key(led)
    cp = led.checkpoint()
    batches = set()
    for rid, text in zip(rids, receipts, strict=True):
        record = verify_inference_receipt(text, key)
        assert record["request_id"] == rid and record["version"] == 1
        assert verify_inference_receipt(text, key, checkpoint=cp) == record
        batches.add(json.loads(text)["batch"]["root"])
    assert len(batches) == 4  # 22 records in batches of 7
    assert json.loads(receipts[-2])["record"]["meta"] == {"user": "u1"}
    assert led.store.get_state(inference_key("fraud", 1)) == {"batches": 4, "records": 22}
    # Nothing raw reached the ledger: a batch entry carries only the batch fields.
    fields = {"model", "version", "root", "count", "first_time", "last_time", "batch_id"}
    bodies = [led.entry(i).transaction for i in range(led.size)]
    assert [set(t.body) for t in bodies if t.type == "inference.batch"] == [fields] * 4


def test_reveal_one_record(led: mc.Ledger, tmp_path: Path) -> None:
    with _log(led, tmp_path / "r.sqlite", batch_size=4) as log:
        rids = [log.record(*_values(i)) for i in range(9)]
        log.flush()
        receipt = log.receipt(rids[5])
    inputs, outputs = _values(5)
    shown = json.dumps(reveal(receipt, inputs, outputs))
    out = verify_reveal(shown, _key(led))
    assert out["record"]["request_id"] == rids[5]
    assert out["input"]["shape"] == [1, 6] and out["input"]["dtype"] == "<f4"
    assert np.frombuffer(out["input"]["data"], "<f4").tolist() == inputs.ravel().tolist()
    assert decode_value(encode_value({"a": 1})) == {"a": 1}
    only_output = verify_reveal(reveal(receipt, outputs=outputs), _key(led))
    assert "input" not in only_output and "output" in only_output
    with pytest.raises(ProofError):
        reveal(receipt, np.zeros((1, 6), np.float32), outputs)
    with pytest.raises(ProofError):
        reveal(receipt, inputs, np.int64(7))
    # An auditor's copy whose revealed bytes were swapped fails.
    forged = json.loads(shown)
    forged["output"] = base64.b64encode(encode_value(np.int64(0))).decode()
    with pytest.raises(ProofError):
        verify_reveal(forged, _key(led))


def _tampered(receipt: dict[str, Any], change: Any) -> dict[str, Any]:
    copy = json.loads(json.dumps(receipt))
    change(copy)
    return copy


def test_any_change_fails(led: mc.Ledger, tmp_path: Path) -> None:
    with _log(led, tmp_path / "r.sqlite", batch_size=5) as log:
        rids = [log.record(*_values(i)) for i in range(12)]
        log.flush()
        receipt = log.receipt(rids[6])
        other = log.receipt(rids[1])
    old_cp = led.checkpoint()
    inputs, outputs = _values(6)
    key = _key(led)
    verify_inference_receipt(receipt, key)

    def flip_hex(text: str) -> str:
        return ("1" if text[0] == "0" else "0") + text[1:]

    def set_path(r: dict[str, Any]) -> None:
        r["batch"]["path"][0] = other["batch"]["path"][0]

    def set_entry(r: dict[str, Any]) -> None:
        r["ledger"]["entry"] = other["ledger"]["entry"]

    def set_proof_root(r: dict[str, Any]) -> None:
        lines = r["ledger"]["tlog_proof"].split("\n")
        # The checkpoint note's third line is the root hash.
        i = lines.index("") + 3
        lines[i] = base64.b64encode(b"\x00" * 32).decode()
        r["ledger"]["tlog_proof"] = "\n".join(lines)

    changes = [
        lambda r: r["record"].update(input_hash=flip_hex(r["record"]["input_hash"])),
        lambda r: r["record"].update(output_hash=flip_hex(r["record"]["output_hash"])),
        lambda r: r["record"].update(time_ms=r["record"]["time_ms"] + 1),
        lambda r: r["record"].update(version=2),
        lambda r: r["batch"].update(index_in_batch=0),
        lambda r: r["batch"].update(root=flip_hex(r["batch"]["root"])),
        set_path,
        set_entry,
        set_proof_root,
        lambda r: r["ledger"].update(entry_index=r["ledger"]["entry_index"] + 1),
    ]
    for change in changes:
        with pytest.raises(Error):
            verify_inference_receipt(_tampered(receipt, change), key)
    # A changed salt no longer opens the hashes.
    bad_salt = _tampered(receipt, lambda r: r.update(salt_input=flip_hex(r["salt_input"])))
    with pytest.raises(ProofError):
        reveal(bad_salt, inputs, outputs)
    # Another log's key, or a checkpoint of another tree, fails.
    with pytest.raises(Error):
        verify_inference_receipt(receipt, verifier_of(make_signer(ORIGIN)).to_string())
    with _log(led, tmp_path / "r.sqlite", batch_size=5) as log:
        log.record("more", "data")
    assert led.checkpoint() != old_cp
    with pytest.raises(ProofError):
        verify_inference_receipt(receipt, key, checkpoint=led.checkpoint())
    verify_inference_receipt(receipt, key, checkpoint=old_cp)


def test_unreachable_ledger_queues_batches_in_order(led: mc.Ledger, tmp_path: Path) -> None:
    store = tmp_path / "r.sqlite"
    path = led.path
    offline = _log(None, store, batch_size=3, background=False)
    first = [offline.record(f"a{i}", i) for i in range(7)]
    assert offline.flush() == 3
    assert offline.last_error and "no ledger" in offline.last_error
    offline.close()
    # A ledger that closes under the log: its batches wait too.
    closing = _log(led, store, batch_size=3, background=True, retry_ms=10)
    assert closing.flush() == 0  # the earlier batches went in
    led.close()
    second = [closing.record(f"b{i}", i) for i in range(4)]
    assert closing.flush() == 2
    closing.close()
    with mc.open(path, contracts=contracts()) as again, _log(again, store) as log:
        assert log.flush() == 0
        receipts = [log.receipt(r) for r in first + second]
        for r in receipts:
            verify_inference_receipt(r, again.log_key)
        indices = [r["ledger"]["entry_index"] for r in receipts]
        assert indices == sorted(indices)
        assert len(set(indices)) == 5
        assert again.store.get_state(inference_key("fraud", 1)) == {"batches": 5, "records": 11}


def test_the_readme_example_answers_after_the_log_closes(
    led: mc.Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELCHAIN_HOME", str(tmp_path / "home"))
    path = led.path
    led.close()
    features, decision = {"amount": 12.5, "country": "FR"}, "ok"
    with mc.open(path, identity=ALICE, contracts=contracts()) as led:
        ops = make_signer("ops")
        led.members.add(verifier_of(ops), roles=["deployer"], org="acme", signers=[ALICE])
        led.deployments.deploy("fraud", 1, "production", signer=ops)
        # README, "Inference receipts", as written:
        with led.receipts(model="fraud", env="production") as log:  # signer: led.identity
            rid = log.record(features, decision, request_id="req-8812")  # returns at once
        receipt = log.receipt("req-8812")  # record + salts + path in its batch + C2SP tlog-proof

        assert rid == "req-8812"
        assert verify_inference_receipt(receipt, led.log_key)["request_id"] == "req-8812"
        assert log.batch_status(rid) == "submitted" and log.pending() == 0
        with pytest.raises(NotFoundError, match="no record 'req-0'"):
            log.receipt("req-0")
        with pytest.raises(UsageError, match="closed"):
            log.record(features, decision)
        with pytest.raises(UsageError, match="closed"):
            log.flush()


def test_a_batch_left_pending_at_close_says_what_to_do(led: mc.Ledger, tmp_path: Path) -> None:
    store = tmp_path / "r.sqlite"
    with _log(None, store, background=False) as offline:
        offline.record("in", "out", request_id="r1")
    with pytest.raises(NotFoundError, match=r"opened on .* with the ledger submits it"):
        offline.receipt("r1")
    assert offline.batch_status("r1") == "pending" and offline.pending() == 1
    with _log(led, store) as log:
        assert log.flush() == 0
    verify_inference_receipt(log.receipt("r1"), led.log_key)


CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from modelchain.receipts import ReceiptLog
    store, origin, durable, extra = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    log = ReceiptLog(None, "fraud", version=1, origin=origin, store=store, batch_size=5,
                     background=False, durability=sys.argv[5])
    for i in range(durable):
        log.record(f"in{i}", f"out{i}", request_id=f"r{i}")
    log.sync()
    for i in range(durable, durable + extra):
        log.record(f"in{i}", f"out{i}", request_id=f"r{i}")
    print("ready", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def _kill_child(store: Path, durable: int, extra: int, durability: str = "process") -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(store), ORIGIN, str(durable), str(extra), durability],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert "ready" in proc.stdout


@pytest.mark.parametrize("durability", ["process", "fsync"])
def test_kill_between_record_and_submission_loses_nothing(
    led: mc.Ledger, tmp_path: Path, durability: str
) -> None:
    store = tmp_path / "r.sqlite"
    _kill_child(store, 23, 3, durability)
    before = led.size
    with _log(led, store, background=False) as log:  # recovery submits on open
        assert log.pending() == 0 and log.last_error is None
        # 23 synced records: four batches of 5 and one of 3; the 3 only in the
        # journal when the process died: one more batch.
        assert led.size == before + 6
        for i in range(26):
            rec = verify_inference_receipt(log.receipt(f"r{i}"), led.log_key)
            assert rec["request_id"] == f"r{i}"
        verify_reveal(reveal(log.receipt("r25"), "in25", "out25"), led.log_key)
    assert led.store.get_state(inference_key("fraud", 1)) == {"batches": 6, "records": 26}
    assert not [p for p in (tmp_path / "r.sqlite.journal").iterdir()]


KILLED = textwrap.dedent(
    """
    import sys, time
    from modelchain.errors import PushbackError
    from modelchain.receipts import ReceiptLog
    store, origin, tag, mode = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    log = ReceiptLog(None, "fraud", version=1, origin=origin, store=store, batch_size=16,
                     batch_ms=5, background=mode != "inline", worker=mode == "worker")
    while mode == "worker" and not log._worker.ready():  # so that it writes the batches
        time.sleep(0.01)
    print("open", flush=True)
    for i in range(100_000):
        named = f"{tag}-{i}" if i % 3 == 0 else None
        meta = {"i": i, "tag": tag} if i % 4 == 0 else None
        while True:
            try:
                rid = log.record(f"in{i}", [i, tag], meta=meta, request_id=named)
                break
            except PushbackError as exc:  # the store is behind: what a caller does
                time.sleep(exc.retry_after)
        print(rid, flush=True)
    """
)


def _stored_request_ids(store: Path) -> list[str]:
    import sqlite3

    db = sqlite3.connect(store)
    try:
        rows = db.execute("SELECT leaves FROM batch_leaves").fetchall()
    finally:
        db.close()
    return [json.loads(leaf)["request_id"] for (b,) in rows for leaf in bytes(b).split(b"\n")]


def test_kill_9_at_random_moments_loses_and_duplicates_nothing(
    led: mc.Ledger, tmp_path: Path
) -> None:
    import random
    import time

    rng = random.Random(20261125)
    store = tmp_path / "r.sqlite"
    printed: list[str] = []
    modes = ["inline", "thread", "worker"]
    for round_ in range(9):
        proc = subprocess.Popen(
            [sys.executable, "-c", KILLED, str(store), ORIGIN, f"k{round_}", modes[round_ % 3]],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        if round_ % 4 == 3:
            # At a random time: perhaps while it starts, or recovers the last round.
            time.sleep(rng.uniform(0.0, 0.6))
        else:
            assert proc.stdout.readline() == "open\n"
            # After a random number of records: mid-batch, mid-write or mid-flush.
            for _ in range(rng.randrange(1, 400)):
                printed.append(proc.stdout.readline().strip())
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL, err
        # Every id printed was returned by record() before the kill.
        printed.extend(line for line in out.splitlines() if line and line != "open")
    assert len(printed) > 500
    with _log(led, store, background=False) as log:
        assert log.pending() == 0, log.last_error
        cp = led.checkpoint()
        key = _key(led)
        for rid in printed:
            record = verify_inference_receipt(log.receipt(rid), key, checkpoint=cp)
            assert record["request_id"] == rid
    stored = _stored_request_ids(store)
    assert len(stored) == len(set(stored))  # none twice
    assert set(printed) <= set(stored)
    counters = led.store.get_state(inference_key("fraud", 1))
    assert counters is not None and counters["records"] == len(stored)
    assert [p.suffix for p in (tmp_path / "r.sqlite.journal").iterdir()] == []


def _segments(store: Path) -> list[Path]:
    return sorted((store.parent / (store.name + ".journal")).glob("*.seg"))


def test_a_torn_last_record_is_ignored(led: mc.Ledger, tmp_path: Path) -> None:
    store = tmp_path / "r.sqlite"
    _kill_child(store, 0, 4)
    (seg,) = _segments(store)
    data = seg.read_bytes()
    seg.write_bytes(data[:-30])  # the last write cut short
    with _log(led, store, background=False) as log:
        assert log.pending() == 0 and log.last_error is None
        for i in range(3):
            verify_inference_receipt(log.receipt(f"r{i}"), led.log_key)
        with pytest.raises(NotFoundError):
            log.receipt("r3")
    assert not _segments(store)
    # A segment cut inside its header (killed while it was being made) holds nothing.
    _kill_child(store, 0, 1)
    (seg,) = _segments(store)
    seg.write_bytes(seg.read_bytes()[:7])
    with _log(led, store, background=False) as log:
        assert log.last_error is None and log.pending() == 0
    assert not _segments(store)
    assert led.store.get_state(inference_key("fraud", 1)) == {"batches": 1, "records": 3}


def test_a_damaged_segment_is_kept_aside(led: mc.Ledger, tmp_path: Path) -> None:
    store = tmp_path / "r.sqlite"
    _kill_child(store, 0, 4)
    (seg,) = _segments(store)
    data = bytearray(seg.read_bytes())
    data[-200] ^= 0xFF  # inside the third record, with the fourth after it
    seg.write_bytes(bytes(data))
    with _log(led, store, background=False) as log:
        (aside,) = log.damaged
        assert aside.suffix == ".damaged" and aside.exists()
        for i in range(2):
            verify_inference_receipt(log.receipt(f"r{i}"), led.log_key)
        for i in (2, 3):
            with pytest.raises(NotFoundError):
                log.receipt(f"r{i}")
    assert not _segments(store)
    assert [p.suffix for p in (tmp_path / "r.sqlite.journal").iterdir()] == [".damaged"]


def test_a_segment_already_in_the_store_is_not_written_again(
    led: mc.Ledger, tmp_path: Path
) -> None:
    # Killed after the batch was committed but before its segment was deleted.
    store = tmp_path / "r.sqlite"
    log = _log(led, store, background=False, batch_size=10)
    rids = [log.record(f"in{i}", i) for i in range(3)]
    (seg,) = _segments(store)
    copy = seg.read_bytes()
    assert log.flush() == 0
    assert not _segments(store)
    seg.write_bytes(copy)
    log.close()
    with pytest.raises(UsageError):
        log.record("after", "close")
    with _log(led, store, background=False) as again:
        assert again.pending() == 0
        for rid in rids:
            verify_inference_receipt(again.receipt(rid), led.log_key)
    assert not _segments(store)
    assert led.store.get_state(inference_key("fraud", 1)) == {"batches": 1, "records": 3}
    assert sorted(_stored_request_ids(store)) == sorted(rids)


def test_a_live_log_keeps_its_segment(led: mc.Ledger, tmp_path: Path) -> None:
    store = tmp_path / "r.sqlite"
    with _log(led, store, background=False, batch_size=100) as first:
        rids = [first.record(f"in{i}", i) for i in range(3)]
        # Another log on the same store recovers only what no live log holds.
        with _log(led, store, background=False) as second:
            assert second.pending() == 0
            assert len(_segments(store)) == 1
            rids.append(second.record("x", "y"))
        assert first.flush() == 0
        for rid in rids:
            verify_inference_receipt(first.receipt(rid), led.log_key)
    assert sorted(_stored_request_ids(store)) == sorted(rids)


def test_the_worker_process_writes_batches_and_can_die(led: mc.Ledger, tmp_path: Path) -> None:
    import time

    store = tmp_path / "r.sqlite"
    with _log(led, store, batch_size=8, batch_ms=10, worker=True) as log:
        worker = log._worker
        assert worker is not None
        deadline = time.monotonic() + 60
        while not worker.ready():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        rids = [log.record(*_values(i)) for i in range(20)]
        assert log.flush() == 0
        assert log._worker is worker
        worker.proc.kill()  # this thread takes over
        rids += [log.record(*_values(i)) for i in range(20, 45)]
        assert log.flush() == 0
        assert log._worker is None
        receipts = [log.receipt(r) for r in rids]
    for r in receipts:
        verify_inference_receipt(r, _key(led))
    assert sorted(_stored_request_ids(store)) == sorted(rids)


def test_a_worker_that_cannot_start_leaves_the_work_to_the_thread(
    led: mc.Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    monkeypatch.setattr(sys, "executable", "/bin/false")  # not a Python
    with _log(led, tmp_path / "r.sqlite", batch_size=4, batch_ms=10, worker=True) as log:
        rids = [log.record(*_values(i)) for i in range(10)]
        deadline = time.monotonic() + 60
        while log._worker is not None:  # given up on once it has exited
            assert time.monotonic() < deadline
            rids.append(log.record("more", "records"))
            time.sleep(0.01)
        assert log.flush() == 0
        for rid in rids:
            verify_inference_receipt(log.receipt(rid), _key(led))


def test_store_of_the_first_layout_is_migrated(led: mc.Ledger, tmp_path: Path) -> None:
    import sqlite3

    store = tmp_path / "r.sqlite"
    with _log(led, store, batch_size=3) as log:
        rids = [log.record(*_values(i)) for i in range(7)]
        assert log.flush() == 0
    # Rewrite it the way the first receipt store laid it out.
    db = sqlite3.connect(store, isolation_level=None)
    db.executescript(
        """
        BEGIN;
        CREATE TABLE old AS SELECT seq, batch_id, model, version, env, root, count,
            first_time, last_time, leaves, salts, status, entry_index, error
            FROM batches JOIN batch_leaves USING (seq);
        DROP TABLE batches; DROP TABLE batch_leaves;
        ALTER TABLE old RENAME TO batches;
        CREATE INDEX batches_status ON batches (status, seq);
        PRAGMA user_version = 0;
        COMMIT;
        """
    )
    db.close()
    with _log(led, store, batch_size=3) as log:
        rids.append(log.record("after", "migration"))
        assert log.flush() == 0
        for rid in rids:
            verify_inference_receipt(log.receipt(rid), _key(led))


def test_leaves_are_canonical_json() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from modelchain.core import canonical
    from modelchain.receipts.journal import Session, build_batch

    json_values = st.recursive(
        st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
        max_leaves=8,
    )

    @settings(max_examples=200, deadline=None)
    @given(
        st.text(min_size=1),
        st.integers(1, 2**31),
        st.none() | st.text(min_size=1),
        st.none() | json_values,
        st.integers(0, 2**50),
    )
    def check(model: str, version: int, rid: str | None, meta: Any, t: int) -> None:
        session = Session("0123456789abcdef", model, version, None)
        ih, oh = os.urandom(32), os.urandom(32)
        rec = (7, t, 0, 0, b"s" * 32, ih, oh, 0)
        ext = {} if rid is None and meta is None else {0: (rid, _meta(meta))}
        leaf = build_batch(session, [rec], ext).leaves
        expected: dict[str, Any] = {
            "v": 1,
            "model": model,
            "version": version,
            "input_hash": ih.hex(),
            "output_hash": oh.hex(),
            "time_ms": t,
            "request_id": rid if rid is not None else "0123456789abcdef-7",
        }
        if meta is not None:
            expected["meta"] = meta
        assert leaf == canonical.dumps(expected)

    def _meta(meta: Any) -> bytes | None:
        return None if meta is None else canonical.dumps(meta)

    check()


def test_background_thread_closes_batches_by_time(led: mc.Ledger, tmp_path: Path) -> None:
    import time

    with _log(led, tmp_path / "r.sqlite", batch_size=10_000, batch_ms=20) as log:
        rid = log.record("x", "y")
        deadline = time.monotonic() + 10
        while log.pending() or led.store.get_state(inference_key("fraud", 1)) is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert log.batch_status(rid) == "submitted"
        verify_inference_receipt(log.receipt(rid), led.log_key)


def test_unregistered_version_is_rejected(led: mc.Ledger, tmp_path: Path) -> None:
    with _log(led, tmp_path / "r.sqlite", version=9) as log:
        rid = log.record("x", "y")
        assert log.flush() == 0
        assert log.batch_status(rid) == "rejected"
        with pytest.raises(NotFoundError, match="no_model"):
            log.receipt(rid)
    with pytest.raises(NotFoundError):
        ReceiptLog(led, "fraud", env="production", store=tmp_path / "x.sqlite")
    # Pinned to an environment the version is not deployed to: rejected too.
    with _log(led, tmp_path / "p.sqlite", env="production", pin_env=True) as log:
        rid = log.record("x", "y")
        log.flush()
        assert log.batch_status(rid) == "rejected"
    assert ReceiptLog(led, "fraud", store=tmp_path / "y.sqlite", background=False).version == 1


def test_batch_body_is_checked() -> None:
    good = {
        "model": "fraud",
        "version": 1,
        "root": "ab" * 32,
        "count": 3,
        "first_time": 5,
        "last_time": 9,
        "batch_id": "cd" * 16,
    }
    check_batch(good)
    check_batch({**good, "env": "production"})
    for bad in (
        {**good, "root": "AB" * 32},
        {**good, "count": 0},
        {**good, "version": True},
        {**good, "first_time": 10},
        {**good, "batch_id": "x"},
        {**good, "extra": 1},
        {k: v for k, v in good.items() if k != "root"},
    ):
        with pytest.raises(MalformedError):
            check_batch(bad)


def test_default_store_lives_under_home(
    led: mc.Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The home is read at the edge (modelchain.open) and kept by the ledger.
    monkeypatch.setenv("MODELCHAIN_HOME", str(tmp_path / "home"))
    with mc.open(led.path, readonly=True) as reader:
        assert reader.home == tmp_path / "home"
    monkeypatch.setattr(led, "home", tmp_path / "home")
    log = led.receipts("fraud", signer=ALICE, background=False)
    try:
        assert log.path.is_relative_to(tmp_path / "home" / "receipts")
        assert log.path.name == "fraud.sqlite"
    finally:
        log.close()
    assert os.path.exists(log.path)


def test_the_receipt_log_reads_no_environment(
    led: mc.Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelchain.receipts import default_store

    # Where the store goes is the caller's choice: the log itself takes a path.
    monkeypatch.setenv("MODELCHAIN_HOME", str(tmp_path / "home"))
    with pytest.raises(UsageError, match="store="):
        ReceiptLog(led, "fraud", signer=ALICE, background=False)
    assert not (tmp_path / "home").exists()
    path = default_store(tmp_path / "elsewhere", "a.example/x y", "fraud v2")
    assert path == tmp_path / "elsewhere" / "receipts" / "a.example_x_y" / "fraud_v2.sqlite"
    with led.receipts("fraud", signer=ALICE, background=False, store=path) as log:
        assert log.path == path
    assert path.exists() and not (tmp_path / "home").exists()


def test_the_package_exports_its_public_api() -> None:
    import modelchain.receipts as receipts

    public = {n for n in vars(receipts) if not n.startswith("_") and n != "annotations"}
    modules = {"encoding", "journal", "log", "store", "verify", "worker"}
    assert set(receipts.__all__) == public - modules
    assert len(receipts.__all__) == len(set(receipts.__all__))
    for name in ("ReceiptLog", "verify_inference_receipt", "reveal", "encode_value"):
        assert getattr(receipts, name).__module__.startswith("modelchain.receipts.")


def test_receipts_verify_and_reveal_from_the_command_line(
    ledger: mc.Ledger, alice: mc.Signer, tmp_path: Path
) -> None:
    from modelchain.core.canonical import dumps as _dumps

    weights = tmp_path / "w.bin"
    weights.write_bytes(b"w")
    ledger.identity = alice
    ledger.models.register("clf", weights)
    with ledger.receipts("clf", store=tmp_path / "r.sqlite", signer=alice) as log:
        rid = log.record(b"input-bytes", b"output-bytes", request_id="req-1")
        log.flush()
        receipt = log.receipt(rid)
    ledger.checkpoint()
    path = tmp_path / "receipt.json"
    path.write_bytes(_dumps(receipt))
    (tmp_path / "in.bin").write_bytes(b"input-bytes")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "modelchain", *args], capture_output=True, text=True, timeout=60
        )

    ok = cli("receipt", "verify", str(path), "--vkey", str(ledger.log_key))
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["request_id"] == "req-1"
    revealed = cli("receipt", "reveal", str(path), "--input", str(tmp_path / "in.bin"))
    assert revealed.returncode == 0, revealed.stderr
    (tmp_path / "in.bin").write_bytes(b"other-bytes")
    wrong = cli("receipt", "reveal", str(path), "--input", str(tmp_path / "in.bin"))
    assert wrong.returncode == 1 and wrong.stderr.startswith("error: ")
    other = cli(
        "receipt", "verify", str(path), "--vkey", "other.example+00000000+AQ" + "A" * 42 + "="
    )
    assert other.returncode != 0


def test_receipt_check_takes_what_reveal_prints(
    ledger: mc.Ledger, alice: mc.Signer, tmp_path: Path, env: dict[str, str]
) -> None:
    from conftest import run_cli

    from modelchain.core.canonical import dumps as _dumps

    weights = tmp_path / "w.bin"
    weights.write_bytes(b"w")
    ledger.identity = alice
    ledger.models.register("clf", weights)
    with ledger.receipts("clf", store=tmp_path / "r.sqlite", signer=alice) as log:
        rid = log.record(b"input-bytes", b"output-bytes", request_id="req-7")
        log.flush()
        receipt = log.receipt(rid)
    ledger.checkpoint()
    receipt_file = tmp_path / "receipt.json"
    receipt_file.write_bytes(_dumps(receipt))
    policy = tmp_path / "policy.txt"
    policy.write_text(ledger.policy.to_text())
    (tmp_path / "in.bin").write_bytes(b"input-bytes")
    (tmp_path / "out.bin").write_bytes(b"output-bytes")

    printed = run_cli(
        env, "receipt", "reveal", str(receipt_file), "--input", str(tmp_path / "in.bin")
    ).stdout
    reveal_file = tmp_path / "reveal.json"
    reveal_file.write_text(printed)

    ok = run_cli(env, "receipt", "check", str(reveal_file), "--vkey", str(policy))
    assert ok.stdout.splitlines() == [
        ok.stdout.splitlines()[0],
        "input:  11 bytes (matches input_hash)",
        "output: not revealed",
    ]
    assert ok.stdout.startswith("ok: a decision of clf version 1, request req-7 at ")
    checked = json.loads(
        run_cli(env, "receipt", "check", str(reveal_file), "--vkey", str(policy), "--json").stdout
    )
    assert checked["ok"] and checked["record"]["request_id"] == "req-7"
    assert checked["revealed"] == {"input": {"bytes": base64.b64encode(b"input-bytes").decode()}}
    # The log's key alone, and the reveal piped in: both outputs revealed.
    both = subprocess.run(
        [sys.executable, "-m", "modelchain", "receipt", "reveal", str(receipt_file),
         "--input", str(tmp_path / "in.bin"), "--output", str(tmp_path / "out.bin")],
        env=env, capture_output=True, check=True,
    ).stdout  # fmt: skip
    piped = subprocess.run(
        [sys.executable, "-m", "modelchain", "receipt", "check", "-",
         "--vkey", str(ledger.log_key), "--json"],
        env=env, input=both, capture_output=True, timeout=60,
    )  # fmt: skip
    assert piped.returncode == 0, piped.stderr
    assert set(json.loads(piped.stdout)["revealed"]) == {"input", "output"}

    # A revealed value that is not the one the record committed to.
    tampered = json.loads(printed)
    tampered["input"] = base64.b64encode(b"Binput-bytez").decode()
    bad = tmp_path / "tampered.json"
    bad.write_text(json.dumps(tampered))
    refused = run_cli(env, "receipt", "check", str(bad), "--vkey", str(policy), ok=False)
    assert refused.returncode == 1
    assert refused.stderr == "error: the revealed input does not match the record's input_hash\n"
    # A record changed under its proofs.
    tampered = json.loads(printed)
    tampered["receipt"]["record"]["request_id"] = "req-8"
    bad.write_text(json.dumps(tampered))
    refused = run_cli(env, "receipt", "check", str(bad), "--vkey", str(policy), ok=False)
    assert refused.returncode == 1 and refused.stderr.startswith("error: ")
    assert "Traceback" not in refused.stderr
    # A log the verifier does not trust.
    other = str(verifier_of(make_signer("mallory")))
    refused = run_cli(env, "receipt", "check", str(reveal_file), "--vkey", other, ok=False)
    assert refused.returncode == 1 and refused.stderr.startswith("error: ")
    # A receipt is not a reveal; text that is not JSON is not either.
    refused = run_cli(env, "receipt", "check", str(receipt_file), "--vkey", str(policy), ok=False)
    assert refused.returncode == 4 and "receipt verify" in refused.stderr
    bad.write_text("not json")
    refused = run_cli(env, "receipt", "check", str(bad), "--vkey", str(policy), ok=False)
    assert refused.returncode == 4 and refused.stderr.startswith("error: not valid JSON")
