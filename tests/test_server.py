"""The HTTP API against a real `modelchain serve` process on loopback: writes,
queries, proofs, tiles, tokens, errors, limits, metrics and logs."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ORIGIN, make_signer, run_cli
from serving import running_server

import modelchain as mc
from modelchain.core.checkpoint import open_checkpoint
from modelchain.core.identity import Ed25519Signer, VerifierKey, verifier_of
from modelchain.core.merkle import leaf_hash, verify_consistency, verify_inclusion
from modelchain.core.receipt import InclusionReceipt
from modelchain.core.tiles import decode_entry_bundle
from modelchain.core.tx import Transaction
from modelchain.ledger import Founder, new_nonce
from modelchain.service.node import system_clock_ms

alice, bob, carol = make_signer("alice"), make_signer("bob"), make_signer("carol")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, str]]:
    """A ledger with some history, served with reads needing tokens; yields
    (url, ledger dir, carol's read token)."""
    root = tmp_path_factory.mktemp("served")
    members = [
        Founder(verifier_of(bob), "acme", ("trainer",)),
        Founder(verifier_of(carol), "audit-co", ("auditor",)),
    ]
    led = mc.init(root / "ledger", ORIGIN, alice, org="acme", members=members)
    model = root / "model.bin"
    model.write_bytes(b"weights " * 100)
    try:
        for i in range(300):
            led.record_event("pipeline.step", {"i": i}, bob)
        led.models.register("fraud", model, signer=bob)
        model.write_bytes(b"weights " * 101)
        led.models.register("fraud", model, signer=bob)
    finally:
        led.close()
    env = {
        **os.environ,
        "MODELCHAIN_HOME": str(root / "home"),
        "MODELCHAIN_LEDGER": str(root / "ledger"),
    }
    token = run_cli(env, "token", "issue", "carol", "--label", "audit").stdout.strip()
    log = root / "server.log"
    with running_server(root / "ledger", "--max-backlog", "50", env=env, log=log) as url:
        yield url, root, token


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _vkey(url: str, token: str) -> VerifierKey:
    return VerifierKey.from_string(
        httpx.get(url + "/v1/ledger", headers=_auth(token)).json()["log_key"]
    )


def _signed(signer: Ed25519Signer, body: dict[str, Any], nonce: str | None = None) -> bytes:
    tx = Transaction(
        ledger=ORIGIN,
        type="event.record",
        actor=signer.name,
        nonce=nonce or new_nonce(),
        time=system_clock_ms(),
        body={"event": "api.test", "data": body},
    )
    return tx.sign(signer).to_bytes()


def test_submit_over_http_is_durable_and_refusals_are_json(served: tuple[str, Path, str]) -> None:
    url, _, token = served
    data = _signed(bob, {"n": 1})
    r = httpx.post(url + "/v1/entries", content=data)
    assert r.status_code == 200, r.text
    ack = r.json()
    assert ack["outcome"] == {"result": "accepted"}
    got = httpx.get(url + f"/v1/entries/{ack['index']}", headers=_auth(token)).json()
    entry = base64.b64decode(got["entry"])
    assert leaf_hash(entry).hex() == ack["leaf_hash"]
    assert json.loads(entry)["envelope"] == json.loads(data)

    cases = [
        (data, 409, "replayed_nonce"),  # the same envelope again: applied once
        (b"{not json", 400, "malformed"),
        (b"{}", 400, "malformed"),
        (_signed(make_signer("mallory"), {"n": 2}), 403, "unknown_key"),
        (data.replace(b'"sig":"', b'"sig":"AAAA'), 422, "bad_signature"),
        (data.replace(b'"sig":"', b'"sig":"!!'), 400, "bad_base64"),
    ]
    for body, status, code in cases:
        before = httpx.get(url + "/healthz").json()["size"]
        r = httpx.post(url + "/v1/entries", content=body)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text
        assert r.json()["error"]["message"]
        assert httpx.get(url + "/healthz").json()["size"] == before, "nothing written"


def test_body_limits_and_overload(served: tuple[str, Path, str]) -> None:
    url, _, _ = served
    r = httpx.post(url + "/v1/entries", content=b"x" * (64 * 1024))
    assert (r.status_code, r.json()["error"]["code"]) == (413, "oversize")
    r = httpx.post(url + "/v1/entries:batch", content=b"[" + b" " * (9 << 20) + b"]")
    assert (r.status_code, r.json()["error"]["code"]) == (413, "oversize")
    # more than the node's backlog (50 in this fixture) at once: pushed back, none applied
    before = httpx.get(url + "/healthz").json()["size"]
    batch = b"[" + b",".join(_signed(bob, {"n": i}) for i in range(60)) + b"]"
    r = httpx.post(url + "/v1/entries:batch", content=batch)
    assert r.status_code == 503 and r.json()["error"]["code"] == "overloaded"
    assert int(r.headers["Retry-After"]) >= 1
    assert httpx.get(url + "/healthz").json()["size"] == before


def test_batch_submission_answers_each(served: tuple[str, Path, str]) -> None:
    url, _, _ = served
    good = [_signed(bob, {"b": i}) for i in range(3)]
    bad = _signed(make_signer("mallory"), {"b": 9})
    r = httpx.post(url + "/v1/entries:batch", content=b"[" + b",".join([*good, bad]) + b"]")
    assert r.status_code == 200
    results = r.json()
    assert [("index" in x) for x in results] == [True, True, True, False]
    assert results[3]["error"]["code"] == "unknown_key"
    assert len({x["index"] for x in results[:3]}) == 3


def test_proofs_verify_against_signed_checkpoints(served: tuple[str, Path, str]) -> None:
    url, _, token = served
    h = _auth(token)
    key = _vkey(url, token)
    cp1, _ = open_checkpoint(httpx.get(url + "/checkpoint", headers=h).content, key)
    httpx.post(url + "/v1/entries", content=_signed(bob, {"grow": 1})).raise_for_status()
    note2 = httpx.get(url + "/checkpoint", headers=h).content
    cp2, _ = open_checkpoint(note2, key)
    assert cp2.size > cp1.size
    got = httpx.get(
        url + "/v1/proof/consistency", params={"old": cp1.size, "new": cp2.size}, headers=h
    )
    proof = [base64.b64decode(x) for x in got.json()["proof"]]
    verify_consistency(cp1.size, cp2.size, cp1.root, cp2.root, proof)

    for index in (0, 7, cp2.size - 1):
        e = httpx.get(url + f"/v1/entries/{index}", headers=h).json()
        cp, _ = open_checkpoint(e["checkpoint"].encode(), key)
        path = [base64.b64decode(x) for x in e["inclusion"]]
        verify_inclusion(index, cp.size, leaf_hash(base64.b64decode(e["entry"])), path, cp.root)
        receipt = httpx.get(url + f"/v1/receipts/{index}", headers=h).text
        assert InclusionReceipt.from_text(receipt).index == index
    r = httpx.get(url + "/v1/entries/100000", headers=h)
    assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found")
    r = httpx.get(url + "/v1/proof/consistency", params={"old": 0}, headers=h)
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"


def test_tiles_match_export_tiles(served: tuple[str, Path, str], tmp_path: Path) -> None:
    url, root, token = served
    h = _auth(token)
    note = httpx.get(url + "/checkpoint", headers=h).content
    size = open_checkpoint(note, _vkey(url, token))[0].size
    # Export the same checkpoint from the ledger files (read-only, beside the server).
    with mc.open(root / "ledger", readonly=True) as led:
        assert led.checkpoint() == note
        led.export_tiles(tmp_path / "tiles")
    files = [p for p in (tmp_path / "tiles").rglob("*") if p.is_file()]
    assert len(files) > 5
    for path in files:
        rel = path.relative_to(tmp_path / "tiles").as_posix()
        r = httpx.get(f"{url}/{rel}", headers=h)
        assert r.status_code == 200, rel
        assert r.content == path.read_bytes(), rel
    bundle = decode_entry_bundle(httpx.get(url + "/tile/entries/000", headers=h).content)
    assert len(bundle) == 256 and json.loads(bundle[0])["index"] == 0
    full = httpx.get(url + "/tile/0/000", headers=h)
    assert "immutable" in full.headers["cache-control"]
    for bad in ("tile/0/001.p/256", "tile/entries/x000/001", f"tile/0/{size // 256 + 1:03d}"):
        r = httpx.get(f"{url}/{bad}", headers=h)
        assert r.status_code in (400, 404) and "error" in r.json(), bad


def test_reads_need_a_members_token(served: tuple[str, Path, str]) -> None:
    url, root, token = served
    for path in ("/checkpoint", "/v1/models", "/tile/0/000", "/v1/audit"):
        r = httpx.get(url + path)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized", path
        assert r.headers["www-authenticate"] == "Bearer"
    assert httpx.get(url + "/v1/models", headers=_auth("mct_wrong")).status_code == 401
    assert httpx.get(url + "/v1/models", headers={"Authorization": "Basic x"}).status_code == 401
    got = httpx.get(url + "/v1/models", headers=_auth(token))
    assert [m["name"] for m in got.json()["result"]] == ["fraud"]
    assert httpx.get(url + "/healthz").status_code == 200  # liveness is open

    env = {**os.environ, "MODELCHAIN_LEDGER": str(root / "ledger")}
    extra = run_cli(env, "token", "issue", "bob", "--json").stdout
    secret, token_id = json.loads(extra)["token"], json.loads(extra)["id"]
    assert httpx.get(url + "/v1/members", headers=_auth(secret)).status_code == 200
    listed = run_cli(env, "token", "list").stdout
    assert token_id in listed and secret not in listed
    run_cli(env, "token", "revoke", token_id)
    assert httpx.get(url + "/v1/members", headers=_auth(secret)).status_code == 401


def test_queries_answer_with_their_checkpoint(served: tuple[str, Path, str]) -> None:
    url, _, token = served
    h = _auth(token)
    key = _vkey(url, token)
    got = httpx.get(url + "/v1/models/fraud", params={"version": 1}, headers=h).json()
    assert got["result"]["version"] == 1
    latest = httpx.get(url + "/v1/models/fraud", headers=h).json()["result"]
    assert latest["version"] == 2
    diff = httpx.get(url + "/v1/models/fraud/diff", params={"old": 1, "new": 2}, headers=h)
    assert diff.json()["result"]["changed"] == ["."]
    cp, _ = open_checkpoint(got["checkpoint"]["note"].encode(), key)
    assert cp.size == got["checkpoint"]["size"] > got["result"]["index"]
    members = httpx.get(url + "/v1/members", headers=h).json()["result"]
    assert {m["name"] for m in members["members"]} == {"alice", "bob", "carol"}
    trail = httpx.get(url + "/v1/audit", params={"actor": "bob", "type": "model."}, headers=h)
    assert [e["type"] for e in trail.json()["result"]] == ["model.register"] * 2
    page = httpx.get(url + "/v1/audit", params={"limit": 5}, headers=h).json()["result"]
    older = httpx.get(
        url + "/v1/audit", params={"limit": 5, "before": page[-1]["index"]}, headers=h
    )
    assert older.json()["result"][0]["index"] == page[-1]["index"] - 1
    digest = got["result"]["artifact"]["manifest"]["files"][0]["digest"]
    found = httpx.get(url + "/v1/verify", params={"digest": digest}, headers=h).json()["result"]
    assert [(f["name"], f["version"]) for f in found] == [("fraud", 1)]
    none = httpx.get(url + "/v1/verify", params={"digest": "00" * 32}, headers=h).json()
    assert none["result"] == []
    r = httpx.get(url + "/v1/models/nope", headers=h)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = httpx.get(url + "/v1/audit", params={"outcome": "maybe"}, headers=h)
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"


def test_metrics_health_openapi_and_logs(served: tuple[str, Path, str]) -> None:
    url, root, token = served
    httpx.post(url + "/v1/entries", content=_signed(bob, {"m": 1})).raise_for_status()
    text = httpx.get(url + "/metrics").text
    for name in (
        'modelchain_appends_total{result="accepted"}',
        "modelchain_append_seconds_bucket",
        "modelchain_queue_depth",
        "modelchain_checkpoint_age_seconds",
        "modelchain_log_size",
        "modelchain_http_requests_total",
    ):
        assert name in text, name
    health = httpx.get(url + "/healthz").json()
    assert health["status"] == "ok" and health["origin"] == ORIGIN
    doc = httpx.get(url + "/openapi.json").json()
    assert {"/v1/entries", "/checkpoint", "/tile/{path}", "/v1/audit"} <= set(doc["paths"])
    lines = [json.loads(x) for x in (root / "server.log").read_text().splitlines() if x]
    requests = [x for x in lines if x.get("msg") == "request"]
    assert any(x["path"] == "/v1/entries" and x["status"] == 200 for x in requests)
    assert token not in (root / "server.log").read_text(), "tokens are never logged"
