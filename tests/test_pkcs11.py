"""PKCS#11 signing against a real SoftHSM token made fresh for each test.

Without softhsm2 these tests skip locally but fail when $CI is set, so CI can
never pass by silently not testing the hardware path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

from modelchain.core.checkpoint import open_checkpoint
from modelchain.core.identity import Signer, VerifierKey, verifier_of
from modelchain.errors import KeyStoreError, SignatureError
from modelchain.keys import KeyStore, Pkcs11Signer

SOFTHSM_MODULE = os.environ.get("MODELCHAIN_TEST_PKCS11_MODULE", "/usr/lib/softhsm/libsofthsm2.so")
TOKEN = "modelchain-test"
# Not a hex string, so it can never appear by chance in a key id a repr shows.
PIN = "QZX-8513"
SO_PIN = "5678"


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the PKCS#11 tests: {reason}")
    pytest.skip(reason)


@dataclass(frozen=True)
class Token:
    module: str
    label: str
    pin: str


@pytest.fixture
def token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Token]:
    """A throwaway SoftHSM token whose files live in ``tmp_path``."""
    util = shutil.which("softhsm2-util")
    if util is None or not Path(SOFTHSM_MODULE).exists():
        _unavailable("softhsm2 is not installed (apt-get install softhsm2)")
    try:
        import pkcs11
    except ImportError:
        _unavailable("python-pkcs11 is not installed (pip install modelchain[pkcs11])")
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    subprocess.run(
        [util, "--init-token", "--free", "--label", TOKEN, "--pin", PIN, "--so-pin", SO_PIN],
        check=True,
        capture_output=True,
    )
    # The module reads SOFTHSM2_CONF in C_Initialize, once per process: make it
    # look again so it sees this test's token directory.
    pkcs11.lib(SOFTHSM_MODULE).reinitialize()
    yield Token(SOFTHSM_MODULE, TOKEN, PIN)
    pkcs11.lib(SOFTHSM_MODULE).finalize()


def test_hsm_signature_verifies_in_software(token: Token) -> None:
    with Pkcs11Signer.generate("hsm-alice", token.module, token.label, token.pin, "k1") as signer:
        assert isinstance(signer, Signer)
        vk = verifier_of(signer)
        assert len(signer.public_key) == 32
        message = b"a ledger transaction"
        signature = signer.sign(message)
        assert len(signature) == 64
        vk.verify(message, signature)  # PyNaCl, no HSM involved
        with pytest.raises(SignatureError):
            vk.verify(message + b"!", signature)
    with pytest.raises(KeyStoreError, match="closed"):
        signer.sign(message)


def test_reopen_by_label(token: Token) -> None:
    with Pkcs11Signer.generate("a", token.module, token.label, token.pin, "k1") as first:
        public = first.public_key
    with Pkcs11Signer("a", token.module, token.label, token.pin, "k1") as again:
        assert again.public_key == public
        VerifierKey("a", public).verify(b"m", again.sign(b"m"))


def test_key_is_sensitive_and_non_extractable(token: Token) -> None:
    import pkcs11
    from pkcs11 import Attribute, KeyType, ObjectClass

    with Pkcs11Signer.generate("a", token.module, token.label, token.pin, "k1"):
        pass
    lib = pkcs11.lib(token.module)
    with lib.get_token(token_label=token.label).open(user_pin=token.pin) as session:
        key = session.get_key(
            object_class=ObjectClass.PRIVATE_KEY, key_type=KeyType.EC_EDWARDS, label="k1"
        )
        assert key[Attribute.SENSITIVE] is True
        assert key[Attribute.EXTRACTABLE] is False
        assert key[Attribute.ALWAYS_SENSITIVE] is True
        assert key[Attribute.NEVER_EXTRACTABLE] is True
        assert key[Attribute.TOKEN] is True
        with pytest.raises(pkcs11.PKCS11Error):
            key[Attribute.VALUE]


def test_store_create_pkcs11(token: Token, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = KeyStore(tmp_path / "home")
    vk = store.create_pkcs11("hsm-node", token.module, token.label, token.pin)
    assert store.verifier("hsm-node") == vk
    assert (store.directory / "hsm-node.pub").read_text() == vk.to_string() + "\n"
    config = (store.directory / "hsm-node.pkcs11.json").read_text()
    assert token.pin not in config and "pin" not in config.lower()
    assert not (store.directory / "hsm-node.key").exists()
    assert store.list() == [(vk, "pkcs11")]

    monkeypatch.setenv("MODELCHAIN_PKCS11_PIN", token.pin)
    signer = store.signer("hsm-node")
    assert isinstance(signer, Pkcs11Signer)
    try:
        assert signer.public_key == vk.public_key
        vk.verify(b"tx", signer.sign(b"tx"))
        assert token.pin not in repr(signer)
    finally:
        signer.close()

    with pytest.raises(KeyStoreError, match="already exists"):
        store.create_pkcs11("hsm-node", token.module, token.label, token.pin)


def test_store_needs_a_pin(token: Token, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = KeyStore(tmp_path / "home")
    store.create_pkcs11("n", token.module, token.label, token.pin)
    monkeypatch.delenv("MODELCHAIN_PKCS11_PIN", raising=False)
    with pytest.raises(KeyStoreError, match="MODELCHAIN_PKCS11_PIN"):
        store.signer("n")


def test_wrong_pin(token: Token, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = KeyStore(tmp_path / "home")
    store.create_pkcs11("n", token.module, token.label, token.pin)
    monkeypatch.setenv("MODELCHAIN_PKCS11_PIN", "QZX-wrong")
    with pytest.raises(KeyStoreError, match="wrong PIN") as info:
        store.signer("n")
    assert "QZX-wrong" not in str(info.value)
    with pytest.raises(KeyStoreError, match="wrong PIN"):
        Pkcs11Signer("n", token.module, token.label, "0000", "modelchain-n")


def test_two_signers_share_a_token_but_not_the_pin_check(token: Token) -> None:
    with (
        Pkcs11Signer.generate("a", token.module, token.label, token.pin, "ka") as a,
        Pkcs11Signer.generate("b", token.module, token.label, token.pin, "kb") as b,
    ):
        assert a.public_key != b.public_key
        verifier_of(b).verify(b"m", b.sign(b"m"))
        with pytest.raises(KeyStoreError, match="another PIN"):
            Pkcs11Signer("c", token.module, token.label, "0000", "ka")
        verifier_of(a).verify(b"m", a.sign(b"m"))


def test_missing_things(token: Token) -> None:
    with pytest.raises(KeyStoreError, match="no Ed25519 key pair labelled 'nope'"):
        Pkcs11Signer("a", token.module, token.label, token.pin, "nope")
    with pytest.raises(KeyStoreError, match="no PKCS#11 token labelled"):
        Pkcs11Signer("a", token.module, "no-such-token", token.pin, "k")
    with pytest.raises(KeyStoreError, match="cannot load PKCS#11 module"):
        Pkcs11Signer("a", "/nonexistent/libpkcs11.so", token.label, token.pin, "k")


def test_refuses_duplicate_label(token: Token) -> None:
    with Pkcs11Signer.generate("a", token.module, token.label, token.pin, "k1"):
        pass
    with pytest.raises(KeyStoreError, match="already holds objects labelled 'k1'"):
        Pkcs11Signer.generate("b", token.module, token.label, token.pin, "k1")


def test_import_without_python_pkcs11() -> None:
    # A fresh interpreter where ``import pkcs11`` fails, as without the extra.
    code = """
import sys
sys.modules["pkcs11"] = None
import modelchain.keys
from modelchain.errors import KeyStoreError
try:
    modelchain.keys.Pkcs11Signer("a", "/x.so", "t", "1234", "k")
except KeyStoreError as exc:
    assert "modelchain[pkcs11]" in str(exc), exc
    print("ok")
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.stdout.strip() == "ok", result.stderr


def test_cli_ledger_administered_from_an_hsm(token: Token, tmp_path: Path) -> None:
    """A ledger whose admin key never leaves the token: init, record, audit."""
    env = dict(
        os.environ,
        MODELCHAIN_HOME=str(tmp_path / "home"),
        MODELCHAIN_LEDGER=str(tmp_path / "ledger"),
        MODELCHAIN_PKCS11_PIN=token.pin,
    )
    env.pop("MODELCHAIN_KEY_PASSPHRASE", None)

    def cli(*args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "modelchain", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    vkey = cli(
        "identity", "new", "hsm-admin", "--pkcs11-module", token.module, "--token", token.label
    ).strip()
    cli("init", "--origin", "ledger.example.org/hsm", "--admin", "hsm-admin")
    cli("event", "record", "release.signed", "--body", '{"tag": "v1"}')
    assert "ok: 2 entries" in cli("log", "verify")
    shown = cli("log", "show", "1", "--json")
    assert VerifierKey.from_string(vkey).key_id_hex in shown
    assert not list((tmp_path / "home" / "keys").glob("hsm-admin.key"))


def test_cli_log_key_in_an_hsm(token: Token, tmp_path: Path) -> None:
    """A ledger whose log key never leaves the token: its checkpoints are signed
    there and verify in software; without the PIN a writer cannot open it."""
    env = dict(
        os.environ,
        MODELCHAIN_HOME=str(tmp_path / "home"),
        MODELCHAIN_LEDGER=str(tmp_path / "ledger"),
        MODELCHAIN_KEY_PASSPHRASE="correct horse",
        MODELCHAIN_LOG_KEY_PIN=token.pin,
    )
    env.pop("MODELCHAIN_PKCS11_PIN", None)
    env.pop("MODELCHAIN_LOG_KEY_PASSPHRASE", None)

    def cli(*args: str, code: int = 0, environ: dict[str, str] = env) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "modelchain", *args],
            env=environ,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        assert proc.returncode == code, proc.stderr
        return proc.stdout + proc.stderr

    origin = "ledger.example.org/hsm-log"
    ledger = tmp_path / "ledger"
    cli(
        "init", "--origin", origin, "--log-key-pkcs11", token.module, "--log-key-token", token.label
    )
    assert not (ledger / "log.key").exists()
    config = (ledger / "log.pkcs11.json").read_text()
    assert token.pin not in config and "pin" not in config.lower()
    cli("event", "record", "release.signed", "--body", '{"tag": "v1"}')
    vkey = VerifierKey.from_string(cli("log", "vkey").strip())
    note = cli("log", "checkpoint").encode()
    checkpoint, _ = open_checkpoint(note, vkey)  # Ed25519, verified in software
    assert checkpoint.origin == origin and checkpoint.size == 2
    # The key the token holds is the one genesis names.
    with Pkcs11Signer(
        origin, token.module, token.label, token.pin, f"modelchain-log-{origin}"
    ) as s:
        assert s.public_key == vkey.public_key
    assert "ok: 2 entries" in cli("log", "verify")

    no_pin = {k: v for k, v in env.items() if k != "MODELCHAIN_LOG_KEY_PIN"}
    refused = cli("event", "record", "x", "--body", "{}", code=6, environ=no_pin)
    assert "MODELCHAIN_LOG_KEY_PIN" in refused
    wrong = cli(
        "event",
        "record",
        "x",
        "--body",
        "{}",
        code=6,
        environ={**env, "MODELCHAIN_LOG_KEY_PIN": "QZX-0000"},
    )
    assert "wrong PIN" in wrong and "QZX-0000" not in wrong
    assert "ok: 2 entries" in cli("log", "verify", environ=no_pin)
