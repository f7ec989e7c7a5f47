"""CLI of the MLflow bridge: ``mlflow sync`` (pull mode) and ``mlflow webhook
create`` (push mode, received by ``modelchain serve --mlflow-tracking-uri``).

The MLflow package is imported by the bridge when a command needs it, never
when the CLI starts.
"""

from __future__ import annotations

from pathlib import Path

import click

from .common import (
    MLFLOW_TRACKING_URI_ENV,
    emit_json,
    json_option,
    ledger_option,
    mlflow_webhook_secret,
    open_ledger,
    quiet_mlflow,
    signer_for,
)

__all__ = ["mlflow_group"]

tracking_uri_option = click.option(
    "--tracking-uri",
    envvar=MLFLOW_TRACKING_URI_ENV,
    metavar="URI",
    help=f"The MLflow tracking server (default ${MLFLOW_TRACKING_URI_ENV}).",
)


@click.group("mlflow")
def mlflow_group() -> None:
    """Record MLflow model versions on the ledger (pip install 'modelchain[mlflow]')."""


@click.command("sync")
@ledger_option
@tracking_uri_option
@click.option(
    "--name", "names", multiple=True, metavar="NAME", help="Only this MLflow model (repeatable)."
)
@click.option("--as", "as_name", help="Identity that signs (default $MODELCHAIN_IDENTITY).")
@json_option
def sync(
    ledger_dir: Path,
    tracking_uri: str | None,
    names: tuple[str, ...],
    as_name: str | None,
    as_json: bool,
) -> None:
    """Record every MLflow model version that is not on the ledger yet: its run
    (parameters, metrics, input datasets, git commit), then the version hashed
    from what MLflow serves; tag it in MLflow with its ledger entry. Running it
    again records nothing twice. Exits with the first failure's code."""
    from ..integrations.mlflow import MlflowBridge, SyncOutcome

    quiet_mlflow()
    with open_ledger(ledger_dir) as led:
        bridge = MlflowBridge(led, tracking_uri or "", signer=signer_for(as_name, led))

        def shown(o: SyncOutcome) -> None:
            if o.status == "failed":
                assert o.error is not None
                text = f"failed: {o.error.message}"
            else:
                assert o.ledger is not None
                text = f"{o.status}: {o.ledger.name} version {o.ledger.version}  {o.ledger.digest}"
            click.echo(f"{o.name} {o.version}  {text}", err=True)

        outcomes = bridge.sync(names, on_outcome=shown)
    counts = {s: sum(o.status == s for o in outcomes) for s in ("recorded", "known", "failed")}
    if as_json:
        emit_json(
            {
                **counts,
                "versions": [
                    {
                        "mlflow_name": o.name,
                        "mlflow_version": o.version,
                        "status": o.status,
                        **(
                            {
                                "name": o.ledger.name,
                                "version": o.ledger.version,
                                "digest": o.ledger.digest,
                                "index": o.ledger.index,
                            }
                            if o.ledger is not None
                            else {}
                        ),
                        **(
                            {"error": {"code": o.error.code, "message": o.error.message}}
                            if o.error is not None
                            else {}
                        ),
                    }
                    for o in outcomes
                ],
            }
        )
    else:
        click.echo(
            f"{counts['recorded']} recorded, {counts['known']} already on the ledger, "
            f"{counts['failed']} failed"
        )
    failed = [o.error for o in outcomes if o.error is not None]
    if failed:
        raise failed[0]


@click.group("webhook")
def webhook() -> None:
    """MLflow registry webhooks that tell `modelchain serve` of new versions."""


@click.command("create")
@tracking_uri_option
@click.option(
    "--url",
    required=True,
    help="Where MLflow delivers: `modelchain serve`'s https://HOST/v1/integrations/mlflow/webhook.",
)
@click.option("--name", default="modelchain", show_default=True, help="The webhook's name.")
@json_option
def webhook_create(tracking_uri: str | None, url: str, name: str, as_json: bool) -> None:
    """Register a webhook for model_version.created in MLflow, signed with the
    secret in $MODELCHAIN_MLFLOW_WEBHOOK_SECRET (give `serve` the same one)."""
    from ..integrations.mlflow import create_webhook

    hook_id = create_webhook(tracking_uri or "", url, mlflow_webhook_secret(), name=name)
    if as_json:
        emit_json({"id": hook_id, "name": name, "url": url, "events": ["model_version.created"]})
    else:
        click.echo(f"webhook {hook_id} ({name}): model_version.created -> {url}")


webhook.add_command(webhook_create)
mlflow_group.add_command(sync)
mlflow_group.add_command(webhook)
