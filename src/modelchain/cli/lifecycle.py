"""CLI commands of the model lifecycle: attestations, approvals, deployments,
monitoring, history, the audit trail and the audit of denied actions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..core import canonical
from ..core.names import name_version
from ..core.times import iso_time, parse_time
from ..errors import MalformedError, RejectedError, UsageError
from ..node.node import Ack
from .common import (
    VKEY_HELP,
    emit_json,
    json_option,
    ledger_option,
    open_ledger,
    signer_for,
    trust_from,
)

__all__ = [
    "approve",
    "attest",
    "audit_group",
    "deploy",
    "guard",
    "history",
    "monitor",
    "receipt",
    "reject",
    "revoke",
    "rollback",
]

_AS = click.option("--as", "as_name", help="Identity that signs (default $MODELCHAIN_IDENTITY).")


def _ack_out(ack: Ack, as_json: bool, what: str) -> None:
    if as_json:
        emit_json({"index": ack.index, **ack.outcome.to_json()})
    else:
        click.echo(f"{what} (entry {ack.index})")


def _attested(ack: Ack, as_json: bool, what: str, failed: list[str]) -> None:
    """Print a recorded attestation; exit 8 (as a rejection does) if its checks
    failed, so that a CI step stops, though the signed failure stays recorded."""
    if as_json:
        emit_json({"index": ack.index, **ack.outcome.to_json(), "passed": not failed})
    else:
        click.echo(f"{what} (entry {ack.index})")
    if failed:
        click.echo(
            f"error: failed: {', '.join(failed)}; the failed attestation is recorded as "
            f"entry {ack.index}",
            err=True,
        )
        raise SystemExit(RejectedError.exit_code)


def _thresholds(pairs: tuple[str, ...], option: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for pair in pairs:
        metric, sep, value = pair.partition("=")
        try:
            out[metric] = float(value)
        except ValueError:
            sep = ""
        if not sep or not metric:
            raise UsageError(f"{option} {pair!r}: expected METRIC=NUMBER, e.g. accuracy=0.9")
    return out


@click.group()
def attest() -> None:
    """Run checks off-ledger and record their signed results."""


@click.command("quality")
@ledger_option
@click.argument("dataset", metavar="NAME@VERSION")
@click.option(
    "--data",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The dataset file (verified against the registered version first).",
)
@click.option("--schema", help='Expected column types, JSON: {"age": "int", ...}.')
@click.option(
    "--max-null",
    type=float,
    default=0.0,
    show_default=True,
    help="Largest fraction of nulls allowed in any column.",
)
@click.option(
    "--range",
    "ranges",
    multiple=True,
    metavar="COLUMN=MIN:MAX",
    help="Inclusive range of a numeric column (repeatable; MIN or MAX may be empty).",
)
@click.option("--allow-duplicates", is_flag=True)
@_AS
@json_option
def attest_quality(
    ledger_dir: Path,
    dataset: str,
    data: Path,
    schema: str | None,
    max_null: float,
    ranges: tuple[str, ...],
    allow_duplicates: bool,
    as_name: str | None,
    as_json: bool,
) -> None:
    """Check a dataset version's quality and submit the result as a validator."""
    from ..artifacts.hashing import verify_path
    from ..checks.quality import run_quality_checks

    name, version = name_version(dataset)
    bounds: dict[str, tuple[float | None, float | None]] = {}
    for spec in ranges:
        col, _, span = spec.partition("=")
        lo, _, hi = span.partition(":")
        bounds[col] = (float(lo) if lo else None, float(hi) if hi else None)
    with open_ledger(ledger_dir) as led:
        verify_path(data, led.datasets.manifest_of(led.datasets.get(name, version).record))
        result = run_quality_checks(
            data,
            schema=json.loads(schema) if schema else None,
            max_null_fraction=max_null,
            ranges=bounds or None,
            allow_duplicates=allow_duplicates,
        )
        ack = led.datasets.attest(name, version, result, signer=signer_for(as_name, led))
    failed = [c["name"] for c in result["checks"] if not c["passed"]]
    if not result["passed"] and not failed:
        failed = ["the checks"]
    _attested(ack, as_json, f"attested {dataset}: {'passed' if not failed else 'FAILED'}", failed)


@click.command("eval")
@ledger_option
@click.argument("model", metavar="NAME@VERSION")
@click.option(
    "--model-path",
    type=click.Path(path_type=Path),
    required=True,
    help="The model file or folder (verified against the registered version before loading).",
)
@click.option("--dataset", "dataset", metavar="NAME@VERSION", required=True)
@click.option("--data", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--target", required=True, help="The label column.")
@click.option(
    "--metric",
    "metrics",
    multiple=True,
    help="A built-in metric (repeatable; default accuracy). Not with --entry.",
)
@click.option(
    "--entry",
    metavar="MODULE:FUNCTION",
    help="Evaluate with your function, called as FUNCTION(model_path, data_path, "
    "target=TARGET) and returning {metric: number}; needed for torch and safetensors models.",
)
@click.option(
    "--min",
    "minimums",
    multiple=True,
    metavar="METRIC=NUMBER",
    help="Fail (exit 8, after recording) unless METRIC is at least NUMBER (repeatable).",
)
@click.option(
    "--max",
    "maximums",
    multiple=True,
    metavar="METRIC=NUMBER",
    help="Fail (exit 8, after recording) unless METRIC is at most NUMBER (repeatable).",
)
@_AS
@json_option
def attest_eval(
    ledger_dir: Path,
    model: str,
    model_path: Path,
    dataset: str,
    data: Path,
    target: str,
    metrics: tuple[str, ...],
    entry: str | None,
    minimums: tuple[str, ...],
    maximums: tuple[str, ...],
    as_name: str | None,
    as_json: bool,
) -> None:
    """Evaluate a model version on a registered dataset version and submit the metrics
    as an evaluator: a scikit-learn model (a joblib or pickle file, or a folder holding
    one) with the built-in metrics, or any model with your --entry function. With
    --min/--max, the metrics are recorded whatever they are, and the command exits 8 if
    one misses its bound."""
    from ..artifacts.hashing import verify_path
    from ..checks.evaluation import (
        evaluate_entry,
        evaluate_sklearn,
        load_entry_point,
        model_file_in,
    )

    name, version = name_version(model)
    ds_name, ds_version = name_version(dataset)
    lows, highs = _thresholds(minimums, "--min"), _thresholds(maximums, "--max")
    if entry is not None:
        if metrics:
            raise UsageError(
                "--metric chooses built-in metrics; an --entry function returns its own"
            )
        load_entry_point(entry)  # a bad entry point fails before anything is hashed
    else:
        metrics = metrics or ("accuracy",)
        unknown = sorted((set(lows) | set(highs)) - set(metrics))
        if unknown:
            raise UsageError(f"--min/--max name {', '.join(unknown)}: evaluate it with --metric")
    with open_ledger(ledger_dir) as led:
        loaded = model_path
        if entry is None:  # decide what to load from the registered paths before hashing
            files = [f.path for f in led.models.manifest(name, version).files]
            loaded = model_file_in(model_path, files)
        # Loading a model runs code: only ever load the registered bytes.
        led.models.verify(model_path, name, version)
        verify_path(data, led.datasets.manifest_of(led.datasets.get(ds_name, ds_version).record))
        if entry is not None:
            result = evaluate_entry(entry, model_path, data, target=target)
            missing = sorted((set(lows) | set(highs)) - set(result["metrics"]))
            if missing:
                raise UsageError(
                    f"--min/--max name {', '.join(missing)}, which {entry} did not return "
                    f"(it returned {', '.join(result['metrics'])}); nothing was recorded"
                )
        else:
            result = evaluate_sklearn(loaded, data, target=target, metrics=metrics)
        ack = led.models.evaluate(
            name,
            version,
            dataset=(ds_name, ds_version),
            metrics=result["metrics"],
            tool=result["tool"],
            signer=signer_for(as_name, led),
        )
    got = result["metrics"]
    failed = [
        f"{m} {got.get(m)} < {lo}" for m, lo in lows.items() if not _at_least(got.get(m), lo)
    ] + [f"{m} {got.get(m)} > {hi}" for m, hi in highs.items() if not _at_least(hi, got.get(m))]
    _attested(ack, as_json, f"evaluated {model}: {json.dumps(got)}", failed)


def _at_least(value: object, bound: object) -> bool:
    """``value >= bound``, false where either is missing (a metric that is None)."""
    if not isinstance(value, int | float) or not isinstance(bound, int | float):
        return False
    return value >= bound


def _decision_options(f: Any) -> Any:
    """The arguments and options ``approve`` and ``reject`` share."""
    for option in reversed(
        [
            ledger_option,
            click.argument("model", metavar="NAME@VERSION"),
            click.option("--env", required=True, help="The environment, e.g. production."),
            click.option("--role", required=True, help="Your approval role, e.g. risk."),
            click.option("--comment", default=""),
            _AS,
            json_option,
        ]
    ):
        f = option(f)
    return f


def _decide(
    verb: str,
    ledger_dir: Path,
    model: str,
    env: str,
    role: str,
    comment: str,
    as_name: str | None,
    as_json: bool,
) -> None:
    name, version = name_version(model)
    with open_ledger(ledger_dir) as led:
        fn = led.deployments.approve if verb == "approve" else led.deployments.reject
        led.deployments.require(name, version)  # a typo fails before any key is opened
        ack = fn(name, version, env, role=role, comment=comment, signer=signer_for(as_name, led))
    done = "approved" if verb == "approve" else "rejected"
    _ack_out(ack, as_json, f"{done} {model} for {env} as {role}")


@click.command("approve")
@_decision_options
def approve(
    ledger_dir: Path,
    model: str,
    env: str,
    role: str,
    comment: str,
    as_name: str | None,
    as_json: bool,
) -> None:
    """Approve a model version for an environment."""
    _decide("approve", ledger_dir, model, env, role, comment, as_name, as_json)


@click.command("reject")
@_decision_options
def reject(
    ledger_dir: Path,
    model: str,
    env: str,
    role: str,
    comment: str,
    as_name: str | None,
    as_json: bool,
) -> None:
    """Reject a model version for an environment."""
    _decide("reject", ledger_dir, model, env, role, comment, as_name, as_json)


@click.command("deploy")
@ledger_option
@click.argument("model", metavar="NAME@VERSION")
@click.option("--env", required=True)
@click.option("--rollback-rule", help='CEL over metrics, e.g. "metrics.error_rate > 0.05".')
@_AS
@json_option
def deploy(
    ledger_dir: Path,
    model: str,
    env: str,
    rollback_rule: str | None,
    as_name: str | None,
    as_json: bool,
) -> None:
    """Point ENV at a model version (the environment's policy decides)."""
    name, version = name_version(model)
    with open_ledger(ledger_dir) as led:
        led.deployments.require(name, version)  # a typo fails before any key is opened
        ack = led.deployments.deploy(
            name, version, env, rollback_rule=rollback_rule, signer=signer_for(as_name, led)
        )
    _ack_out(ack, as_json, f"deployed {model} to {env}")


@click.command("rollback")
@ledger_option
@click.argument("model")
@click.option("--env", required=True)
@click.option("--reason", default="")
@_AS
@json_option
def rollback(
    ledger_dir: Path, model: str, env: str, reason: str, as_name: str | None, as_json: bool
) -> None:
    """Return ENV to the previous version that was neither revoked nor rolled back from."""
    with open_ledger(ledger_dir) as led:
        led.deployments.require(model, deployed_to=env)  # before any key is opened
        ack = led.deployments.rollback(model, env, reason=reason, signer=signer_for(as_name, led))
        now = led.deployments.current(model, env)
    _ack_out(ack, as_json, f"{env} now runs {model}@{now['version'] if now else '-'}")


@click.command("revoke")
@ledger_option
@click.argument("model", metavar="NAME@VERSION")
@click.option("--reason", required=True)
@_AS
@json_option
def revoke(ledger_dir: Path, model: str, reason: str, as_name: str | None, as_json: bool) -> None:
    """Withdraw a version everywhere it is deployed and forbid redeploying it."""
    name, version = name_version(model)
    with open_ledger(ledger_dir) as led:
        led.deployments.require(name, version)  # a typo fails before any key is opened
        ack = led.deployments.revoke(name, version, reason=reason, signer=signer_for(as_name, led))
    _ack_out(ack, as_json, f"revoked {model}")


@click.group()
def monitor() -> None:
    """Production figures from monitors."""


@click.command("report")
@ledger_option
@click.argument("model")
@click.option("--env", required=True)
@click.option("--metric", "metrics", multiple=True, required=True, metavar="KEY=VALUE")
@_AS
@json_option
def monitor_report(
    ledger_dir: Path,
    model: str,
    env: str,
    metrics: tuple[str, ...],
    as_name: str | None,
    as_json: bool,
) -> None:
    """Report production metrics; a breached rollback rule rolls ENV back."""
    values: dict[str, Any] = {}
    for pair in metrics:
        key, sep, value = pair.partition("=")
        if not sep:
            raise UsageError(f"--metric {pair!r}: expected KEY=VALUE")
        values[key] = json.loads(value) if value else None
    with open_ledger(ledger_dir) as led:
        ack = led.deployments.report(model, env, values, signer=signer_for(as_name, led))
        now = led.deployments.current(model, env)
    _ack_out(ack, as_json, f"reported; {env} runs {model}@{now['version'] if now else '-'}")


@click.command("history")
@ledger_option
@click.argument("model")
@click.option("--env", help="One environment (default: all).")
@click.option("--at", "at", help="Only changes up to this time (ISO 8601 or ms).")
@json_option
def history(ledger_dir: Path, model: str, env: str | None, at: str | None, as_json: bool) -> None:
    """Which version served each environment, and every change with who, when
    and under which approvals."""
    with open_ledger(ledger_dir, readonly=True) as led:
        led.models.info(model)  # an unknown name is exit 3, not an empty history
        events = led.deployments.history(model, env, parse_time(at) if at else None)
    if as_json:
        emit_json(events)
        return
    for e in events:
        approvals = ", ".join(f"{a['by']} ({a['role']})" for a in e["approvals"]) or "-"
        click.echo(
            f"{iso_time(e['time'])}  {e['env']:<12} {e['action']:<8} "
            f"{e['from'] or '-'} -> {e['to'] or '-'}  by {e['by']} "
            f"(entry {e['index']})  approvals: {approvals}"
            + (f"  reason: {e['reason']}" if e["reason"] else "")
        )


@click.group("audit")
def audit_group() -> None:
    """Audit views of the log."""


@click.command("denied")
@ledger_option
@click.option(
    "--exclude",
    "exclude",
    multiple=True,
    metavar="TYPE",
    help="Leave out a transaction type, or every type under a prefix ending in a dot "
    "(inference.); repeat for more, at most 20.",
)
@json_option
def audit_denied(ledger_dir: Path, exclude: tuple[str, ...], as_json: bool) -> None:
    """Every action a known member tried that a contract or policy denied."""
    with open_ledger(ledger_dir, readonly=True) as led:
        found = led.denied(exclude=exclude)
    if as_json:
        emit_json(found)
        return
    for d in found:
        click.echo(
            f"{d['index']}\t{iso_time(d['time'])}\t{d['actor']}\t{d['type']}\t"
            f"{d['code']}: {d['reason']}"
        )


@click.command("trail")
@ledger_option
@click.option("--actor", help="Entries by this member.")
@click.option("--org", help="Entries by members of this organisation.")
@click.option("--type", "type_", metavar="TYPE", help="A type, or a prefix ending in a dot.")
@click.option("--outcome", type=click.Choice(["accepted", "rejected"]))
@click.option("--since", help="From this time (ISO 8601 or ms), inclusive.")
@click.option("--until", help="Up to this time (ISO 8601 or ms), inclusive.")
@click.option("--before", type=click.IntRange(0), help="Entries below this index (paging).")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option(
    "--exclude",
    "exclude",
    multiple=True,
    metavar="TYPE",
    help="Leave out a transaction type, or every type under a prefix ending in a dot "
    "(inference.); repeat for more, at most 20.",
)
@json_option
def audit_trail(
    ledger_dir: Path,
    actor: str | None,
    org: str | None,
    type_: str | None,
    outcome: str | None,
    since: str | None,
    until: str | None,
    before: int | None,
    limit: int,
    exclude: tuple[str, ...],
    as_json: bool,
) -> None:
    """The audit trail, newest first, with the dashboard's and /v1/audit's
    filters; where older entries remain, says the --before that pages on."""
    from ..ledger.trail import TrailFilter, exclusions, trail

    f = TrailFilter(
        actor=actor,
        org=org,
        type=type_,
        outcome=outcome,
        since=parse_time(since) if since else None,
        until=parse_time(until) if until else None,
        before=before,
        limit=limit,
        exclude=exclusions(exclude),
    )
    with open_ledger(ledger_dir, readonly=True) as led:
        page = trail(led, f)
    if as_json:
        emit_json({"entries": page.entries, "next_before": page.next_before})
        return
    for e in page.entries:
        o = e["outcome"]
        result = o["result"] if o["result"] == "accepted" else f"rejected {o.get('code')}"
        click.echo(f"{e['index']}\t{iso_time(e['time'])}\t{e['type']}\t{e['actor']}\t{result}")
    if page.next_before is not None:
        click.echo(f"older entries: --before {page.next_before}", err=True)


@click.group()
def guard() -> None:
    """Keep deployed model files honest."""


@click.command("watch")
@ledger_option
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--model", "model_name", required=True)
@click.option("--env", required=True)
@click.option("--interval", type=float, default=60.0, show_default=True, help="Seconds.")
@click.option("--rounds", type=int, help="Stop after this many checks (default: never).")
@_AS
def guard_watch(
    ledger_dir: Path,
    path: Path,
    model_name: str,
    env: str,
    interval: float,
    rounds: int | None,
    as_name: str | None,
) -> None:
    """Re-verify PATH against the version deployed to ENV every INTERVAL and file a
    monitor report when the files drift (or stop drifting), so policies can react."""
    from ..guard import watch

    def show(result: dict[str, Any]) -> None:
        state = "ok" if result["ok"] else "DRIFT " + ", ".join(result["differences"][:5])
        note = "  (reported)" if "reported" in result else ""
        click.echo(f"round {result['round']}: {state}{note}")

    with open_ledger(ledger_dir) as led:
        watch(
            led,
            path,
            model_name,
            env,
            interval,
            rounds,
            signer_for(as_name, led),
            on_round=show,
        )


@click.group()
def receipt() -> None:
    """Verify, reveal and check inference receipts, offline."""


@click.command("verify")
@click.argument("receipt_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--vkey", required=True, help=VKEY_HELP)
@click.option(
    "--checkpoint",
    "cp_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A checkpoint you trust; the receipt must be for that tree.",
)
def receipt_verify(receipt_file: Path, vkey: str, cp_file: Path | None) -> None:
    """Check one receipt offline: record in batch, batch in log, checkpoint signed."""
    from ..receipts import verify_inference_receipt

    record = verify_inference_receipt(
        receipt_file.read_bytes(), trust_from(vkey), cp_file.read_bytes() if cp_file else None
    )
    click.echo(json.dumps(record, sort_keys=True))


@click.command("reveal")
@click.argument("receipt_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--input", "input_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--output", "output_file", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
def receipt_reveal(receipt_file: Path, input_file: Path | None, output_file: Path | None) -> None:
    """Produce what an auditor needs to check one decision's input and output
    (the raw bytes given here are revealed; no other record is)."""
    from ..receipts import reveal

    out = reveal(
        receipt_file.read_bytes(),
        input_file.read_bytes() if input_file else None,
        output_file.read_bytes() if output_file else None,
    )
    click.echo(json.dumps(out, sort_keys=True))


def _revealed_text(value: Any) -> str:
    """A revealed value as a line of text: a string or JSON as it is, bytes and
    arrays by their size (they are not for a terminal)."""
    if isinstance(value, bytes):
        return f"{len(value)} bytes"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dict) and isinstance(value.get("data"), bytes):
        return f"{value['dtype']} array, shape {value['shape']}"
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _revealed_json(value: Any) -> Any:
    """A revealed value in JSON: bytes (alone or as an array's data) as base64."""
    from ..core.b64 import b64

    if isinstance(value, bytes):
        return {"bytes": b64(value)}
    if isinstance(value, dict) and isinstance(value.get("data"), bytes):
        return {"dtype": value["dtype"], "shape": value["shape"], "data": b64(value["data"])}
    if isinstance(value, str):
        return {"str": value}
    return {"json": value}


@click.command("check")
@click.argument("reveal_file", type=click.File("rb"))
@click.option("--vkey", required=True, help=VKEY_HELP)
@click.option(
    "--checkpoint",
    "cp_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A checkpoint you trust; the receipt must be for that tree.",
)
@json_option
def receipt_check(reveal_file: Any, vkey: str, cp_file: Path | None, as_json: bool) -> None:
    """Check what `receipt reveal` printed (REVEAL_FILE, or - for stdin),
    offline: the receipt as `receipt verify` does, then each revealed input or
    output against the record's salted hash. Exit 0, or non-zero with the reason."""
    from ..receipts import verify_reveal

    revealed = canonical.loads(reveal_file.read())
    if isinstance(revealed, dict) and "receipt" not in revealed and "record" in revealed:
        raise MalformedError(
            "this is a receipt, not a reveal: check it with `modelchain receipt verify`, "
            "or reveal values first with `modelchain receipt reveal`"
        )
    checked = verify_reveal(revealed, trust_from(vkey), cp_file.read_bytes() if cp_file else None)
    record = checked["record"]
    shown = [name for name in ("input", "output") if name in checked]
    if as_json:
        emit_json(
            {
                "ok": True,
                "record": record,
                "revealed": {name: _revealed_json(checked[name]) for name in shown},
            }
        )
        return
    request = f", request {record['request_id']}" if record.get("request_id") else ""
    click.echo(
        f"ok: a decision of {record.get('model')} version {record.get('version')}{request} "
        f"at {iso_time(int(record['time_ms']))}, in the log under a trusted checkpoint"
    )
    for name in ("input", "output"):
        if name in checked:
            click.echo(f"{name + ':':<8}{_revealed_text(checked[name])} (matches {name}_hash)")
        else:
            click.echo(f"{name + ':':<8}not revealed")


attest.add_command(attest_quality)
attest.add_command(attest_eval)
monitor.add_command(monitor_report)
audit_group.add_command(audit_denied)
audit_group.add_command(audit_trail)
guard.add_command(guard_watch)
receipt.add_command(receipt_verify)
receipt.add_command(receipt_reveal)
receipt.add_command(receipt_check)
