"""CLI commands of the compliance exports: ``modelchain report annex-iv``,
``report verify-annex-iv``, ``report logs`` and ``report verify-logs``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..core.b64 import b64
from .common import (
    VKEY_HELP,
    emit_json,
    json_option,
    ledger_option,
    name_and_version,
    open_ledger,
    trust_from,
)

__all__ = ["report"]

_FORMATS = ("html", "pdf", "json")


def _write(output: Path | None, data: str | bytes) -> None:
    if output is None:
        if isinstance(data, bytes):
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        else:
            click.echo(data, nl=False)
        return
    if isinstance(data, bytes):
        output.write_bytes(data)
    else:
        output.write_text(data, encoding="utf-8")


@click.group()
def report() -> None:
    """Compliance exports: EU AI Act Annex IV documentation and Art. 12 logs."""


@click.command("annex-iv")
@ledger_option
@click.argument("model", metavar="MODEL[@VERSION]")
@click.option("--version", "version", type=int, help="The version (default: the latest).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(_FORMATS),
    help="Output format (default: from the -o suffix, else html).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write here instead of standard output.",
)
def annex_iv_cmd(
    ledger_dir: Path, model: str, version: int | None, fmt: str | None, output: Path | None
) -> None:
    """EU AI Act Annex IV technical documentation for MODEL: every statement
    cites its ledger entries, with inclusion proofs against one checkpoint;
    what the ledger cannot know is listed as to be completed by the provider."""
    from ..reports import annex_iv, render_html, render_json, render_pdf

    model, version = name_and_version(model, version)
    if fmt is None:
        suffix = output.suffix.lower().lstrip(".") if output else ""
        fmt = suffix if suffix in _FORMATS else "html"
    with open_ledger(ledger_dir, readonly=True) as led:
        doc = annex_iv(led, model, version)
    if fmt == "json":
        _write(output, render_json(doc))
    elif fmt == "pdf":
        _write(output, render_pdf(doc))
    else:
        _write(output, render_html(doc))
    if output is not None:
        click.echo(
            f"wrote {output}: {doc.model} version {doc.version}, "
            f"{len(doc.entries)} cited entries, checkpoint size {doc.checkpoint.size}",
            err=True,
        )


@click.command("verify-annex-iv")
@click.argument("document", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--vkey", required=True, help=VKEY_HELP)
@json_option
def verify_annex_iv_cmd(document: Path, vkey: str, as_json: bool) -> None:
    """Check an Annex IV document offline (its JSON, or the PDF, which
    carries the JSON): checkpoint signature, every cited entry's bytes,
    fields and inclusion proof, every statement's citations, and that the
    subject is the version its registration entry registered."""
    from ..reports import read_annex_iv, verify_annex_iv

    result = verify_annex_iv(read_annex_iv(document.read_bytes()), trust_from(vkey))
    root = b64(result.checkpoint.root)
    if as_json:
        emit_json(
            {
                "ok": True,
                "model": result.model,
                "version": result.version,
                "statements": result.statements,
                "entries": result.entries,
                "size": result.checkpoint.size,
                "root": root,
            }
        )
    else:
        click.echo(
            f"ok: {result.model} version {result.version}: {result.statements} statements "
            f"cite {result.entries} entries, all included in the checkpoint of size "
            f"{result.checkpoint.size} with root {root}"
        )


@click.command("logs")
@ledger_option
@click.option("--from", "start", metavar="TIME", help="RFC 3339 time, date or ms (inclusive).")
@click.option(
    "--to", "end", metavar="TIME", help="RFC 3339 time, date (whole day) or ms (inclusive)."
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write here instead of standard output.",
)
def logs_cmd(ledger_dir: Path, start: str | None, end: str | None, output: Path | None) -> None:
    """EU AI Act Art. 12 record-keeping export: every entry whose transaction
    time is in the range, as JSON Lines with its bytes and inclusion proof;
    the first line is the checkpoint the proofs are against."""
    from ..core.times import parse_time
    from ..reports import export_logs

    start_ms = parse_time(start) if start else None
    end_ms = parse_time(end, end=True) if end else None
    with open_ledger(ledger_dir, readonly=True) as led:
        if output is None:
            count = export_logs(led, start_ms, end_ms, sys.stdout)
        else:
            tmp = output.with_name(output.name + ".tmp")
            with tmp.open("w", encoding="utf-8") as fh:
                count = export_logs(led, start_ms, end_ms, fh)
            tmp.replace(output)
    click.echo(
        f"exported {count} entries; the first line is the checkpoint they are proven against",
        err=True,
    )


@click.command("verify-logs")
@click.argument("logs_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--vkey", required=True, help=VKEY_HELP)
@json_option
def verify_logs_cmd(logs_file: Path, vkey: str, as_json: bool) -> None:
    """Check a `report logs` export offline: checkpoint signature, every
    entry's bytes, fields, range and inclusion proof."""
    from ..reports import verify_logs

    with logs_file.open(encoding="utf-8") as fh:
        result = verify_logs(fh, trust_from(vkey))
    root = b64(result.checkpoint.root)
    if as_json:
        emit_json(
            {
                "ok": True,
                "entries": result.entries,
                "size": result.checkpoint.size,
                "root": root,
                "from_ms": result.start_ms,
                "to_ms": result.end_ms,
            }
        )
    else:
        click.echo(
            f"ok: {result.entries} entries included in the checkpoint of size "
            f"{result.checkpoint.size} with root {root}"
        )


report.add_command(annex_iv_cmd)
report.add_command(verify_annex_iv_cmd)
report.add_command(logs_cmd)
report.add_command(verify_logs_cmd)
