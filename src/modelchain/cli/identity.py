"""``modelchain identity``: create and inspect signing identities."""

from __future__ import annotations

import os

import click

from ..core.identity import ML_DSA_44_COSIGNATURE, VerifierKey
from ..errors import (
    UsageError,
)
from ..keys.files import ALGORITHMS, Algorithm
from .common import (
    emit_json,
    json_option,
    keystore,
    passphrase_for,
)

__all__ = ["identity"]


@click.group()
def identity() -> None:
    """Create and inspect signing identities (Ed25519 keys; ML-DSA-44 for witnesses)."""


@click.command("new")
@click.argument("name")
@click.option("--unencrypted", is_flag=True, help="Store the key without a passphrase.")
@click.option("--pkcs11-module", help="Create the key in a PKCS#11 token (path to the module).")
@click.option("--token", "token_label", help="PKCS#11 token label.")
@click.option("--key-label", help="PKCS#11 key label (default modelchain-NAME).")
@click.option(
    "--algorithm",
    type=click.Choice(ALGORITHMS),
    default="ed25519",
    show_default=True,
    help="ml-dsa-44: a post-quantum key that only cosigns as a witness "
    "(`modelchain witness serve`); it cannot sign transactions. Key files only.",
)
def identity_new(
    name: str,
    unencrypted: bool,
    pkcs11_module: str | None,
    token_label: str | None,
    key_label: str | None,
    algorithm: Algorithm,
) -> None:
    """Create identity NAME: a key file under $MODELCHAIN_HOME or a key in an HSM.

    The PKCS#11 PIN comes from $MODELCHAIN_PKCS11_PIN or a prompt."""
    keys = keystore()
    if pkcs11_module and algorithm != "ed25519":
        raise UsageError(f"--algorithm {algorithm} keys are kept in key files, not PKCS#11 tokens")
    if pkcs11_module:
        if not token_label:
            raise UsageError("--pkcs11-module needs --token LABEL")
        pin = os.environ.get("MODELCHAIN_PKCS11_PIN") or click.prompt("Token PIN", hide_input=True)
        vk = keys.create_pkcs11(name, pkcs11_module, token_label, pin, key_label)
    else:
        passphrase = None if unencrypted else passphrase_for(name, keys, confirm=True)()
        vk = keys.create(name, passphrase, algorithm)
    click.echo(str(vk))


def _algorithm(vk: VerifierKey) -> Algorithm:
    return "ml-dsa-44" if vk.type_byte == ML_DSA_44_COSIGNATURE else "ed25519"


def _identity_json(vk: VerifierKey, backend: str | None = None) -> dict[str, str]:
    out = {
        "name": vk.name,
        "algorithm": _algorithm(vk),
        "key_id": vk.key_id_hex,
        "vkey": vk.to_string(),
    }
    if backend:
        out["backend"] = backend
    return out


@click.command("show")
@click.argument("name")
@json_option
def identity_show(name: str, as_json: bool) -> None:
    """Print NAME's key id and C2SP verifier-key string."""
    keys = keystore()
    vk = keys.verifier(name)
    if as_json:
        emit_json(_identity_json(vk, keys.backend(name)))
    else:
        click.echo(
            f"name:      {vk.name}\nalgorithm: {_algorithm(vk)}\n"
            f"key id:    {vk.key_id_hex}\nvkey:      {vk}"
        )


@click.command("list")
@json_option
def identity_list(as_json: bool) -> None:
    """List the identities in $MODELCHAIN_HOME."""
    found = keystore().list()
    if as_json:
        emit_json([_identity_json(vk, backend) for vk, backend in found])
        return
    for vk, backend in found:
        click.echo(f"{vk.name}\t{vk.key_id_hex}\t{backend}")


identity.add_command(identity_new)
identity.add_command(identity_show)
identity.add_command(identity_list)
