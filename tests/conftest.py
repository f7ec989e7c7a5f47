"""Shared fixtures: throwaway identities and ledgers in temporary directories."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

import modelchain as mc
from modelchain.core.identity import Ed25519Signer, verifier_of
from modelchain.ledger import Founder

ORIGIN = "ledger.example.org/test"


def make_signer(name: str) -> Ed25519Signer:
    """A deterministic identity, so failures reproduce."""
    return Ed25519Signer(name, hashlib.sha256(name.encode()).digest())


@pytest.fixture
def alice() -> Ed25519Signer:
    return make_signer("alice")


@pytest.fixture
def bob() -> Ed25519Signer:
    return make_signer("bob")


@pytest.fixture
def carol() -> Ed25519Signer:
    """A member with only the auditor role: may read, may not record events."""
    return make_signer("carol")


@pytest.fixture
def ledger(
    tmp_path: Path, alice: Ed25519Signer, bob: Ed25519Signer, carol: Ed25519Signer
) -> Iterator[mc.Ledger]:
    members = [
        Founder(verifier_of(bob), "acme", ("trainer",)),
        Founder(verifier_of(carol), "audit-co", ("auditor",)),
    ]
    led = mc.init(tmp_path / "ledger", ORIGIN, alice, org="acme", members=members)
    try:
        yield led
    finally:
        led.close()
