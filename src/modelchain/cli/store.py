"""CLI commands of the artifact store: ``pull``, ``store ls|gc|verify|sync|status``, access
to encrypted versions (``store grant|revoke|grants``) and ``erase``. ``store sync`` and
``store status`` record and list which organisations hold verified copies (contract-set
version 8 on: ADR 19).

Which store: ``--store URL`` (a folder or an fsspec URL such as s3://bucket/prefix),
else ``$MODELCHAIN_STORE`` (several, separated by spaces, for a pull to fall back on),
else ``artifacts/`` in the ledger directory (``cli.common.stores_for``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..core import canonical
from ..errors import IntegrityError, UsageError
from .common import (
    STORE_ENV,
    configured_stores,
    emit_json,
    json_option,
    key_stores_for,
    keys_for,
    ledger_option,
    name_and_version,
    open_ledger,
    signer_for,
    stores_for,
)
from .progress import ProgressLine, size_text

if TYPE_CHECKING:
    from typing import Any

    from ..core.dsse import Envelope
    from ..ledger.ledger import Ledger
    from ..storage.protocols import ArtifactStore

__all__ = ["erase", "pull", "store"]


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
    against the ledger before anything is written to DEST; the access is recorded.

    An encrypted version's data key is asked of the ledger first (refused, and the
    refusal logged, unless you hold a grant: `modelchain store grant`), then unwrapped
    with the organisation's key-encryption key ($MODELCHAIN_KEK) and each object decrypted
    and checked whole before anything lands in DEST. An erased version says who
    erased it, when and why."""
    name, version = name_and_version(name, version)
    with open_ledger(ledger_dir) as led:
        if kind is None:
            kind = _kind_of(led, name)
        signer = signer_for(as_name, led)
        stores = stores_for(led, store_urls)
        number, manifest = led.artifacts.resolve(kind, name, version, env)
        encrypted = (
            led.artifacts.stored(kind, name, number) is not None
            and led.artifacts.erasure(kind, name, number) is None  # that says so first
        )
        keys = keys_for(led) if encrypted else None
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
                keys=keys,
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
@click.option(
    "--no-record",
    is_flag=True,
    help="Do not record this organisation's copies on the ledger (artifact.replica).",
)
@click.option("--as", "as_name", help="Identity that records the copies.")
@json_option
def store_sync(
    ledger_dir: Path,
    store_url: str | None,
    source: str,
    no_record: bool,
    as_name: str | None,
    as_json: bool,
) -> None:
    """Copy from another store every object this ledger's versions reference and this
    store lacks, each verified by its digest; damaged or missing ones are reported.

    On a ledger of contract-set version 8 or later, every version this store then holds
    in full is recorded as a copy held by your organisation (artifact.replica: the
    signer's org), after each object not just copied is re-hashed; versions recorded
    there already are skipped, and a version whose copy there is damaged is not
    recorded (exit 1, naming the objects). `modelchain store status` lists the copies."""
    from ..contracts.versions import REPLICATION_VERSION

    with open_ledger(ledger_dir, readonly=no_record) as led:
        record = not no_record and led.members.contract_version >= REPLICATION_VERSION
        signer = signer_for(as_name, led) if record else None
        dest = _one(led, store_url)
        src = led.artifact_store(source)
        line = ProgressLine("syncing", "bytes")
        try:
            total = sum(led.artifacts.referenced().values())
            result = led.artifacts.sync(dest, src, progress=_moved(line, total))
        finally:
            line.close()
        recorded: tuple[tuple[str, str, int], ...] = ()
        unverified: tuple[str, ...] = ()
        if record:
            copies = led.artifacts.record_replicas(dest, signer=signer, verified=result.copied)
            recorded, unverified = copies.recorded, copies.damaged
    if as_json:
        emit_json(
            {
                "copied": list(result.copied),
                "present": result.present,
                "missing": list(result.missing),
                "damaged": list(result.damaged),
                "recorded": [{"kind": k, "name": n, "version": v} for k, n, v in recorded],
                "unverified": list(unverified),
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
        for k, n, v in recorded:
            click.echo(f"recorded a verified copy of {k} {n} version {v} in {dest.url}")
    if result.damaged:
        raise IntegrityError(
            f"{len(result.damaged)} objects in {src.url} are damaged",
            tuple(f"damaged {r}" for r in result.damaged),
        )
    if unverified:
        raise IntegrityError(
            f"copies in {dest.url} that failed their digests were not recorded",
            unverified,
        )


@click.command("status")
@ledger_option
@click.argument("name", required=False)
@json_option
def store_status(ledger_dir: Path, name: str | None, as_json: bool) -> None:
    """Each registered version's copies (the organisations that recorded a verified
    one) against the replication factor (`modelchain governance replication`); exit 1
    if any is under-replicated. A deploy of an under-replicated model version is
    refused. Contract-set version 8 on."""
    with open_ledger(ledger_dir, readonly=True) as led:
        led.members.require_replication()
        required = led.members.replication or 0
        found = [r for r in led.artifacts.replication() if name is None or r.name == name]
    under = [r for r in found if r.under_replicated]
    if as_json:
        emit_json(
            {
                "required": required,
                "versions": [
                    {
                        "kind": r.kind,
                        "name": r.name,
                        "version": r.version,
                        "copies": r.copies,
                        "orgs": r.orgs,
                        "under_replicated": r.under_replicated,
                    }
                    for r in found
                ],
                "under_replicated": len(under),
            }
        )
    else:
        if required:
            click.echo(f"replication factor: {required} organisations")
        else:
            click.echo("no replication factor set (`modelchain governance replication N`)")
        for r in found:
            want = f"/{required}" if required else ""
            orgs = ", ".join(f"{o} ({c['location']})" for o, c in sorted(r.orgs.items()))
            flag = "  UNDER-REPLICATED" if r.under_replicated else ""
            click.echo(f"{r.kind} {r.name}@{r.version}\t{r.copies}{want}\t{orgs or '-'}{flag}")
        click.echo(f"{len(found)} versions, {len(under)} under-replicated")
    if under:
        raise SystemExit(1)


def _kind_option(f: Any) -> Any:
    return click.option(
        "--kind",
        type=click.Choice(["model", "dataset"]),
        help="Whether NAME is a model or a dataset (needed only when both exist).",
    )(f)


@click.command("grant")
@ledger_option
@click.argument("name")
@click.argument("member")
@click.option("--version", type=int, help="Only this version (default: every version).")
@_kind_option
@click.option("--as", "as_name", help="Identity that signs the grant.")
@json_option
def store_grant(
    ledger_dir: Path,
    name: str,
    member: str,
    version: int | None,
    kind: str | None,
    as_name: str | None,
    as_json: bool,
) -> None:
    """Let MEMBER obtain the data keys of NAME's encrypted versions (artifact.grant:
    data stewards and admins by default; a policy on artifact.grant may ask more)."""
    with open_ledger(ledger_dir) as led:
        kind = kind or _kind_of(led, name)
        ack = led.artifacts.grant(
            kind, name, member, version=version, signer=signer_for(as_name, led)
        )
    which = "every version" if version is None else f"version {version}"
    if as_json:
        emit_json(
            {"index": ack.index, "kind": kind, "name": name, "member": member, "version": version}
        )
    else:
        click.echo(f"granted {member} the keys of {kind} {name}, {which} (entry {ack.index})")


@click.command("revoke")
@ledger_option
@click.argument("name")
@click.argument("member")
@_kind_option
@click.option("--as", "as_name", help="Identity that signs the revocation.")
@json_option
def store_revoke(
    ledger_dir: Path,
    name: str,
    member: str,
    kind: str | None,
    as_name: str | None,
    as_json: bool,
) -> None:
    """Withdraw MEMBER's grant for NAME (keys already obtained cannot be taken back)."""
    with open_ledger(ledger_dir) as led:
        kind = kind or _kind_of(led, name)
        ack = led.artifacts.revoke(kind, name, member, signer=signer_for(as_name, led))
    if as_json:
        emit_json({"index": ack.index, "kind": kind, "name": name, "member": member})
    else:
        click.echo(f"revoked {member}'s grant for {kind} {name} (entry {ack.index})")


@click.command("grants")
@ledger_option
@click.argument("name")
@_kind_option
@json_option
def store_grants(ledger_dir: Path, name: str, kind: str | None, as_json: bool) -> None:
    """Who may obtain the data keys of NAME's encrypted versions."""
    with open_ledger(ledger_dir, readonly=True) as led:
        kind = kind or _kind_of(led, name)
        found = led.artifacts.grants(kind, name)
    if as_json:
        emit_json(found)
        return
    for g in found:
        which = "every version" if g["version"] is None else f"version {g['version']}"
        click.echo(f"{g['member']}\t{which}\tby {', '.join(g['by'])} (entry {g['index']})")
    if not found:
        click.echo(f"no grants for {kind} {name}")


store.add_command(store_ls)
store.add_command(store_gc)
store.add_command(store_verify)
store.add_command(store_sync)
store.add_command(store_status)
store.add_command(store_grant)
store.add_command(store_revoke)
store.add_command(store_grants)


def _write_draft(draft: Path, env: Envelope, what: str) -> None:
    """Write a signed erasure for others to co-sign, and say how."""
    draft.write_bytes(canonical.dumps(env.to_json()) + b"\n")
    click.echo(
        f"wrote {draft}: {what}; co-sign with `modelchain tx sign {draft} --as NAME`, "
        f"then `modelchain erase --signed {draft}`"
    )


def _erase_entry(ledger_dir: Path, entry: int, env: Envelope, as_json: bool) -> None:
    """Submit a signed ``record.erase`` of entry ``entry`` (unless the ledger records
    the erasure of every field it names already: then only shred), then delete the
    erased fields' disclosures from this side's vault."""
    from ..core.tx import Transaction

    named = Transaction.from_json(canonical.loads_canonical(env.payload)).body["fields"]
    with open_ledger(ledger_dir) as led:
        if any(led.disclosures.erasure(d) is None for d in named):
            led.members.submit(env)  # RejectedError if the contract or policy refuses it
        deleted = led.artifacts.shred_fields(entry)
        record = led.disclosures.erasure(named[0])
        assert record is not None
        reason = led.disclosures.field(record["reason"])
    if as_json:
        emit_json(
            {
                "entry": entry,
                "index": record["index"],
                "by": record["signers"],
                "reason": reason,
                "fields_deleted": deleted,
            }
        )
        return
    click.echo(
        f"erased the committed fields of entry {entry} (record.erase at entry "
        f"{record['index']}, by {', '.join(record['signers'])}): {reason}; deleted "
        f"{deleted} disclosure(s) from this side's vault"
    )


@click.command("erase")
@ledger_option
@click.argument("name", required=False)
@click.option("--version", "version", type=int, help="The version to erase.")
@click.option("--reason", help="Why (recorded on the ledger: keep personal data out of it).")
@_kind_option
@click.option(
    "--store",
    "store_urls",
    multiple=True,
    metavar="URL",
    help=f"An artifact store to delete the objects from (repeatable; default ${STORE_ENV} "
    "or the ledger's own).",
)
@click.option(
    "--draft",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the signed erasure here for others to co-sign (`modelchain tx sign`) "
    "instead of submitting it.",
)
@click.option(
    "--signed",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Submit this co-signed erasure draft, then destroy what it erases.",
)
@click.option(
    "--entry",
    type=click.IntRange(min=0),
    help="Instead of a version: erase the committed personal fields (comments, reasons, "
    "purposes, sources, collectors...) of log entry N (record.erase).",
)
@click.option(
    "--field",
    "fields",
    multiple=True,
    metavar="NAME",
    help="With --entry: erase only this field (repeatable; default every committed one).",
)
@click.option("--as", "as_name", help="Identity that signs the erasure.")
@json_option
def erase(
    ledger_dir: Path,
    name: str | None,
    version: int | None,
    reason: str | None,
    kind: str | None,
    store_urls: tuple[str, ...],
    draft: Path | None,
    signed: Path | None,
    entry: int | None,
    fields: tuple[str, ...],
    as_name: str | None,
    as_json: bool,
) -> None:
    """Erase version --version of dataset (or model) NAME: record the erasure
    (artifact.erase, with --reason), then destroy its data key in every key store
    ($MODELCHAIN_KEYSTORE), delete its objects from the artifact stores and, for a
    dataset, its record-proof key. The ledger keeps verifying; a saved copy of the
    ciphertext can no longer be decrypted.

    A new ledger's policy wants a data steward and an admin among the signers: one
    writes a draft (--draft FILE), the other co-signs it (`modelchain tx sign FILE`),
    and either submits it (--signed FILE). Running it again for an erasure already
    recorded destroys whatever is left (in other stores, say).

    With --entry N instead of NAME: erase the committed personal fields of entry N
    (contract-set version 8 on): the ledger records record.erase, the fields read as
    [erased] everywhere, and their disclosures (value and salt) are deleted from this
    side's vault; the salted commitments stay, and the log keeps verifying. The same
    --draft/--signed flow applies. Erasing a dataset version erases its ingest fields
    (source, batch, collector) with it."""
    from ..contracts.types import ARTIFACT_ERASE, RECORD_ERASE
    from ..core.dsse import Envelope
    from ..core.tx import Transaction

    if signed is not None:
        env = Envelope.from_json(canonical.loads(signed.read_bytes()))
        tx = Transaction.from_json(canonical.loads_canonical(env.payload))
        if tx.type == RECORD_ERASE:
            _erase_entry(ledger_dir, int(tx.body["entry"]), env, as_json)
            return
        if tx.type != ARTIFACT_ERASE:
            raise UsageError(
                f"{signed} is a {tx.type} transaction, not {ARTIFACT_ERASE} or {RECORD_ERASE}"
            )
        art = tx.body["artifact"]
        kind, name, version = art["kind"], art["name"], int(art["version"])
    if entry is not None:
        if name is not None or version is not None:
            raise UsageError("--entry erases an entry's fields: give it without NAME --version")
        if not reason:
            raise UsageError("an erasure needs --reason")
        with open_ledger(ledger_dir, readonly=draft is not None) as led:
            committed = led.disclosures.committed(entry)
            chosen = {f: committed[f] for f in fields if f in committed} if fields else committed
            missing = sorted(set(fields) - set(committed))
            if missing or not chosen:
                raise UsageError(
                    f"entry {entry} has no committed field {', '.join(missing)}; its committed "
                    f"fields: {', '.join(sorted(committed)) or 'none'}"
                )
            signer = signer_for(as_name, led)
            body = {"entry": entry, "fields": sorted(chosen.values()), "reason": reason}
            env = led.members.draft(RECORD_ERASE, body, signer.name).with_signature(signer)
            if draft is not None:
                return _write_draft(
                    draft, env, f"erase fields {', '.join(sorted(chosen))} of entry {entry}"
                )
        _erase_entry(ledger_dir, entry, env, as_json)
        return
    if name is None or version is None:
        raise UsageError("say what to erase: NAME --version V, --entry N (or --signed FILE)")
    with open_ledger(ledger_dir, readonly=draft is not None) as led:
        kind = kind or _kind_of(led, name)
        if draft is not None:
            if not reason:
                raise UsageError("an erasure needs --reason")
            signer = signer_for(as_name, led)
            body = {"artifact": {"kind": kind, "name": name, "version": version}, "reason": reason}
            env = led.members.draft(ARTIFACT_ERASE, body, signer.name).with_signature(signer)
            return _write_draft(draft, env, f"erase {kind} {name} version {version}")
        stores = stores_for(led, store_urls)
        key_stores = key_stores_for(led)  # destroying a wrapped key needs no KEK
        if signed is not None:
            led.members.submit(env)  # RejectedError if the contract or policy refuses it
            result = led.artifacts.shred(kind, name, version, stores=stores, key_stores=key_stores)
        elif led.artifacts.erasure(kind, name, version) is not None:
            result = led.artifacts.shred(kind, name, version, stores=stores, key_stores=key_stores)
        else:
            if not reason:
                raise UsageError("an erasure needs --reason")
            result = led.artifacts.erase(
                kind,
                name,
                version,
                reason,
                signers=[signer_for(as_name, led)],
                stores=stores,
                key_stores=key_stores,
            )
        erased = led.artifacts.erasure(kind, name, version)
    assert erased is not None
    if as_json:
        emit_json(
            {
                "kind": kind,
                "name": name,
                "version": version,
                "index": erased["index"],
                "by": erased["signers"],
                "reason": erased["reason"],
                "keys_destroyed": list(result.keys_destroyed),
                "objects_deleted": list(result.objects_deleted),
                "record_key_destroyed": result.record_key_destroyed,
                "fields_deleted": result.fields_deleted,
            }
        )
        return
    for k in result.keys_destroyed:
        click.echo(f"destroyed data key {k}")
    for o in result.objects_deleted:
        click.echo(f"deleted {o}")
    if result.record_key_destroyed:
        click.echo("destroyed the record-proof key")
    if result.fields_deleted:
        click.echo(f"deleted the disclosures of {result.fields_deleted} personal field(s)")
    click.echo(
        f"erased {kind} {name} version {version} (entry {erased['index']}, by "
        f"{', '.join(erased['signers'])}): {erased['reason']}"
    )
