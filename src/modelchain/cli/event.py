"""``modelchain event``: record application-defined events, one or a file of them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from ..contracts.types import EVENT
from ..core import canonical
from ..errors import (
    MalformedError,
    NotFoundError,
    RejectedError,
    UsageError,
)
from .common import (
    emit_json,
    json_option,
    ledger_option,
    open_ledger,
    signer_for,
)
from .progress import ProgressLine

__all__ = ["event"]


@click.group()
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


@click.command("record")
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
        with ProgressLine("recording", min_total=1000) as progress:
            for start in range(0, len(envs), chunk):
                part = led.submit_many(envs[start : start + chunk])
                acks.extend(part)
                progress(len(acks), len(envs))
        rejected = [i for i, a in enumerate(acks) if not a.outcome.accepted]
        refusal: RejectedError | None = None
        if rejected:  # raised after every line is reported; named while the ledger is open
            first = rejected[0]
            what = (
                f"{EVENT} was rejected"
                if len(acks) == 1
                else f"{len(rejected)} of {len(acks)} events were rejected, the first"
            )
            refusal = led.policies.refusal(envs[first], acks[first], what)
    results = [
        {"index": a.index, "leaf_hash": a.leaf_hash.hex(), **a.outcome.to_json()} for a in acks
    ]
    if as_json:
        emit_json(results[0] if body is not None else results)
    else:
        for r in results:
            extra = f" {r['code']}: {r['reason']}" if r["result"] == "rejected" else ""
            click.echo(f"{r['index']}\t{r['result']}{extra}")
    if refusal is not None:  # every line is reported above; the exit status says so
        raise refusal


event.add_command(event_record)
