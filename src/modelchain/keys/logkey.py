"""A ledger directory's log key (a cluster node's key too): ``log.key``, a
PKCS#8 file (encrypted when a passphrase was given), or ``log.pkcs11.json``,
naming a key that never leaves a PKCS#11 token. The edge supplies the secrets.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..core.identity import Ed25519Signer, Signer, VerifierKey, verifier_of
from ..errors import KeyStoreError
from .files import (
    FileSigner,
    PassphraseSource,
    _read_pkcs11_config,
    _write_new_file,
    generate_seed,
    write_private_key,
)
from .pkcs11 import Pkcs11Signer

__all__ = [
    "LOG_KEY_NAME",
    "LOG_KEY_PKCS11_NAME",
    "LogKeySecrets",
    "Pkcs11Key",
    "create_log_key",
    "log_key_files",
    "open_log_key",
]

LOG_KEY_NAME = "log.key"
LOG_KEY_PKCS11_NAME = "log.pkcs11.json"


@dataclass(frozen=True)
class LogKeySecrets:
    """What unlocks a log key, each asked for only when the key needs it: the
    passphrase of an encrypted ``log.key``, the PIN of a PKCS#11 token."""

    passphrase: PassphraseSource | None = None
    pin: PassphraseSource | None = None

    def __repr__(self) -> str:
        return (
            f"LogKeySecrets(passphrase={'given' if self.passphrase else None}, "
            f"pin={'given' if self.pin else None})"
        )


@dataclass(frozen=True)
class Pkcs11Key:
    """Where a PKCS#11 key is: the module, the token's label, the key's label."""

    module: str
    token_label: str
    key_label: str


def log_key_files(directory: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``log.key`` and ``log.pkcs11.json`` in ``directory``; at most one exists."""
    path = Path(directory)
    return path / LOG_KEY_NAME, path / LOG_KEY_PKCS11_NAME


def create_log_key(
    directory: str | os.PathLike[str],
    origin: str,
    *,
    passphrase: bytes | None = None,
    pkcs11: Pkcs11Key | None = None,
    pin: str | None = None,
) -> VerifierKey:
    """Make the log key of ``origin`` in ``directory``: a key file, encrypted
    with ``passphrase`` unless it is None, or with ``pkcs11`` a new key pair
    generated in the token (``pin`` logs in; it is not written anywhere)."""
    key_path, config_path = log_key_files(directory)
    if key_path.exists() or config_path.exists():
        raise KeyStoreError(f"{directory} already holds a log key")
    if pkcs11 is None:
        seed = generate_seed()
        write_private_key(key_path, seed, passphrase)
        return verifier_of(Ed25519Signer(origin, seed))
    if passphrase is not None:
        raise KeyStoreError("a PKCS#11 log key takes a PIN, not a passphrase")
    if not pin:
        raise KeyStoreError("a PKCS#11 log key needs the token's PIN")
    with Pkcs11Signer.generate(
        origin, pkcs11.module, pkcs11.token_label, pin, pkcs11.key_label
    ) as signer:
        verifier = verifier_of(signer)
    config = {
        "module": pkcs11.module,
        "token_label": pkcs11.token_label,
        "key_label": pkcs11.key_label,
    }
    _write_new_file(config_path, (json.dumps(config, indent=2) + "\n").encode(), 0o644)
    return verifier


def open_log_key(directory: str | os.PathLike[str], origin: str, secrets: LogKeySecrets) -> Signer:
    """The log key in ``directory``, signing as ``origin``. A PKCS#11 key's
    signer holds a session: close it (``close()``) when done."""
    key_path, config_path = log_key_files(directory)
    if config_path.exists():
        if key_path.exists():
            raise KeyStoreError(
                f"{directory} holds both {LOG_KEY_NAME} and {LOG_KEY_PKCS11_NAME}: "
                "keep the one the ledger's genesis names"
            )
        module, token_label, key_label = _read_pkcs11_config(config_path)
        if secrets.pin is None:
            raise KeyStoreError(
                f"the log key of {origin!r} is in PKCS#11 token {token_label!r}: its PIN is needed"
            )
        pin = secrets.pin().decode()
        return Pkcs11Signer(origin, module, token_label, pin, key_label)
    if not key_path.exists():
        raise KeyStoreError(
            f"no log key in {directory} ({LOG_KEY_NAME} or {LOG_KEY_PKCS11_NAME}); "
            "open the ledger read-only to read or verify it"
        )
    return FileSigner.load(origin, key_path, secrets.passphrase)
