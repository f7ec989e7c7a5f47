"""The HTTP API against a real `modelchain serve` process on loopback: writes,
queries, proofs, tiles, tokens, errors, limits, metrics and logs."""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import replace
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
from modelchain.core.tiles import decode_entry_bundle
from modelchain.core.tlogproof import TlogProof
from modelchain.core.tx import PAYLOAD_TYPE, Transaction
from modelchain.errors import RejectedError
from modelchain.ledger.ledger import Founder, new_nonce
from modelchain.node.node import system_clock_ms
from modelchain.server.queries import TrailFilter, trail

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
    args = ("--max-backlog", "50", "--body-timeout", "3")
    with running_server(root / "ledger", *args, env=env, log=log) as url:
        yield url, root, token


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _size(url: str, token: str) -> int:
    return int(httpx.get(url + "/v1/ledger", headers=_auth(token)).json()["size"])


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

    # The same envelope again (a retry whose answer was lost): its entry, applied once.
    before = _size(url, token)
    again = httpx.post(url + "/v1/entries", content=data)
    assert again.status_code == 200 and again.json() == ack
    assert _size(url, token) == before
    reused = json.loads(data)
    reused_tx = json.loads(base64.b64decode(reused["payload"]))
    cases = [
        (_signed(bob, {"n": 3}, nonce=reused_tx["nonce"]), 409, "replayed_nonce"),
        (b"{not json", 400, "malformed"),
        (b"{}", 400, "malformed"),
        (_signed(make_signer("mallory"), {"n": 2}), 403, "unknown_key"),
        (data.replace(b'"sig":"', b'"sig":"AAAA'), 422, "bad_signature"),
        (data.replace(b'"sig":"', b'"sig":"!!'), 400, "bad_base64"),
    ]
    for body, status, code in cases:
        before = _size(url, token)
        r = httpx.post(url + "/v1/entries", content=body)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text
        assert r.json()["error"]["message"]
        assert _size(url, token) == before, "nothing written"


def test_body_limits_and_overload(served: tuple[str, Path, str]) -> None:
    url, _, token = served
    r = httpx.post(url + "/v1/entries", content=b"x" * (64 * 1024))
    assert (r.status_code, r.json()["error"]["code"]) == (413, "oversize")
    r = httpx.post(url + "/v1/entries:batch", content=b"[" + b" " * (9 << 20) + b"]")
    assert (r.status_code, r.json()["error"]["code"]) == (413, "oversize")
    # more than the node's backlog (50 in this fixture) at once: pushed back, none applied
    before = _size(url, token)
    batch = b"[" + b",".join(_signed(bob, {"n": i}) for i in range(60)) + b"]"
    r = httpx.post(url + "/v1/entries:batch", content=batch)
    assert r.status_code == 503 and r.json()["error"]["code"] == "overloaded"
    assert int(r.headers["Retry-After"]) >= 1
    assert _size(url, token) == before


def test_hostile_nesting_is_bad_input_and_leaks_no_capacity(
    served: tuple[str, Path, str],
) -> None:
    """Nested JSON deeper than the parser's recursion limit is a 400, and a batch
    holding it gives back every place it reserved in the node's backlog."""
    url, _, token = served
    deep = b"[" * 20000 + b"]" * 20000
    payload = base64.b64encode(deep).decode()
    envelope = json.dumps({"payloadType": PAYLOAD_TYPE, "payload": payload, "signatures": []})
    for _ in range(3):  # 3 x 49 reservations would exhaust the backlog of 50 if leaked
        batch = "[" + ",".join([envelope] + ["{}"] * 48) + "]"
        r = httpx.post(url + "/v1/entries:batch", content=batch)
        assert r.status_code == 200, r.text
        assert {x["error"]["code"] for x in r.json()} == {"malformed"}
    for body in (deep, envelope.encode()):
        r = httpx.post(url + "/v1/entries", content=body)
        assert (r.status_code, r.json()["error"]["code"]) == (400, "malformed"), r.text
    r = httpx.post(url + "/v1/entries:batch", content=deep)
    assert (r.status_code, r.json()["error"]["code"]) == (400, "malformed")
    ok = httpx.post(url + "/v1/entries", content=_signed(bob, {"after": "nesting"}))
    assert ok.status_code == 200, "the backlog still has room"
    metrics = httpx.get(url + "/metrics", headers=_auth(token)).text
    assert "modelchain_queue_depth 0.0" in metrics


def test_a_body_that_never_arrives_times_out(served: tuple[str, Path, str]) -> None:
    url, _, _ = served
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /v1/entries HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{"
        )
        sock.settimeout(120)
        started = time.monotonic()
        answer = sock.recv(4096)
        elapsed = time.monotonic() - started
        while b"request_timeout" not in answer:
            more = sock.recv(4096)
            if not more:
                break
            answer += more
    assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
    assert b'"request_timeout"' in answer
    assert 2 <= elapsed < 120  # the 3 s body timeout, not a generous client's


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


def test_a_batch_retried_after_a_bad_item_learns_every_index(
    served: tuple[str, Path, str],
) -> None:
    """Two good envelopes and one that used to raise outside the expected
    errors (NaN in a payload): each item is answered, and the retry of the
    whole batch answers the written ones with their entries, writing nothing."""
    url, _, token = served
    good = [_signed(bob, {"retry": i}) for i in range(2)]
    nan = _signed(bob, {"retry": 9}).replace(b'"payload":"', b'"payload":"', 1)
    env = json.loads(nan)
    tx = json.loads(base64.b64decode(env["payload"]))
    tx["body"]["data"] = "NAN_HERE"
    raw = json.dumps(tx, separators=(",", ":"), sort_keys=True).replace('"NAN_HERE"', "NaN")
    env["payload"] = base64.b64encode(raw.encode()).decode()
    batch = b"[" + b",".join([good[0], json.dumps(env).encode(), good[1]]) + b"]"
    before = _size(url, token)
    first = httpx.post(url + "/v1/entries:batch", content=batch)
    assert first.status_code == 200, first.text
    one, bad, two = first.json()
    assert bad["error"]["code"] == "malformed"
    assert _size(url, token) == before + 2
    again = httpx.post(url + "/v1/entries:batch", content=batch)
    assert again.status_code == 200, again.text
    assert again.json() == [one, bad, two]  # the same indexes; nothing written twice
    assert _size(url, token) == before + 2


def test_proofs_verify_against_signed_checkpoints(served: tuple[str, Path, str]) -> None:
    url, _, token = served
    h = _auth(token)
    key = _vkey(url, token)
    cp1, _ = open_checkpoint(httpx.get(url + "/checkpoint", headers=h).content, key)
    httpx.post(url + "/v1/entries", content=_signed(bob, {"grow": 1})).raise_for_status()
    # reads are served at the published checkpoint; a writer asks for one covering its entry
    covering = {"covering": cp1.size + 1}
    note2 = httpx.get(url + "/checkpoint", params=covering, headers=h).content
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
        assert TlogProof.from_text(receipt).index == index
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
    assert httpx.get(url + "/healthz").json() == {"status": "ok"}  # liveness is open
    assert httpx.get(url + "/metrics").status_code == 401
    # the dashboard's cookie is not a credential for the API
    assert httpx.get(url + "/v1/models", cookies={"modelchain_token": token}).status_code == 401
    assert httpx.get(url + "/docs").status_code == 404  # no CDN scripts on this origin

    r = httpx.post(url + "/v1/blobs", content=b"x" * 1000, headers=_auth(token))
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"  # read-only
    env = {**os.environ, "MODELCHAIN_LEDGER": str(root / "ledger")}
    writer = run_cli(env, "token", "issue", "bob", "--scope", "write").stdout.strip()
    r = httpx.post(url + "/v1/blobs", content=b"x" * 1000, headers=_auth(writer))
    ref = r.json()["ref"]
    assert httpx.get(f"{url}/v1/blobs/{ref}", headers=_auth(token)).content == b"x" * 1000
    missing = httpx.get(f"{url}/v1/blobs/sha256:{'0' * 64}", headers=_auth(token)).json()
    assert str(root) not in missing["error"]["message"]
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
    refused = httpx.post(url + "/v1/entries", content=_signed(carol, {"auditor": "writes"}))
    assert refused.json()["outcome"]["result"] == "rejected"  # logged as evidence
    denied = httpx.get(url + "/v1/denied", params={"limit": 1}, headers=h).json()
    assert [(d["actor"], d["index"]) for d in denied["result"]] == [
        ("carol", refused.json()["index"])
    ]
    assert denied["next_before"] == refused.json()["index"]
    r = httpx.get(url + "/v1/models/nope", headers=h)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = httpx.get(url + "/v1/audit", params={"outcome": "maybe"}, headers=h)
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"


def test_metrics_health_openapi_and_logs(served: tuple[str, Path, str]) -> None:
    url, root, token = served
    httpx.post(url + "/v1/entries", content=_signed(bob, {"m": 1})).raise_for_status()
    text = httpx.get(url + "/metrics", headers=_auth(token)).text
    for name in (
        'modelchain_appends_total{result="accepted"}',
        "modelchain_append_seconds_bucket",
        "modelchain_queue_depth",
        "modelchain_checkpoint_age_seconds",
        "modelchain_log_size",
        "modelchain_http_requests_total",
    ):
        assert name in text, name
    assert httpx.get(url + "/healthz").json() == {"status": "ok"}
    doc = httpx.get(url + "/openapi.json").json()
    assert {"/v1/entries", "/checkpoint", "/tile/{path}", "/v1/audit"} <= set(doc["paths"])
    lines = [json.loads(x) for x in (root / "server.log").read_text().splitlines() if x]
    requests = [x for x in lines if x.get("msg") == "request"]
    assert any(x["path"] == "/v1/entries" and x["status"] == 200 for x in requests)
    assert token not in (root / "server.log").read_text(), "tokens are never logged"


def _all_pages(led: mc.Ledger, f: TrailFilter, max_scan: int) -> tuple[list[int], int]:
    """Every index the filter finds, following next_before; and how many pages."""
    found, pages, before = [], 0, f.before
    while True:
        page = trail(led, replace(f, before=before), max_scan=max_scan)
        found += [e["index"] for e in page.entries]
        pages += 1
        if page.next_before is None:
            return found, pages
        before = page.next_before


def test_a_sparse_audit_filter_is_answered_from_the_index(
    ledger: mc.Ledger, alice: Ed25519Signer, bob: Ed25519Signer, carol: Ed25519Signer
) -> None:
    with pytest.raises(RejectedError):  # an auditor may not add members; logged, as rejected
        ledger.members.add(verifier_of(make_signer("erin")), roles=["admin"], signers=[carol])
    ledger.record_event("rare", {}, alice)
    for i in range(250):
        ledger.record_event("common", {"i": i}, bob)
    f = TrailFilter(actor="alice", limit=10)  # genesis and the one event
    page = trail(ledger, f, max_scan=40)  # 4,000 index rows: the whole log
    assert [e["index"] for e in page.entries] == [2, 0] and page.next_before is None
    assert page.entries[0]["body"]["event"] == "rare" and page.entries[0]["org"] == "acme"
    # The index's own budget pages too: 100 rows per scanned entry.
    page = trail(ledger, f, max_scan=1)
    assert page.entries == [] and page.next_before == ledger.size - 100
    assert _all_pages(ledger, f, max_scan=1) == ([2, 0], 3)
    denied = trail(ledger, TrailFilter(outcome="rejected"), max_scan=40).entries
    assert [(e["index"], e["actor"], e["outcome"]["result"]) for e in denied] == [
        (1, "carol", "rejected")
    ]
    everything = trail(ledger, TrailFilter(limit=1000))
    assert len(everything.entries) == ledger.size and everything.next_before is None
    # Every filter, from the index, finds what a look at each entry finds.
    filters = [
        TrailFilter(type="event.", limit=7),
        TrailFilter(type="ledger.genesis", limit=7),
        TrailFilter(type="ledger"),
        TrailFilter(org="acme", type="event.record", before=5),
        TrailFilter(org="audit-co"),
        TrailFilter(actor="bob", org="acme", limit=3, before=100),
        TrailFilter(actor="bob", org="audit-co"),
        TrailFilter(outcome="accepted", limit=5),
        TrailFilter(outcome="rejected"),
        TrailFilter(outcome="maybe"),
        TrailFilter(exclude=("event.",)),
        TrailFilter(exclude=("event.record", "ledger.genesis"), limit=7),
        TrailFilter(type="event.", exclude=("event.record",)),
        TrailFilter(actor="carol", exclude=("member",)),  # no dot: a whole type, none such
    ]
    times = [ledger.entry(i).transaction.time for i in range(ledger.size)]
    filters.append(TrailFilter(since=times[50], until=times[60], limit=1000))
    filters += [TrailFilter(since=2**64), TrailFilter(until=2**64, limit=3)]  # beyond int64
    for f in filters:
        found = _all_pages(ledger, f, max_scan=10_000)[0]
        want = []
        for i in reversed(range(f.before or ledger.size)):
            tx, outcome = ledger.entry(i).transaction, ledger.entry(i).outcome.to_json()
            org = {"alice": "acme", "bob": "acme", "carol": "audit-co"}.get(tx.actor)
            if (
                (f.actor is None or tx.actor == f.actor)
                and (f.org is None or org == f.org)
                and (
                    f.type is None
                    or tx.type == f.type
                    or (f.type.endswith(".") and tx.type.startswith(f.type))
                )
                and (f.outcome is None or outcome["result"] == f.outcome)
                and (f.since is None or tx.time >= f.since)
                and (f.until is None or tx.time <= f.until)
                and not any(
                    tx.type == t or (t.endswith(".") and tx.type.startswith(t)) for t in f.exclude
                )
            ):
                want.append(i)
        assert found == want, f


def test_a_log_indexed_later_pages_by_scanning_until_then(tmp_path: Path) -> None:
    led = mc.init(tmp_path / "l", ORIGIN, alice, org="acme")
    for i in range(95):
        led.record_event("common", {"i": i}, alice)
    led.close()
    with sqlite3.connect(tmp_path / "l" / "ledger.db") as db:  # as made before the index
        db.execute("DROP TABLE trail")
    f = TrailFilter(type="ledger.", limit=10)
    with mc.open(tmp_path / "l", readonly=True) as old:
        assert old.store.indexed() == 0
        page = trail(old, f, max_scan=40)  # scans entries, 40 at most
        assert page.entries == [] and page.next_before == old.size - 40
        scanned = _all_pages(old, f, max_scan=40)
        # exclusions hold when entries are scanned as well
        kept = _all_pages(old, TrailFilter(exclude=("event.",)), max_scan=40)
    assert scanned == ([0], 3)
    assert kept == ([0], 3)
    with mc.open(tmp_path / "l") as led:  # a writer indexes what is missing
        assert led.store.indexed() == led.size == 96
        assert _all_pages(led, f, max_scan=40) == ([0], 1)
    with mc.open(tmp_path / "l", readonly=True) as ro:
        assert ro.store.indexed() == 96


def test_readers_cannot_make_the_node_sign_a_checkpoint_per_request(
    served: tuple[str, Path, str],
) -> None:
    url, root, token = served

    def stored() -> int:
        with mc.open(root / "ledger", readonly=True) as led:
            return sum(1 for _ in led.store.checkpoints())

    before = stored()
    started = time.monotonic()
    for i in range(20):
        httpx.post(url + "/v1/entries", content=_signed(bob, {"read-after": i})).raise_for_status()
        httpx.get(url + "/v1/models", headers=_auth(token)).raise_for_status()
        httpx.get(url + "/tile/0/000", headers=_auth(token)).raise_for_status()
    # the node signs on its own schedule (every second here), not once per read
    assert stored() - before <= 3 + int(time.monotonic() - started)


def test_a_custodial_key_that_cannot_be_loaded_stops_the_server_at_start(
    tmp_path: Path,
) -> None:
    mc.init(tmp_path / "ledger", ORIGIN, alice).close()
    env = {
        **os.environ,
        "MODELCHAIN_HOME": str(tmp_path / "home"),
        "MODELCHAIN_KEY_PASSPHRASE": "pw",
        "MODELCHAIN_CUSTODIAL": "nobody",
    }
    proc = run_cli(env, "serve", "--ledger", str(tmp_path / "ledger"), "--port", "0", ok=False)
    assert proc.returncode == 3 and "nobody" in proc.stderr  # before serving anything


def test_a_form_opened_before_a_restart_still_works(tmp_path: Path) -> None:
    mc.init(tmp_path / "ledger", ORIGIN, alice, org="acme").close()
    env = {
        **os.environ,
        "MODELCHAIN_HOME": str(tmp_path / "home"),
        "MODELCHAIN_LEDGER": str(tmp_path / "ledger"),
    }
    token = run_cli(env, "token", "issue", "alice").stdout.strip()
    with running_server(tmp_path / "ledger", env=env) as url:
        page = httpx.get(url + "/ui/login")
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
        assert csrf is not None and "modelchain_session" in page.cookies
        cookies = dict(page.cookies)
    key = tmp_path / "ledger" / "dashboard.key"
    assert key.stat().st_mode & 0o777 == 0o600 and len(key.read_bytes()) == 32
    form = {"csrf": csrf[1], "token": token, "next": "/ui/models"}
    with running_server(tmp_path / "ledger", env=env) as url:
        signed_in = httpx.post(url + "/ui/login", data=form, cookies=cookies)
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/ui/models"
        forged = httpx.post(url + "/ui/login", data={**form, "csrf": "0" * 64}, cookies=cookies)
        assert forged.status_code == 403
    key.unlink()  # a new key voids every open form
    with running_server(tmp_path / "ledger", env=env) as url:
        stale = httpx.post(url + "/ui/login", data=form, cookies=cookies)
        assert stale.status_code == 403 and "reload the page" in stale.text


def test_behind_a_tls_proxy_cookies_are_secure(tmp_path: Path) -> None:
    mc.init(tmp_path / "ledger", ORIGIN, alice, org="acme").close()
    env = {
        **os.environ,
        "MODELCHAIN_HOME": str(tmp_path / "home"),
        "MODELCHAIN_LEDGER": str(tmp_path / "ledger"),
    }
    token = run_cli(env, "token", "issue", "alice").stdout.strip()
    proxied = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}

    def sign_in(url: str) -> str:
        page = httpx.get(url + "/ui/login", headers=proxied)
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
        assert csrf is not None
        session = page.headers["set-cookie"].split(";")[0]
        form = {"csrf": csrf[1], "token": token, "next": "/ui/"}
        answer = httpx.post(url + "/ui/login", data=form, headers={**proxied, "Cookie": session})
        assert answer.status_code == 303
        return answer.headers["set-cookie"].lower()

    # The default believes a proxy on this machine.
    with running_server(tmp_path / "ledger", env=env) as url:
        assert "; secure" in sign_in(url)
    # A proxy elsewhere must be named; headers from anyone else are not believed.
    with running_server(tmp_path / "ledger", "--forwarded-allow-ips", "192.0.2.1", env=env) as url:
        assert "; secure" not in sign_in(url)


def test_every_server_module_exports_what_it_names() -> None:
    """Each module of the server, its routes and its dashboard names its exports
    in ``__all__``, and has them."""
    import importlib
    import pkgutil

    import modelchain.server

    for info in pkgutil.walk_packages(modelchain.server.__path__, "modelchain.server."):
        module = importlib.import_module(info.name)
        names = getattr(module, "__all__", None)
        assert names, f"{info.name} has no __all__"
        assert len(set(names)) == len(names), info.name
        missing = [n for n in names if not hasattr(module, n)]
        assert missing == [], info.name
    assert {"ServerConfig", "create_app"} <= set(modelchain.server.__all__)
