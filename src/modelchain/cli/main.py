"""The ``modelchain`` command line.

Every command takes ``--ledger DIR`` (default $MODELCHAIN_LEDGER, else
./.modelchain). Errors become one ``error: ...`` line on stderr and the exit
code of their class (see modelchain.errors), in ``main`` and nowhere else.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from ..contracts.ledger import BUILTIN_ROLES, EVENT
from ..contracts.policy import DEFAULT_POLICIES
from ..core import canonical
from ..core.identity import VerifierKey
from ..core.merkle import leaf_hash
from ..errors import (
    Error,
    MalformedError,
    NotFoundError,
    RejectedError,
    StorageError,
    UsageError,
)
from ..keys import KeyStore, env_or_prompt_passphrase
from ..ledger import ledger as ledger_mod
from ..ledger.ledger import Founder
from .common import (
    LOG_KEY_ENV,
    SERVER_ENV,
    emit_json,
    json_option,
    keystore,
    ledger_option,
    open_ledger,
    signer_for,
)
from .governance import register_commands as register_governance
from .lifecycle import register_commands as register_lifecycle
from .registry import register_commands
from .reports import register_commands as register_reports
from .server import register_commands as register_server

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="modelchain")
@click.option(
    "--server",
    envvar=SERVER_ENV,
    metavar="URL",
    help="Work against a ledger served at URL (`modelchain serve`) instead of --ledger; "
    "read tokens come from $MODELCHAIN_TOKEN. Everything read is verified.",
)
@click.option(
    "--log-key",
    envvar=LOG_KEY_ENV,
    metavar="VKEY",
    help="With --server: the log's verifier key to trust (else the one first seen).",
)
@click.pass_context
def cli(ctx: click.Context, server: str | None, log_key: str | None) -> None:
    """modelchain: a verifiable provenance ledger for ML models and datasets.

    Transactions are signed (DSSE, Ed25519), appended to an RFC 9162 Merkle
    log and covered by C2SP signed checkpoints that anyone can verify offline.
    Keys live under $MODELCHAIN_HOME (default ~/.modelchain); passphrases come
    from $MODELCHAIN_KEY_PASSPHRASE or a prompt.
    """
    ctx.obj = {"server": server, "log_key": log_key}


# -- init ----------------------------------------------------------------------


def _parse_member(spec: str, keys: KeyStore) -> Founder:
    """NAME[:ROLE,ROLE...][@ORG], where NAME may be a full verifier-key string."""
    who, _, rest = spec.partition(":")
    roles_part, _, org = rest.partition("@")
    roles = tuple(r for r in roles_part.split(",") if r) or ("trainer",)
    key = VerifierKey.from_string(who) if "+" in who else keys.verifier(who)
    return Founder(key, org, roles)


@cli.command()
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
def init(
    ledger_dir: Path,
    origin: str,
    admin: str,
    org: str,
    members: tuple[str, ...],
    unencrypted: bool,
    admin_roles: str,
    default_policies: bool,
) -> None:
    """Create a ledger, its log key, and (if missing) the admin identity; write genesis."""
    keys = keystore(ledger_dir)
    if not keys.exists(admin):
        passphrase = None if unencrypted else env_or_prompt_passphrase(confirm=True)()
        vk = keys.create(admin, passphrase)
        click.echo(f"created identity {vk}", err=True)
    founders = [_parse_member(m, keys) for m in members]
    signer = keys.signer(admin, env_or_prompt_passphrase(prompt=f"Passphrase for {admin}: "))
    with ledger_mod.init(
        ledger_dir,
        origin,
        signer,
        org=org,
        members=founders,
        policies=DEFAULT_POLICIES if default_policies else None,
        admin_roles=[r for r in admin_roles.split(",") if r],
    ) as led:
        led.store.set_meta("admin", admin)
        click.echo(f"created ledger {origin} in {ledger_dir}")
        click.echo(f"log key: {led.log_key}")


# -- identities ----------------------------------------------------------------


@cli.group()
def identity() -> None:
    """Create and inspect signing identities (Ed25519 keys)."""


@identity.command("new")
@click.argument("name")
@click.option("--unencrypted", is_flag=True, help="Store the key without a passphrase.")
@click.option("--pkcs11-module", help="Create the key in a PKCS#11 token (path to the module).")
@click.option("--token", "token_label", help="PKCS#11 token label.")
@click.option("--key-label", help="PKCS#11 key label (default modelchain-NAME).")
def identity_new(
    name: str,
    unencrypted: bool,
    pkcs11_module: str | None,
    token_label: str | None,
    key_label: str | None,
) -> None:
    """Create identity NAME: a key file under $MODELCHAIN_HOME or a key in an HSM.

    The PKCS#11 PIN comes from $MODELCHAIN_PKCS11_PIN or a prompt."""
    keys = keystore()
    if pkcs11_module:
        if not token_label:
            raise UsageError("--pkcs11-module needs --token LABEL")
        pin = os.environ.get("MODELCHAIN_PKCS11_PIN") or click.prompt("Token PIN", hide_input=True)
        vk = keys.create_pkcs11(name, pkcs11_module, token_label, pin, key_label)
    else:
        passphrase = None if unencrypted else env_or_prompt_passphrase(confirm=True)()
        vk = keys.create(name, passphrase)
    click.echo(str(vk))


def _identity_json(vk: VerifierKey, backend: str | None = None) -> dict[str, str]:
    out = {"name": vk.name, "key_id": vk.key_id_hex, "vkey": vk.to_string()}
    if backend:
        out["backend"] = backend
    return out


@identity.command("show")
@click.argument("name")
@json_option
def identity_show(name: str, as_json: bool) -> None:
    """Print NAME's key id and C2SP verifier-key string."""
    keys = keystore()
    vk = keys.verifier(name)
    if as_json:
        emit_json(_identity_json(vk, keys.backend(name)))
    else:
        click.echo(f"name:    {vk.name}\nkey id:  {vk.key_id_hex}\nvkey:    {vk}")


@identity.command("list")
@json_option
def identity_list(as_json: bool) -> None:
    """List the identities in $MODELCHAIN_HOME."""
    found = keystore().list()
    if as_json:
        emit_json([_identity_json(vk, backend) for vk, backend in found])
        return
    for vk, backend in found:
        click.echo(f"{vk.name}\t{vk.key_id_hex}\t{backend}")


# -- events --------------------------------------------------------------------


@cli.group()
def event() -> None:
    """Record application-defined events."""


def _read_bodies(body: str | None, from_file: Path | None) -> Iterator[Any]:
    if (body is None) == (from_file is None):
        raise UsageError("give exactly one of --body JSON or --from-file FILE.jsonl")
    if body is not None:
        yield canonical.loads(body)
        return
    assert from_file is not None
    try:
        with from_file.open("rb") as fh:
            for lineno, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        yield canonical.loads(line)
                    except MalformedError as exc:
                        raise MalformedError(f"{from_file}:{lineno}: {exc.message}") from exc
    except FileNotFoundError as exc:
        raise NotFoundError(f"no file {from_file}") from exc


@event.command("record")
@ledger_option
@click.argument("event_type", metavar="TYPE")
@click.option("--body", help="The event's JSON body.")
@click.option(
    "--from-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A JSON Lines file: one event per line, submitted as a batch.",
)
@click.option("--as", "as_name", help="Identity that signs (default $MODELCHAIN_IDENTITY).")
@json_option
def event_record(
    ledger_dir: Path,
    event_type: str,
    body: str | None,
    from_file: Path | None,
    as_name: str | None,
    as_json: bool,
) -> None:
    """Record one event of TYPE, or one per line of a JSON Lines file."""
    # Read and check all input before signing anything: a bad line writes nothing.
    bodies = list(_read_bodies(body, from_file))
    with open_ledger(ledger_dir) as led:
        signer = signer_for(as_name, led)
        envs = [
            led.transaction(EVENT, {"event": event_type, "data": b}, signer.name).sign(signer)
            for b in bodies
        ]
        for env in envs:  # refuse the whole file if any one would be refused
            led.precheck(env.to_bytes())
        acks = []
        chunk = led.max_batch
        with click.progressbar(
            length=len(envs), label="recording", file=sys.stderr, hidden=len(envs) < 1000
        ) as bar:
            for start in range(0, len(envs), chunk):
                part = led.submit_many(envs[start : start + chunk])
                acks.extend(part)
                bar.update(len(part))
    results = [
        {"index": a.index, "leaf_hash": a.leaf_hash.hex(), **a.outcome.to_json()} for a in acks
    ]
    if as_json:
        emit_json(results[0] if body is not None else results)
    else:
        for r in results:
            extra = f" {r['code']}: {r['reason']}" if r["result"] == "rejected" else ""
            click.echo(f"{r['index']}\t{r['result']}{extra}")
    rejected = [a for a in acks if not a.outcome.accepted]
    if rejected:  # every line is reported above; the exit status says some were refused
        first = rejected[0]
        what = (
            f"{EVENT} was rejected"
            if len(acks) == 1
            else f"{len(rejected)} of {len(acks)} events were rejected, the first"
        )
        raise RejectedError(
            f"{what} ({first.outcome.code}): {first.outcome.reason}; "
            f"the rejection is entry {first.index}",
            first.index,
            first.outcome.code,
        )


# -- log -----------------------------------------------------------------------


@cli.group()
def log() -> None:
    """Inspect, prove and audit the log."""


@log.command("vkey")
@ledger_option
def log_vkey(ledger_dir: Path) -> None:
    """Print the log's verifier key (its name is the origin)."""
    with open_ledger(ledger_dir, readonly=True) as led:
        click.echo(str(led.log_key))


@log.command("checkpoint")
@ledger_option
def log_checkpoint(ledger_dir: Path) -> None:
    """Print the latest signed checkpoint, exactly as C2SP tlog-checkpoint defines it."""
    with open_ledger(ledger_dir, readonly=True) as led:
        sys.stdout.buffer.write(led.checkpoint())


@log.command("show")
@ledger_option
@click.argument("index", type=int)
@click.option("--raw", is_flag=True, help="Print the exact leaf bytes.")
@json_option
def log_show(ledger_dir: Path, index: int, raw: bool, as_json: bool) -> None:
    """Show entry INDEX."""
    with open_ledger(ledger_dir, readonly=True) as led:
        if raw:
            sys.stdout.buffer.write(led.entry_bytes(index))
            return
        entry = led.entry(index)
        data = entry.to_json()
        if as_json:
            emit_json(data)
            return
        tx = entry.transaction
        click.echo(f"index:     {entry.index}")
        click.echo(f"type:      {tx.type}")
        click.echo(f"actor:     {tx.actor}")
        click.echo(f"time:      {tx.time}")
        click.echo(f"nonce:     {tx.nonce}")
        click.echo(f"signed by: {', '.join(data['signatures'])}")
        result = entry.outcome.to_json()
        click.echo(f"outcome:   {' '.join(result.values())}")
        click.echo("body:      " + json.dumps(tx.body, indent=2, sort_keys=True))


@log.command("proof")
@ledger_option
@click.argument("index", type=int)
@json_option
def log_proof(ledger_dir: Path, index: int, as_json: bool) -> None:
    """Print a C2SP tlog-proof for entry INDEX against the latest checkpoint."""
    with open_ledger(ledger_dir, readonly=True) as led:
        receipt = led.receipt(index)
        if as_json:
            emit_json(
                {
                    "index": receipt.index,
                    "leaf_hash": leaf_hash(led.entry_bytes(index)).hex(),
                    "proof": [base64.b64encode(h).decode() for h in receipt.proof],
                    "checkpoint": receipt.checkpoint.decode(),
                    "tlog_proof": receipt.to_text(),
                }
            )
            return
        click.echo(receipt.to_text(), nl=False)


@log.command("consistency")
@ledger_option
@click.argument("old", type=int)
@click.argument("new", type=int)
@json_option
def log_consistency(ledger_dir: Path, old: int, new: int, as_json: bool) -> None:
    """Print the consistency proof from tree size OLD to NEW, one base64 hash a line."""
    with open_ledger(ledger_dir, readonly=True) as led:
        proof = [base64.b64encode(h).decode() for h in led.consistency_proof(old, new)]
    if as_json:
        emit_json({"old": old, "new": new, "proof": proof})
        return
    for h in proof:
        click.echo(h)


@log.command("export-tiles")
@ledger_option
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def log_export_tiles(ledger_dir: Path, directory: Path) -> None:
    """Write checkpoint, tile/... and tile/entries/... as static tlog-tiles files."""
    with open_ledger(ledger_dir, readonly=True) as led:
        count = led.export_tiles(directory)
        click.echo(f"wrote {count} files for {led.size} entries to {directory}", err=True)


@log.command("verify")
@ledger_option
@json_option
def log_verify(ledger_dir: Path, as_json: bool) -> None:
    """Full audit: recompute the tree, check every signature, re-execute every
    transaction, compare state and check every stored checkpoint."""
    with open_ledger(ledger_dir, readonly=True) as led:
        total = led.size
        with click.progressbar(
            length=total, label="verifying", file=sys.stderr, hidden=total < 20_000
        ) as bar:
            done = [0]

            def progress(index: int, _total: int) -> None:
                bar.update(index - done[0])
                done[0] = index

            report = led.audit(progress)
    summary = {
        "size": report.size,
        "root": base64.b64encode(report.root).decode(),
        "accepted": report.accepted,
        "rejected": report.rejected,
        "signatures": report.signatures,
        "checkpoints": report.checkpoints,
    }
    if as_json:
        emit_json({"ok": True, **summary})
    else:
        click.echo(
            f"ok: {report.size} entries ({report.accepted} accepted, {report.rejected} "
            f"rejected), {report.signatures} signatures, {report.checkpoints} checkpoints"
        )


@cli.command("roles")
def roles() -> None:
    """List the built-in member roles."""
    for r in BUILTIN_ROLES:
        click.echo(r)


register_commands(cli)
register_governance(cli)
register_lifecycle(cli)
register_reports(cli)
register_server(cli)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, mapping modelchain errors to one line and an exit code."""
    try:
        cli.main(args=argv, prog_name="modelchain", standalone_mode=False)
    except Error as exc:
        click.echo(f"error: {exc.diagnostics()}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except OSError as exc:
        # Whatever the operating system refused (a read-only directory, a full
        # disk), said in one line with the storage exit code, not a traceback.
        where = f": {exc.filename}" if exc.filename else ""
        click.echo(f"error: {exc.strerror or exc}{where}", err=True)
        sys.exit(StorageError.exit_code)
