"""``modelchain init``: a new ledger, its log key and genesis."""

from __future__ import annotations

from pathlib import Path

import click

from ..contracts.policy import DEFAULT_POLICIES
from ..keys import KeyStore, modelchain_home
from ..ledger import ledger as ledger_mod
from ..ledger.ledger import Founder
from .common import (
    keystore,
    ledger_option,
    log_key_options,
    member_key,
    new_log_key,
    passphrase_for,
)

__all__ = ["init"]


def _parse_member(spec: str, keys: KeyStore) -> Founder:
    """NAME[:ROLE,ROLE...][@ORG], where NAME may be a full verifier-key string."""
    who, _, rest = spec.partition(":")
    roles_part, _, org = rest.partition("@")
    roles = tuple(r for r in roles_part.split(",") if r) or ("trainer",)
    return Founder(member_key(who, keys), org, roles)


@click.command()
@ledger_option
@click.option("--origin", required=True, help="The ledger's name, e.g. ledger.example.org/fraud.")
@click.option("--admin", default="admin", show_default=True, help="Founding admin identity.")
@click.option("--org", default="", help="The admin's organisation.")
@click.option(
    "--member",
    "members",
    multiple=True,
    metavar="NAME[:ROLES][@ORG]",
    help="Another founding member (repeatable); NAME is a local identity or a verifier key.",
)
@click.option(
    "--unencrypted",
    is_flag=True,
    help="Store a newly created admin key without a passphrase (not for production).",
)
@click.option(
    "--admin-roles",
    default="",
    metavar="ROLE,...",
    help="Roles the admin holds besides admin (e.g. trainer,validator for a one-person setup).",
)
@click.option(
    "--default-policies/--no-default-policies",
    default=True,
    show_default=True,
    help="Install the default policy set (see `modelchain policy show`).",
)
@click.option(
    "--checkpoint-policy",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A C2SP tlog-policy file: the cosignatures a checkpoint needs (default: none).",
)
@log_key_options
def init(
    ledger_dir: Path,
    origin: str,
    admin: str,
    org: str,
    members: tuple[str, ...],
    unencrypted: bool,
    admin_roles: str,
    default_policies: bool,
    checkpoint_policy: Path | None,
    encrypt_log_key: bool,
    log_key_pkcs11: str | None,
    log_key_token: str | None,
    log_key_label: str | None,
) -> None:
    """Create a ledger, its log key, and (if missing) the admin identity; write genesis.

    The log key is log.key in the ledger directory: encrypted with
    --encrypt-log-key (or when $MODELCHAIN_LOG_KEY_PASSPHRASE is set), after
    which every command that writes needs that passphrase; or with
    --log-key-pkcs11 a key generated in a PKCS#11 token, never leaving it."""
    from ..core.policy import CheckpointPolicy

    keys = keystore(ledger_dir)
    passphrase = passphrase_for(admin, keys)
    if not keys.exists(admin):
        created = None if unencrypted else passphrase_for(admin, keys, confirm=True)()
        vk = keys.create(admin, created)
        click.echo(f"created identity {vk}", err=True)
        if created is not None:

            def passphrase() -> bytes:  # asked once, not again to sign
                return created

    founders = [_parse_member(m, keys) for m in members]
    signer = keys.signer(admin, passphrase)
    log_key = new_log_key(origin, encrypt_log_key, log_key_pkcs11, log_key_token, log_key_label)
    with ledger_mod.init(
        ledger_dir,
        origin,
        signer,
        org=org,
        members=founders,
        policies=DEFAULT_POLICIES if default_policies else None,
        admin_roles=[r for r in admin_roles.split(",") if r],
        home=modelchain_home(),
        log_key_passphrase=log_key.passphrase,
        log_key_pkcs11=log_key.pkcs11,
        log_key_secrets=log_key.secrets,
        checkpoint_policy=(
            CheckpointPolicy.parse(checkpoint_policy.read_bytes()) if checkpoint_policy else None
        ),
    ) as led:
        led.set_meta("admin", admin)
        click.echo(f"created ledger {origin} in {ledger_dir}")
        click.echo(f"log key: {led.log_key}")
