"""Key wrapping: an organisation's key-encryption key (KEK) wraps the data key of each
encrypted artifact version, and wrapped data keys are kept in key stores off the ledger.

A ``KeyWrap`` has two backends: a KEK file (32 random bytes, created on first use with
mode 0600) used with AES key wrap with padding (RFC 5649, through ``cryptography``), and
an AES key in a PKCS#11 token used through ``C_WrapKey``/``C_UnwrapKey`` with
``CKM_AES_KEY_WRAP_PAD`` (the key never leaves the token). A ``DataKeyStore`` is a
folder of wrapped keys, one file per key entry; ``destroy`` deletes the entry, which is
what erasing a version does to its key (crypto-shredding).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import IntegrityError, KeyStoreError, NotFoundError, UsageError

if TYPE_CHECKING:
    from pkcs11 import Session

__all__ = [
    "KEK_PKCS11_PREFIX",
    "DataKeyStore",
    "FileKek",
    "KeyWrap",
    "Pkcs11Kek",
    "WrappedKey",
    "open_kek",
]

KEK_PKCS11_PREFIX = "pkcs11:"
_KEK_SIZE = 32
_ENTRY = re.compile(r"[0-9a-f]{32}\Z")
_FORMAT = "modelchain-wrapped-key/v1"
_KEK_FORMAT = "modelchain-kek/v1"


def _passphrase_key(passphrase: bytes, salt: bytes) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=salt, length=32, n=1 << 15, r=8, p=1).derive(passphrase)


class KeyWrap(Protocol):
    """Wraps and unwraps data keys with one key-encryption key, named by ``kek_id``."""

    @property
    def kek_id(self) -> str: ...

    def wrap(self, data_key: bytes) -> bytes: ...

    def unwrap(self, wrapped: bytes) -> bytes: ...


def _kek_fingerprint(kind: str, material: bytes) -> str:
    # Names the KEK without revealing anything about it (a hash of 32 random bytes).
    return f"{kind}:{hashlib.sha256(b'modelchain/kek-id/v1' + material).hexdigest()[:32]}"


class FileKek:
    """A KEK in a file: 32 random bytes, mode 0600, created on first use. With a
    ``passphrase`` the file holds the KEK wrapped (RFC 5649) under a key derived from
    the passphrase with scrypt (n=2**15, r=8, p=1), as JSON; without, the raw bytes."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        passphrase: bytes | None = None,
    ) -> None:
        self.path = Path(path)
        if not self.path.exists():
            if not create:
                raise KeyStoreError(f"no key-encryption key at {self.path}")
            self._create(passphrase)
        mode = self.path.stat().st_mode & 0o777
        if mode & 0o077:
            raise KeyStoreError(
                f"the key-encryption key {self.path} is readable by others (mode {mode:o}): "
                f"chmod 600 {self.path}"
            )
        key = self._read(self.path.read_bytes(), passphrase)
        self._key = key
        self._id = _kek_fingerprint("file", key)

    def _read(self, data: bytes, passphrase: bytes | None) -> bytes:
        if len(data) == _KEK_SIZE:
            return data
        try:
            obj = json.loads(data)
            if obj.get("format") != _KEK_FORMAT:
                raise ValueError("not a passphrase-protected KEK")
            salt = base64.b64decode(obj["salt"])
            wrapped = base64.b64decode(obj["wrapped"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise KeyStoreError(f"{self.path} is not a key-encryption key") from exc
        if passphrase is None:
            raise KeyStoreError(
                f"the key-encryption key {self.path} is passphrase-protected: "
                "give its passphrase ($MODELCHAIN_KEK_PASSPHRASE)"
            )
        from cryptography.hazmat.primitives.keywrap import (
            InvalidUnwrap,
            aes_key_unwrap_with_padding,
        )

        try:
            return aes_key_unwrap_with_padding(_passphrase_key(passphrase, salt), wrapped)
        except InvalidUnwrap as exc:
            raise KeyStoreError(f"wrong passphrase for the key-encryption key {self.path}") from exc

    def _create(self, passphrase: bytes | None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = os.urandom(_KEK_SIZE)
        data = key
        if passphrase is not None:
            from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding

            salt = os.urandom(16)
            wrapped = aes_key_wrap_with_padding(_passphrase_key(passphrase, salt), key)
            data = json.dumps(
                {
                    "format": _KEK_FORMAT,
                    "kdf": "scrypt-n32768-r8-p1",
                    "salt": base64.b64encode(salt).decode(),
                    "wrapped": base64.b64encode(wrapped).decode(),
                }
            ).encode()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return  # another process made it first
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    @property
    def kek_id(self) -> str:
        return self._id

    def wrap(self, data_key: bytes) -> bytes:
        from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding

        return aes_key_wrap_with_padding(self._key, data_key)

    def unwrap(self, wrapped: bytes) -> bytes:
        from cryptography.hazmat.primitives.keywrap import (
            InvalidUnwrap,
            aes_key_unwrap_with_padding,
        )

        try:
            return aes_key_unwrap_with_padding(self._key, wrapped)
        except InvalidUnwrap as exc:
            raise IntegrityError(
                f"the wrapped key does not unwrap with the key-encryption key {self.path}"
            ) from exc


class Pkcs11Kek:
    """A KEK that lives in a PKCS#11 token: an AES-256 key, sensitive and not
    extractable, generated in the token on first use under ``key_label``. Wrapping
    imports the data key as a session object and wraps it with ``C_WrapKey``
    (``CKM_AES_KEY_WRAP_PAD``); unwrapping makes an extractable session object with
    ``C_UnwrapKey`` and reads its value. The PIN is not kept.

    The data key is framed first (its length in two bytes, then zeros to a multiple
    of 8 bytes): SoftHSM 2.6 returns an unwrapped RFC 5649 value with its padding
    still on, so the frame, not the mechanism, says where the key ends."""

    def __init__(
        self, module: str, token_label: str, pin: str, key_label: str, *, create: bool = True
    ) -> None:
        from .pkcs11 import _open_session, _require_pkcs11

        p11 = _require_pkcs11()
        self._p11 = p11
        self._lock = threading.Lock()
        self._session: Session = _open_session(module, token_label, pin, rw=True)
        self._label = key_label
        try:
            try:
                self._kek: Any = self._session.get_key(
                    object_class=p11.ObjectClass.SECRET_KEY,
                    key_type=p11.KeyType.AES,
                    label=key_label,
                )
            except p11.NoSuchKey:
                if not create:
                    raise KeyStoreError(
                        f"no AES key labelled {key_label!r} in PKCS#11 token {token_label!r}"
                    ) from None
                A = p11.Attribute
                self._kek = self._session.generate_key(
                    p11.KeyType.AES,
                    256,
                    label=key_label,
                    store=True,
                    template={
                        A.TOKEN: True,
                        A.SENSITIVE: True,
                        A.EXTRACTABLE: False,
                        A.WRAP: True,
                        A.UNWRAP: True,
                        A.ENCRYPT: False,
                        A.DECRYPT: False,
                    },
                )
            token_serial = str(self._session.token.serial).strip()
        except p11.PKCS11Error as exc:
            self.close()
            raise KeyStoreError(f"PKCS#11 key-encryption key {key_label!r}: {exc!r}") from exc
        material = f"{token_serial}/{key_label}".encode()
        self._id = _kek_fingerprint("pkcs11", material)

    @property
    def kek_id(self) -> str:
        return self._id

    def wrap(self, data_key: bytes) -> bytes:
        p11 = self._p11
        A = p11.Attribute
        with self._lock:
            try:
                secret = self._session.create_object(
                    {
                        A.CLASS: p11.ObjectClass.SECRET_KEY,
                        A.KEY_TYPE: p11.KeyType.GENERIC_SECRET,
                        A.TOKEN: False,
                        A.VALUE: _frame(data_key),
                        A.EXTRACTABLE: True,
                        A.SENSITIVE: False,
                    }
                )
                try:
                    wrapped: bytes = self._kek.wrap_key(
                        secret, mechanism=p11.Mechanism.AES_KEY_WRAP_PAD
                    )
                finally:
                    secret.destroy()
            except p11.PKCS11Error as exc:
                raise KeyStoreError(f"PKCS#11 key wrap failed: {exc!r}") from exc
        return wrapped

    def unwrap(self, wrapped: bytes) -> bytes:
        p11 = self._p11
        A = p11.Attribute
        with self._lock:
            try:
                secret = self._kek.unwrap_key(
                    p11.ObjectClass.SECRET_KEY,
                    p11.KeyType.GENERIC_SECRET,
                    wrapped,
                    mechanism=p11.Mechanism.AES_KEY_WRAP_PAD,
                    store=False,
                    template={A.EXTRACTABLE: True, A.SENSITIVE: False},
                )
                try:
                    value: bytes = _unframe(secret[A.VALUE])
                finally:
                    secret.destroy()
            except (p11.EncryptedDataInvalid, p11.WrappedKeyInvalid) as exc:
                raise IntegrityError(
                    f"the wrapped key does not unwrap with PKCS#11 key {self._label!r}"
                ) from exc
            except p11.PKCS11Error as exc:
                raise KeyStoreError(f"PKCS#11 key unwrap failed: {exc!r}") from exc
        return value

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._session.close()


def _frame(data_key: bytes) -> bytes:
    if not 0 < len(data_key) < 1 << 16:
        raise UsageError(f"a data key is 1-65535 bytes, not {len(data_key)}")
    framed = len(data_key).to_bytes(2, "big") + data_key
    return framed + bytes(-len(framed) % 8)


def _unframe(value: bytes) -> bytes:
    n = int.from_bytes(value[:2], "big")
    if len(value) < n + 2 or any(value[n + 2 :]):
        raise IntegrityError("the unwrapped key is not a framed data key")
    return value[2 : n + 2]


def open_kek(
    spec: str, *, pin: str | None = None, create: bool = True, passphrase: bytes | None = None
) -> KeyWrap:
    """The KEK ``spec`` names: a file path (``passphrase`` for a protected one), or
    ``pkcs11:token=LABEL;object=KEY;module=PATH`` (PIN from ``pin``, else
    ``$MODELCHAIN_PKCS11_PIN``)."""
    if not spec.startswith(KEK_PKCS11_PREFIX):
        return FileKek(spec, create=create, passphrase=passphrase)
    fields: dict[str, str] = {}
    for part in spec[len(KEK_PKCS11_PREFIX) :].split(";"):
        k, sep, v = part.partition("=")
        if not sep:
            raise UsageError(f"bad PKCS#11 KEK {spec!r}: {part!r} is not key=value")
        fields[k.strip()] = v.strip()
    missing = {"token", "object", "module"} - set(fields)
    if missing:
        raise UsageError(f"the PKCS#11 KEK {spec!r} needs {', '.join(sorted(missing))}")
    pin = pin if pin is not None else os.environ.get("MODELCHAIN_PKCS11_PIN")
    if not pin:
        raise UsageError("a PKCS#11 key-encryption key needs a PIN: $MODELCHAIN_PKCS11_PIN")
    return Pkcs11Kek(fields["module"], fields["token"], pin, fields["object"], create=create)


@dataclass(frozen=True)
class WrappedKey:
    """One key entry: a data key wrapped by the KEK ``kek_id``."""

    entry: str
    kek_id: str
    wrapped: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "entry": self.entry,
            "kek": self.kek_id,
            "wrapped": base64.b64encode(self.wrapped).decode(),
        }


class DataKeyStore:
    """Wrapped data keys in a folder, one file per entry (``<entry>.json``, 0600).
    An entry id is 32 random hex digits; the ledger names it, never the key."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def _path(self, entry: str) -> Path:
        if not _ENTRY.match(entry):
            raise UsageError(f"{entry!r} is not a key entry id (32 hex digits)")
        return self.root / f"{entry}.json"

    def put(self, key: WrappedKey) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self._path(key.entry)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(key.to_json(), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(self.root)

    def get(self, entry: str) -> WrappedKey:
        path = self._path(entry)
        try:
            obj = json.loads(path.read_text())
            if obj.get("format") != _FORMAT or obj.get("entry") != entry:
                raise KeyStoreError(f"{path} is not a wrapped key entry")
            return WrappedKey(entry, str(obj["kek"]), base64.b64decode(obj["wrapped"]))
        except FileNotFoundError:
            raise NotFoundError(f"no key entry {entry} in {self.root}") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyStoreError(f"{path} is not a wrapped key entry: {exc}") from exc

    def has(self, entry: str) -> bool:
        return self._path(entry).exists()

    def destroy(self, entry: str) -> bool:
        """Delete the entry (and make the deletion durable); True if it was there.
        What the filesystem may keep of deleted blocks is out of scope (ADR 17)."""
        path = self._path(entry)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        _fsync_dir(self.root)
        return True

    def entries(self) -> Iterator[str]:
        if not self.root.is_dir():
            return
        for p in sorted(self.root.glob("*.json")):
            if _ENTRY.match(p.stem):
                yield p.stem


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
