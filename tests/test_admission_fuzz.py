"""Fuzzing the decoder and admission: whatever bytes arrive, and whatever value
lands in any field of any transaction type's body, admission either admits it
or refuses it with a modelchain Error; what it admits executes to an outcome
and state writes that canonical JSON can carry. Never any other exception."""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import ORIGIN, PEOPLE, founders, make_signer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import modelchain as mc
from modelchain.contracts.personal import PERSONAL_FIELDS
from modelchain.contracts.registry import SLSA_PROVENANCE, STATEMENT_V1
from modelchain.core import canonical, jsontext
from modelchain.core.disclosure import commitment, disclose
from modelchain.core.dsse import sign_envelope
from modelchain.core.identity import Ed25519Signer, verifier_of
from modelchain.core.names import is_name
from modelchain.core.tx import MAX_NESTING, PAYLOAD_TYPE, Transaction, decode_submission
from modelchain.errors import Error, MalformedError, NonCanonicalError
from modelchain.ledger.ledger import new_nonce

# CI runs 1,500 in well under a minute; set more to search longer.
EXAMPLES = int(os.environ.get("MODELCHAIN_FUZZ_EXAMPLES", "1500"))
_DIGEST = "sha256:" + "ab" * 32
_ART = {
    "digest": _DIGEST,
    "size": 3,
    "files": 1,
    "format": "bin",
    "manifest_ref": "sha256:" + "cd" * 32,
}
_REF = {"name": "fraud", "version": 1}
_DISCLOSED = disclose("source", "s3://bucket/x", bytes(range(16)))
_DATA_REF = {"name": "iris", "version": 1}
_P256 = (
    "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBGsX0fLhLEJH+Lzm5WOk"
    "QPJ3A32BLeszoPShOUXYmMKWT+NC4v4af5uO5+tKfA+eFivOM1drMV7Oy7ZAaDe/UfU="
)

# A statically valid body of every transaction type but genesis (taken from the
# log), and the member who would submit it.
TEMPLATES: dict[str, tuple[str, dict[str, Any]]] = {
    "event.record": ("bob", {"event": "fuzz.e", "data": {"k": [1, "x", None, 2.5]}}),
    "dataset.register": (
        "steward",
        {
            "name": "ds2",
            "source": "s3://bucket/x",
            "license": "cc0",
            "description": "",
            "artifact": _ART,
            "records": None,
        },
    ),
    "dataset.ingest": (
        "steward",
        {
            "dataset": "iris",
            "source": "s",
            "batch": "b1",
            "collected_by": "steward",
            "collected_at": 1,
            "artifact": {**_ART, "digest": "sha256:" + "ef" * 32},
            "records": {"scheme": "csv", "root": "00" * 32, "count": 3},
        },
    ),
    "run.record": (
        "bob",
        {
            "id": "run-9",
            "statement": {
                "_type": STATEMENT_V1,
                "subject": [{"name": "m.bin", "digest": {"sha256": "ab" * 32}}],
                "predicateType": SLSA_PROVENANCE,
                "predicate": {
                    "buildDefinition": {
                        "buildType": "https://example.org/train",
                        "externalParameters": {"lr": 0.1},
                        "resolvedDependencies": [
                            {"uri": "modelchain:dataset/iris@1", "digest": {"sha256": "00" * 32}}
                        ],
                    },
                    "runDetails": {"builder": {"id": "https://example.org/ci"}},
                },
            },
        },
    ),
    "model.register": (
        "bob",
        {
            "name": "fraud",
            "artifact": {**_ART, "digest": "sha256:" + "12" * 32},
            "run": None,
            "parent": dict(_REF),
            "metrics": {"accuracy": 0.9},
            "card": {"intended_use": "tests"},
        },
    ),
    "model.evaluate": (
        "ev",
        {"model": _REF, "dataset": _DATA_REF, "metrics": {"accuracy": 0.9}, "tool": {}},
    ),
    "dataset.attest": (
        "val",
        {"dataset": _DATA_REF, "result": {"passed": True, "checks": [{"name": "nulls"}]}},
    ),
    "model.approve": (
        "risk",
        {"model": "fraud", "version": 1, "env": "production", "role": "risk", "comment": ""},
    ),
    "model.reject": (
        "lead",
        {"model": "fraud", "version": 1, "env": "production", "role": "ml-lead", "comment": "no"},
    ),
    "model.deploy": (
        "ops",
        {"model": "fraud", "version": 1, "env": "canary", "rollback_rule": "metrics.err > 0.5"},
    ),
    "model.rollback": ("ops", {"model": "fraud", "env": "staging", "reason": "r"}),
    "model.revoke": ("alice", {"model": "fraud", "version": 1, "reason": "r"}),
    "monitor.report": ("mon", {"model": "fraud", "env": "staging", "metrics": {"err": 0.9}}),
    "access.log": ("ops", {"artifact": {"kind": "model", **_REF}, "purpose": "load"}),
    "inference.batch": (
        "ops",
        {
            "model": "fraud",
            "version": 1,
            "root": "00" * 32,
            "count": 2,
            "first_time": 1,
            "last_time": 2,
            "batch_id": "0" * 32,
            "env": "staging",
        },
    ),
    "member.add": (
        "alice",
        {
            "member": {
                "name": "zed",
                "org": "o",
                "roles": ["trainer"],
                "keys": [verifier_of(make_signer("zed")).to_string()],
            }
        },
    ),
    "member.update": ("alice", {"name": "bob", "roles": ["trainer"], "org": "acme"}),
    "member.revoke": ("alice", {"name": "bob", "reason": "r"}),
    "member.rotate": (
        "bob",
        {
            "name": "bob",
            "add": [verifier_of(Ed25519Signer("bob", b"\x07" * 32)).to_string()],
            "remove": [],
        },
    ),
    "governance.quorum": ("alice", {"quorum": 1}),
    "policy.set": (
        "alice",
        {"action": "model.deploy:production", "rule": "size(approvals) >= 1", "description": ""},
    ),
    "permissions.set": ("alice", {"type": "fl.round", "roles": ["fl-coordinator"]}),
    "contracts.activate": ("alice", {"version": 2, "at": 1000}),
    "checkpoint.policy.set": ("alice", {"policy": "quorum none\n"}),
    "governance.validity": ("alice", {"max_ms": 7 * 24 * 60 * 60 * 1000}),
    "governance.approval-ttl": ("alice", {"ttl_ms": 90 * 24 * 60 * 60 * 1000}),
    "governance.replication": ("alice", {"copies": 2}),
    "fl.participant.register": ("bob", {"node_id": str(2**63 + 5), "public_key": _P256}),
    "fl.task.create": (
        "alice",
        {
            "task": "t1",
            "model": dict(_REF),
            "participants": ["bob", "ev"],
            "rounds": 3,
            "aggregation": "FedAvg",
            "min_participants": 2,
            "acceptance": "update.norm < 10.0 && update.examples >= 1",
            "heldout": dict(_DATA_REF),
            "description": "",
        },
    ),
    "fl.update.commit": (
        "bob",
        {
            "task": "t1",
            "round": 1,
            "participant": "bob",
            "digest": _DIGEST,
            "examples": 10,
            "metrics": {"loss": 0.5},
            "figures": {"norm": 1.5, "distance": None, "cosine": 0.9},
        },
    ),
    "fl.round.aggregate": (
        "alice",
        {
            "task": "t1",
            "round": 1,
            "aggregation": "FedAvg",
            "digest": _DIGEST,
            "updates": [{"participant": "bob", "digest": _DIGEST}],
        },
    ),
    "fl.credit.record": (
        "alice",
        {
            "task": "t1",
            "round": 1,
            "method": "leave-one-out",
            "heldout": dict(_DATA_REF),
            "shares": {"bob": 0.75, "ev": 0.25},
            "params": {"seed": 1},
        },
    ),
    "fl.task.finalize": ("alice", {"task": "t1", "model": dict(_REF)}),
    # encrypted artifacts, grants and erasure (contract-set version 7)
    "artifact.store": (
        "steward",
        {
            "artifact": {"kind": "dataset", "name": "iris", "version": 1},
            "scheme": "tink-streaming-aes256-gcm-hkdf-1mb",
            "key": "0f" * 16,
            "location": "/srv/artifacts",
            "objects": [{"digest": _DIGEST, "ciphertext": _DIGEST, "size": 100}],
        },
    ),
    "artifact.grant": (
        "steward",
        {"artifact": {"kind": "dataset", "name": "iris"}, "member": "bob", "version": None},
    ),
    "artifact.revoke": (
        "steward",
        {"artifact": {"kind": "dataset", "name": "iris"}, "member": "bob"},
    ),
    "artifact.key.fetch": (
        "bob",
        {"artifact": {"kind": "dataset", "name": "iris", "version": 1}, "purpose": "training"},
    ),
    "artifact.erase": (
        "steward",
        {"artifact": {"kind": "dataset", "name": "iris", "version": 1}, "reason": "request"},
    ),
    # personal fields (contract-set version 8)
    "record.erase": (
        "steward",
        {"entry": 1, "fields": [_DISCLOSED.digest], "reason": "request"},
    ),
    # which organisations hold a verified copy (contract-set version 8)
    "artifact.replica": (
        "bob",
        {"artifact": {"kind": "model", "name": "m", "version": 1}, "location": "/srv/mirror"},
    ),
}
# From contract-set version 8 a personal field holds a salted commitment, not text.
for _type, (_actor, _body) in list(TEMPLATES.items()):
    for _field in PERSONAL_FIELDS.get(_type, ()):
        if _body.get(_field):
            _body[_field] = commitment(disclose(_field, _body[_field], bytes(16)).digest)


@pytest.fixture(scope="module")
def fuzz_ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[mc.Ledger]:
    """Dataset iris v1, model fraud v1 deployed to staging: state for execution to reach."""
    root = tmp_path_factory.mktemp("fuzz")
    led = mc.init(root / "l", ORIGIN, make_signer("alice"), org="acme", members=founders(PEOPLE))
    data, weights = root / "iris.csv", root / "fraud.bin"
    data.write_text("a,b\n1,2\n3,4\n")
    weights.write_bytes(b"weights")
    led.datasets.register("iris", data, signer=make_signer("steward"))
    led.models.register("fraud", weights, signer=make_signer("bob"))
    led.deployments.deploy("fraud", 1, "staging", signer=make_signer("ops"))
    TEMPLATES["ledger.genesis"] = ("alice", led.entry(0).transaction.body)
    try:
        yield led
    finally:
        led.close()


def _nested(levels: int) -> Any:
    value: Any = "leaf"
    for i in range(levels):
        value = [value] if i % 2 else {"k": value}
    return value


_ODD_TEXT = [
    "",
    " ",
    "Production",
    "production ",
    "production\n",
    "prod\u200buction",
    "\uff50roduction",
    "pr\u043eduction",
    "\ud800",
    "a\udfffb",
    "\x00",
    "\u202e",
    "x" * 129,
    "\U0001f600",
    "NaN",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**53 - 1, 2**53, -(2**53), 2**64, 10**400, -1, 0]),
    st.floats(),  # NaN and the infinities included
    st.text(max_size=20),
    st.sampled_from(_ODD_TEXT),
)
json_values = st.one_of(
    st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(st.one_of(st.text(max_size=8), st.sampled_from(_ODD_TEXT)), inner),
        ),
        max_leaves=12,
    ),
    st.integers(MAX_NESTING - 3, MAX_NESTING + 3).map(_nested),
    st.integers(0, 1500).map(_nested),
)


def _paths(value: Any, here: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield here
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*here, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*here, i))


def _copy(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _alike(old: Any) -> st.SearchStrategy[Any]:
    """Values of the type already there, so that more mutations reach execution."""
    if isinstance(old, bool):
        return st.booleans()
    if isinstance(old, int):
        return st.integers(-2, 2**53 - 1) | st.just(old)
    if isinstance(old, float):
        return st.floats(allow_nan=False, allow_infinity=False)
    if isinstance(old, str):
        return st.sampled_from(["fraud", "iris", "staging", "production", "x", old]) | st.text()
    return st.just(_copy(old))


@st.composite
def mutated_bodies(draw: st.DrawFn) -> tuple[str, str, Any]:
    """A valid body of some type with one field replaced, removed or added."""
    type_ = draw(st.sampled_from(sorted(TEMPLATES)))
    actor, template = TEMPLATES[type_]
    body = _copy(template)
    path = draw(st.sampled_from(list(_paths(body))))
    old: Any = template
    for part in path:
        old = old[part]
    new = draw(st.one_of(json_values, _alike(old)))
    if not path:
        return type_, actor, new if draw(st.booleans()) else {**body, "extra": new}
    parent = body
    for part in path[:-1]:
        parent = parent[part]
    how = draw(st.sampled_from(["replace", "replace", "remove", "add"]))
    if how == "replace":
        parent[path[-1]] = new
    elif how == "remove":
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[draw(st.sampled_from(["extra", "", "Name", "\ud800"]))] = new
    else:
        parent.append(new)
    return type_, actor, body


def _payload(obj: dict[str, Any]) -> bytes:
    """Canonical bytes where RFC 8785 can write them; else the nearest JSON text
    (NaN, surrogate escapes, big integers), as a hostile client would send."""
    try:
        return canonical.dumps(obj)
    except MalformedError:
        pass
    try:
        text = jsontext.dumps(obj, sort_keys=True, separators=(",", ":"))
    except ValueError:  # NaN somewhere: json's spelling of it
        text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return text.encode()


def _check(led: mc.Ledger, data: bytes) -> str:
    """Admit ``data`` as the node would (short of the signature arithmetic);
    execute what is admitted. Returns "admitted" or "refused"."""
    try:
        led.node.precheck(data)
    except Error:
        return "refused"
    env, tx = decode_submission(data)
    keyids = tuple(s.keyid for s in env.signatures)
    outcome, writes = led.node.contracts.execute(led.store, led.size, tx, keyids)
    canonical.dumps(outcome.to_json())
    for value in writes.values():
        if value is not None:
            canonical.dumps(value)  # what the store would write
    return "admitted"


_DAY_MS = 24 * 60 * 60 * 1000
# A validity window's bounds: days either side of now (("now", offset)), or anything.
window_bounds = st.one_of(
    st.integers(-8 * _DAY_MS, 8 * _DAY_MS).map(lambda d: ("now", d)),
    st.integers(-8 * _DAY_MS, 8 * _DAY_MS).map(lambda d: ("now", d)),
    scalars,
)
windows = st.tuples(
    mutated_bodies(),
    st.dictionaries(st.sampled_from(["not_before", "expires", "time"]), window_bounds, min_size=1),
)


def _bound(value: Any, now: int) -> Any:
    return now + value[1] if isinstance(value, tuple) else value


bodies = mutated_bodies().map(lambda c: ("body", c))
cases = st.one_of(
    windows.map(lambda w: ("window", w)),
    bodies,
    bodies,
    bodies,
    bodies,
    st.binary(max_size=300).map(lambda b: ("envelope", b)),
    st.binary(max_size=300).map(lambda b: ("payload", b)),
    json_values.map(lambda v: ("payload-json", v)),
)


def test_admission_never_raises_anything_but_a_modelchain_error(fuzz_ledger: mc.Ledger) -> None:
    led = fuzz_ledger
    seen = {"admitted": 0, "refused": 0}
    types: set[str] = set()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def run(case: tuple[str, Any]) -> None:
        kind, value = case
        if kind == "envelope":
            data = value
        elif kind == "payload":
            data = sign_envelope(PAYLOAD_TYPE, value, [make_signer("bob")]).to_bytes()
        elif kind == "payload-json":
            data = sign_envelope(PAYLOAD_TYPE, _payload(value), [make_signer("bob")]).to_bytes()
        else:
            window: dict[str, Any] = {}
            if kind == "window":
                value, bounds = value
                window = {k: _bound(v, led.clock()) for k, v in bounds.items()}
            type_, actor, body = value
            types.add(type_)
            tx = {
                "v": 1,
                "ledger": ORIGIN,
                "type": type_,
                "actor": actor,
                "nonce": new_nonce(),
                "time": led.clock(),
                "body": body,
                **window,
            }
            data = sign_envelope(PAYLOAD_TYPE, _payload(tx), [make_signer(actor)]).to_bytes()
        seen[_check(led, data)] += 1

    run()
    total = seen["admitted"] + seen["refused"]
    print(f"\nfuzz inputs with zero unexpected exceptions: {total} ({seen})")
    assert total >= EXAMPLES
    assert types == set(TEMPLATES), "every transaction type was fuzzed"
    assert types == led.contracts.types, "every transaction type was fuzzed"
    assert seen["admitted"] > 0 and seen["refused"] > 0


@pytest.mark.parametrize("type_", sorted(TEMPLATES))
def test_templates_are_admitted(fuzz_ledger: mc.Ledger, type_: str) -> None:
    """The fuzzer starts from bodies admission accepts, so a mutation is what
    makes a refusal."""
    actor, body = TEMPLATES[type_]
    tx = Transaction(ORIGIN, type_, actor, new_nonce(), fuzz_ledger.clock(), body)
    assert _check(fuzz_ledger, tx.sign(make_signer(actor)).to_bytes()) == "admitted"


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(data=st.one_of(st.binary(max_size=200), json_values.map(_payload)))
def test_the_decoder_raises_only_its_own_errors(data: bytes) -> None:
    with contextlib.suppress(MalformedError):
        canonical.loads(data)
    try:
        value = canonical.loads_canonical(data)
    except (MalformedError, NonCanonicalError):
        return
    assert canonical.dumps(value) == data


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(value=json_values, indent=st.sampled_from([None, 2]), sort_keys=st.booleans())
def test_jsontext_writes_what_json_writes(value: Any, indent: int | None, sort_keys: bool) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        return
    try:
        want = json.dumps(value, indent=indent, sort_keys=sort_keys, allow_nan=False)
    except (ValueError, RecursionError):
        return
    from modelchain.core.jsontext import _iterative

    seps = (",", ": ") if indent is not None else (", ", ": ")
    assert _iterative(value, indent, sort_keys, True, *seps) == want
    assert jsontext.dumps(value, indent=indent, sort_keys=sort_keys) == want


def test_names() -> None:
    assert all(is_name(n) for n in ("fraud", "iris-clf", "run-1", "demo-data", "a.b_c", "0"))
    bad = [*_ODD_TEXT, "-x", ".x", "_x", "a/b", "a@1", "a b", "a:b", None, 1, ["a"]]
    assert not any(is_name(n) for n in bad)


def test_nesting_limit_counts_the_body_as_level_one() -> None:
    ok = {"event": "e", "data": _nested(MAX_NESTING - 1)}  # 64 levels, the body included
    Transaction(ORIGIN, "event.record", "bob", new_nonce(), 0, ok).sign(make_signer("bob"))
    deep = {"event": "e", "data": _nested(MAX_NESTING)}
    with pytest.raises(MalformedError, match="nests deeper"):
        Transaction(ORIGIN, "event.record", "bob", new_nonce(), 0, deep).sign(make_signer("bob"))
