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
from .pkcs11 import ED25519_EC_PARAMS, Pkcs11Signer

__all__ = [
    "ED25519_EC_PARAMS",
    "FileSigner",
    "KeyStore",
    "PassphraseSource",
    "Pkcs11Signer",
    "env_or_prompt_passphrase",
    "generate_seed",
    "modelchain_home",
    "write_private_key",
]
