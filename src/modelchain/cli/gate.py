"""CLI gates for CI: ``gate deploy`` says, without submitting anything, whether a
deployment would be accepted now, and exits 0 if so, 8 if not (naming the
clause of the policy that failed)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from ..contracts.types import MODEL_DEPLOY
from ..core.names import name_version
from ..errors import RejectedError, UsageError
from .common import IDENTITY_ENV, emit_json, json_option, ledger_option, open_ledger

__all__ = ["gate"]


@click.group()
def gate() -> None:
    """Checks for CI pipelines: exit 0 to go on, 8 to stop; nothing is submitted."""


@click.command("deploy")
@ledger_option
@click.argument("model", metavar="NAME@VERSION")
@click.option("--env", required=True, help="The environment, e.g. production.")
@click.option(
    "--as",
    "as_name",
    help="The member who would deploy (default $MODELCHAIN_IDENTITY, else the ledger's "
    "admin); no key is needed.",
)
@json_option
def gate_deploy(ledger_dir: Path, model: str, env: str, as_name: str | None, as_json: bool) -> None:
    """Would deploying NAME@VERSION to ENV be accepted now? Runs the deployment
    through the contracts (the member's roles, ENV's policy, revocations) against
    the ledger's current state and drops the result. Exits 0 if it would be
    accepted, 8 if not (naming the policy clause that failed), 3 if the version
    or the member does not exist. `--json` prints {allowed, clause, rule, reason}."""
    name, version = name_version(model)
    with open_ledger(ledger_dir, readonly=True) as led:
        led.models.get(name, version)  # NotFoundError (exit 3) for a typo
        actor = as_name or os.environ.get(IDENTITY_ENV) or led.meta("admin")
        if not actor:
            raise UsageError(f"say which member would deploy: --as NAME or ${IDENTITY_ENV}")
        body = {"model": name, "version": version, "env": env, "rollback_rule": None}
        decision = led.policies.gate(MODEL_DEPLOY, body, actor)
    if as_json:
        emit_json(
            {
                "allowed": decision.allowed,
                "action": decision.action,
                "clause": decision.clause,
                "rule": decision.rule,
                "version": decision.version,
                "reason": decision.reason,
            }
        )
    elif decision.allowed:
        policy = f"policy {decision.action} v{decision.version}" if decision.rule else "no policy"
        click.echo(f"allowed: {model} to {env} as {actor} ({policy})")
    else:
        clause = f"; the clause that failed: {decision.clause}" if decision.clause else ""
        click.echo(f"denied: {model} to {env} as {actor}: {decision.reason}{clause}", err=True)
    if not decision.allowed:
        raise SystemExit(RejectedError.exit_code)


gate.add_command(gate_deploy)
