"""CLI of clusters: ``node init|run`` for one organisation's node, ``cluster
genesis`` to start a shared ledger, and ``cluster up|status|down`` for a local
development cluster."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import UsageError
from ..keys import modelchain_home
from .common import (
    IDENTITY_ENV,
    emit_json,
    json_option,
    log_key_options,
    log_key_secrets,
    new_log_key,
    passphrase_for,
)

__all__ = ["cluster", "node"]


def _cluster_extra() -> None:
    try:
        import aetcd  # noqa: F401
    except ImportError as exc:
        raise UsageError(
            "clusters need the cluster extra: pip install 'modelchain[cluster,server]'"
        ) from exc


@click.group()
def node() -> None:
    """One organisation's node of a shared ledger: its key, its directory, and
    running it against the cluster's etcd."""


@node.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--origin", required=True, help="The shared ledger's name (its checkpoint origin).")
@click.option("--name", required=True, help="This node's name in the checkpoint policy.")
@click.option("--url", default=None, help="Where this node will serve (for the policy lines).")
@log_key_options
def node_init(
    directory: Path,
    origin: str,
    name: str,
    url: str | None,
    encrypt_log_key: bool,
    log_key_pkcs11: str | None,
    log_key_token: str | None,
    log_key_label: str | None,
) -> None:
    """Make DIRECTORY a node of ORIGIN: a new node key (log.key, which never
    leaves it, encrypted on request; or a key in a PKCS#11 token) and an empty
    store that the genesis will start. Prints the two policy lines naming this
    node, for the founders' checkpoint policy."""
    from ..cluster.node import init_node
    from ..core.identity import COSIGNATURE_V1, VerifierKey, check_key_name

    check_key_name(name)
    new = new_log_key(origin, encrypt_log_key, log_key_pkcs11, log_key_token, log_key_label)
    key = init_node(directory, origin, passphrase=new.passphrase, pkcs11=new.pkcs11, pin=new.pin)
    cosigner = VerifierKey(name, key.public_key, COSIGNATURE_V1)
    tail = f" {url}" if url else ""
    click.echo(f"log {key}{tail}")
    click.echo(f"witness {name} {cosigner}{tail}")


@node.command("run")
@click.argument("config", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def node_run(config: Path, log_level: str) -> None:
    """Run the node described by CONFIG (a TOML file; see the README, 'Running
    a cluster'): follow the order in etcd, execute and store every
    transaction, cosign checkpoints with the other nodes, and serve the API,
    the log and the dashboard over HTTP."""
    _cluster_extra()
    from ..cluster.node import NodeSettings, open_node
    from .server import _configure_logging, _serve_ledger

    settings = NodeSettings.load(config)
    _configure_logging(log_level)
    led = open_node(settings, log_key_secrets=log_key_secrets())
    _serve_ledger(led, host=settings.host, port=settings.port, reads=settings.reads)


@click.group()
def cluster() -> None:
    """A shared ledger's cluster: its genesis, and a local development
    cluster (three etcd members and N nodes on loopback)."""


@cluster.command("genesis")
@click.option(
    "--policy",
    "policy_file",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The checkpoint policy naming every node ('log' and 'witness' lines from "
    "`node init`, a group with the threshold, the quorum).",
)
@click.option("--etcd", "endpoints", required=True, help="etcd endpoints, HOST:PORT,...")
@click.option("--prefix", default=None, help="etcd prefix; default /modelchain/ORIGIN/.")
@click.option("--as", "identity", envvar=IDENTITY_ENV, required=True, help="The admin.")
@click.option("--org", default="", help="The admin's organisation.")
@click.option(
    "--default-policies/--no-default-policies",
    default=True,
    show_default=True,
    help="Install the default policy set, as `modelchain init` does "
    "(see `modelchain policy show`).",
)
def cluster_genesis(
    policy_file: Path,
    endpoints: str,
    prefix: str | None,
    identity: str,
    org: str,
    default_policies: bool,
) -> None:
    """Start the shared ledger: sign a genesis naming the checkpoint policy and
    you as its admin, and order it through etcd; every node applies it."""
    _cluster_extra()
    from ..cluster.dev import order_genesis
    from ..cluster.node import default_prefix
    from ..contracts.policy import DEFAULT_POLICIES
    from ..core.policy import CheckpointPolicy
    from ..keys import KeyStore

    policy = CheckpointPolicy.parse(policy_file.read_text())
    if not policy.logs or not policy.nodes:
        raise UsageError("the policy names no node (a 'log' line and a 'witness' line each)")
    origin = policy.logs[0].key.name
    keys = KeyStore(modelchain_home())
    admin = keys.signer(identity, passphrase_for(identity, keys))
    eps = [e.strip() for e in endpoints.split(",") if e.strip()]
    policies = DEFAULT_POLICIES if default_policies else None
    order_genesis(
        eps, prefix or default_prefix(origin), origin, policy, admin, org, policies=policies
    )
    installed = f", {len(policies)} default policies" if policies else ", no policies"
    click.echo(f"ordered the genesis of {origin} ({len(policy.nodes)} nodes{installed})")


@cluster.command("up")
@click.option("--nodes", "count", default=3, show_default=True, type=click.IntRange(1, 9))
@click.option(
    "--dir",
    "directory",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the cluster keeps everything (created).",
)
@click.option("--threshold", type=int, default=None, help="Cosignatures a checkpoint needs.")
@click.option("--origin", default="dev.cluster.local/log", show_default=True)
@json_option
def cluster_up(
    count: int, directory: Path, threshold: int | None, origin: str, as_json: bool
) -> None:
    """Start a development cluster on loopback: three etcd members (Debian's
    etcd-server), COUNT nodes with their own keys, ledgers and HTTP ports, and
    a genesis whose checkpoint policy needs THRESHOLD (default a majority) node
    cosignatures. Writes DIR/cluster.json; reads are open; the admin's key is
    under DIR/home."""
    _cluster_extra()
    from ..cluster.dev import cluster_up as up

    say = (lambda _: None) if as_json else (lambda m: click.echo(m, err=True))
    info = up(directory, nodes=count, threshold=threshold, origin=origin, say=say)
    if as_json:
        emit_json(info.data)
        return
    click.echo(f"cluster of {origin} is up: {count} nodes, {info.data['threshold']} must cosign")
    for n in info.nodes:
        click.echo(f"  {n['name']}  {n['url']}  {n['key']}")
    home = info.data["admin"]["home"]
    click.echo(
        f"write as the admin:  MODELCHAIN_HOME={home} modelchain ... --as admin "
        f"--server {info.nodes[0]['url']}"
    )
    click.echo(f"the checkpoint policy to pin:  {directory / 'cluster.json'} ('policy')")
    click.echo(f"status: modelchain cluster status --dir {directory}")


@cluster.command("status")
@click.option(
    "--dir",
    "directory",
    required=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
)
@json_option
def cluster_status(directory: Path, as_json: bool) -> None:
    """Each node's size, root, applied etcd revision, latest final checkpoint,
    lag behind the longest node, and alarms. Exits 9 if a node is unreachable,
    stopped or diverged."""
    from ..cluster.dev import cluster_status as status

    rows = status(directory)
    bad = [r for r in rows if not r["reachable"] or r.get("fault")]
    if as_json:
        emit_json({"nodes": rows, "healthy": not bad})
    else:
        click.echo(f"{'node':<8} {'size':>8} {'final':>8} {'lag':>5} {'revision':>9}  root / alarm")
        for r in rows:
            if not r["reachable"]:
                click.echo(f"{r['node']:<8} {'-':>8} {'-':>8} {'-':>5} {'-':>9}  unreachable")
                continue
            alarm = r.get("fault") or r["root"][:16]
            click.echo(
                f"{r['node']:<8} {r['size']:>8} {r['final_size']:>8} {r['lag']:>5} "
                f"{r['applied_revision']:>9}  {alarm}"
            )
    if bad:
        raise SystemExit(9)


@cluster.command("down")
@click.option(
    "--dir",
    "directory",
    required=True,
    type=click.Path(file_okay=False, exists=True, path_type=Path),
)
def cluster_down(directory: Path) -> None:
    """Stop the development cluster's nodes, then its etcd members. Their data
    stays under DIR."""
    from ..cluster.dev import cluster_down as down

    info = down(directory)
    click.echo(
        f"stopped {len(info.nodes)} nodes and {len(info.data['etcd']['members'])} etcd members"
    )
