"""Hostile input over HTTP, against a real `modelchain serve`: values RFC 8785
cannot write, wrong types, deep nesting and look-alike names are each a 400
`malformed` that leaves the log as it was and the connection open; an entry
logged before the nesting limit is still served by every read path."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ORIGIN, PEOPLE, founders, make_signer, run_cli
from serving import running_server

import modelchain as mc
from modelchain.contracts.policy import DEFAULT_POLICIES
from modelchain.core import tx as tx_module
from modelchain.core.dsse import sign_envelope
from modelchain.core.identity import Ed25519Signer
from modelchain.core.names import name_version
from modelchain.core.tx import MAX_NESTING, PAYLOAD_TYPE, Transaction
from modelchain.errors import MalformedError, UsageError
from modelchain.ledger.ledger import new_nonce
from modelchain.node.node import system_clock_ms

DEEP = 600  # levels of the entry logged before the limit


def _nested(levels: int) -> Any:
    """``levels`` levels of arrays and objects: [{"a": [{"a": ... {}}]}]."""
    value: Any = {}
    for i in range(levels - 1):
        value = [value] if i % 2 else {"a": value}
    return value


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, int]]:
    """A ledger under the default policies with model fraud v1 and an event
    600 levels deep logged before the limit, served with open reads; yields
    (url, ledger dir, the deep entry's index)."""
    root = tmp_path_factory.mktemp("hardening")
    alice = make_signer("alice")
    led = mc.init(
        root / "ledger",
        ORIGIN,
        alice,
        org="acme",
        members=founders(PEOPLE),
        # The defaults, less the register rule's run and attested data (not what is tested here).
        policies={k: v for k, v in DEFAULT_POLICIES.items() if k != "model.register"},
    )
    weights = root / "fraud.bin"
    weights.write_bytes(b"weights " * 64)
    try:
        led.models.register("fraud", weights, signer=make_signer("bob"))
        with pytest.MonkeyPatch.context() as mp:  # as a ledger written before the limit
            mp.setattr(tx_module, "MAX_NESTING", 10_000)
            deep = led.record_event("deep.event", _nested(DEEP), make_signer("bob")).index
    finally:
        led.close()
    env = {**os.environ, "MODELCHAIN_LEDGER": str(root / "ledger")}
    log = root / "server.log"
    with running_server(root / "ledger", "--reads", "open", env=env, log=log) as url:
        yield url, root, deep
    assert '"level": "error"' not in log.read_text()


def _tx(type_: str, actor: str, body: dict[str, Any]) -> Transaction:
    return Transaction(
        ledger=ORIGIN,
        type=type_,
        actor=actor,
        nonce=new_nonce(),
        time=system_clock_ms(),
        body=body,
    )


def _raw(payload: bytes, signer: Ed25519Signer) -> bytes:
    """An envelope around any payload bytes (Transaction.sign would refuse some)."""
    return sign_envelope(PAYLOAD_TYPE, payload, [signer]).to_bytes()


def _event_payload(data_json: bytes) -> bytes:
    """The canonical payload of an event whose ``data`` is spelled ``data_json``."""
    payload = _tx("event.record", "bob", {"event": "e", "data": {"x": 0}}).payload()
    assert payload.count(b'"data":{"x":0}') == 1
    return payload.replace(b'"data":{"x":0}', b'"data":' + data_json)


def _refused(client: httpx.Client, data: bytes, words: str) -> None:
    """Posting ``data`` is a 400 malformed, the log keeps its size and the same
    connection answers the next request."""
    before = client.get("/v1/ledger").json()["size"]
    r = client.post("/v1/entries", content=data)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "malformed", error
    assert words in error["message"], error
    again = client.get("/v1/ledger")  # the keep-alive connection was not reset
    assert again.status_code == 200
    assert again.json()["size"] == before


def _client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=30)


@pytest.mark.parametrize(
    ("data_json", "words"),
    [
        (b'{"x":NaN}', "NaN"),
        (b'{"x":Infinity}', "Infinity"),
        (b'{"x":-Infinity}', "-Infinity"),
        (b'{"x":"\\ud800"}', "surrogate"),
        (b'{"\\udfff":1}', "surrogate"),
        (b'{"x":"a\\udc00b"}', "surrogate"),
    ],
    ids=["nan", "infinity", "minus-infinity", "lone-surrogate", "surrogate-key", "low-surrogate"],
)
def test_values_rfc8785_cannot_write_are_malformed(
    served: tuple[str, Path, int], data_json: bytes, words: str
) -> None:
    url, _, _ = served
    with _client(url) as client:
        _refused(client, _raw(_event_payload(data_json), make_signer("bob")), words)


@pytest.mark.parametrize(
    ("type_", "actor", "body", "words"),
    [
        (
            "policy.set",
            "alice",
            {"action": "model.deploy:production", "rule": ["true"], "description": ""},
            "rule",
        ),
        (
            "policy.set",
            "alice",
            {"action": "model.deploy:production", "rule": {"a": 1}, "description": ""},
            "rule",
        ),
        (
            "model.deploy",
            "ops",
            {"model": "fraud", "version": 1, "env": "staging", "rollback_rule": {"r": "x"}},
            "rule",
        ),
        (
            "model.deploy",
            "ops",
            {"model": "fraud", "version": 1, "env": "staging", "rollback_rule": ["x"]},
            "rule",
        ),
        ("governance.quorum", "alice", {"quorum": True}, "quorum"),
        (
            "model.deploy",
            "ops",
            {"model": "fraud", "version": True, "env": "staging", "rollback_rule": None},
            "version",
        ),
    ],
    ids=[
        "policy-rule-list",
        "policy-rule-object",
        "rollback-rule-object",
        "rollback-rule-list",
        "quorum-true",
        "version-true",
    ],
)
def test_wrong_types_are_malformed(
    served: tuple[str, Path, int], type_: str, actor: str, body: dict[str, Any], words: str
) -> None:
    url, _, _ = served
    with _client(url) as client:
        _refused(client, _tx(type_, actor, body).sign(make_signer(actor)).to_bytes(), words)


@pytest.mark.parametrize(
    "env",
    [
        "production ",
        "Production",
        "PRODUCTION",
        "prod\u200buction",
        "\uff50roduction",  # full-width p
        "pr\u043eduction",  # Cyrillic o
        "production\n",
        " production",
        "",
        "x" * 129,
    ],
    ids=[
        "trailing-space",
        "capital",
        "upper",
        "zero-width",
        "full-width",
        "cyrillic",
        "newline",
        "leading-space",
        "empty",
        "too-long",
    ],
)
def test_look_alike_environments_are_malformed(served: tuple[str, Path, int], env: str) -> None:
    url, _, _ = served
    body = {"model": "fraud", "version": 1, "env": env, "rollback_rule": None}
    data = _tx("model.deploy", "ops", body).sign(make_signer("ops")).to_bytes()
    with _client(url) as client:
        _refused(client, data, "env")
        history = client.get("/v1/models/fraud/deployments/production").json()
        assert history["result"]["history"] == []


@pytest.mark.parametrize(
    ("type_", "actor", "body"),
    [
        ("model.register", "bob", {"name": "Fraud"}),
        ("model.approve", "risk", {"model": "fraud", "env": "Production"}),
        ("dataset.attest", "val", {"dataset": {"name": "Iris", "version": 1}}),
        ("member.revoke", "alice", {"name": "Bob", "reason": ""}),
        ("policy.set", "alice", {"action": "model.deploy:Production"}),
    ],
    ids=["model", "approve-env", "dataset-ref", "member", "policy-action"],
)
def test_names_follow_one_syntax_in_every_type(
    served: tuple[str, Path, int], type_: str, actor: str, body: dict[str, Any]
) -> None:
    url, _, _ = served
    full = {**_VALID[type_], **body}
    data = _tx(type_, actor, full).sign(make_signer(actor)).to_bytes()
    with _client(url) as client:
        _refused(client, data, "is not a name")


_DIGEST = "sha256:" + "ab" * 32
_VALID: dict[str, dict[str, Any]] = {
    "model.register": {
        "name": "fraud",
        "artifact": {
            "digest": _DIGEST,
            "size": 1,
            "files": 1,
            "format": "bin",
            "manifest_ref": "sha256:" + "cd" * 32,
        },
        "run": None,
        "parent": None,
        "metrics": {},
        "card": {},
    },
    "model.approve": {
        "model": "fraud",
        "version": 1,
        "env": "production",
        "role": "risk",
        "comment": "",
    },
    "dataset.attest": {"dataset": {"name": "iris", "version": 1}, "result": {"passed": True}},
    "member.revoke": {"name": "bob", "reason": ""},
    "policy.set": {"action": "model.deploy:production", "rule": "true", "description": ""},
}


def test_bodies_nested_beyond_the_limit_are_malformed(served: tuple[str, Path, int]) -> None:
    url, _, _ = served
    within = _tx("event.record", "bob", {"event": "e", "data": _nested(MAX_NESTING - 1)})
    with _client(url) as client:
        r = client.post("/v1/entries", content=within.sign(make_signer("bob")).to_bytes())
        assert r.status_code == 200, r.text  # 64 levels, the body included
        deep = _tx("event.record", "bob", {"event": "e", "data": _nested(DEEP)})
        with pytest.raises(MalformedError, match="nests deeper than 64"):
            deep.sign(make_signer("bob"))  # the SDK refuses before sending
        _refused(client, _raw(deep.payload(), make_signer("bob")), "nests deeper than 64")


def test_an_entry_logged_before_the_limit_is_served_everywhere(
    served: tuple[str, Path, int],
) -> None:
    url, root, deep = served
    with _client(url) as client:
        audit = client.get("/v1/audit", params={"type": "event.record"})
        assert audit.status_code == 200, audit.text
        found = [e for e in audit.json()["result"] if e["index"] == deep]
        assert found and found[0]["body"]["data"] == _nested(DEEP)
        assert client.get("/v1/audit").status_code == 200
        entry = client.get(f"/v1/entries/{deep}")
        assert entry.status_code == 200, entry.text
        payload = json.loads(base64.b64decode(entry.json()["decoded"]["envelope"]["payload"]))
        assert payload["body"]["data"] == _nested(DEEP)
        page = client.get(f"/ui/entries/{deep}")
        assert page.status_code == 200, page.text
        assert "deep.event" in page.text
    env = {**os.environ, "MODELCHAIN_LEDGER": str(root / "ledger")}
    shown = json.loads(run_cli(env, "log", "show", "--json", str(deep)).stdout)
    assert shown["transaction"]["body"]["data"] == _nested(DEEP)
    run_cli(env, "log", "verify")  # logged before the limit: still verifies


def test_the_cli_checks_names_before_any_work() -> None:
    assert name_version("iris-clf@2") == ("iris-clf", 2)
    for spec in ("Fraud@2", "fraud @2", "fr\u0430ud@1"):
        with pytest.raises(UsageError, match="is not a name"):
            name_version(spec)
