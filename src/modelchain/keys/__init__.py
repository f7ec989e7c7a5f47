"""Signing keys at rest and in hardware: PKCS#8 key files, the per-user key
store under ``$MODELCHAIN_HOME``, and PKCS#11 tokens.
"""

from __future__ import annotations

from .files import (
    FileSigner,
    KeyStore,
    PassphraseSource,
    env_or_prompt_passphrase,
    generate_seed,
    modelchain_home,
    write_private_key,
)
from .logkey import (
    LogKeySecrets,
    Pkcs11Key,
    create_log_key,
    log_key_files,
    open_log_key,
)
from .pkcs11 import ED25519_EC_PARAMS, Pkcs11Signer
from .sources import (
    KeyringLookup,
    identity_passphrase_env,
    os_keyring,
    passphrase_source,
)

__all__ = [
    "ED25519_EC_PARAMS",
    "FileSigner",
    "KeyStore",
    "KeyringLookup",
    "LogKeySecrets",
    "PassphraseSource",
    "Pkcs11Key",
    "Pkcs11Signer",
    "create_log_key",
    "env_or_prompt_passphrase",
    "generate_seed",
    "identity_passphrase_env",
    "log_key_files",
    "modelchain_home",
    "open_log_key",
    "os_keyring",
    "passphrase_source",
    "write_private_key",
]
