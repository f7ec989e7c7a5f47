"""Bulk admission verifies signatures in worker processes, with the same answers."""

from __future__ import annotations

import os

import pytest
from conftest import make_signer

import modelchain as mc
from modelchain.core.dsse import Envelope, EnvelopeSignature
from modelchain.core.identity import Ed25519Signer
from modelchain.errors import SignatureError, UnknownKeyError
from modelchain.node.verifier import InlineVerifier, ProcessVerifier


def _checks(n: int) -> tuple[list[tuple[bytes, bytes, bytes]], list[bool]]:
    signer = make_signer("v")
    checks, want = [], []
    for i in range(n):
        msg = os.urandom(i % 300)
        sig = signer.sign(msg)
        good = i % 7 != 3
        if not good:
            sig = bytes([sig[0] ^ 0x80]) + sig[1:]
        checks.append((signer.public_key, msg, sig))
        want.append(good)
    checks.append((b"short key", b"m", bytes(64)))
    want.append(False)
    return checks, want


def test_worker_processes_agree_with_inline_verification() -> None:
    checks, want = _checks(500)
    assert InlineVerifier().verify_many(checks).result() == want
    pool = ProcessVerifier(2)
    try:
        assert pool.verify_many(checks).result(30) == want
        assert pool.verify_many(checks[:1]).result(30) == want[:1]
        assert pool.verify_many([]).result(30) == []
    finally:
        pool.close()


def test_a_dead_worker_fails_the_batch_instead_of_hanging() -> None:
    pool = ProcessVerifier(1)
    checks, _ = _checks(10)
    try:
        pool.verify_many(checks).result(30)
        pool._pool[0].proc.kill()
        with pytest.raises(OSError):
            pool.verify_many(checks).result(30)
    finally:
        pool.close()


def test_bulk_submission_refuses_only_the_bad_ones_and_keeps_order(
    ledger: mc.Ledger, alice: Ed25519Signer
) -> None:
    envs = [
        ledger.transaction("event.record", {"event": "e", "data": i}, "alice").sign(alice)
        for i in range(200)
    ]
    forged = envs[50]
    sig = forged.signatures[0]
    envs[50] = Envelope(
        forged.payload_type,
        forged.payload,
        (EnvelopeSignature(sig.keyid, bytes([sig.sig[0] ^ 1]) + sig.sig[1:]),),
    )
    envs[120] = ledger.transaction("event.record", {"event": "e", "data": {}}, "mallory").sign(
        make_signer("mallory")
    )
    futures = ledger.node.submit_many([e.to_bytes() for e in envs])
    with pytest.raises(SignatureError, match="alice"):
        futures[50].result(30)
    with pytest.raises(UnknownKeyError):
        futures[120].result(30)
    acks = [f.result(30) for i, f in enumerate(futures) if i not in (50, 120)]
    assert [a.index for a in acks] == list(range(1, 199))
    assert [ledger.entry(a.index).transaction.body["data"] for a in acks[:3]] == [0, 1, 2]
    assert ledger.audit().size == 199


def test_node_falls_back_to_verifying_itself_when_its_worker_dies(
    ledger: mc.Ledger, alice: Ed25519Signer
) -> None:
    def batch(tag: str) -> list[bytes]:
        return [
            ledger.transaction("event.record", {"event": tag, "data": i}, "alice")
            .sign(alice)
            .to_bytes()
            for i in range(100)
        ]

    for f in ledger.node.submit_many(batch("first")):
        f.result(30)
    verifier = ledger.node._verifier
    if not isinstance(verifier, ProcessVerifier):
        pytest.skip("one core: the node verifies inline")
    for worker in verifier._pool:
        worker.proc.kill()
    acks = [f.result(30) for f in ledger.node.submit_many(batch("second"))]
    assert len(acks) == 100 and all(a.outcome.accepted for a in acks)
