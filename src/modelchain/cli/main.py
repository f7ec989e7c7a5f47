"""The ``modelchain`` root group, the command groups joined to it, and ``main``.

Every command takes ``--ledger DIR`` (default $MODELCHAIN_LEDGER, else
./.modelchain). Errors become one ``error: ...`` line on stderr and the exit
code of their class (see modelchain.errors), in ``main`` and nowhere else.
Each command lives at module level in the module of its group (``log``,
``registry``, ``governance``...); this module only joins them.
"""

from __future__ import annotations

import sys

import click

from ..errors import Error, StorageError
from . import (
    cluster,
    event,
    fl,
    gate,
    governance,
    identity,
    init,
    lifecycle,
    log,
    mlflow,
    registry,
    reports,
    server,
    store,
    witness,
)
from .common import LOG_KEY_ENV, SERVER_ENV, follow_root_options
from .progress import PROGRESS_ENV

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
    help="With --server: the log's verifier key to trust (else the one first seen), or "
    "a file with its checkpoint policy (`modelchain log policy`; a cluster's names every node).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print JSON for scripts (the same as the command's own --json).",
)
@click.option(
    "--progress",
    is_flag=True,
    help=f"Draw progress on stderr even when it is not a terminal (or ${PROGRESS_ENV}=1).",
)
@click.pass_context
def cli(
    ctx: click.Context, server: str | None, log_key: str | None, as_json: bool, progress: bool
) -> None:
    """modelchain: a verifiable provenance ledger for ML models and datasets.

    Transactions are signed (DSSE, Ed25519), appended to an RFC 9162 Merkle
    log and covered by C2SP signed checkpoints that anyone can verify offline.
    Keys live under $MODELCHAIN_HOME (default ~/.modelchain); passphrases come
    from $MODELCHAIN_KEY_PASSPHRASE or a prompt.
    """
    ctx.obj = {"server": server, "log_key": log_key, "json": as_json, "progress": progress}


for _module in (
    init,
    identity,
    event,
    log,
    registry,
    store,
    governance,
    lifecycle,
    gate,
    fl,
    reports,
    server,
    witness,
    cluster,
    mlflow,
):
    for _name in _module.__all__:
        cli.add_command(getattr(_module, _name))


def _follow_root(group: click.Group) -> None:
    for command in group.commands.values():
        follow_root_options(command)
        if isinstance(command, click.Group):
            _follow_root(command)


_follow_root(cli)


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
