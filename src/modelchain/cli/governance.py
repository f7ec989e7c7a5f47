"""CLI commands of governance: members, policies, the role map, contract-set
versions, ledger-wide settings (``governance validity|approval-ttl|replication``),
and the offline multi-signature flow (``tx draft``, ``tx sign``, ``tx submit``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ..contracts import types as tx_types
from ..contracts.genesis import BUILTIN_ROLES
from ..contracts.members import ANY_MEMBER
from ..core import canonical
from ..core.dsse import Envelope
from ..core.times import human_duration, iso_time, parse_duration, parse_time, rfc3339
from ..core.tx import PAYLOAD_TYPE, Transaction
from ..errors import MalformedError, NotFoundError, UsageError
from ..ledger.ledger import Ledger
from .common import (
    emit_json,
    json_option,
    keystore,
    ledger_option,
    member_key,
    offline_signer,
    open_ledger,
    signer_for,
)

__all__ = [
    "checkpoint_policy",
    "contracts",
    "governance_settings",
    "member",
    "permissions",
    "policy",
    "roles",
    "tx",
]

F = TypeVar("F", bound=Callable[..., Any])

_VALID_FOR_HELP = (
    "Keep the draft valid this long from now (3d, 36h), for co-signing that takes "
    "days; at most what the ledger allows (`modelchain governance validity`)."
)
_EXPIRES_HELP = "Like --valid-for, until TIME (ISO 8601, UTC unless it says otherwise)."

_AS = click.option("--as", "as_name", help="Identity that signs (default $MODELCHAIN_IDENTITY).")


def _write_envelope(path: Path, env: Envelope) -> None:
    path.write_bytes(canonical.dumps(env.to_json()) + b"\n")


def _read_envelope(path: Path) -> Envelope:
    """The draft envelope in ``path``: refused unless it parses as a DSSE
    envelope around a modelchain transaction (so nothing else is ever signed)."""
    try:
        env = Envelope.from_json(canonical.loads(path.read_bytes()), allow_unsigned=True)
    except MalformedError as exc:
        raise MalformedError(
            f"{path} is not a transaction draft (from `modelchain tx draft` or --draft): {exc}"
        ) from exc
    if env.payload_type != PAYLOAD_TYPE:
        raise UsageError(f"{path} is not a modelchain transaction")
    _transaction(env, path)
    return env


def _transaction(env: Envelope, path: Path | None = None) -> Transaction:
    try:
        return Transaction.from_json(canonical.loads_canonical(env.payload))
    except MalformedError as exc:
        where = f"{path} " if path is not None else ""
        raise MalformedError(f"{where}does not hold a modelchain transaction: {exc}") from exc


def _describe(env: Envelope) -> str:
    tx = _transaction(env)
    count = len(env.signatures)
    window = tx.window
    until = "" if window is None else f", valid until {rfc3339(window[1])}"
    return (
        f"{tx.type} by {tx.actor} for ledger {tx.ledger}, drafted {iso_time(tx.time)} "
        f"({count} signature{'' if count == 1 else 's'}{until})"
    )


def _window(led: Ledger, valid_for: str | None, expires: str | None) -> int | None:
    """The validity window ``--valid-for`` or ``--expires`` asks for, in ms from now."""
    if valid_for is not None and expires is not None:
        raise UsageError("give --valid-for or --expires, not both")
    if expires is None:
        return None if valid_for is None else parse_duration(valid_for)
    span = parse_time(expires) - led.clock()
    if span < 0:
        raise UsageError(f"--expires {expires} is in the past")
    return span


def _submit_or_draft(
    led: Ledger,
    type_: str,
    body: dict[str, Any],
    as_name: str | None,
    draft: Path | None,
    as_json: bool,
    valid_for: str | None = None,
    expires: str | None = None,
) -> None:
    # A draft only reads state (the origin, the clock, the contracts' checks):
    # the caller opened the ledger read-only, so it takes no write lock.
    if draft is None and (valid_for is not None or expires is not None):
        raise UsageError(
            "--valid-for and --expires keep a draft open for co-signing: they go with --draft FILE"
        )
    span = _window(led, valid_for, expires)
    signer = signer_for(as_name, led)
    env = led.members.draft(type_, body, signer.name, valid_for=span).with_signature(signer)
    if draft is not None:
        _write_envelope(draft, env)
        click.echo(
            f"wrote {draft}: {_describe(env)}; co-sign with `modelchain tx sign {draft} --as YOU`"
        )
        return
    ack = led.members.submit(env)
    if as_json:
        emit_json({"index": ack.index, **ack.outcome.to_json()})
    else:
        click.echo(f"{ack.index}\taccepted")


@click.group()
def tx() -> None:
    """Draft, co-sign and submit transactions offline (multi-signature approvals)."""


@click.command("draft")
@ledger_option
@click.argument("tx_type", metavar="TYPE")
@click.option("--body", required=True, help="The transaction body, JSON.")
@click.option("--actor", required=True, help="The member the transaction is from.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--valid-for", metavar="DURATION", help=_VALID_FOR_HELP)
@click.option("--expires", metavar="TIME", help=_EXPIRES_HELP)
def tx_draft(
    ledger_dir: Path,
    tx_type: str,
    body: str,
    actor: str,
    output: Path,
    valid_for: str | None,
    expires: str | None,
) -> None:
    """Write an unsigned transaction for members to sign in turn. Without
    --valid-for or --expires it must be submitted within the clock skew
    (five minutes) of now."""
    value = canonical.loads(body)
    if not isinstance(value, dict):
        raise UsageError("--body must be a JSON object")
    with open_ledger(ledger_dir, readonly=True) as led:
        span = _window(led, valid_for, expires)
        env = led.members.draft(tx_type, value, actor, valid_for=span)
    _write_envelope(output, env)
    click.echo(f"wrote {output}: {_describe(env)}")


@click.command("sign")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_AS
@click.option(
    "--ledger",
    "_ledger",
    hidden=True,
    expose_value=False,
    help="Accepted for older scripts and ignored: signing reads no ledger.",
)
def tx_sign(file: Path, as_name: str | None) -> None:
    """Add your signature to a drafted transaction (the key never leaves you).

    Needs only your own key: no ledger directory, no server. Say who signs with
    --as or $MODELCHAIN_IDENTITY; what the draft is, and for which ledger, is
    printed with the result."""
    env = _read_envelope(file)
    signer = offline_signer(as_name)
    signed = env.with_signature(signer)
    mine = signed.signatures[-1].keyid
    if any(s.keyid == mine for s in env.signatures):
        click.echo(f"{file} is already signed by {signer.name}; nothing written: {_describe(env)}")
        return
    _write_envelope(file, signed)
    click.echo(f"signed {file} as {signer.name}: {_describe(signed)}")


@click.command("submit")
@ledger_option
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@json_option
def tx_submit(ledger_dir: Path, file: Path, as_json: bool) -> None:
    """Submit a signed transaction."""
    env = _read_envelope(file)
    with open_ledger(ledger_dir) as led:
        ack = led.members.submit(env)
    if as_json:
        emit_json({"index": ack.index, **ack.outcome.to_json()})
    else:
        click.echo(f"{ack.index}\taccepted")


@click.group()
def member() -> None:
    """Members, their roles and keys (changes need a quorum of admins)."""


def _draft_options(f: F) -> F:
    """``--draft FILE``, and the validity window the draft carries."""
    f = click.option(
        "--expires",
        metavar="TIME",
        help="With --draft: like --valid-for, until TIME (ISO 8601, UTC unless it says otherwise).",
    )(f)
    f = click.option("--valid-for", metavar="DURATION", help=f"With --draft: {_VALID_FOR_HELP}")(f)
    return click.option(
        "--draft",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Write the signed draft here for other admins to co-sign, instead of submitting.",
    )(f)


@click.command("add")
@ledger_option
@click.argument("key")
@click.option("--role", "roles", multiple=True, required=True, help="A role (repeatable).")
@click.option("--org", default="", help="The member's organisation.")
@_draft_options
@_AS
@json_option
def member_add(
    ledger_dir: Path,
    key: str,
    roles: tuple[str, ...],
    org: str,
    draft: Path | None,
    valid_for: str | None,
    expires: str | None,
    as_name: str | None,
    as_json: bool,
) -> None:
    """Add a member: KEY is a verifier key, or the name of a local identity."""
    vk = member_key(key, keystore())
    body = {"member": {"name": vk.name, "org": org, "roles": list(roles), "keys": [vk.to_string()]}}
    with open_ledger(ledger_dir, readonly=draft is not None) as led:
        _submit_or_draft(
            led, tx_types.MEMBER_ADD, body, as_name, draft, as_json, valid_for, expires
        )


@click.command("revoke")
@ledger_option
@click.argument("name")
@click.option("--reason", required=True)
@_draft_options
@_AS
@json_option
def member_revoke(
    ledger_dir: Path,
    name: str,
    reason: str,
    draft: Path | None,
    valid_for: str | None,
    expires: str | None,
    as_name: str | None,
    as_json: bool,
) -> None:
    """Revoke a member: its keys sign nothing from now on."""
    with open_ledger(ledger_dir, readonly=draft is not None) as led:
        _submit_or_draft(
            led,
            tx_types.MEMBER_REVOKE,
            {"name": name, "reason": reason},
            as_name,
            draft,
            as_json,
            valid_for,
            expires,
        )


@click.command("list")
@ledger_option
@json_option
def member_list(ledger_dir: Path, as_json: bool) -> None:
    """List members with their organisation, roles and status."""
    with open_ledger(ledger_dir, readonly=True) as led:
        found = led.members.list()
        q = led.members.quorum
    if as_json:
        emit_json({"quorum": q, "members": found})
        return
    for m in found:
        click.echo(f"{m['name']}\t{m['org']}\t{','.join(m['roles'])}\t{m['status']}")
    click.echo(f"admin quorum: {q}")


@click.command("show")
@ledger_option
@click.argument("name")
@json_option
def member_show(ledger_dir: Path, name: str, as_json: bool) -> None:
    """Show one member."""
    with open_ledger(ledger_dir, readonly=True) as led:
        m = led.members.get(name)
    if as_json:
        emit_json(m)
        return
    click.echo(f"name:    {m['name']}\norg:     {m['org']}\nroles:   {', '.join(m['roles'])}")
    click.echo(f"status:  {m['status']}" + (f" ({m['reason']})" if m.get("reason") else ""))
    for k in m["keys"]:
        click.echo(f"key:     {k}")


@click.group()
def policy() -> None:
    """CEL policies attached to actions (changes need a quorum of admins)."""


@click.command("show")
@ledger_option
@click.argument("action", required=False)
@json_option
def policy_show(ledger_dir: Path, action: str | None, as_json: bool) -> None:
    """Show the policy of ACTION, or every policy."""
    with open_ledger(ledger_dir, readonly=True) as led:
        if action is None:
            found = led.policies.list()
        else:
            one = led.policies.get(action)
            if one is None:
                raise NotFoundError(f"no policy is attached to {action}")
            found = [one]
    if as_json:
        emit_json(found if action is None else found[0])
        return
    for p in found:
        click.echo(
            f"{p['action']}  v{p['version']}  (entry {p['set_at']}, "
            f"by {', '.join(p['by'])})\n    {p['rule']}"
        )
        if p["description"]:
            click.echo(f"    # {p['description']}")


@click.command("set")
@ledger_option
@click.argument("action")
@click.argument("rule")
@click.option("--description", default="", help="Why the rule exists.")
@_draft_options
@_AS
@json_option
def policy_set(
    ledger_dir: Path,
    action: str,
    rule: str,
    description: str,
    draft: Path | None,
    valid_for: str | None,
    expires: str | None,
    as_name: str | None,
    as_json: bool,
) -> None:
    """Attach CEL RULE to ACTION (a transaction type, optionally :env); RULE
    "null" removes it. With a quorum above 1, use --draft and `tx sign`."""
    body = {
        "action": action,
        "rule": None if rule == "null" else rule,
        "description": description,
    }
    with open_ledger(ledger_dir, readonly=draft is not None) as led:
        _submit_or_draft(
            led, tx_types.POLICY_SET, body, as_name, draft, as_json, valid_for, expires
        )


@click.command("test")
@ledger_option
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@json_option
def policy_test(ledger_dir: Path, file: Path, as_json: bool) -> None:
    """Evaluate the policy a drafted transaction (from `tx draft`) would meet,
    without submitting it. Exits 1 if it would be denied."""
    env = _read_envelope(file)
    with open_ledger(ledger_dir, readonly=True) as led:
        decision = led.policies.test(env)
    if as_json:
        emit_json(
            {
                "action": decision.action,
                "allowed": decision.allowed,
                "rule": decision.rule,
                "version": decision.version,
                "reason": decision.reason,
                "clause": decision.clause,
            }
        )
    else:
        clause = f"; the clause that failed: {decision.clause}" if decision.clause else ""
        click.echo(
            f"{'allow' if decision.allowed else 'deny'}: {decision.action}: "
            f"{decision.reason}{clause}"
        )
    if not decision.allowed:
        raise SystemExit(1)


@click.group()
def permissions() -> None:
    """The role map: which roles may submit each transaction type (changes need a
    quorum of admins)."""


@click.command("list")
@ledger_option
@json_option
def permissions_list(ledger_dir: Path, as_json: bool) -> None:
    """List each transaction type with the roles that may submit it."""
    with open_ledger(ledger_dir, readonly=True) as led:
        found = led.members.permissions
    if as_json:
        emit_json(found)
        return
    for type_, allowed in sorted(found.items()):
        click.echo(f"{type_}\t{','.join(allowed) or '(nobody)'}")
    click.echo(
        f"{ANY_MEMBER} is any member; governance types are not in the map "
        "(a quorum of admins authorizes them)"
    )


@click.command("set")
@ledger_option
@click.argument("tx_type", metavar="TYPE")
@click.argument("roles_", metavar="[ROLE]...", nargs=-1)
@click.option("--none", "deny", is_flag=True, help="No roles: deny TYPE to every member.")
@_draft_options
@_AS
@json_option
def permissions_set(
    ledger_dir: Path,
    tx_type: str,
    roles_: tuple[str, ...],
    deny: bool,
    draft: Path | None,
    valid_for: str | None,
    expires: str | None,
    as_name: str | None,
    as_json: bool,
) -> None:
    """Let members holding any ROLE submit TYPE from the next entry on ("*" is
    any member); --none denies TYPE to everyone. With a quorum above 1, use
    --draft and `tx sign`."""
    if deny and roles_:
        raise UsageError("give roles or --none (deny it to everyone), not both")
    if not deny and not roles_:
        raise UsageError(
            f"name the roles that may submit {tx_type}, or --none to deny it to everyone"
        )
    body = {"type": tx_type, "roles": list(roles_)}
    with open_ledger(ledger_dir, readonly=draft is not None) as led:
        _submit_or_draft(
            led, tx_types.PERMISSIONS_SET, body, as_name, draft, as_json, valid_for, expires
        )


@click.group()
def contracts() -> None:
    """Contract-set versions: the rules each entry runs under (changes need a
    quorum of admins)."""


@click.command("status")
@ledger_option
@json_option
def contracts_status(ledger_dir: Path, as_json: bool) -> None:
    """Show the active contract-set version, the recorded schedule and the
    versions this modelchain knows."""
    with open_ledger(ledger_dir, readonly=True) as led:
        active = led.members.contract_version
        steps = led.members.contract_versions()
        known = sorted(led.contracts.versions)
        size = led.size
    if as_json:
        emit_json({"active": active, "size": size, "schedule": steps, "known": known})
        return
    click.echo(f"active:   version {active} (entry {size} on)")
    if not steps:
        click.echo("schedule: none recorded (a ledger made before versions runs version 1)")
    for i, s in enumerate(steps):
        click.echo(
            f"{'schedule:' if i == 0 else '':10}version {s['version']} from entry {s['from']} "
            f"(set at entry {s['set_at']} by {', '.join(s['by'])})"
            + ("  pending" if s["from"] >= size else "")
        )
    click.echo(f"known:    {', '.join(str(v) for v in known)}")
    for s in steps:
        if s["version"] not in known:
            click.echo(
                f"warning: this modelchain does not know version {s['version']}: "
                f"it stops at entry {s['from']}; upgrade it",
                err=True,
            )


@click.command("activate")
@ledger_option
@click.argument("version", type=int)
@click.option(
    "--at",
    "at",
    type=click.IntRange(min=0),
    required=True,
    metavar="INDEX",
    help="The first entry to run under VERSION (after this activation's own).",
)
@_draft_options
@_AS
@json_option
def contracts_activate(
    ledger_dir: Path,
    version: int,
    at: int,
    draft: Path | None,
    valid_for: str | None,
    expires: str | None,
    as_name: str | None,
    as_json: bool,
) -> None:
    """Run entries from INDEX on under contract-set VERSION; naming the active
    version withdraws a pending activation. With a quorum above 1, use --draft
    and `tx sign`."""
    with open_ledger(ledger_dir, readonly=draft is not None) as led:
        known = led.contracts.versions
        if version not in known:
            raise UsageError(
                f"this modelchain does not know contract-set version {version} (it knows "
                f"{', '.join(str(v) for v in sorted(known))}): activating it would stop "
                f"this node at entry {at}"
            )
        if at <= led.size:
            raise UsageError(
                f"--at {at} is not after the activation: the log has {led.size} entries, "
                f"so name an entry above {led.size}"
            )
        body = {"version": version, "at": at}
        _submit_or_draft(
            led, tx_types.CONTRACTS_ACTIVATE, body, as_name, draft, as_json, valid_for, expires
        )


@click.group("checkpoint-policy")
def checkpoint_policy() -> None:
    """The checkpoint policy: which logs sign checkpoints (a cluster's nodes),
    which cosignatures make one count (the threshold, witnesses). Show it with
    `modelchain log policy`."""


@checkpoint_policy.command("set")
@ledger_option
@click.argument("policy_file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@_draft_options
@_AS
@json_option
def checkpoint_policy_set(
    ledger_dir: Path,
    policy_file: Path,
    draft: Path | None,
    valid_for: str | None,
    expires: str | None,
    as_name: str | None,
    as_json: bool,
) -> None:
    """Replace the checkpoint policy with POLICY_FILE (tlog-policy text): add,
    remove or re-key a node, change the threshold, name witnesses. A quorum of
    admins signs it (with a quorum above 1, use --draft and `tx sign`); clients
    pinned to the old policy need the new file."""
    from ..core.policy import CheckpointPolicy

    text = policy_file.read_text()
    CheckpointPolicy.parse(text)  # a malformed file fails here, before anything is signed
    with open_ledger(ledger_dir, readonly=draft is not None) as led:
        _submit_or_draft(
            led,
            tx_types.CHECKPOINT_POLICY_SET,
            {"policy": text},
            as_name,
            draft,
            as_json,
            valid_for,
            expires,
        )


@click.group("governance")
def governance_settings() -> None:
    """Ledger-wide settings an admin quorum governs."""


def _show_setting(
    ledger_dir: Path,
    draft: Path | None,
    needs: str,
    as_json: bool,
    read: Callable[[Ledger], tuple[dict[str, Any], str]],
) -> None:
    """Print a governance setting: ``read`` gives its JSON and its sentence."""
    if draft is not None:
        raise UsageError(f"--draft needs {needs} to set")
    with open_ledger(ledger_dir, readonly=True) as led:
        data, text = read(led)
    if as_json:
        emit_json(data)
    else:
        click.echo(text)


def _set_setting(
    ledger_dir: Path,
    type_: str,
    body: dict[str, Any],
    require: Callable[[Ledger], None] | None,
    as_name: str | None,
    draft: Path | None,
    as_json: bool,
    valid_for: str | None,
    expires: str | None,
) -> None:
    """Submit (or draft) a governance setting, once ``require`` saw the ledger can."""
    with open_ledger(ledger_dir, readonly=draft is not None) as led:
        if require is not None:
            require(led)
        _submit_or_draft(led, type_, body, as_name, draft, as_json, valid_for, expires)


@governance_settings.command("validity")
@ledger_option
@click.argument("duration", required=False)
@_draft_options
@_AS
@json_option
def governance_validity(
    ledger_dir: Path,
    duration: str | None,
    draft: Path | None,
    valid_for: str | None,
    expires: str | None,
    as_name: str | None,
    as_json: bool,
) -> None:
    """Show the longest validity window a transaction may carry, or set it to
    DURATION (7d, 36h): drafts made with `tx draft --valid-for` may then be
    co-signed over that long. Five minutes until set. A quorum of admins signs
    it (with a quorum above 1, use --draft and `tx sign`)."""
    if duration is None:

        def read(led: Ledger) -> tuple[dict[str, Any], str]:
            limit = led.members.max_validity
            return {"max_ms": limit}, f"validity windows up to {human_duration(limit)}"

        return _show_setting(ledger_dir, draft, "a DURATION", as_json, read)
    body = {"max_ms": parse_duration(duration)}
    _set_setting(
        ledger_dir, tx_types.VALIDITY_SET, body, None, as_name, draft, as_json, valid_for, expires
    )


@governance_settings.command("approval-ttl")
@ledger_option
@click.argument("duration", required=False)
@_draft_options
@_AS
@json_option
def governance_approval_ttl(
    ledger_dir: Path,
    duration: str | None,
    draft: Path | None,
    valid_for: str | None,
    expires: str | None,
    as_name: str | None,
    as_json: bool,
) -> None:
    """Show how long an approval counts, or set it to DURATION (90d, 720h): an
    approval older than that when a version is deployed does not count. 30 days
    until set; contract-set version 5 on (before it approvals never expire). A
    quorum of admins signs it (with a quorum above 1, use --draft and `tx sign`)."""
    if duration is None:

        def read(led: Ledger) -> tuple[dict[str, Any], str]:
            ttl, version = led.members.approval_ttl, led.members.contract_version
            if ttl is None:
                text = f"approvals never expire (contract-set version {version}; they do from 5)"
            else:
                text = f"approvals count for {human_duration(ttl)}"
            return {"ttl_ms": ttl, "contract_version": version}, text

        return _show_setting(ledger_dir, draft, "a DURATION", as_json, read)
    body = {"ttl_ms": parse_duration(duration)}
    _set_setting(
        ledger_dir,
        tx_types.APPROVAL_TTL_SET,
        body,
        lambda led: led.members.require_approval_ttl(),
        as_name,
        draft,
        as_json,
        valid_for,
        expires,
    )


@governance_settings.command("replication")
@ledger_option
@click.argument("copies", type=click.IntRange(min=0), required=False)
@_draft_options
@_AS
@json_option
def governance_replication(
    ledger_dir: Path,
    copies: int | None,
    draft: Path | None,
    valid_for: str | None,
    expires: str | None,
    as_name: str | None,
    as_json: bool,
) -> None:
    """Show the replication factor, or set it to COPIES: a model version is deployed
    only once that many organisations have recorded a verified copy of it
    (`modelchain store sync`, `register --store`); 0 or unset: no requirement.
    Contract-set version 8 on. A quorum of admins signs it (with a quorum above 1,
    use --draft and `tx sign`). `modelchain store status` lists each version's copies."""
    if copies is None:

        def read(led: Ledger) -> tuple[dict[str, Any], str]:
            found, version = led.members.replication, led.members.contract_version
            if found is None:
                text = f"no replication is recorded (contract-set version {version}; it is from 8)"
            elif found == 0:
                text = "no replication factor: a model version is deployed wherever it is held"
            else:
                text = (
                    f"a model version is deployed once {found} organisations hold a verified copy"
                )
            return {"copies": found, "contract_version": version}, text

        return _show_setting(ledger_dir, draft, "COPIES", as_json, read)
    _set_setting(
        ledger_dir,
        tx_types.REPLICATION_SET,
        {"copies": copies},
        lambda led: led.members.require_replication(),
        as_name,
        draft,
        as_json,
        valid_for,
        expires,
    )


@click.command("roles")
def roles() -> None:
    """List the built-in member roles."""
    for r in BUILTIN_ROLES:
        click.echo(r)


tx.add_command(tx_draft)
tx.add_command(tx_sign)
tx.add_command(tx_submit)
member.add_command(member_add)
member.add_command(member_revoke)
member.add_command(member_list)
member.add_command(member_show)
policy.add_command(policy_show)
policy.add_command(policy_set)
policy.add_command(policy_test)
permissions.add_command(permissions_list)
permissions.add_command(permissions_set)
contracts.add_command(contracts_status)
contracts.add_command(contracts_activate)
