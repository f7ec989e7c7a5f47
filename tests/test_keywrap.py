"""Key wrapping: the file KEK and the PKCS#11 KEK (SoftHSM) wrap and unwrap data keys
with AES key wrap with padding, refuse a wrong KEK or damaged wrapping, and a key store
entry that is destroyed is gone from its folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_pkcs11 import Token, token  # noqa: F401  (the SoftHSM fixture)

from modelchain.errors import IntegrityError, KeyStoreError, NotFoundError, UsageError
from modelchain.keys.wrap import DataKeyStore, FileKek, Pkcs11Kek, WrappedKey, open_kek

DATA_KEY = os.urandom(131)  # a serialized Tink keyset is about this long


def test_file_kek_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "kek" / "org.kek"
    kek = FileKek(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(path.read_bytes()) == 32
    again = FileKek(path)
    assert again.kek_id == kek.kek_id and kek.kek_id.startswith("file:")
    assert again.unwrap(kek.wrap(DATA_KEY)) == DATA_KEY


def test_file_kek_refuses_a_wrong_kek_and_damage(tmp_path: Path) -> None:
    kek, other = FileKek(tmp_path / "a.kek"), FileKek(tmp_path / "b.kek")
    wrapped = kek.wrap(DATA_KEY)
    assert DATA_KEY not in wrapped
    with pytest.raises(IntegrityError):
        other.unwrap(wrapped)
    damaged = bytes([wrapped[0] ^ 1]) + wrapped[1:]
    with pytest.raises(IntegrityError):
        kek.unwrap(damaged)


def test_file_kek_refuses_a_loose_mode_and_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "org.kek"
    FileKek(path)
    path.chmod(0o644)
    with pytest.raises(KeyStoreError, match="readable by others"):
        FileKek(path)
    with pytest.raises(KeyStoreError, match="no key-encryption key"):
        FileKek(tmp_path / "absent.kek", create=False)


def test_key_store_destroy_leaves_nothing_in_the_folder(tmp_path: Path) -> None:
    kek = FileKek(tmp_path / "org.kek")
    store = DataKeyStore(tmp_path / "datakeys")
    entry = "ab" * 16
    store.put(WrappedKey(entry, kek.kek_id, kek.wrap(DATA_KEY)))
    assert list(store.entries()) == [entry]
    assert (tmp_path / "datakeys" / f"{entry}.json").stat().st_mode & 0o777 == 0o600
    assert kek.unwrap(store.get(entry).wrapped) == DATA_KEY
    assert store.destroy(entry)
    assert not store.destroy(entry)
    assert list((tmp_path / "datakeys").iterdir()) == []
    with pytest.raises(NotFoundError):
        store.get(entry)
    with pytest.raises(UsageError):
        store.get("../etc/passwd")


def test_pkcs11_kek_wraps_inside_the_token(token: Token) -> None:  # noqa: F811
    import pkcs11

    kek = Pkcs11Kek(token.module, token.label, token.pin, "org-kek")
    try:
        wrapped = kek.wrap(DATA_KEY)
        assert DATA_KEY not in wrapped and len(wrapped) >= len(DATA_KEY) + 8
        assert kek.unwrap(wrapped) == DATA_KEY
        damaged = wrapped[:-1] + bytes([wrapped[-1] ^ 1])
        with pytest.raises((IntegrityError, KeyStoreError)):
            kek.unwrap(damaged)
        # The KEK itself cannot be read out of the token.
        key = kek._kek
        assert key[pkcs11.Attribute.SENSITIVE] and not key[pkcs11.Attribute.EXTRACTABLE]
    finally:
        kek.close()
    spec = f"pkcs11:token={token.label};object=org-kek;module={token.module}"
    again = open_kek(spec, pin=token.pin, create=False)
    try:
        assert again.kek_id == kek.kek_id
        assert again.unwrap(wrapped) == DATA_KEY
    finally:
        assert isinstance(again, Pkcs11Kek)
        again.close()
    with pytest.raises(KeyStoreError, match="no AES key"):
        Pkcs11Kek(token.module, token.label, token.pin, "absent", create=False)


def test_a_file_kek_does_not_unwrap_what_the_token_wrapped(
    token: Token,  # noqa: F811
    tmp_path: Path,
) -> None:
    kek = Pkcs11Kek(token.module, token.label, token.pin, "org-kek")
    try:
        wrapped = kek.wrap(DATA_KEY)
    finally:
        kek.close()
    with pytest.raises(IntegrityError):
        FileKek(tmp_path / "org.kek").unwrap(wrapped)


def test_open_kek_needs_the_fields_and_a_pin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELCHAIN_PKCS11_PIN", raising=False)
    with pytest.raises(UsageError, match="needs module"):
        open_kek("pkcs11:token=t;object=k")
    with pytest.raises(UsageError, match="PIN"):
        open_kek("pkcs11:token=t;object=k;module=/x.so")


def test_a_passphrase_protected_kek_file(tmp_path: Path) -> None:
    path = tmp_path / "org.kek"
    kek = FileKek(path, passphrase=b"correct horse")
    assert len(path.read_bytes()) != 32 and b"scrypt" in path.read_bytes()
    wrapped = kek.wrap(DATA_KEY)
    again = FileKek(path, passphrase=b"correct horse")
    assert again.kek_id == kek.kek_id and again.unwrap(wrapped) == DATA_KEY
    with pytest.raises(KeyStoreError, match="wrong passphrase"):
        FileKek(path, passphrase=b"wrong")
    with pytest.raises(KeyStoreError, match="passphrase-protected"):
        FileKek(path)
