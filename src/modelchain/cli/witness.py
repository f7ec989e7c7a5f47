"""CLI of the C2SP tlog-witness: ``witness serve``."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from ..errors import MalformedError, UsageError
from ..keys import modelchain_home
from .common import IDENTITY_ENV

__all__ = ["witness"]


@click.group()
def witness() -> None:
    """A C2SP tlog-witness: cosign the checkpoints of logs you trust, once each is
    shown consistent with the last one cosigned."""


@witness.command("vkey")
@click.option(
    "--identity",
    envvar=IDENTITY_ENV,
    required=True,
    metavar="NAME",
    help=f"The identity that cosigns; default ${IDENTITY_ENV}.",
)
def witness_vkey(identity: str) -> None:
    """Print the policy line naming this witness: 'witness NAME VKEY', for a
    ledger's checkpoint policy (`modelchain init --checkpoint-policy`). The key
    is an Ed25519 identity's as a cosignature (type 0x04) key, or an ML-DSA-44
    identity's (type 0x06) as it is."""
    from ..core.identity import COSIGNATURE_V1, ED25519
    from ..keys import KeyStore

    vkey = KeyStore(modelchain_home()).verifier(identity)
    if vkey.type_byte == ED25519:
        vkey = vkey.with_type(COSIGNATURE_V1)
    click.echo(f"witness {vkey.name} {vkey}")


@witness.command("serve")
@click.option(
    "--policy",
    "policy_file",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="tlog-policy file whose 'log <vkey> [url]' lines name the logs to witness "
    "and their keys (witness, group and quorum lines are allowed and unused).",
)
@click.option(
    "--state",
    "state_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder keeping the latest checkpoint cosigned for each log (created if missing).",
)
@click.option(
    "--identity",
    envvar=IDENTITY_ENV,
    required=True,
    metavar="NAME",
    help=f"The identity (under $MODELCHAIN_HOME) whose key cosigns; default ${IDENTITY_ENV}.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8090, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
def witness_serve(
    policy_file: Path, state_dir: Path, identity: str, host: str, port: int, log_level: str
) -> None:
    """Serve a witness (c2sp.org/tlog-witness) over HTTP.

    POST /add-checkpoint takes 'old <size>', a consistency proof (one base64
    hash a line), an empty line and the log's signed checkpoint. It answers 200
    with this identity's cosignature line ('— NAME BASE64': Ed25519
    cosignature/v1, or ML-DSA-44 subtree/v1 for an identity made with
    `identity new --algorithm ml-dsa-44`), 404 for a log the policy does not
    name, 403 without a good signature by the log's key, 400 for a malformed
    body or an old size past the checkpoint's, 409 with body '<size>'
    (text/x.tlog.size) when old is not the size last cosigned (send 'old 0' to
    learn it), and 422 when the proof fails or the log forked. What it
    cosigns is stored durably first.

    GET /<hex sha256(origin)>/checkpoint returns the latest checkpoint
    cosigned for that log, with the log's signature and the cosignature.

    The passphrase comes from $MODELCHAIN_KEY_PASSPHRASE or a prompt. Listen on
    loopback and put a TLS proxy in front to serve others."""
    try:
        import uvicorn

        from ..server.witness import create_witness_app
    except ImportError as exc:
        raise UsageError(
            "serving needs the server extra: pip install 'modelchain[server]'"
        ) from exc
    from ..core.identity import cosigner_of
    from ..core.policy import CheckpointPolicy
    from ..keys import KeyStore
    from ..storage.witness import WitnessState
    from .common import passphrase_for
    from .server import _configure_logging

    text = policy_file.read_text(encoding="utf-8", errors="replace")
    if not any(line.split()[:1] == ["quorum"] for line in text.splitlines()):
        # A witness needs only the logs; a file of log lines is a policy asking no quorum.
        text += "\nquorum none\n"
    try:
        policy = CheckpointPolicy.parse(text)
    except MalformedError as exc:
        raise UsageError(f"{policy_file}: {exc.message}") from exc
    if not policy.logs:
        raise UsageError(f"{policy_file} names no log ('log <vkey> [url]' lines)")
    keys = KeyStore(modelchain_home())
    signer = keys.cosigner(identity, passphrase_for(identity, keys))
    state = WitnessState(state_dir)
    _configure_logging(log_level)
    vkey = cosigner_of(signer)
    logging.getLogger("modelchain.witness").info(
        f"witness {signer.name} for {len(policy.logs)} logs at http://{host}:{port}/",
        extra={"fields": {"vkey": str(vkey), "logs": [log.key.name for log in policy.logs]}},
    )
    app = create_witness_app(policy, state, signer)
    config = uvicorn.Config(
        app, host=host, port=port, log_config=None, access_log=False, server_header=False
    )
    uvicorn.Server(config).run()
