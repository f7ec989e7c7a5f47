"""Key files and the key store: encryption at rest, permissions, names, signing."""

from __future__ import annotations

import base64
import io
import os
import pickle
import stat
import sys
from pathlib import Path

import pytest

import modelchain.keys
from modelchain.core.identity import Ed25519Signer, Signer, VerifierKey
from modelchain.errors import KeyStoreError, MalformedError, NotFoundError
from modelchain.keys import (
    FileSigner,
    KeyStore,
    env_or_prompt_passphrase,
    generate_seed,
    modelchain_home,
    write_private_key,
)

PASS = b"correct horse battery staple"
SEED = bytes(range(32))


def passphrase(value: bytes = PASS) -> modelchain.keys.PassphraseSource:
    return lambda: value


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path / "home")


def test_all_is_explicit_and_importable() -> None:
    for name in modelchain.keys.__all__:
        assert hasattr(modelchain.keys, name), name
    assert sorted(modelchain.keys.__all__) == modelchain.keys.__all__


def test_home_from_environment(tmp_path: Path) -> None:
    assert modelchain_home({"MODELCHAIN_HOME": str(tmp_path)}) == tmp_path
    assert modelchain_home({}) == Path.home() / ".modelchain"
    assert modelchain_home({"MODELCHAIN_HOME": ""}) == Path.home() / ".modelchain"


def test_home_env_used_by_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELCHAIN_HOME", str(tmp_path / "mh"))
    KeyStore(modelchain_home()).create("alice", PASS)
    assert (tmp_path / "mh" / "keys" / "alice.key").is_file()
    assert (tmp_path / "mh" / "keys" / "alice.pub").is_file()


def test_generate_seed() -> None:
    a, b = generate_seed(), generate_seed()
    assert len(a) == 32 and a != b


def test_create_and_load_round_trip(store: KeyStore) -> None:
    vk = store.create("alice@example.org", PASS)
    signer = store.signer("alice@example.org", passphrase())
    assert isinstance(signer, FileSigner)
    assert isinstance(signer, Signer)
    assert signer.name == "alice@example.org"
    assert signer.public_key == vk.public_key
    assert store.verifier("alice@example.org") == vk
    message = b"a ledger transaction"
    signature = signer.sign(message)
    assert len(signature) == 64
    vk.verify(message, signature)
    VerifierKey.from_string(vk.to_string()).verify(message, signature)


def test_pub_file_is_the_verifier_string(store: KeyStore) -> None:
    vk = store.create("bob", PASS)
    assert (store.directory / "bob.pub").read_text() == vk.to_string() + "\n"


def test_pub_file_whose_base64_has_a_plus(store: KeyStore, tmp_path: Path) -> None:
    # base64 uses '+', so a verifier key string must split on the first two '+' only
    vk = VerifierKey("alice", Ed25519Signer("alice", bytes([8]) * 32).public_key)
    assert "+" in vk.to_string().split("+", 2)[2]
    store.create("alice", None)
    (store.directory / "alice.pub").unlink()
    (store.directory / "alice.pub").write_text(vk.to_string() + "\n")
    assert store.verifier("alice") == vk


def test_wrong_passphrase(store: KeyStore) -> None:
    store.create("alice", PASS)
    with pytest.raises(KeyStoreError, match="wrong passphrase for key 'alice'") as info:
        store.signer("alice", passphrase(b"not it"))
    assert b"not it".decode() not in str(info.value)
    assert PASS.decode() not in str(info.value)


def test_encrypted_key_needs_a_passphrase(store: KeyStore) -> None:
    store.create("alice", PASS)
    with pytest.raises(KeyStoreError, match="encrypted"):
        store.signer("alice")


def test_encrypted_file_is_encrypted(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    write_private_key(path, SEED, PASS)
    data = path.read_bytes()
    assert data.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert SEED not in data
    body = b"".join(line for line in data.splitlines() if not line.startswith(b"-----"))
    assert SEED not in base64.b64decode(body)
    signer = FileSigner.load("k", path, passphrase())
    assert signer.public_key == Ed25519Signer("k", SEED).public_key


def test_unencrypted_only_when_passphrase_is_none(tmp_path: Path) -> None:
    path = tmp_path / "plain.key"
    write_private_key(path, SEED, None)
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    asked: list[int] = []

    def source() -> bytes:
        asked.append(1)
        return PASS

    signer = FileSigner.load("plain", path, source)
    assert signer.public_key == Ed25519Signer("plain", SEED).public_key
    assert asked == []  # an unencrypted key never asks
    with pytest.raises(KeyStoreError, match="empty passphrase"):
        write_private_key(tmp_path / "empty.key", SEED, b"")
    assert not (tmp_path / "empty.key").exists()


def test_store_unencrypted(store: KeyStore) -> None:
    vk = store.create("ci-bot", None)
    assert (store.directory / "ci-bot.key").read_bytes().startswith(b"-----BEGIN PRIVATE KEY")
    assert store.signer("ci-bot").public_key == vk.public_key


def test_permissions(store: KeyStore, tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        store.create("alice", PASS)
        write_private_key(tmp_path / "log.key", SEED, None)
    finally:
        os.umask(old)
    assert mode(store.directory) == 0o700
    assert mode(store.directory / "alice.key") == 0o600
    assert mode(tmp_path / "log.key") == 0o600
    assert [p.name for p in store.directory.iterdir() if p.name.startswith(".")] == []


def test_refuse_overwrite(store: KeyStore, tmp_path: Path) -> None:
    store.create("alice", PASS)
    before = (store.directory / "alice.key").read_bytes()
    with pytest.raises(KeyStoreError, match="already exists"):
        store.create("alice", PASS)
    assert (store.directory / "alice.key").read_bytes() == before
    path = tmp_path / "x.key"
    path.write_bytes(b"keep me")
    with pytest.raises(KeyStoreError, match="refusing to overwrite"):
        write_private_key(path, SEED, PASS)
    assert path.read_bytes() == b"keep me"


def test_write_into_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match="cannot write"):
        write_private_key(tmp_path / "nope" / "k.key", SEED, PASS)


def test_refuse_readable_key_file(store: KeyStore) -> None:
    store.create("alice", PASS)
    key = store.directory / "alice.key"
    key.chmod(0o644)
    with pytest.raises(KeyStoreError, match="chmod 600") as info:
        store.signer("alice", passphrase())
    assert "0644" in str(info.value)
    key.chmod(0o600)
    store.signer("alice", passphrase())


def test_not_an_ed25519_key(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    path = tmp_path / "p256.key"
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.write_bytes(pem)
    path.chmod(0o600)
    with pytest.raises(KeyStoreError, match="not an Ed25519 key"):
        FileSigner.load("p256", path, None)
    path.write_bytes(b"garbage")
    with pytest.raises(KeyStoreError, match="not a readable PKCS#8"):
        FileSigner.load("p256", path, None)


def test_mismatched_pub_is_caught(store: KeyStore) -> None:
    store.create("alice", None)
    store.create("bob", None)
    (store.directory / "alice.key").unlink()
    os.link(store.directory / "bob.key", store.directory / "alice.key")
    with pytest.raises(KeyStoreError, match="does not match"):
        store.signer("alice")


def test_secrets_not_in_repr(tmp_path: Path) -> None:
    seed_hex = SEED.hex()
    write_private_key(tmp_path / "carol.key", SEED, PASS)
    signer = FileSigner.load("carol", tmp_path / "carol.key", passphrase())
    for text in (repr(signer), str(signer)):
        assert seed_hex not in text
        assert PASS.decode() not in text
        assert "carol" in text
    with pytest.raises(TypeError):
        pickle.dumps(signer)


def test_env_passphrase_source(store: KeyStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELCHAIN_KEY_PASSPHRASE", PASS.decode())
    source = env_or_prompt_passphrase(confirm=True)
    assert source() == PASS
    store.create("alice", source())
    assert store.signer("alice", env_or_prompt_passphrase()).name == "alice"
    monkeypatch.setenv("MODELCHAIN_KEY_PASSPHRASE", "wrong")
    with pytest.raises(KeyStoreError, match="wrong passphrase"):
        store.signer("alice", env_or_prompt_passphrase())
    monkeypatch.setenv("MODELCHAIN_KEY_PASSPHRASE", "")
    with pytest.raises(KeyStoreError, match="empty"):
        env_or_prompt_passphrase()()


def test_no_tty_and_no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELCHAIN_KEY_PASSPHRASE", raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    source = env_or_prompt_passphrase()  # creating the source asks nothing
    with pytest.raises(KeyStoreError, match="MODELCHAIN_KEY_PASSPHRASE"):
        source()


def test_list(store: KeyStore) -> None:
    assert store.list() == []
    b = store.create("bob", PASS)
    a = store.create("alice", None)
    (store.directory / "stray.pub").write_text(b.to_string() + "\n")  # no private key
    assert store.list() == [(a, "file"), (b, "file")]
    assert store.exists("alice") and not store.exists("carol")


def test_missing_identity(store: KeyStore) -> None:
    with pytest.raises(NotFoundError):
        store.verifier("nobody")
    with pytest.raises(NotFoundError):
        store.signer("nobody")


@pytest.mark.parametrize(
    "name",
    ["", "a b", "a+b", "../evil", "a/b", ".hidden", "..", "tab\tname", "é", "a\\b", "x:y"],
)
def test_bad_names(store: KeyStore, name: str) -> None:
    with pytest.raises(MalformedError):
        store.create(name, PASS)
    with pytest.raises(MalformedError):
        store.exists(name)
    assert not store.directory.exists() or list(store.directory.iterdir()) == []


def test_good_names(store: KeyStore) -> None:
    names = ["alice", "alice-2", "node-1.example.org", "ops@example.org", "A_B"]
    for name in names:
        store.create(name, None)
    assert [vk.name for vk, _ in store.list()] == sorted(names)
