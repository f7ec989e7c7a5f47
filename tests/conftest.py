"""Shared fixtures: throwaway identities and ledgers in temporary directories."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import modelchain as mc
from modelchain.core.identity import Ed25519Signer, verifier_of
from modelchain.errors import RejectedError
from modelchain.ledger import ledger as ledger_mod
from modelchain.ledger.ledger import Founder

ORIGIN = "ledger.example.org/test"

# The organisations and roles of a realistic lifecycle: name -> (org, roles).
PEOPLE: dict[str, tuple[str, tuple[str, ...]]] = {
    "dave": ("bank", ("admin",)),
    "steward": ("acme", ("data-steward",)),
    "val": ("qa-co", ("validator",)),
    "bob": ("acme", ("trainer",)),
    "ev": ("qa-co", ("evaluator",)),
    "risk": ("bank", ("approver", "approver:risk")),
    "lead": ("acme", ("approver", "approver:ml-lead")),
    "ops": ("acme", ("deployer",)),
    "mon": ("bank", ("monitor",)),
}


def make_signer(name: str) -> Ed25519Signer:
    """A deterministic identity, so failures reproduce."""
    return Ed25519Signer(name, hashlib.sha256(name.encode()).digest())


def founders(people: dict[str, tuple[str, tuple[str, ...]]]) -> list[Founder]:
    """Founding members with the deterministic identities of ``make_signer``."""
    return [Founder(verifier_of(make_signer(n)), org, roles) for n, (org, roles) in people.items()]


def init_on_version(path: Path, version: int | None, **kwargs: Any) -> mc.Ledger:
    """``mc.init(path, ORIGIN, alice, **kwargs)`` with a genesis naming contract-set
    ``version`` (None: the current one), as a ledger made by an older release was."""
    if version is None:
        return mc.init(path, ORIGIN, make_signer("alice"), **kwargs)
    made = ledger_mod.genesis_body

    def body(*args: Any, **kw: Any) -> dict[str, Any]:
        return made(*args, **kw, contracts=version)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ledger_mod, "genesis_body", body)
        return mc.init(path, ORIGIN, make_signer("alice"), **kwargs)


def expect_rejected(led: mc.Ledger, code: str, call: Callable[[], object]) -> RejectedError:
    """``call`` is refused with ``code``: logged as evidence, no state written."""
    before = list(led.backend.store.state_items())
    with pytest.raises(RejectedError) as info:
        call()
    assert info.value.reason_code == code, info.value.message
    assert list(led.backend.store.state_items()) == before
    return info.value


def verify_log(led: mc.Ledger, env: dict[str, str]) -> None:
    """The log re-executes to the same outcomes and state, in Python and by the CLI
    (``led`` is closed for the CLI to open it)."""
    size = led.size
    assert led.audit().size == size
    path = led.path
    led.close()
    run_cli({**env, "MODELCHAIN_LEDGER": str(path)}, "log", "verify")


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


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """Environment for running the real CLI: a throwaway home, ledger and passphrase."""
    e = dict(os.environ)
    e.update(
        MODELCHAIN_HOME=str(tmp_path / "home"),
        MODELCHAIN_LEDGER=str(tmp_path / "ledger"),
        MODELCHAIN_KEY_PASSPHRASE="pw",
    )
    e.pop("MODELCHAIN_IDENTITY", None)
    return e


def run_cli(env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `python -m modelchain ARGS`; with ``ok`` it must exit 0."""
    proc = subprocess.run(
        [sys.executable, "-m", "modelchain", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc
