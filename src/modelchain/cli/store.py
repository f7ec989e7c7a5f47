"""CLI commands of the artifact store: ``pull`` and ``store ls|gc|verify|sync``.

Which store: ``--store URL`` (a folder or an fsspec URL such as s3://bucket/prefix),
else ``$MODELCHAIN_STORE`` (several, separated by spaces, for a pull to fall back on),
else ``artifacts/`` in the ledger directory (``cli.common.stores_for``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..errors import IntegrityError, UsageError
from .common import (
    STORE_ENV,
    configured_stores,
    emit_json,
    json_option,
    ledger_option,
    name_and_version,
    open_ledger,
    signer_for,
    stores_for,
)
from .progress import ProgressLine, size_text

if TYPE_CHECKING:
    from ..ledger.ledger import Ledger
    from ..storage.protocols import ArtifactStore

__all__ = ["pull", "store"]


def _moved(line: ProgressLine, total: int) -> Callable[[int], None]:
    done = 0

    def moved(n: int) -> None:
        nonlocal done
        done += n
        line(done, total)

    return moved


@click.command("pull")
@ledger_option
@click.argument("name", metavar="NAME[@VERSION]")
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@click.option("--version", "version", type=int, help="Default: the latest.")
@click.option("--env", help="The model version deployed to this environment.")
@click.option(
    "--kind",
    type=click.Choice(["model", "dataset"]),
    help="Whether NAME is a model or a dataset (needed only when both exist).",
)
@click.option(
    "--store",
    "store_urls",
    multiple=True,
    metavar="URL",
    help=f"An artifact store to pull from (repeatable: tried in order, falling back "
    f"when an object is missing or damaged); default ${STORE_ENV} or the ledger's own.",
)
@click.option("--purpose", default="pull", show_default=True, help="Recorded with the access.")
@click.option("--as", "as_name", help="Identity that records the access.")
@json_option
def pull(
    ledger_dir: Path,
    name: str,
    dest: Path,
    version: int | None,
    env: str | None,
    kind: str | None,
    store_urls: tuple[str, ...],
    purpose: str,
    as_name: str | None,
    as_json: bool,
) -> None:
    """Fetch a registered model or dataset version into DEST, every byte verified
    against the ledger before anything is written to DEST; the access is recorded."""
    name, version = name_and_version(name, version)
    with open_ledger(ledger_dir) as led:
        if kind is None:
            kind = _kind_of(led, name)
        signer = signer_for(as_name, led)
        stores = stores_for(led, store_urls)
        number, manifest = led.artifacts.resolve(kind, name, version, env)
        line = ProgressLine("pulling", "bytes")
        try:
            _, result = led.artifacts.pull(
                kind,
                name,
                dest,
                stores=stores,
                version=number,
                purpose=purpose,
                signer=signer,
                progress=_moved(line, manifest.size),
            )
        finally:
            line.close()
    for problem in result.problems:
        click.echo(f"warning: {problem}", err=True)
    if as_json:
        emit_json(
            {
                "kind": kind,
                "name": name,
                "version": number,
                "digest": manifest.digest,
                "dest": str(result.dest),
                "files": result.files,
                "size": result.size,
                "served": result.served,
                "problems": list(result.problems),
            }
        )
    else:
        click.echo(
            f"pulled {kind} {name} version {number} ({result.files} files, "
            f"{size_text(result.size)}) into {dest}: verified against {manifest.digest}"
        )


def _kind_of(led: Ledger, name: str) -> str:
    from ..errors import NotFoundError

    found = []
    for kind, facade in (("model", led.models), ("dataset", led.datasets)):
        try:
            facade.info(name)
            found.append(kind)
        except NotFoundError:
            pass
    if not found:
        raise NotFoundError(f"no model or dataset named {name!r}")
    if len(found) > 1:
        raise UsageError(f"{name!r} is both a model and a dataset: say which with --kind")
    return found[0]


# -- store ---------------------------------------------------------------------


@click.group()
def store() -> None:
    """List, check, clean and mirror the artifact store."""


one_store_option = click.option(
    "--store",
    "store_url",
    metavar="URL",
    help=f"The artifact store (default: the first of ${STORE_ENV}, else artifacts/ in "
    "the ledger directory).",
)


def _one(led: Ledger, url: str | None) -> ArtifactStore:
    return stores_for(led, [url] if url else [])[0]


@click.command("ls")
@ledger_option
@one_store_option
@json_option
def store_ls(ledger_dir: Path, store_url: str | None, as_json: bool) -> None:
    """List the objects in the store, and whether a registered version references each."""
    with open_ledger(ledger_dir, readonly=True) as led:
        s = _one(led, store_url)
        refs = led.artifacts.referenced()
        objects = list(s.objects())
    if as_json:
        emit_json([{"ref": o.ref, "size": o.size, "referenced": o.ref in refs} for o in objects])
        return
    for o in objects:
        mark = "" if o.ref in refs else "  (unreferenced)"
        click.echo(f"{o.ref}  {o.size:>12}{mark}")
    missing = len(refs.keys() - {o.ref for o in objects})
    click.echo(
        f"{len(objects)} objects, {size_text(sum(o.size for o in objects))} in {s.url}; "
        f"{missing} referenced objects not in it"
    )


@click.command("gc")
@ledger_option
@one_store_option
@click.option("--yes", is_flag=True, help="Delete them (without it, only list them).")
@click.option(
    "--min-age",
    type=float,
    default=3600.0,
    show_default=True,
    metavar="SECONDS",
    help="Keep unreferenced objects younger than this (a register may be about to use them).",
)
@json_option
def store_gc(
    ledger_dir: Path, store_url: str | None, yes: bool, min_age: float, as_json: bool
) -> None:
    """Objects no registered version references (and uploads interrupted over a day
    ago): listed, and deleted only with --yes."""
    with open_ledger(ledger_dir, readonly=True) as led:
        s = _one(led, store_url)
        result = led.artifacts.gc(s, delete=yes, min_age_s=min_age)
    if as_json:
        emit_json(
            {
                "deleted": result.deleted,
                "unreferenced": [{"ref": o.ref, "size": o.size} for o in result.unreferenced],
                "recent": [{"ref": o.ref, "size": o.size} for o in result.recent],
                "stale_uploads": list(result.stale_uploads),
            }
        )
        return
    for o in result.unreferenced:
        click.echo(f"{'deleted' if yes else 'would delete'} {o.ref}  {o.size}")
    for path in result.stale_uploads:
        click.echo(f"{'deleted' if yes else 'would delete'} interrupted upload {path}")
    for o in result.recent:
        click.echo(f"kept (written less than {min_age:g} s ago) {o.ref}  {o.size}")
    verb = "deleted" if yes else "unreferenced (run with --yes to delete)"
    click.echo(f"{len(result.unreferenced)} objects, {size_text(result.size)} {verb}")


@click.command("verify")
@ledger_option
@one_store_option
@json_option
def store_verify(ledger_dir: Path, store_url: str | None, as_json: bool) -> None:
    """Re-hash every object in the store; exit 1 naming each damaged one."""
    from ..storage.artifacts import open_store, verify_objects

    url = store_url or next(iter(configured_stores()), None)
    s = open_store(url if url else ledger_dir / "artifacts")
    objects = list(s.objects())
    line = ProgressLine("verifying", "bytes")
    try:
        damaged = verify_objects(s, objects, _moved(line, sum(o.size for o in objects)))
    finally:
        line.close()
    if damaged:
        raise IntegrityError(
            f"{len(damaged)} of {len(objects)} objects in {s.url} are damaged",
            tuple(f"damaged {o.ref}" for o in damaged),
        )
    if as_json:
        emit_json({"ok": True, "objects": len(objects), "store": s.url})
    else:
        click.echo(f"ok: {len(objects)} objects in {s.url} match their digests")


@click.command("sync")
@ledger_option
@one_store_option
@click.option("--from", "source", required=True, metavar="URL", help="The store to copy from.")
@json_option
def store_sync(ledger_dir: Path, store_url: str | None, source: str, as_json: bool) -> None:
    """Copy from another store every object this ledger's versions reference and this
    store lacks, each verified by its digest; damaged or missing ones are reported."""
    with open_ledger(ledger_dir, readonly=True) as led:
        dest = _one(led, store_url)
        src = led.artifact_store(source)
        line = ProgressLine("syncing", "bytes")
        try:
            total = sum(led.artifacts.referenced().values())
            result = led.artifacts.sync(dest, src, progress=_moved(line, total))
        finally:
            line.close()
    if as_json:
        emit_json(
            {
                "copied": list(result.copied),
                "present": result.present,
                "missing": list(result.missing),
                "damaged": list(result.damaged),
            }
        )
    else:
        for ref in result.damaged:
            click.echo(f"damaged in {src.url}, not copied: {ref}", err=True)
        for ref in result.missing:
            click.echo(f"missing from {src.url}: {ref}", err=True)
        click.echo(
            f"copied {len(result.copied)} objects into {dest.url}; {result.present} were "
            f"there already; {len(result.missing)} missing and {len(result.damaged)} "
            f"damaged in {src.url}"
        )
    if result.damaged:
        raise IntegrityError(
            f"{len(result.damaged)} objects in {src.url} are damaged",
            tuple(f"damaged {r}" for r in result.damaged),
        )


store.add_command(store_ls)
store.add_command(store_gc)
store.add_command(store_verify)
store.add_command(store_sync)
