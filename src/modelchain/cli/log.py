"""``modelchain log``: the log's key, checkpoints, entries, proofs, tiles and full audit."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..core.b64 import b64
from ..core.merkle import leaf_hash
from ..core.times import rfc3339
from .common import (
    emit_json,
    json_option,
    ledger_option,
    open_ledger,
)
from .progress import ProgressLine

__all__ = ["log"]


@click.group()
def log() -> None:
    """Inspect, prove and audit the log."""


@click.command("vkey")
@ledger_option
def log_vkey(ledger_dir: Path) -> None:
    """Print the log's verifier key (its name is the origin)."""
    with open_ledger(ledger_dir, readonly=True) as led:
        click.echo(str(led.log_key))


@click.command("policy")
@ledger_option
def log_policy(ledger_dir: Path) -> None:
    """Print the checkpoint policy (C2SP tlog-policy): which signatures make a
    checkpoint count. Save it to a file for `--vkey` of the offline verifiers."""
    with open_ledger(ledger_dir, readonly=True) as led:
        click.echo(led.policy.to_text(), nl=False)


@click.command("checkpoint")
@ledger_option
def log_checkpoint(ledger_dir: Path) -> None:
    """Print the latest signed checkpoint, exactly as C2SP tlog-checkpoint defines it."""
    with open_ledger(ledger_dir, readonly=True) as led:
        sys.stdout.buffer.write(led.checkpoint())


@click.command("show")
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
        from ..ledger.erasures import erasure_of_entry

        entry = led.entry(index)
        data = entry.to_json()
        erased = erasure_of_entry(led, entry)
        if as_json:
            emit_json(data if erased is None else {**data, "erasure": erased})
            return
        tx = entry.transaction
        click.echo(f"index:     {entry.index}")
        click.echo(f"type:      {tx.type}")
        click.echo(f"actor:     {tx.actor}")
        click.echo(f"time:      {rfc3339(tx.time)}")
        click.echo(f"nonce:     {tx.nonce}")
        click.echo(f"signed by: {', '.join(data['signatures'])}")
        result = entry.outcome.to_json()
        click.echo(f"outcome:   {' '.join(result.values())}")
        click.echo("body:      " + json.dumps(tx.body, indent=2, sort_keys=True))
        committed = led.disclosures.committed(entry.index)
        for field in sorted(committed):
            value = led.disclosures.field({"_sd": committed[field]})
            click.echo(f"{field + ':':<10} {value}  (committed: {committed[field]})")
        if erased is not None:
            click.echo(
                f"ERASED:    {erased['kind']} {erased['name']} version {erased['version']}, "
                f"which this entry concerns, was erased at entry {erased['index']} "
                f"({rfc3339(erased['time'])}) by {', '.join(erased['signers'])}: "
                f"{erased['reason']}; its content is destroyed, this entry still verifies"
            )


@click.command("proof")
@ledger_option
@click.argument("index", type=int)
@json_option
def log_proof(ledger_dir: Path, index: int, as_json: bool) -> None:
    """Print a C2SP tlog-proof for entry INDEX against the latest checkpoint."""
    with open_ledger(ledger_dir, readonly=True) as led:
        receipt = led.tlog_proof(index)
        if as_json:
            emit_json(
                {
                    "index": receipt.index,
                    "leaf_hash": leaf_hash(led.entry_bytes(index)).hex(),
                    "proof": [b64(h) for h in receipt.proof],
                    "checkpoint": receipt.checkpoint.decode(),
                    "tlog_proof": receipt.to_text(),
                }
            )
            return
        click.echo(receipt.to_text(), nl=False)


@click.command("consistency")
@ledger_option
@click.argument("old", type=int)
@click.argument("new", type=int)
@json_option
def log_consistency(ledger_dir: Path, old: int, new: int, as_json: bool) -> None:
    """Print the consistency proof from tree size OLD to NEW, one base64 hash a line."""
    with open_ledger(ledger_dir, readonly=True) as led:
        proof = [b64(h) for h in led.consistency_proof(old, new)]
    if as_json:
        emit_json({"old": old, "new": new, "proof": proof})
        return
    for h in proof:
        click.echo(h)


@click.command("export-tiles")
@ledger_option
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def log_export_tiles(ledger_dir: Path, directory: Path) -> None:
    """Write checkpoint, tile/... and tile/entries/... as static tlog-tiles files."""
    with open_ledger(ledger_dir, readonly=True) as led:
        count = led.export_tiles(directory)
        click.echo(f"wrote {count} files for {led.size} entries to {directory}", err=True)


@click.command("verify")
@ledger_option
@json_option
def log_verify(ledger_dir: Path, as_json: bool) -> None:
    """Full audit: recompute the tree, check every signature, re-execute every
    transaction, compare state and check every stored checkpoint."""
    with (
        open_ledger(ledger_dir, readonly=True) as led,
        ProgressLine("verifying", min_total=20_000) as progress,
    ):
        report = led.audit(progress)
    summary = {
        "size": report.size,
        "root": b64(report.root),
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


log.add_command(log_vkey)
log.add_command(log_policy)
log.add_command(log_checkpoint)
log.add_command(log_show)
log.add_command(log_proof)
log.add_command(log_consistency)
log.add_command(log_export_tiles)
log.add_command(log_verify)
