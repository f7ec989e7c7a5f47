"""CLI of the node service: ``serve`` and the bearer tokens that guard reads."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..core.identity import Signer
from ..errors import NotFoundError, UsageError
from ..keys import modelchain_home
from ..ledger import ledger as ledger_mod
from ..node.node import NodeConfig
from ..server.access import READS, SCOPES, AccessList
from .common import (
    emit_json,
    json_option,
    keys_for,
    ledger_option,
    log_key_secrets,
    mlflow_webhook_secret,
    open_ledger,
    passphrase_for,
    quiet_mlflow,
)

if TYPE_CHECKING:
    from ..server.config import MlflowWebhook

__all__ = ["serve", "token"]

CUSTODIAL_ENV = "MODELCHAIN_CUSTODIAL"  # "name1,name2": members whose keys this server holds


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message and the record's fields."""

    converter = time.gmtime  # type: ignore[assignment]

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def _custodial_signers() -> dict[str, Signer]:
    """The keys named in $MODELCHAIN_CUSTODIAL, loaded now, so that a missing key
    or passphrase stops the server at start rather than surfacing (or
    prompting) at an approver's first click."""
    held = {n.strip() for n in os.environ.get(CUSTODIAL_ENV, "").split(",") if n.strip()}
    if not held:
        return {}
    from ..keys import KeyStore

    keys = KeyStore(modelchain_home())
    return {name: keys.signer(name, passphrase_for(name, keys)) for name in sorted(held)}


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter())
    for name in ("modelchain", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
    logging.getLogger("uvicorn.access").disabled = True  # our middleware logs each request


def _require_ledger(ledger_dir: Path) -> None:
    if not (ledger_dir / ledger_mod.DB_NAME).exists():
        raise NotFoundError(f"no ledger at {ledger_dir}")


def _raise_file_limit(connections: int) -> None:
    """Let the process hold a descriptor per allowed connection and some for
    the store: raise the soft open-file limit towards the hard one if needed."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = connections + 64
    if soft != resource.RLIM_INFINITY and soft < want:
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < want:
            logging.getLogger("modelchain.server").warning(
                f"the open-file limit ({hard}) is below --max-connections + 64 ({want})"
            )


@click.command()
@ledger_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--reads",
    type=click.Choice(READS),
    help="Override the ledger's setting (`modelchain token reads`): "
    "'open' lets anyone read; 'token' needs a member's bearer token.",
)
@click.option("--ssl-certfile", type=click.Path(dir_okay=False, exists=True), help="TLS cert.")
@click.option("--ssl-keyfile", type=click.Path(dir_okay=False, exists=True), help="TLS key.")
@click.option(
    "--max-body",
    default=8 << 20,
    show_default=True,
    type=click.IntRange(1024),
    help="Largest request body in bytes.",
)
@click.option(
    "--body-timeout",
    default=30.0,
    show_default=True,
    type=click.FloatRange(0.1),
    help="Seconds a request body may take to arrive (then 408).",
)
@click.option(
    "--header-timeout",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.1),
    help="Seconds a request's line and headers may take to arrive; then the connection is closed.",
)
@click.option(
    "--max-connections",
    default=1000,
    show_default=True,
    type=click.IntRange(1),
    help="Open client connections; one beyond gets 503 Retry-After and is closed.",
)
@click.option(
    "--max-backlog",
    default=20_000,
    show_default=True,
    type=click.IntRange(1),
    help="Admitted transactions that may wait to be written; beyond it, 503 Retry-After.",
)
@click.option(
    "--checkpoint-interval",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0.01),
    metavar="SECONDS",
    help="Publish a checkpoint this long after the first entry it would cover "
    "(or after 1,000 new entries, whichever comes first).",
)
@click.option(
    "--busy-timeout",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0.0),
    metavar="SECONDS",
    help="How long a write waits for another process holding the store's lock; "
    "beyond it the write answers 503 storage_busy with Retry-After.",
)
@click.option(
    "--forwarded-allow-ips",
    default="127.0.0.1",
    show_default=True,
    metavar="IPS",
    help="Proxies whose X-Forwarded-For and X-Forwarded-Proto are believed "
    "(comma-separated addresses or networks, or '*'): behind a TLS proxy, the client "
    "address and https come from these headers.",
)
@click.option(
    "--mlflow-tracking-uri",
    metavar="URI",
    help="Receive MLflow registry webhooks (model_version.created) at "
    "/v1/integrations/mlflow/webhook and record each version from this MLflow server; "
    "the webhook's secret comes from $MODELCHAIN_MLFLOW_WEBHOOK_SECRET.",
)
@click.option(
    "--mlflow-as",
    metavar="MEMBER",
    help="With --mlflow-tracking-uri: the member who records them; this server holds "
    "its key (passphrase as for any key).",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
def serve(
    ledger_dir: Path,
    host: str,
    port: int,
    reads: str | None,
    ssl_certfile: str | None,
    ssl_keyfile: str | None,
    max_body: int,
    body_timeout: float,
    header_timeout: float,
    max_connections: int,
    max_backlog: int,
    checkpoint_interval: float,
    busy_timeout: float,
    forwarded_allow_ips: str,
    mlflow_tracking_uri: str | None,
    mlflow_as: str | None,
    log_level: str,
) -> None:
    """Serve the ledger over HTTP: the API (OpenAPI document at /openapi.json),
    the log at the tlog-tiles paths (/checkpoint, /tile/...), /metrics, /healthz
    and the auditors' dashboard at /ui/.

    Writes are DSSE envelopes signed by members. Reads need a bearer token
    (`modelchain token issue`) unless reads are open. For TLS give
    --ssl-certfile and --ssl-keyfile (uvicorn's options); otherwise keep the
    default loopback address and put a TLS proxy in front (on another machine:
    name it in --forwarded-allow-ips)."""
    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise UsageError("give both --ssl-certfile and --ssl-keyfile, or neither")
    mlflow = _mlflow_webhook(mlflow_tracking_uri, mlflow_as)
    _configure_logging(log_level)
    node_config = NodeConfig(
        max_backlog=max_backlog, checkpoint_interval_ms=round(checkpoint_interval * 1000)
    )
    led = ledger_mod.open(
        ledger_dir,
        config=node_config,
        busy_timeout_ms=round(busy_timeout * 1000),
        home=modelchain_home(),
        log_key_secrets=log_key_secrets(),
    )
    led.keys = lambda: keys_for(led, create=True)  # the vault of personal fields
    _serve_ledger(
        led,
        host=host,
        port=port,
        reads=reads,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        max_body=max_body,
        body_timeout=body_timeout,
        header_timeout=header_timeout,
        max_connections=max_connections,
        forwarded_allow_ips=forwarded_allow_ips,
        mlflow=mlflow,
    )


def _mlflow_webhook(tracking_uri: str | None, member: str | None) -> MlflowWebhook | None:
    """What receiving MLflow's webhooks needs, all of it or nothing: the
    server, the secret (from the environment, never an option: it would show
    in the process list) and the member's key, loaded now so that a missing
    one stops the server at start."""
    if tracking_uri is None:
        if member is not None:
            raise UsageError("--mlflow-as goes with --mlflow-tracking-uri")
        return None
    if member is None:
        raise UsageError("--mlflow-tracking-uri needs --mlflow-as MEMBER: who records the versions")
    secret = mlflow_webhook_secret()
    from ..keys import KeyStore
    from ..server.config import MlflowWebhook

    keys = KeyStore(modelchain_home())
    quiet_mlflow()
    return MlflowWebhook(tracking_uri, secret, keys.signer(member, passphrase_for(member, keys)))


def _serve_ledger(
    led: ledger_mod.Ledger,
    *,
    host: str,
    port: int,
    reads: str | None,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    max_body: int = 8 << 20,
    body_timeout: float = 30.0,
    header_timeout: float = 10.0,
    max_connections: int = 1000,
    forwarded_allow_ips: str = "127.0.0.1",
    mlflow: MlflowWebhook | None = None,
) -> None:
    """Serve ``led`` until interrupted, then close it (``serve`` and ``node run``)."""
    try:
        import uvicorn

        from ..server import ServerConfig, create_app
        from ..server.connections import MAX_HEAD, connection_protocol
    except ImportError as exc:
        led.close()
        raise UsageError(
            "serving needs the server extra: pip install 'modelchain[server]'"
        ) from exc
    try:
        server_config = ServerConfig(
            max_body=max_body,
            reads=reads,
            body_timeout=body_timeout,
            custodial=_custodial_signers(),
            mlflow=mlflow,
        )
        app = create_app(led, server_config)
        scheme = "https" if ssl_certfile else "http"
        logging.getLogger("modelchain.server").info(
            f"serving {led.origin} ({led.size} entries) at {scheme}://{host}:{port}/",
            extra={"fields": {"origin": led.origin, "size": led.size, "reads": reads}},
        )
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            ssl_certfile=ssl_certfile,
            ssl_keyfile=ssl_keyfile,
            log_config=None,
            access_log=False,
            server_header=False,
            proxy_headers=True,
            forwarded_allow_ips=forwarded_allow_ips,
            timeout_graceful_shutdown=10,
            http=connection_protocol(header_timeout, MAX_HEAD, max_connections),
            h11_max_incomplete_event_size=MAX_HEAD,  # where h11 parses, not httptools
        )
        _raise_file_limit(max_connections)
        uvicorn.Server(config).run()
    finally:
        led.close()


@click.group()
def token() -> None:
    """Bearer tokens for reading from `modelchain serve`, bound to members."""


@click.command("issue")
@ledger_option
@click.argument("member")
@click.option(
    "--scope",
    type=click.Choice(SCOPES),
    default="read",
    show_default=True,
    help="'read' for auditors; 'write' may also store blobs (the large manifests a "
    "remote registration uploads); 'approve' may also approve in the dashboard with "
    "a key the server holds, where policy allows.",
)
@click.option("--label", default="", help="What the token is for (shown by `token list`).")
@json_option
def issue(ledger_dir: Path, member: str, scope: str, label: str, as_json: bool) -> None:
    """Issue a token for MEMBER. The secret is printed once and stored only hashed."""
    led = open_ledger(ledger_dir, readonly=True)
    try:
        m = led.members.get(member)
        if m.get("status") != "active":
            raise UsageError(f"{member} is revoked")
    finally:
        led.close()
    info, secret = AccessList(ledger_dir).issue(member, scope, label)
    if as_json:
        emit_json({**info.to_json(with_hash=False), "token": secret})
    else:
        click.echo(secret)
        click.echo(f"token {info.id} for {member} ({scope}); it is not shown again", err=True)


@click.command("list")
@ledger_option
@json_option
def list_tokens(ledger_dir: Path, as_json: bool) -> None:
    """List tokens (ids, members, scopes; never the secrets)."""
    _require_ledger(ledger_dir)
    access = AccessList(ledger_dir)
    tokens = [t.to_json(with_hash=False) for t in access.tokens()]
    if as_json:
        emit_json({"reads": access.reads, "tokens": tokens})
        return
    click.echo(f"reads: {access.reads}")
    for t in tokens:
        click.echo(f"{t['id']}\t{t['member']}\t{t['scope']}\t{t['label']}")


@click.command("revoke")
@ledger_option
@click.argument("token_id")
def revoke(ledger_dir: Path, token_id: str) -> None:
    """Revoke a token by its id; a running server refuses it at once."""
    info = AccessList(ledger_dir).revoke(token_id)
    click.echo(f"revoked token {info.id} of {info.member}")


@click.command("reads")
@ledger_option
@click.argument("mode", type=click.Choice(READS))
def reads_mode(ledger_dir: Path, mode: str) -> None:
    """Whether reading needs a token ('token', the default) or not ('open')."""
    _require_ledger(ledger_dir)
    AccessList(ledger_dir).set_reads(mode)
    click.echo(f"reads: {mode}")


token.add_command(issue)
token.add_command(list_tokens)
token.add_command(revoke)
token.add_command(reads_mode)
