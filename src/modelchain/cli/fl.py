"""``modelchain fl``: federated learning on the ledger. A member registers its
Flower node, a coordinator creates a task, and anyone reads a task's status,
rounds and per-participant credit (exportable as JSON or CSV). Updates,
aggregates and credit are recorded from Python (``led.fl``), by the strategy
that runs the rounds."""

from __future__ import annotations

import csv
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

import click

from ..core.names import name_version
from ..errors import MalformedError, NotFoundError, UsageError
from .common import emit_json, json_option, ledger_option, open_ledger, signer_for

__all__ = ["fl"]

_AS = click.option("--as", "as_name", help="Identity that signs (default $MODELCHAIN_IDENTITY).")


@click.group()
def fl() -> None:
    """Federated learning: participants, tasks, rounds and credit.

    Organisations train one model without sharing data; the ledger records who
    takes part (each member's Flower node id and public key), every round's
    committed updates and aggregate (by digest), the updates it refused and
    why, each participant's share of credit, and the model version the last
    aggregate became. Needs contract-set version 6 (`modelchain contracts`).
    """


@click.group("participant")
def participant() -> None:
    """A member's Flower node, as the ledger knows it."""


@click.command("register")
@ledger_option
@click.option(
    "--node-id",
    required=True,
    help="The node id `flwr supernode register KEY.pub` returned (64 bits, decimal).",
)
@click.option(
    "--public-key",
    "public_key",
    required=True,
    metavar="KEY.pub|TEXT",
    help="The node's EC P-256 public key in OpenSSH format: a file, or the key itself.",
)
@_AS
@json_option
def participant_register(
    ledger_dir: Path, node_id: str, public_key: str, as_name: str | None, as_json: bool
) -> None:
    """Register the signing member's Flower node (signed by the member itself;
    needs the fl-participant role). Registering again replaces the node; a task
    keeps the node it was created with."""
    path = Path(public_key)
    key = path.read_text() if path.is_file() else public_key
    with open_ledger(ledger_dir) as led:
        signer = signer_for(as_name, led)
        ack = led.fl.register_participant(node_id, key, signer=signer)
        found = led.fl.participant(signer.name)
    if as_json:
        emit_json({"index": ack.index, **found})
    else:
        click.echo(f"{found['member']}: Flower node {found['node_id']} (entry {ack.index})")


@click.command("show")
@ledger_option
@click.argument("member")
@json_option
def participant_show(ledger_dir: Path, member: str, as_json: bool) -> None:
    """The Flower node MEMBER registered."""
    with open_ledger(ledger_dir, readonly=True) as led:
        found = led.fl.participant(member)
    if as_json:
        emit_json(found)
    else:
        click.echo(f"member:     {found['member']} ({found['org']})")
        click.echo(f"node id:    {found['node_id']}")
        click.echo(f"public key: {found['public_key']}")
        click.echo(f"entry:      {found['index']}")


@click.group("task")
def task() -> None:
    """Federated tasks."""


def _task_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_bytes()
    except FileNotFoundError as exc:
        raise NotFoundError(f"no file {path}") from exc
    try:
        found = json.loads(text) if path.suffix == ".json" else tomllib.loads(text.decode())
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedError(
            f"{path}: not a task file (TOML, or JSON named *.json): {exc}"
        ) from exc
    if not isinstance(found, dict):
        raise MalformedError(f"{path}: a task file is a table of settings")
    allowed = {
        "model",
        "participants",
        "rounds",
        "aggregation",
        "min_participants",
        "acceptance",
        "heldout",
        "description",
    }
    if extra := sorted(set(found) - allowed):
        raise UsageError(f"{path}: unknown settings {', '.join(extra)}")
    return found


@click.command("create")
@ledger_option
@click.argument("name")
@click.option(
    "--file",
    "task_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Settings from a TOML file (or JSON, *.json) with the keys of the options "
    "below (participants a list); options given as well override it.",
)
@click.option("--model", metavar="NAME@VERSION", help="The registered model version to start from.")
@click.option(
    "--participant",
    "participants",
    multiple=True,
    help="A member taking part (repeatable): it must hold fl-participant and have "
    "registered its Flower node.",
)
@click.option("--rounds", type=int, help="How many rounds (1..10000).")
@click.option(
    "--aggregation",
    help="The aggregation rule: FedAvg (default), FedProx, FedMedian, "
    "FedTrimmedAvg, Krum, MultiKrum or Bulyan.",
)
@click.option(
    "--min-participants",
    type=int,
    help="The fewest accepted updates a round aggregates (default: all participants).",
)
@click.option(
    "--accept",
    "acceptance",
    metavar="CEL",
    help="A rule every update must pass, over update.norm, update.distance, "
    "update.cosine, update.examples and update.metrics, e.g. "
    "'update.norm < 5.0 && update.examples >= 100'.",
)
@click.option(
    "--heldout", metavar="NAME@VERSION", help="The registered held-out dataset credit is scored on."
)
@click.option("--description", help="What the task is for.")
@_AS
@json_option
def task_create(
    ledger_dir: Path,
    name: str,
    task_file: Path | None,
    model: str | None,
    participants: tuple[str, ...],
    rounds: int | None,
    aggregation: str | None,
    min_participants: int | None,
    acceptance: str | None,
    heldout: str | None,
    description: str | None,
    as_name: str | None,
    as_json: bool,
) -> None:
    """Create federated task NAME; the signer (fl-coordinator) coordinates it.

    Each participant is recorded with the Flower node id and public key it
    registered, so a strategy can refuse any other node. Updates that fail the
    acceptance rule are refused and logged, as are updates from anyone else,
    for another round, or twice.
    """
    settings = _task_file(task_file) if task_file is not None else {}
    given = {
        "model": model,
        "participants": list(participants) or None,
        "rounds": rounds,
        "aggregation": aggregation,
        "min_participants": min_participants,
        "acceptance": acceptance,
        "heldout": heldout,
        "description": description,
    }
    settings.update({k: v for k, v in given.items() if v is not None})
    for needed, flag in (
        ("model", "--model"),
        ("participants", "--participant"),
        ("rounds", "--rounds"),
    ):
        if needed not in settings:
            raise UsageError(f"a task needs {flag} (or {needed} in --file)")
    held = settings.get("heldout")
    with open_ledger(ledger_dir) as led:
        signer = signer_for(as_name, led)
        created = led.fl.create_task(
            name,
            model=name_version(str(settings["model"])),
            participants=[str(p) for p in settings["participants"]],
            rounds=settings["rounds"],
            aggregation=settings.get("aggregation", "FedAvg"),
            min_participants=settings.get("min_participants"),
            acceptance=settings.get("acceptance"),
            heldout=None if held is None else name_version(str(held)),
            description=settings.get("description", ""),
            signer=signer,
        )
    if as_json:
        emit_json(created)
    else:
        click.echo(
            f"task {name}: {created['rounds']} rounds of {created['aggregation']} over "
            f"{len(created['participants'])} participants, coordinated by "
            f"{created['coordinator']} (entry {created['index']})"
        )


def _ref(ref: dict[str, Any] | None) -> str:
    return "-" if ref is None else f"{ref['name']}@{ref['version']}"


@click.command("status")
@ledger_option
@click.argument("name", metavar="TASK")
@json_option
def status(ledger_dir: Path, name: str, as_json: bool) -> None:
    """Where TASK is: its round, its rules, its participants and final model."""
    with open_ledger(ledger_dir, readonly=True) as led:
        found = led.fl.status(name)
    if as_json:
        emit_json(found)
        return
    click.echo(f"task:         {found['task']} ({found['status']})")
    click.echo(
        f"round:        {found['round']} of {found['rounds']} ({found['aggregated']} aggregated)"
    )
    click.echo(f"coordinator:  {found['coordinator']}")
    click.echo(f"model:        {_ref(found['model'])}")
    click.echo(
        f"aggregation:  {found['aggregation']}, at least {found['min_participants']} updates"
    )
    click.echo(f"acceptance:   {found['acceptance'] or '-'}")
    click.echo(f"held-out:     {_ref(found['heldout'])}")
    click.echo(f"final model:  {_ref(found['final'])}")
    click.echo("participants:")
    for p in found["participants"]:
        click.echo(f"  {p['member']:<20} {p['org']:<20} node {p['node_id']}")


@click.command("rounds")
@ledger_option
@click.argument("name", metavar="TASK")
@json_option
def rounds(ledger_dir: Path, name: str, as_json: bool) -> None:
    """Every round of TASK: the accepted updates (who, examples, figures, who
    signed) and the aggregate with the updates it included."""
    with open_ledger(ledger_dir, readonly=True) as led:
        found = led.fl.rounds(name)
    if as_json:
        emit_json(found)
        return
    for r in found:
        agg = r["aggregate"]
        head = (
            f"round {r['round']}: aggregate {agg['digest'][:23]}... of {len(agg['updates'])} "
            f"updates, {agg['examples']} examples (entry {agg['index']})"
            if agg is not None
            else f"round {r['round']}: open, {len(r['updates'])} updates"
        )
        click.echo(head)
        for who, u in sorted(r["updates"].items()):
            fig = u["figures"]
            signed = "signed by itself" if u["signed_by_participant"] else f"recorded by {u['by']}"
            norm = "-" if fig["norm"] is None else f"{fig['norm']:.4g}"
            click.echo(
                f"  {who:<20} {u['examples']:>8} examples  norm {norm:<10} "
                f"{u['digest'][:23]}...  {signed} (entry {u['index']})"
            )


@click.command("attribution")
@ledger_option
@click.argument("name", metavar="TASK")
@click.option(
    "--method",
    default="examples",
    show_default=True,
    type=click.Choice(["examples", "leave-one-out", "shapley-mc"]),
    help="Which recorded credit: example counts, or a score on the held-out dataset.",
)
@click.option(
    "--csv", "as_csv", is_flag=True, help="Write CSV: task,method,round,participant,share."
)
@json_option
def attribution(ledger_dir: Path, name: str, method: str, as_csv: bool, as_json: bool) -> None:
    """Each participant's share of TASK's credit, per round and cumulative (the
    mean over the rounds credited); shares sum to one."""
    if as_csv and as_json:
        raise UsageError("give --csv or --json, not both")
    with open_ledger(ledger_dir, readonly=True) as led:
        found = led.fl.attribution(name, method)
    if as_json:
        emit_json(found.to_json())
        return
    if as_csv:
        writer = csv.DictWriter(
            sys.stdout, ["task", "method", "round", "participant", "share"], lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(found.rows())
        return
    if not found.rounds:
        click.echo(f"no {method} credit is recorded for {name}")
        return
    people = sorted(found.cumulative)
    click.echo("round  " + "  ".join(f"{p:>12}" for p in people))
    for r, shares in found.rounds:
        click.echo(f"{r:<5}  " + "  ".join(f"{shares.get(p, 0.0):>12.4f}" for p in people))
    click.echo("all    " + "  ".join(f"{found.cumulative[p]:>12.4f}" for p in people))


participant.add_command(participant_register)
participant.add_command(participant_show)
task.add_command(task_create)
fl.add_command(participant)
fl.add_command(task)
fl.add_command(status)
fl.add_command(rounds)
fl.add_command(attribution)
