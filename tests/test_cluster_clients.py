"""Clients of a cluster (three nodes, checkpoints final at 2 cosignatures) pin
its checkpoint policy and accept only final checkpoints: inference receipts
and tlog-proofs verified offline, the remote SDK and CLI reading any node,
reports and the dashboard naming the policy rather than one log key."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cluster_sim import (
    CLUSTER_ORIGIN,
    LedgerCluster,
    node_seed,
    node_signer,
    serving,
    strip_cosignatures,
)
from conftest import make_signer, run_cli

from modelchain.contracts import ContractSet, default_contracts
from modelchain.contracts.inference import inference_rules
from modelchain.contracts.ledger import authorize, resolve_signer
from modelchain.contracts.policy import enforce
from modelchain.core.checkpoint import Checkpoint, cosign_note, sign_checkpoint
from modelchain.core.identity import Ed25519Signer, verifier_of
from modelchain.core.merkle import leaf_hash
from modelchain.core.note import parse_note
from modelchain.core.policy import CheckpointPolicy, verify_checkpoint
from modelchain.core.tlogproof import TlogProof, verify_tlog_proof
from modelchain.errors import ProofError, SignatureError, VerificationError
from modelchain.ledger.ledger import Founder, Ledger
from modelchain.ledger.remote import RemoteLedger
from modelchain.receipts import ReceiptLog, reveal, verify_inference_receipt, verify_reveal
from modelchain.reports import (
    annex_iv,
    export_logs,
    render_html,
    render_pdf,
    verify_annex_iv,
    verify_logs,
)

ALICE, BOB = make_signer("alice"), make_signer("bob")
UNMET = "group 'nodes' needs 2 of n0, n1, n2; met: "


def _contracts() -> ContractSet:
    base = default_contracts()
    rules: dict[str, Any] = {t: base.rule(t) for t in base.types}
    return ContractSet({**rules, **inference_rules()}, resolve_signer, authorize, enforce)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LedgerCluster]:
    members = [Founder(verifier_of(BOB), "acme", ("trainer",))]
    c = LedgerCluster(tmp_path / "cluster", ALICE, members, contracts=_contracts())
    try:
        weights = tmp_path / "w.bin"
        weights.write_bytes(b"weights-1")
        c[0].models.register("fraud", weights, signer=BOB)
        for i in range(3):
            c[i].record_event("pipeline.step", {"i": i}, BOB)
        c.settle()
        yield c
    finally:
        c.close()


def _signers(note: bytes | str) -> list[str]:
    return [s.name for s in parse_note(note).signatures]


def _log_signer(note: bytes | str, policy: CheckpointPolicy) -> str:
    """Which node's key made the log signature on ``note``."""
    log = policy.evaluate(note).log
    return next(w.name for w in policy.nodes if w.key.public_key == log.public_key)


def _with_checkpoint(receipt: dict[str, Any], note: bytes) -> dict[str, Any]:
    """``receipt`` with its tlog-proof's checkpoint replaced by ``note``."""
    proof = TlogProof.from_text(receipt["ledger"]["tlog_proof"])
    stripped = dataclasses.replace(proof, checkpoint=note).to_text()
    return {**receipt, "ledger": {**receipt["ledger"], "tlog_proof": stripped}}


# -- receipts and tlog-proofs --------------------------------------------------------


def test_each_node_serves_only_final_checkpoints_under_its_own_log_key(
    cluster: LedgerCluster,
) -> None:
    policy = cluster.policy
    size = cluster.settle()
    for i, led in enumerate(cluster.ledgers):
        assert led.policy == policy  # the genesis policy, for this node's key too
        note = led.checkpoint()
        result = policy.evaluate(note).require()
        assert result.checkpoint.size == size
        assert _log_signer(note, policy) == f"n{i}"
        assert len(result.cosigned) >= 2
        proof = led.tlog_proof(2)
        assert verify_tlog_proof(proof, leaf_hash(led.entry_bytes(2)), policy).size == size
    # Different log signatures on the same tree, all valid under the policy.
    notes = {led.checkpoint() for led in cluster.ledgers}
    assert len(notes) == 3
    assert len({verify_checkpoint(n, policy)[0] for n in notes}) == 1
    # A node replays its own log: genesis names n0's key, the policy names this one.
    assert cluster[1].audit().size == size


def test_a_receipt_from_a_node_verifies_offline_with_only_the_policy_text(
    cluster: LedgerCluster, tmp_path: Path
) -> None:
    policy_text = cluster.policy.to_text()
    led = cluster[1]
    with ReceiptLog(
        led, "fraud", version=1, store=tmp_path / "r.sqlite", origin=CLUSTER_ORIGIN, signer=ALICE
    ) as log:
        rids = [log.record(f"in {i}", f"out {i}") for i in range(5)]
        assert log.flush() == 0
        receipts = [log.receipt(r) for r in rids]
    for rid, receipt in zip(rids, receipts, strict=True):
        text = json.dumps(receipt)
        assert verify_inference_receipt(text, policy_text)["request_id"] == rid
    receipt = receipts[3]
    note = TlogProof.from_text(receipt["ledger"]["tlog_proof"]).checkpoint
    assert _log_signer(note, cluster.policy) == "n1"
    # Another node's copy of the checkpoint (its own log signature) pins the same tree.
    cluster.settle()
    other = cluster[2].checkpoint()
    assert _log_signer(other, cluster.policy) == "n2"
    assert verify_inference_receipt(receipt, policy_text, checkpoint=other)["request_id"] == rids[3]
    revealed = reveal(receipt, "in 3", "out 3")
    assert verify_reveal(revealed, policy_text)["output"] == "out 3"
    # The genesis log key alone (n0's) is not what signed this node's copy.
    with pytest.raises(SignatureError):
        verify_inference_receipt(receipt, verifier_of(node_signer("n0")))


def test_a_receipt_with_one_node_cosignature_is_refused(
    cluster: LedgerCluster, tmp_path: Path, env: dict[str, str]
) -> None:
    with ReceiptLog(
        cluster[2],
        "fraud",
        version=1,
        store=tmp_path / "r.sqlite",
        origin=CLUSTER_ORIGIN,
        signer=ALICE,
    ) as log:
        rid = log.record("in", "out")
        assert log.flush() == 0
        receipt = log.receipt(rid)
    note = TlogProof.from_text(receipt["ledger"]["tlog_proof"]).checkpoint
    one = strip_cosignatures(note, 1)
    assert len(_signers(one)) == 2  # the log signature and one cosignature
    bad = _with_checkpoint(receipt, one)
    with pytest.raises(SignatureError, match=UNMET):
        verify_inference_receipt(bad, cluster.policy)
    with pytest.raises(SignatureError, match=UNMET):
        verify_tlog_proof(
            TlogProof.from_text(bad["ledger"]["tlog_proof"]),
            leaf_hash(cluster[2].entry_bytes(bad["ledger"]["entry_index"])),
            cluster.policy,
        )
    none = _with_checkpoint(receipt, strip_cosignatures(note, 0))
    with pytest.raises(SignatureError, match=UNMET + "none"):
        verify_inference_receipt(none, cluster.policy)
    # The CLI, given the policy file: the same refusal, in one clean message.
    policy_file = tmp_path / "policy.txt"
    policy_file.write_text(cluster.policy.to_text())
    good_file, bad_file = tmp_path / "good.json", tmp_path / "bad.json"
    good_file.write_text(json.dumps(receipt))
    bad_file.write_text(json.dumps(bad))
    out = run_cli(env, "receipt", "verify", str(good_file), "--vkey", str(policy_file))
    assert json.loads(out.stdout)["request_id"] == rid
    refused = run_cli(env, "receipt", "verify", str(bad_file), "--vkey", str(policy_file), ok=False)
    assert refused.returncode == 1 and UNMET in refused.stderr


# -- the remote SDK and CLI ------------------------------------------------------------


class _Strip(httpx.BaseTransport):
    """A real transport that leaves ``keep`` node cosignatures on each
    checkpoint served (None: all of them), as a lying server would."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.keep: int | None = None
        self.note: bytes | None = None  # served instead of the node's checkpoint

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.url.path != "/checkpoint" or (self.keep is None and self.note is None):
            return response
        body = self.note if self.note is not None else response.read()
        if self.keep is not None:
            body = strip_cosignatures(body, self.keep)
        return httpx.Response(200, headers={"content-type": "text/plain"}, content=body)

    def close(self) -> None:
        self.inner.close()


class _Alternate(httpx.BaseTransport):
    """A load balancer: each request goes to the next of ``ports`` (the nodes)."""

    def __init__(self, ports: list[int]) -> None:
        self.inner = httpx.HTTPTransport()
        self.ports = ports
        self.sent = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        port = self.ports[self.sent % len(self.ports)]
        self.sent += 1
        request.url = request.url.copy_with(port=port)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def test_the_remote_sdk_pinned_to_the_policy_reads_any_node(
    cluster: LedgerCluster, tmp_path: Path
) -> None:
    policy = cluster.policy
    text = policy.to_text()
    mirror = tmp_path / "mirror"
    with serving(cluster[1]) as url1, serving(cluster[2]) as url2:
        with RemoteLedger(url1, policy=text, cache=mirror, home=tmp_path / "home") as remote:
            cp = remote.sync()
            assert remote.size == cp.size == cluster.settle()
            assert remote.policy == policy
            assert _log_signer(remote.checkpoint(), policy) == "n1"
            assert remote.models.get("fraud", 1).record["version"] == 1
            assert remote.audit().size == cp.size  # the replay trusts n1's key via genesis
            proof = remote.tlog_proof(3)
            assert verify_tlog_proof(proof, leaf_hash(remote.entry_bytes(3)), text) == cp
        # The same mirror, another node: its copy of the checkpoint (another log
        # signature) is taken, and what it adds is checked against what is held.
        cluster[0].record_event("pipeline.step", {"i": "more"}, BOB)
        size = cluster.settle()
        with RemoteLedger(url2, policy=text, cache=mirror, home=tmp_path / "home") as remote:
            assert remote.sync().size == size
            assert _log_signer(remote.checkpoint(), policy) == "n2"
            assert remote.entry(size - 1).transaction.body["data"] == {"i": "more"}
        # Behind a load balancer: every request may reach another node; a write
        # acknowledged by one is confirmed from another's final checkpoint.
        ports = [httpx.URL(u).port or 0 for u in (url1, url2)]
        balancer = _Alternate(ports)
        with RemoteLedger(
            url1,
            identity=BOB,
            policy=text,
            cache=tmp_path / "balanced",
            home=tmp_path / "home",
            transport=balancer,
        ) as remote:
            seen = set()
            for i in range(4):
                ack = remote.record_event("pipeline.step", {"lb": i}, BOB)
                assert ack.outcome.accepted
                seen.add(_log_signer(remote.checkpoint(), policy))
                remote.sync()
            assert remote.size == cluster.settle()
            assert seen <= {"n1", "n2"} and balancer.sent > 8


def test_the_remote_sdk_refuses_a_checkpoint_short_of_the_quorum(
    cluster: LedgerCluster, tmp_path: Path
) -> None:
    text = cluster.policy.to_text()
    transport = _Strip()
    transport.keep = 1
    with serving(cluster[1]) as url:
        with pytest.raises(SignatureError, match=UNMET):
            RemoteLedger(url, policy=text, cache=tmp_path / "m1", transport=transport)
        transport.keep = None
        with RemoteLedger(
            url, policy=text, cache=tmp_path / "m2", transport=transport, staleness=0
        ) as remote:
            held = remote.sync().size
            older = remote.checkpoint()
            cluster[0].record_event("pipeline.step", {"i": "next"}, BOB)
            cluster.settle()
            transport.keep = 1
            with pytest.raises(SignatureError, match=UNMET):
                remote.sync()
            assert remote._store.size == held  # nothing stored from a non-final checkpoint
            transport.keep = None
            assert remote.sync().size == held + 1
            # A node that has not seen the latest quorum yet serves an older final
            # checkpoint: consistent with the mirror, so not a rollback; kept as is.
            transport.note = older
            assert remote.sync().size == held + 1
            assert remote._store.size == held + 1
            # An older checkpoint on another root, even final, is a fork.
            forked = Checkpoint(CLUSTER_ORIGIN, held, bytes(32))
            note = sign_checkpoint(forked, node_signer("n1"))
            for name in ("n0", "n2"):
                note = cosign_note(note, Ed25519Signer(name, node_seed(name)), 1_800_000_000)
            transport.note = note.to_bytes()
            with pytest.raises(ProofError, match="rolled back or forked"):
                remote.sync()
            transport.note = None
        # The genesis log key alone (n0's) cannot check n1's checkpoints: say what to pin.
        genesis_key = verifier_of(node_signer("n0"))
        with pytest.raises(SignatureError, match="pin the cluster's checkpoint policy"):
            RemoteLedger(url, log_key=genesis_key, cache=tmp_path / "m4")
        # A policy that does not name this node's key: refused before anything is read.
        strangers = {n: (make_signer(n).public_key, None) for n in ("x", "y")}
        other = CheckpointPolicy.of_cluster(CLUSTER_ORIGIN, strangers, 1)
        with pytest.raises(VerificationError, match="not one of the pinned checkpoint policy"):
            RemoteLedger(url, policy=other, cache=tmp_path / "m3")


def test_the_remote_sdk_without_a_pin_learns_the_cluster_policy_from_genesis(
    cluster: LedgerCluster, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with serving(cluster[2]) as url:
        caplog.set_level(logging.WARNING, "modelchain.ledger.remote")
        with RemoteLedger(url, cache=tmp_path / "m", home=tmp_path / "home") as remote:
            assert "first use" in caplog.text
            remote.sync()
            assert remote.policy == cluster.policy
            assert remote.size == cluster.settle()


def test_the_cli_takes_the_policy_file_for_a_cluster_server(
    cluster: LedgerCluster, tmp_path: Path, env: dict[str, str]
) -> None:
    policy_file = tmp_path / "policy.txt"
    policy_file.write_text(cluster.policy.to_text())
    with serving(cluster[1]) as url:
        out = run_cli(
            env, "--server", url, "--log-key", str(policy_file), "model", "list", "--json"
        )
        assert [m["name"] for m in json.loads(out.stdout)] == ["fraud"]
        # A policy naming other logs: refused, saying why.
        others = {n: (node_signer(n).public_key, None) for n in ("n0", "n2")}
        wrong = tmp_path / "wrong.txt"
        wrong.write_text(CheckpointPolicy.of_cluster(CLUSTER_ORIGIN, others, 2).to_text())
        env["MODELCHAIN_HOME"] = str(tmp_path / "other-home")
        bad = run_cli(
            env, "--server", url, "--log-key", str(wrong), "model", "list", "--json", ok=False
        )
        assert bad.returncode == 1 and "not one of the pinned checkpoint policy" in bad.stderr


# -- reports and the dashboard ----------------------------------------------------------


def test_reports_of_a_cluster_name_its_policy(cluster: LedgerCluster) -> None:
    led: Ledger = cluster[1]
    out = io.StringIO()
    written = export_logs(led, None, None, out)
    lines = out.getvalue().splitlines()
    head = json.loads(lines[0])
    assert head["policy"] == cluster.policy.to_text()
    assert head["log_key"] == verifier_of(node_signer("n1")).to_string()
    assert verify_logs(lines, cluster.policy.to_text()).entries == written
    head["note"] = strip_cosignatures(head["note"], 1).decode()
    with pytest.raises(SignatureError, match=UNMET):
        verify_logs([json.dumps(head), *lines[1:]], cluster.policy)
    doc = annex_iv(led, "fraud", 1)
    doc_size = doc.checkpoint.size
    assert doc.checkpoint.policy == cluster.policy.to_text()
    assert doc.to_json()["checkpoint"]["policy"] == cluster.policy.to_text()
    assert verify_annex_iv(doc.to_json(), cluster.policy.to_text()).checkpoint.size == doc_size
    html = render_html(doc)
    assert "The ledger is a cluster" in html and "group nodes 2 n0 n1 n2" in html
    assert render_pdf(doc).startswith(b"%PDF")


def test_the_dashboard_shows_the_cluster_nodes_and_policy(cluster: LedgerCluster) -> None:
    from modelchain.server import ServerConfig, create_app

    app = create_app(cluster[2], ServerConfig(reads="open"))

    async def overview() -> str:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            r = await client.get("/ui/")
            assert r.status_code == 200, r.text[:300]
            return r.text

    page = asyncio.run(overview())
    assert 'id="cp-nodes"' in page and "n0, n1, n2; cosigned by" in page
    assert "(final)" in page and "group nodes 2 n0 n1 n2" in page
    assert verifier_of(node_signer("n2")).to_string() in page
