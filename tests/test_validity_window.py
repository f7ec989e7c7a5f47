"""Validity windows: a transaction co-signed across organisations over days
carries ``not_before`` and ``expires`` instead of the clock skew, within the
maximum the ledger's governance sets (contract-set version 4)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import ORIGIN, make_signer, run_cli

import modelchain as mc
from modelchain import errors
from modelchain.contracts.genesis import genesis_body
from modelchain.contracts.governance import DEFAULT_MAX_VALIDITY_MS
from modelchain.contracts.types import EVENT, MEMBER_ADD, PERMISSIONS_SET, VALIDITY_SET
from modelchain.contracts.versions import CURRENT_VERSION
from modelchain.core import canonical
from modelchain.core.dsse import Envelope
from modelchain.core.identity import verifier_of
from modelchain.core.tx import LogEntry, Transaction
from modelchain.ledger import ledger as ledger_mod
from modelchain.ledger.ledger import Founder

DAY = 24 * 60 * 60 * 1000
NOW = 1_800_000_000_000
V1_LEDGER = Path(__file__).parent / "data" / "ledger-v1"


class Clock:
    """The node's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> int:
        return self.now


def _make(path: Path, clock: Clock, version: int | None = None) -> mc.Ledger:
    """alice (acme) and dave (bank), both admins, with a quorum of 2; genesis
    names contract-set ``version`` (the current one if None)."""
    made = genesis_body

    def body(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return made(*args, **kwargs, **({} if version is None else {"contracts": version}))

    dave = Founder(verifier_of(make_signer("dave")), "bank", ("admin",))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ledger_mod, "genesis_body", body)
        led = mc.init(path, ORIGIN, make_signer("alice"), org="acme", members=[dave], clock=clock)
    led.members.set_quorum(2, signers=_admins())
    return led


def _admins() -> list[Any]:
    return [make_signer("alice"), make_signer("dave")]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def led(tmp_path: Path, clock: Clock) -> Iterator[mc.Ledger]:
    ledger = _make(tmp_path / "l", clock)
    try:
        yield ledger
    finally:
        ledger.close()


def _member_add(led: mc.Ledger, name: str, valid_for: int | None) -> Envelope:
    key = verifier_of(make_signer(name)).to_string()
    body = {"member": {"name": name, "org": "lab", "roles": ["auditor"], "keys": [key]}}
    return led.members.draft(MEMBER_ADD, body, "alice", valid_for=valid_for).with_signature(
        make_signer("alice")
    )


def _windowed(
    led: mc.Ledger, not_before: int, expires: int, nonce: str = "w" * 32, time: int | None = None
) -> bytes:
    """An event from alice with the window given, made now (or at ``time``),
    signed; no check of the SDK's."""
    body = {"event": "e", "data": {}}
    made = led.clock() if time is None else time
    tx = Transaction(ORIGIN, EVENT, "alice", nonce, made, body, 1, not_before, expires)
    return tx.sign(make_signer("alice")).to_bytes()


def _tx(env: Envelope) -> Transaction:
    return Transaction.from_json(canonical.loads_canonical(env.payload))


# -- the format ------------------------------------------------------------------------


def test_a_transaction_without_a_window_encodes_as_before() -> None:
    tx = Transaction(ORIGIN, EVENT, "alice", "n" * 32, NOW, {"event": "e", "data": {}})
    assert tx.window is None
    assert tx.payload() == (
        b'{"actor":"alice","body":{"data":{},"event":"e"},"ledger":"ledger.example.org/test",'
        b'"nonce":"nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn","time":1800000000000,"type":"event.record",'
        b'"v":1}'
    )


def test_entries_logged_before_windows_decode_and_encode_byte_for_byte(tmp_path: Path) -> None:
    db_path = tmp_path / "ledger.db"
    shutil.copyfile(V1_LEDGER / "ledger.db", db_path)  # sqlite writes beside what it opens
    with closing(sqlite3.connect(db_path)) as db:
        rows = db.execute("select data from entries order by idx").fetchall()
    assert rows
    for (data,) in rows:
        entry = LogEntry.decode(bytes(data))
        assert entry.transaction.window is None
        assert entry.transaction.payload() == entry.envelope.payload


def test_a_window_is_in_the_canonical_payload_and_reads_back() -> None:
    tx = Transaction(ORIGIN, EVENT, "alice", "n" * 32, NOW, {}, 1, NOW, NOW + DAY)
    obj = canonical.loads_canonical(tx.payload())
    assert isinstance(obj, dict)
    assert (obj["not_before"], obj["expires"]) == (NOW, NOW + DAY)
    assert Transaction.from_json(obj) == tx
    assert tx.window == (NOW, NOW + DAY)


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"not_before": NOW}, "missing \\['expires'\\]"),
        ({"expires": NOW}, "missing \\['not_before'\\]"),
        ({"not_before": NOW + 1, "expires": NOW}, "ends \\(expires\\) before it starts"),
        ({"not_before": True, "expires": NOW}, "integer milliseconds"),
        ({"not_before": -1, "expires": NOW}, "integer milliseconds"),
        ({"not_before": NOW, "expires": 2**63}, "year 9999"),
        ({"not_before": NOW, "expires": "tomorrow"}, "integer milliseconds"),
    ],
)
def test_a_malformed_window_is_refused(fields: dict[str, Any], words: str) -> None:
    obj = Transaction(ORIGIN, EVENT, "alice", "n" * 32, NOW, {}).to_json() | fields
    with pytest.raises(errors.MalformedError, match=words):
        Transaction.from_json(obj)


# -- admission -------------------------------------------------------------------------


def test_the_maximum_is_five_minutes_until_governance_sets_one(led: mc.Ledger) -> None:
    assert led.members.max_validity == DEFAULT_MAX_VALIDITY_MS == 5 * 60 * 1000
    size = led.size
    with pytest.raises(errors.ValidityWindowError, match="allows at most 5m") as info:
        led.submit(_windowed(led, NOW, NOW + DAY))
    assert info.value.exit_code == 5
    with pytest.raises(errors.UsageError, match=r"longer than .* allows \(5m\)"):
        _member_add(led, "erin", DAY)  # the SDK says so before anyone signs
    assert led.size == size
    # A window within the default is accepted.
    assert led.submit(_windowed(led, NOW, NOW + 5 * 60 * 1000)).outcome.accepted


def test_a_draft_co_signed_days_later_is_accepted_within_its_window(
    led: mc.Ledger, clock: Clock
) -> None:
    assert led.members.set_max_validity(7 * DAY, signers=_admins()).outcome.accepted
    assert led.members.max_validity == 7 * DAY
    env = _member_add(led, "erin", 3 * DAY)  # alice drafts and signs on day 0
    assert _tx(env).window == (NOW, NOW + 3 * DAY)
    clock.now += 2 * DAY + 3_600_000  # dave, in another organisation, signs two days later
    env = env.with_signature(make_signer("dave"))
    ack = led.members.submit(env)
    assert ack.outcome.accepted
    assert led.members.get("erin")["status"] == "active"
    logged = led.entry(ack.index).transaction
    assert logged.time == NOW and logged.window == (NOW, NOW + 3 * DAY)
    # Long after it expired, a retry of the logged envelope gets its entry (ADR 2).
    clock.now += 30 * DAY
    size = led.size
    assert led.submit(env) == ack
    assert led.size == size
    led.audit()


def test_an_expired_draft_is_refused_and_nothing_is_written(led: mc.Ledger, clock: Clock) -> None:
    led.members.set_max_validity(7 * DAY, signers=_admins())
    env = _member_add(led, "erin", DAY)
    clock.now += 2 * DAY
    env = env.with_signature(make_signer("dave"))
    size, checkpoint = led.size, led.checkpoint()
    with pytest.raises(errors.ClockSkewError, match=r"expired at .*, 1d ago"):
        led.members.submit(env)
    assert (led.size, led.checkpoint()) == (size, checkpoint)
    with pytest.raises(errors.NotFoundError):
        led.members.get("erin")


def test_the_skew_still_applies_at_both_ends_of_a_window(led: mc.Ledger, clock: Clock) -> None:
    led.members.set_max_validity(7 * DAY, signers=_admins())
    skew = led.node.config.skew_ms
    with pytest.raises(errors.ClockSkewError, match=r"is valid from .*, 1d from now"):
        led.submit(_windowed(led, NOW + DAY, NOW + 2 * DAY))
    assert led.submit(_windowed(led, NOW + skew, NOW + DAY, "a" * 32)).outcome.accepted
    assert led.submit(_windowed(led, NOW - DAY, NOW - skew, "b" * 32)).outcome.accepted
    with pytest.raises(errors.ClockSkewError, match="expired"):
        led.submit(_windowed(led, NOW - DAY, NOW - skew - 1, "c" * 32, NOW - DAY))


def test_a_window_longer_than_the_maximum_is_refused(led: mc.Ledger) -> None:
    led.members.set_max_validity(7 * DAY, signers=_admins())
    size = led.size
    longer = r"is 8d \(from not_before to expires\); .* allows at most 7d"
    with pytest.raises(errors.ValidityWindowError, match=longer):
        led.submit(_windowed(led, NOW, NOW + 8 * DAY))
    with pytest.raises(errors.UsageError, match=r"8d is longer than .* \(7d\)"):
        _member_add(led, "erin", 8 * DAY)
    assert led.size == size
    # Lowering the maximum refuses drafts made under the old one.
    env = _member_add(led, "erin", 3 * DAY).with_signature(make_signer("dave"))
    led.members.set_max_validity(DAY, signers=_admins())
    with pytest.raises(errors.ValidityWindowError, match="at most 1d"):
        led.members.submit(env)


def test_a_window_counts_from_the_time_the_transaction_was_made(
    led: mc.Ledger, clock: Clock
) -> None:
    led.members.set_max_validity(7 * DAY, signers=_admins())
    body = {"event": "e", "data": {}}

    def made(time: int, not_before: int, expires: int, nonce: str) -> bytes:
        tx = Transaction(ORIGIN, EVENT, "alice", nonce, time, body, 1, not_before, expires)
        return tx.sign(make_signer("alice")).to_bytes()

    clock.now += 6 * DAY
    # Made on day 0, valid from day 6 to day 8: eight days from its time.
    with pytest.raises(errors.ValidityWindowError, match=r"is 8d \(from its time to expires\)"):
        led.submit(made(NOW, NOW + 6 * DAY, NOW + 8 * DAY, "a" * 32))
    # Made after it expired.
    with pytest.raises(errors.ValidityWindowError, match="is after it expires"):
        led.submit(made(NOW + 6 * DAY, NOW + 5 * DAY, NOW + 5 * DAY + 1, "b" * 32))
    far = 2**53 - 1  # a time no calendar holds is still answered with a clear error
    with pytest.raises(errors.ValidityWindowError, match=f"{far} ms since the epoch"):
        led.submit(made(far, NOW + 5 * DAY, NOW + 7 * DAY, "d" * 32))
    # Made on day 0, valid from day 6 to day 7: within the maximum.
    assert led.submit(made(NOW, NOW + 6 * DAY, NOW + 7 * DAY, "c" * 32)).outcome.accepted


def test_a_validity_window_error_is_http_422() -> None:
    from modelchain.server.errors import status_of

    assert status_of(errors.ValidityWindowError("x")) == 422


def test_a_nonce_is_single_use_within_a_window(led: mc.Ledger) -> None:
    led.members.set_max_validity(7 * DAY, signers=_admins())
    first = led.submit(_windowed(led, NOW, NOW + DAY))
    assert first.outcome.accepted
    other = Transaction(
        ORIGIN, EVENT, "alice", "w" * 32, NOW, {"event": "x", "data": {}}, 1, NOW, NOW + DAY
    )
    with pytest.raises(errors.ReplayError, match=f"at index {first.index}"):
        led.submit(other.sign(make_signer("alice")))


# -- governance and contract-set versions ------------------------------------------------


def test_a_quorum_of_admins_sets_the_maximum(led: mc.Ledger) -> None:
    alone = led.members.draft(VALIDITY_SET, {"max_ms": 7 * DAY}, "alice")
    ack = led.submit(alone.with_signature(make_signer("alice")))
    assert ack.outcome.code == "quorum_not_met"
    assert led.members.max_validity == DEFAULT_MAX_VALIDITY_MS
    ack = led.members.set_max_validity(7 * DAY, signers=_admins())
    assert ack.outcome.accepted
    assert led.members.max_validity == 7 * DAY
    with pytest.raises(errors.MalformedError, match="max_ms"):
        led.members.set_max_validity(0, signers=_admins())
    led.audit()


def test_under_version_3_the_type_is_unknown_and_windows_are_refused(
    tmp_path: Path, clock: Clock
) -> None:
    with _make(tmp_path / "v3", clock, 3) as led:
        assert led.members.contract_version == 3
        env = led.members.draft(VALIDITY_SET, {"max_ms": 7 * DAY}, "alice")
        for s in _admins():
            env = env.with_signature(s)
        ack = led.submit(env)
        assert ack.outcome.code == "unknown_type"  # logged, as before version 4
        assert led.members.max_validity == DEFAULT_MAX_VALIDITY_MS
        # Before version 4 the name is an ordinary role-map entry, as it was.
        env = led.members.draft(PERMISSIONS_SET, {"type": VALIDITY_SET, "roles": []}, "alice")
        for s in _admins():
            env = env.with_signature(s)
        assert led.submit(env).outcome.accepted
        size = led.size
        with pytest.raises(errors.ValidityWindowError, match="needs version 4"):
            led.submit(_windowed(led, NOW, NOW + 60_000))
        with pytest.raises(errors.UsageError, match="need version 4"):
            _member_add(led, "erin", 60_000)
        assert led.size == size
        led.audit()


def test_from_version_4_the_role_map_cannot_govern_the_maximum(led: mc.Ledger) -> None:
    env = led.members.draft(PERMISSIONS_SET, {"type": VALIDITY_SET, "roles": []}, "alice")
    for s in _admins():
        env = env.with_signature(s)
    assert led.submit(env).outcome.code == "governance_type"


def test_an_old_ledger_verifies_under_this_release(tmp_path: Path) -> None:
    path = tmp_path / "v1"
    shutil.copytree(V1_LEDGER, path, ignore=shutil.ignore_patterns("*.py"))
    (path / "log.key").chmod(0o600)
    with mc.open(path) as led:
        assert led.audit().size == 6


# -- the command line --------------------------------------------------------------------


def test_cli_sets_the_maximum_and_drafts_a_window(env: dict[str, str], tmp_path: Path) -> None:
    run_cli(env, "identity", "new", "dave")
    run_cli(env, "init", "--origin", ORIGIN, "--admin", "alice", "--member", "dave:admin@bank")
    shown = json.loads(run_cli(env, "governance", "validity", "--json").stdout)
    assert shown == {"max_ms": DEFAULT_MAX_VALIDITY_MS}
    assert run_cli(env, "governance", "validity").stdout == "validity windows up to 5m\n"
    body = json.dumps({"event": "e", "data": {}})
    draft = tmp_path / "event.json"
    too_long = run_cli(
        env, "tx", "draft", EVENT, "--body", body, "--actor", "alice", "-o", str(draft),
        "--valid-for", "3d", ok=False,
    )  # fmt: skip
    assert too_long.returncode == 2 and "allows (5m)" in too_long.stderr
    assert not draft.exists()

    # The quorum is 2: alice drafts the new maximum, dave co-signs it.
    setting = tmp_path / "validity.json"
    run_cli(env, "governance", "validity", "7d", "--as", "alice", "--draft", str(setting))
    run_cli(env, "tx", "sign", str(setting), "--as", "dave")
    assert json.loads(run_cli(env, "tx", "submit", str(setting), "--json").stdout)["result"] == (
        "accepted"
    )
    assert run_cli(env, "governance", "validity").stdout == "validity windows up to 7d\n"

    wrote = run_cli(
        env, "tx", "draft", EVENT, "--body", body, "--actor", "alice", "-o", str(draft),
        "--valid-for", "3d",
    ).stdout  # fmt: skip
    assert "valid until" in wrote
    tx = _tx(Envelope.from_json(json.loads(draft.read_text()), allow_unsigned=True))
    assert tx.window is not None and tx.window[1] - tx.window[0] == 3 * DAY
    run_cli(env, "tx", "sign", str(draft), "--as", "alice")
    assert json.loads(run_cli(env, "tx", "submit", str(draft), "--json").stdout)["result"] == (
        "accepted"
    )
    until = time.time() + 2 * 86400
    iso = datetime.fromtimestamp(until, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    run_cli(
        env, "tx", "draft", EVENT, "--body", body, "--actor", "alice", "-o", str(draft),
        "--expires", iso,
    )  # fmt: skip
    tx = _tx(Envelope.from_json(json.loads(draft.read_text()), allow_unsigned=True))
    assert tx.window is not None and abs(tx.window[1] - int(until) * 1000) < 1000
    both = run_cli(
        env, "tx", "draft", EVENT, "--body", body, "--actor", "alice", "-o", str(draft),
        "--valid-for", "1d", "--expires", "2099-01-01", ok=False,
    )  # fmt: skip
    assert both.returncode == 2 and "not both" in both.stderr
    bad = run_cli(env, "governance", "validity", "a week", ok=False)
    assert bad.returncode == 2 and "not a duration" in bad.stderr


def test_every_draft_command_takes_a_window(env: dict[str, str], tmp_path: Path) -> None:
    run_cli(env, "identity", "new", "dave")
    run_cli(env, "identity", "new", "erin")
    run_cli(env, "init", "--origin", ORIGIN, "--admin", "alice", "--member", "dave:admin@bank")
    setting = tmp_path / "validity.json"
    run_cli(env, "governance", "validity", "7d", "--as", "alice", "--draft", str(setting))
    run_cli(env, "tx", "sign", str(setting), "--as", "dave")
    run_cli(env, "tx", "submit", str(setting))

    # alice drafts erin's membership to stay open three days; dave co-signs.
    draft = tmp_path / "add-erin.json"
    wrote = run_cli(
        env, "member", "add", "erin", "--role", "trainer", "--org", "acme",
        "--as", "alice", "--draft", str(draft), "--valid-for", "3d",
    ).stdout  # fmt: skip
    assert "valid until" in wrote
    tx = _tx(Envelope.from_json(json.loads(draft.read_text()), allow_unsigned=True))
    assert tx.type == MEMBER_ADD and tx.window is not None
    assert tx.window[1] - tx.window[0] == 3 * DAY
    run_cli(env, "tx", "sign", str(draft), "--as", "dave")

    # Submitted two days later (the node's clock moved on), past the five-minute
    # skew: the window admits it.
    later = Clock()
    later.now = tx.time + 2 * DAY
    with mc.open(tmp_path / "ledger", clock=later) as led:
        ack = led.members.submit(Envelope.from_json(json.loads(draft.read_text())))
        assert ack.outcome.accepted
    member = json.loads(run_cli(env, "member", "show", "erin", "--json").stdout)
    assert member["roles"] == ["trainer"]

    # Every other --draft command takes it too; each refusal writes no file.
    policy = tmp_path / "policy.txt"
    policy.write_text(run_cli(env, "log", "policy").stdout)
    for args in (
        ("member", "revoke", "erin", "--reason", "left"),
        ("policy", "set", "model.deploy", "true"),
        ("permissions", "set", EVENT, "trainer"),
        ("contracts", "activate", str(CURRENT_VERSION), "--at", "1000"),
        ("checkpoint-policy", "set", str(policy)),
        ("governance", "validity", "2d"),
    ):
        out = tmp_path / "d.json"
        run_cli(env, *args, "--as", "alice", "--draft", str(out), "--valid-for", "36h")
        got = _tx(Envelope.from_json(json.loads(out.read_text())))
        assert got.window is not None and got.window[1] - got.window[0] == 36 * 3600_000, args
        out.unlink()
        too_long = run_cli(
            env, *args, "--as", "alice", "--draft", str(out), "--valid-for", "8d", ok=False
        )
        assert too_long.returncode == 2 and "allows (7d)" in too_long.stderr, args
        assert not out.exists()
    undrafted = run_cli(
        env, "member", "revoke", "erin", "--reason", "x", "--valid-for", "1d", ok=False
    )
    assert undrafted.returncode == 2 and "go with --draft" in undrafted.stderr
    assert json.loads(run_cli(env, "member", "show", "erin", "--json").stdout)["status"] == (
        "active"
    )
