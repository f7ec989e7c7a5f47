"""CLI commands of the registry: hash, dataset, run, model, verify, oms.

Joined to the ``modelchain`` group by ``modelchain.cli.main``; errors are
mapped to exit codes there, in one place.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from ..core import canonical
from ..core.manifest import Manifest, sharded
from ..core.names import name_version
from ..errors import UsageError
from .common import (
    MLFLOW_TRACKING_URI_ENV,
    emit_json,
    encrypt_option,
    encrypt_version,
    json_option,
    ledger_option,
    name_and_version,
    open_ledger,
    quiet_mlflow,
    record_copy,
    show_storage,
    signer_for,
    store_for,
    store_option,
)
from .common import plain_target as _plain_target
from .progress import ProgressLine, size_text

__all__ = ["dataset", "hash_cmd", "model", "oms", "run", "verify_cmd"]


def _algorithm(name: str, shard_size: int | None) -> str:
    if name == "sha256-sharded":
        return sharded(shard_size or 1 << 30)
    if shard_size is not None:
        raise UsageError("--shard-size goes with --algorithm sha256-sharded")
    return name


_ALGORITHMS = click.Choice(["sha256", "sha256-sharded", "blake3"])


def _key_values(pairs: tuple[str, ...], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--{what} {pair!r}: expected KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _json_file(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    value = canonical.loads(path.read_bytes())
    if not isinstance(value, dict):
        raise UsageError(f"{path} must hold a JSON object")
    return value


def _print_manifest(manifest: Manifest) -> None:
    click.echo(
        f"{manifest.digest}  {manifest.name}  ({manifest.format}, "
        f"{len(manifest.files)} files, {size_text(manifest.size)})"
    )
    for f in manifest.files:
        click.echo(f"{f.digest}  {f.size:>12}  {f.path}")
        for t in f.tensors:
            click.echo(f"    {t.digest}  {t.dtype} {list(t.shape)}  {t.name}")
    for p in manifest.ignored:
        click.echo(f"{'(ignored)':>64}  {'':>12}  {p}")


as_option = click.option(
    "--as", "as_name", help="Identity that signs (default $MODELCHAIN_IDENTITY)."
)
algorithm_option = click.option(
    "--algorithm",
    type=_ALGORITHMS,
    default="sha256",
    show_default=True,
    help="sha256 is OMS-compatible (and what sha256sum prints); the others are faster.",
)
shard_option = click.option(
    "--shard-size", type=int, help="Shard size in bytes for sha256-sharded (default 1 GiB)."
)


@click.command("hash")
@click.argument("path", type=click.Path(path_type=Path))
@algorithm_option
@shard_option
@click.option("--allow-symlinks", is_flag=True, help="Follow symlinks inside the folder.")
@click.option("--no-cache", is_flag=True, help="Re-hash every file, ignoring the digest cache.")
@json_option
def hash_cmd(
    path: Path,
    algorithm: str,
    shard_size: int | None,
    allow_symlinks: bool,
    no_cache: bool,
    as_json: bool,
) -> None:
    """Hash a model or dataset (file or folder) and print its manifest."""
    from ..artifacts.cache import default_cache
    from ..artifacts.hashing import hash_path
    from ..keys import modelchain_home

    progress = ProgressLine("hashing", "bytes")
    try:
        manifest = hash_path(
            path,
            algorithm=_algorithm(algorithm, shard_size),
            allow_symlinks=allow_symlinks,
            cache=None if no_cache else default_cache(modelchain_home()),
            progress=progress,
        )
    finally:
        progress.close()
    if as_json:
        emit_json(manifest.to_json())
    else:
        _print_manifest(manifest)


# -- datasets ------------------------------------------------------------------


@click.group()
def dataset() -> None:
    """Register datasets and data-collection events; prove single records."""


def _dataset_out(v: Any, as_json: bool, verb: str) -> None:
    if as_json:
        emit_json(
            {
                "name": v.name,
                "version": v.version,
                "digest": v.digest,
                "index": v.index,
                "created": v.created,
                "records": v.records,
            }
        )
    else:
        state = verb if v.created else "unchanged: already"
        click.echo(f"{state} {v.name} version {v.version}  {v.digest}  (entry {v.index})")


@click.command("register")
@ledger_option
@click.argument("name")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--source", default="", help="Where the data comes from (URI).")
@click.option("--license", "license_", default="", help="The data's license.")
@click.option("--description", default="", help="What the data is.")
@click.option("--no-records", is_flag=True, help="Skip the record-level root of CSV/Parquet.")
@algorithm_option
@shard_option
@store_option
@encrypt_option
@as_option
@json_option
def dataset_register(
    ledger_dir: Path,
    name: str,
    path: Path,
    source: str,
    license_: str,
    description: str,
    no_records: bool,
    algorithm: str,
    shard_size: int | None,
    store_url: str | None,
    encrypt: bool,
    as_name: str | None,
    as_json: bool,
) -> None:
    """Register dataset NAME (version 1) from the files at PATH."""
    with open_ledger(ledger_dir) as led:
        signer = signer_for(as_name, led)
        target = store_for(led, store_url)
        plain_target = _plain_target(target, encrypt)
        progress = ProgressLine("hashing" if plain_target is None else "storing", "bytes")
        try:
            v = led.datasets.register(
                name,
                path,
                source=source,
                license=license_,
                description=description,
                records=not no_records,
                algorithm=_algorithm(algorithm, shard_size),
                signer=signer,
                progress=progress,
                store=plain_target,
            )
        finally:
            progress.close()
        if encrypt and target is not None:
            encrypt_version(led, "dataset", name, v.version, path, target, signer)
        if target is not None:
            record_copy(led, "dataset", name, v.version, target, signer)
    _dataset_out(v, as_json, "registered")


@click.command("ingest")
@ledger_option
@click.argument("name")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--source", required=True, help="Where this batch was collected from.")
@click.option("--batch", required=True, help="The batch's identifier.")
@click.option("--collected-by", required=True, help="Who collected it.")
@click.option("--collected-at", type=int, help="When, in ms since the epoch (default now).")
@click.option("--no-records", is_flag=True, help="Skip the record-level root of CSV/Parquet.")
@store_option
@encrypt_option
@as_option
@json_option
def dataset_ingest(
    ledger_dir: Path,
    name: str,
    path: Path,
    source: str,
    batch: str,
    collected_by: str,
    collected_at: int | None,
    no_records: bool,
    store_url: str | None,
    encrypt: bool,
    as_name: str | None,
    as_json: bool,
) -> None:
    """Record a data-collection event; PATH is the dataset's new content."""
    with open_ledger(ledger_dir) as led:
        signer = signer_for(as_name, led)
        target = store_for(led, store_url)
        plain_target = _plain_target(target, encrypt)
        progress = ProgressLine("hashing" if plain_target is None else "storing", "bytes")
        try:
            v = led.datasets.ingest(
                name,
                path,
                source=source,
                batch=batch,
                collected_by=collected_by,
                collected_at=collected_at,
                records=not no_records,
                signer=signer,
                progress=progress,
                store=plain_target,
            )
        finally:
            progress.close()
        if encrypt and target is not None:
            encrypt_version(led, "dataset", name, v.version, path, target, signer)
        if target is not None:
            record_copy(led, "dataset", name, v.version, target, signer)
    _dataset_out(v, as_json, "ingested")


@click.command("show")
@ledger_option
@click.argument("name", metavar="NAME[@VERSION]")
@click.option("--version", "version", type=int, help="Default: the latest.")
@json_option
def dataset_show(ledger_dir: Path, name: str, version: int | None, as_json: bool) -> None:
    """Show a dataset version (NAME@VERSION or NAME --version N; default the latest)."""
    name, version = name_and_version(name, version)
    with open_ledger(ledger_dir, readonly=True) as led:
        info = led.datasets.info(name)
        v = led.datasets.get(name, version)
        stored = led.artifacts.stored("dataset", name, v.version)
        erased = led.artifacts.erasure("dataset", name, v.version)
    record = {k: val for k, val in v.record.items() if k != "artifact"}
    art = {k: val for k, val in v.record["artifact"].items() if k != "manifest"}
    if as_json:
        extra = {"stored": stored, "erasure": erased}
        emit_json({"dataset": info, "version": {**record, "artifact": art, **extra}})
        return
    click.echo(f"dataset:  {info['name']} (owner {info['owner']}, latest {info['latest']})")
    click.echo(f"source:   {info['source']}\nlicense:  {info['license']}")
    click.echo(
        f"version:  {v.version}  {v.digest}  ({art['files']} files, "
        f"{size_text(art['size'])}, entry {v.index}, by {record['by']})"
        + (" ERASED" if erased is not None else "")
    )
    if record.get("records"):
        r = record["records"]
        click.echo(f"records:  {r['count']} rows, root {r['root']} ({r['scheme']})")
    if record.get("ingest"):
        i = record["ingest"]
        click.echo(f"ingest:   batch {i['batch']} from {i['source']} by {i['collected_by']}")
    show_storage(stored, erased)


@click.command("list")
@ledger_option
@json_option
def dataset_list(ledger_dir: Path, as_json: bool) -> None:
    """List registered datasets."""
    with open_ledger(ledger_dir, readonly=True) as led:
        found = led.datasets.list()
    if as_json:
        emit_json(found)
        return
    for d in found:
        click.echo(f"{d['name']}\tv{d['latest']}\t{d['owner']}\t{d['source']}")


@click.command("prove")
@ledger_option
@click.argument("name", metavar="NAME[@VERSION]")
@click.option("--version", "version", type=int, help="The version, unless NAME@VERSION says it.")
@click.option("--row", type=int, required=True, help="Row number, from 0.")
@click.option(
    "--data",
    "data",
    type=click.Path(path_type=Path),
    required=True,
    help="The dataset file (the data stays with you; only the row is revealed).",
)
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write the proof here.")
def dataset_prove(
    ledger_dir: Path, name: str, version: int | None, row: int, data: Path, output: Path | None
) -> None:
    """Print a proof that one row was in a registered dataset version,
    revealing that row and nothing about the others."""
    name, version = name_and_version(name, version)
    if version is None:
        raise UsageError("say which version: NAME@VERSION or --version N")
    with open_ledger(ledger_dir, readonly=True) as led:
        proof = led.datasets.prove(name, version, row, data)
    text = json.dumps(
        {"dataset": name, "version": version, **proof.to_json()}, indent=2, sort_keys=True
    )
    if output is not None:
        output.write_text(text + "\n")
    else:
        click.echo(text)


@click.command("verify-record")
@ledger_option
@click.argument("proof_file", type=click.Path(dir_okay=False, path_type=Path))
def dataset_verify_record(ledger_dir: Path, proof_file: Path) -> None:
    """Check a record proof against the root the ledger registered."""
    from ..core.records import RecordProof

    obj = canonical.loads(proof_file.read_bytes())
    if not isinstance(obj, dict) or "dataset" not in obj or "version" not in obj:
        raise UsageError(f"{proof_file} is not a proof from `modelchain dataset prove`")
    name, version = obj.pop("dataset"), obj.pop("version")
    proof = RecordProof.from_json(obj)
    with open_ledger(ledger_dir, readonly=True) as led:
        led.datasets.verify_record(proof, name, version)
    click.echo(f"ok: row {proof.row} is in {name} version {version}")


# -- runs ----------------------------------------------------------------------


@click.group()
def run() -> None:
    """Record training runs (in-toto SLSA Provenance v1)."""


@click.command("record")
@ledger_option
@click.argument("run_id")
@click.option(
    "--output",
    "outputs",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path),
    help="A model the run produced (repeatable).",
)
@click.option(
    "--dataset",
    "datasets",
    multiple=True,
    metavar="NAME@VERSION",
    help="An input dataset version (repeatable).",
)
@click.option(
    "--base-model",
    "base_models",
    multiple=True,
    metavar="NAME@VERSION",
    help="A base model version it was trained from (repeatable).",
)
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Hyperparameter.")
@click.option("--params-file", type=click.Path(path_type=Path), help="Hyperparameters (JSON).")
@click.option("--metric", "metrics", multiple=True, metavar="KEY=VALUE", help="A metric.")
@click.option("--started", type=int, help="Start, ms since the epoch.")
@click.option("--finished", type=int, help="End, ms since the epoch.")
@click.option(
    "--code-dir",
    type=click.Path(path_type=Path),
    default=Path("."),
    show_default=True,
    help="Git working tree whose commit is the code.",
)
@as_option
@json_option
def run_record(
    ledger_dir: Path,
    run_id: str,
    outputs: tuple[Path, ...],
    datasets: tuple[str, ...],
    base_models: tuple[str, ...],
    params: tuple[str, ...],
    params_file: Path | None,
    metrics: tuple[str, ...],
    started: int | None,
    finished: int | None,
    code_dir: Path,
    as_name: str | None,
    as_json: bool,
) -> None:
    """Record training run RUN_ID with its inputs, outputs and environment."""
    parameters = {**_json_file(params_file), **_key_values(params, "param")}
    with open_ledger(ledger_dir) as led:
        signer = signer_for(as_name, led)
        led.runs.record(
            run_id,
            outputs=list(outputs),
            datasets=[name_version(d) for d in datasets],
            base_models=[name_version(m) for m in base_models],
            parameters=parameters,
            metrics=_key_values(metrics, "metric"),
            started=started,
            finished=finished,
            code_dir=code_dir,
            signer=signer,
        )
        recorded = led.runs.get(run_id)
    if as_json:
        emit_json(recorded)
    else:
        click.echo(
            f"recorded run {run_id} (entry {recorded['index']}): "
            f"{len(recorded['inputs'])} registered inputs, "
            f"{len(recorded['subjects'])} outputs"
        )


# -- models --------------------------------------------------------------------


@click.group()
def model() -> None:
    """Register, inspect, compare and trace model versions."""


def _model_out(v: Any, as_json: bool) -> None:
    if as_json:
        emit_json(
            {
                "name": v.name,
                "version": v.version,
                "digest": v.digest,
                "index": v.index,
                "created": v.created,
                "format": v.record["artifact"]["format"],
            }
        )
    elif v.created:
        click.echo(f"registered {v.name} version {v.version}  {v.digest}  (entry {v.index})")
    else:
        click.echo(f"unchanged: these bytes are already {v.name} version {v.version}  {v.digest}")


@click.command("register")
@ledger_option
@click.argument("name")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--run", "run_id", help="The recorded training run that produced it.")
@click.option("--parent", metavar="NAME@VERSION", help="The version it was fine-tuned from.")
@click.option("--metric", "metrics", multiple=True, metavar="KEY=VALUE")
@click.option("--card-file", type=click.Path(path_type=Path), help="Model-card fields (JSON).")
@algorithm_option
@shard_option
@store_option
@encrypt_option
@as_option
@json_option
def model_register(
    ledger_dir: Path,
    name: str,
    path: Path,
    run_id: str | None,
    parent: str | None,
    metrics: tuple[str, ...],
    card_file: Path | None,
    algorithm: str,
    shard_size: int | None,
    store_url: str | None,
    encrypt: bool,
    as_name: str | None,
    as_json: bool,
) -> None:
    """Register the model at PATH as the next version of NAME (same bytes: no-op)."""
    with open_ledger(ledger_dir) as led:
        signer = signer_for(as_name, led)
        target = store_for(led, store_url)
        plain_target = _plain_target(target, encrypt)
        progress = ProgressLine("hashing" if plain_target is None else "storing", "bytes")
        try:
            v = led.models.register(
                name,
                path,
                run=run_id,
                parent=None if parent is None else name_version(parent),
                metrics=_key_values(metrics, "metric"),
                card=_json_file(card_file),
                algorithm=_algorithm(algorithm, shard_size),
                signer=signer,
                progress=progress,
                store=plain_target,
            )
        finally:
            progress.close()
        if encrypt and target is not None:
            encrypt_version(led, "model", name, v.version, path, target, signer)
        if target is not None:
            record_copy(led, "model", name, v.version, target, signer)
    _model_out(v, as_json)


@click.command("show")
@ledger_option
@click.argument("name", metavar="NAME[@VERSION]")
@click.option("--version", "version", type=int, help="Default: the latest.")
@click.option("--files", is_flag=True, help="Also list every file (and tensor).")
@json_option
def model_show(
    ledger_dir: Path, name: str, version: int | None, files: bool, as_json: bool
) -> None:
    """Show a model version (NAME@VERSION or NAME --version N; default the latest)."""
    name, version = name_and_version(name, version)
    with open_ledger(ledger_dir, readonly=True) as led:
        v = led.models.get(name, version)
        manifest = led.models.manifest(name, v.version)
        stored = led.artifacts.stored("model", name, v.version)
        erased = led.artifacts.erasure("model", name, v.version)
    record = {k: val for k, val in v.record.items() if k != "artifact"}
    if as_json:
        extra = {"stored": stored, "erasure": erased}
        emit_json({**record, "digest": v.digest, "manifest": manifest.to_json(), **extra})
        return
    art = v.record["artifact"]
    click.echo(
        f"model:    {name} version {v.version} (entry {v.index}, by {record['by']})"
        + (" ERASED" if erased is not None else "")
    )
    click.echo(f"digest:   {v.digest}")
    click.echo(f"format:   {art['format']}, {art['files']} files, {size_text(art['size'])}")
    click.echo(f"run:      {record['run'] or '-'}")
    parent = record["parent"]
    click.echo(f"parent:   {parent['name'] + '@' + str(parent['version']) if parent else '-'}")
    if record["metrics"]:
        click.echo("metrics:  " + json.dumps(record["metrics"], sort_keys=True))
    show_storage(stored, erased)
    if files:
        _print_manifest(manifest)


@click.command("list")
@ledger_option
@json_option
def model_list(ledger_dir: Path, as_json: bool) -> None:
    """List registered models."""
    with open_ledger(ledger_dir, readonly=True) as led:
        found = led.models.list()
    if as_json:
        emit_json(found)
        return
    for m in found:
        click.echo(f"{m['name']}\tv{m['latest']}\t{m['owner']}")


@click.command("diff")
@ledger_option
@click.argument("name")
@click.argument("old", type=int)
@click.argument("new", type=int)
@json_option
def model_diff(ledger_dir: Path, name: str, old: int, new: int, as_json: bool) -> None:
    """Files and tensors changed, added and removed between two versions."""
    with open_ledger(ledger_dir, readonly=True) as led:
        changes = led.models.diff(name, old, new)
    if as_json:
        emit_json(changes.to_json())
        return
    for line in changes.lines() or ["no differences"]:
        click.echo(line)


@click.command("lineage")
@ledger_option
@click.argument("name", metavar="NAME[@VERSION]")
@click.option("--version", "version", type=int, help="Default: the latest.")
@json_option
def model_lineage(ledger_dir: Path, name: str, version: int | None, as_json: bool) -> None:
    """Datasets, runs and parent versions behind a model version."""
    name, version = name_and_version(name, version)
    with open_ledger(ledger_dir, readonly=True) as led:
        tree = led.models.lineage(name, version)
    if as_json:
        emit_json(tree.to_json())
    else:
        click.echo("\n".join(tree.lines()))


@click.command("verify")
@ledger_option
@click.argument("path", metavar="PATH|models:/NAME/VERSION")
@click.option(
    "--model",
    "model_name",
    metavar="NAME[@VERSION]",
    help="Registered model name (for an MLflow URI: default the version the bridge recorded).",
)
@click.option("--version", "version", type=int, help="Default: the latest.")
@click.option("--env", help="Check against the version deployed to this environment.")
@click.option(
    "--trust-cache",
    is_flag=True,
    help="Reuse cached file digests (by inode, size, times) instead of re-reading.",
)
@click.option(
    "--tracking-uri",
    envvar=MLFLOW_TRACKING_URI_ENV,
    metavar="URI",
    help="For models:/ or mlflow-models:/ URIs: the MLflow server (default $MLFLOW_TRACKING_URI).",
)
@json_option
def verify_cmd(
    ledger_dir: Path,
    path: str,
    model_name: str | None,
    version: int | None,
    env: str | None,
    trust_cache: bool,
    tracking_uri: str | None,
    as_json: bool,
) -> None:
    """Re-hash PATH and check it is exactly the registered model version.

    PATH may be an MLflow model version, models:/NAME/VERSION (or
    mlflow-models:/NAME/VERSION): what MLflow serves is downloaded and
    re-hashed against the ledger version recorded for it (`modelchain mlflow
    sync`), found on the ledger, never in MLflow's tags."""
    from ..integrations.mlflow import parse_model_uri

    mlflow_version = parse_model_uri(path)
    if mlflow_version is None and model_name is None:
        raise UsageError("say which model: --model NAME[@VERSION]")
    against = None if model_name is None else name_and_version(model_name, version)
    with open_ledger(ledger_dir, readonly=True) as led:
        progress = ProgressLine("verifying", "bytes")
        try:
            if mlflow_version is not None:
                from ..integrations.mlflow import MlflowBridge

                quiet_mlflow()
                bridge = MlflowBridge(led, tracking_uri or "")
                v = bridge.verify(*mlflow_version, against=against, env=env, progress=progress)
            else:
                assert against is not None
                v = led.models.verify(
                    Path(path), *against, env=env, trust_cache=trust_cache, progress=progress
                )
        finally:
            progress.close()
    if as_json:
        emit_json({"ok": True, "name": v.name, "version": v.version, "digest": v.digest})
    else:
        click.echo(f"ok: {path} is {v.name} version {v.version}  {v.digest}")


# -- OpenSSF Model Signing -------------------------------------------------------


@click.group()
def oms() -> None:
    """Sign and import OpenSSF Model Signing (OMS v1.0) bundles."""


@click.command("sign")
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--key",
    "key_file",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="ECDSA P-256/384/521 private key, PEM.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("model.sig"),
    show_default=True,
    help="Where to write the bundle.",
)
def oms_sign(path: Path, key_file: Path, output: Path) -> None:
    """Write an OMS bundle for the model at PATH that `model_signing verify key` accepts.

    The key's passphrase, if any, comes from $MODELCHAIN_KEY_PASSPHRASE."""
    from ..artifacts.hashing import DEFAULT_IGNORES, hash_path
    from ..artifacts.oms import GIT_IGNORE_PATHS, load_private_key, sign_bundle

    pem = key_file.read_bytes()
    password = os.environ.get("MODELCHAIN_KEY_PASSPHRASE") if b"ENCRYPTED" in pem else None
    key = load_private_key(pem, password.encode() if password else None)
    ignore = [*GIT_IGNORE_PATHS]
    if path.is_dir() and output.resolve().parent == path.resolve():
        ignore.append(output.name)  # the bundle must not sign itself
    progress = ProgressLine("hashing", "bytes")
    try:
        manifest = hash_path(path, ignore=(*DEFAULT_IGNORES, *ignore), progress=progress)
    finally:
        progress.close()
    output.write_bytes(sign_bundle(manifest, key, ignore))
    click.echo(f"signed {manifest.digest} ({len(manifest.files)} files) -> {output}")


@click.command("import")
@ledger_option
@click.argument("bundle", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--model", "model_name", required=True, help="Model name to register under.")
@click.option(
    "--key",
    "key_file",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The signer's ECDSA public key, PEM.",
)
@click.option("--run", "run_id", help="The recorded training run that produced it.")
@as_option
@json_option
def oms_import(
    ledger_dir: Path,
    bundle: Path,
    path: Path,
    model_name: str,
    key_file: Path,
    run_id: str | None,
    as_name: str | None,
    as_json: bool,
) -> None:
    """Verify an OMS bundle against the files at PATH and register them as a
    version of the model; the bundle is kept beside the ledger."""
    from ..artifacts.hashing import DEFAULT_IGNORES, hash_path
    from ..artifacts.oms import key_hint, load_public_key, read_bundle, verify_against

    data = bundle.read_bytes()
    public_key = load_public_key(key_file.read_bytes())
    signed = read_bundle(data, public_key)
    actual = hash_path(
        path, ignore=(*DEFAULT_IGNORES, *signed.ignored), allow_symlinks=signed.allow_symlinks
    )
    verify_against(signed, actual)
    with open_ledger(ledger_dir) as led:
        signer = signer_for(as_name, led)
        ref = led.blobs.put(data)
        v = led.models.register(
            model_name,
            path,
            run=run_id,
            signer=signer,
            card={"oms": {"bundle": ref, "key_hint": key_hint(public_key)}},
        )
    _model_out(v, as_json)


dataset.add_command(dataset_register)
dataset.add_command(dataset_ingest)
dataset.add_command(dataset_show)
dataset.add_command(dataset_list)
dataset.add_command(dataset_prove)
dataset.add_command(dataset_verify_record)
run.add_command(run_record)
model.add_command(model_register)
model.add_command(model_show)
model.add_command(model_list)
model.add_command(model_diff)
model.add_command(model_lineage)
oms.add_command(oms_sign)
oms.add_command(oms_import)
