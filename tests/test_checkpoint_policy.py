"""A ledger whose genesis names a checkpoint policy: 2 of 3 witnesses must
cosign a checkpoint before its reads, receipts and mirrors verify."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ORIGIN, make_signer, run_cli
from serving import running_server

import modelchain as mc
from modelchain.contracts.genesis import check_genesis, genesis_body
from modelchain.core.checkpoint import Checkpoint, cosign, cosign_note
from modelchain.core.identity import COSIGNATURE_V1, Ed25519Signer, verifier_of
from modelchain.core.merkle import leaf_hash
from modelchain.core.note import Note, add_signatures, parse_note
from modelchain.core.policy import CheckpointPolicy, verify_checkpoint
from modelchain.core.tlogproof import TlogProof, verify_tlog_proof
from modelchain.core.tx import LogEntry
from modelchain.errors import MalformedError, NotFoundError, SignatureError
from modelchain.ledger.ledger import Founder
from modelchain.ledger.remote import RemoteLedger

alice, bob = make_signer("alice"), make_signer("bob")
NODES = [make_signer(f"node{i}.example.org") for i in range(3)]
OUTSIDER = make_signer("outsider.example.org")
T = 1_800_000_000
POLICY = (
    "# three nodes; any two make a checkpoint count\n"
    + "".join(f"witness n{i} {verifier_of(w, COSIGNATURE_V1)}\n" for i, w in enumerate(NODES))
    + "group nodes 2 n0 n1 n2\n"
    + "quorum nodes\n"
)


def _init(path: Path, **kw: Any) -> mc.Ledger:
    members = [Founder(verifier_of(bob), "acme", ("trainer",))]
    return mc.init(path, ORIGIN, alice, org="acme", members=members, **kw)


@pytest.fixture
def led(tmp_path: Path) -> Iterator[mc.Ledger]:
    ledger = _init(tmp_path / "ledger", checkpoint_policy=POLICY)
    try:
        for i in range(5):
            ledger.record_event("pipeline.step", {"i": i}, bob)
        yield ledger
    finally:
        ledger.close()


def _cosign(note: bytes | Note, *signers: Ed25519Signer, at: int = T) -> Note:
    n = note if isinstance(note, Note) else parse_note(note)
    for s in signers:
        n = cosign_note(n, s, at)
    return n


def test_genesis_names_the_policy_and_the_log_key_still_works(led: mc.Ledger) -> None:
    policy = led.policy
    assert policy.log_key == led.log_key
    assert [w.name for w in policy.witnesses] == ["n0", "n1", "n2"]
    assert policy.quorum == "nodes"
    genesis = LogEntry.decode(led.entry_bytes(0)).transaction.body
    assert genesis["checkpoint_policy"] == policy.to_text()
    assert genesis["checkpoint_policy"].startswith(f"log {led.log_key}\n")
    with mc.open(led.path, readonly=True) as reader:
        assert reader.policy == policy
        assert reader.log_key == led.log_key


def test_without_a_policy_the_log_key_alone_counts(tmp_path: Path) -> None:
    with _init(tmp_path / "plain") as plain:
        assert plain.policy == CheckpointPolicy.of_log(plain.log_key)
        assert plain.verified_checkpoint().size == 1


def test_reads_verify_only_with_enough_cosignatures(led: mc.Ledger) -> None:
    note = led.checkpoint()
    for cosigners in ([], [NODES[0]]):
        led.add_cosignatures(_cosign(note, *cosigners))
        with pytest.raises(SignatureError, match="group 'nodes' needs 2 of n0, n1, n2"):
            led.verified_checkpoint()
        with pytest.raises(SignatureError, match="does not meet the policy"):
            led.tlog_proof(3)
    stored = led.add_cosignatures(_cosign(note, NODES[2]))
    assert [s.name for s in parse_note(stored).signatures] == [
        ORIGIN,
        NODES[0].name,
        NODES[2].name,
    ]
    assert led.checkpoint() == stored
    cp = led.verified_checkpoint()
    assert cp.size == 6
    # The receipt carries the cosignatures and verifies offline under the policy.
    receipt = TlogProof.from_text(led.tlog_proof(3).to_text())
    assert receipt.checkpoint == stored
    assert verify_tlog_proof(receipt, leaf_hash(led.entry_bytes(3)), led.policy) == cp
    parsed = CheckpointPolicy.parse(led.policy.to_text())
    assert verify_tlog_proof(receipt, leaf_hash(led.entry_bytes(3)), parsed) == cp
    # The same proof with fewer cosignatures does not count.
    log_sig, _, n2 = parse_note(stored).signatures
    for sigs, met in (((log_sig,), "none"), ((log_sig, n2), "n2")):
        fewer = TlogProof(3, receipt.proof, Note(cp.text(), sigs).to_bytes())
        with pytest.raises(SignatureError, match=f"met: {met}"):
            verify_tlog_proof(fewer, leaf_hash(led.entry_bytes(3)), led.policy)
    # The log's own audit checks every stored signature, and asks no quorum.
    assert led.audit().checkpoints >= 1


def test_add_cosignatures_verifies_what_it_keeps(led: mc.Ledger) -> None:
    note = parse_note(led.checkpoint())
    cp = Checkpoint.from_text(note.text)
    # A cosigner the policy does not name is ignored, not stored.
    kept = led.add_cosignatures(_cosign(note, OUTSIDER, NODES[1]))
    assert [s.name for s in parse_note(kept).signatures] == [ORIGIN, NODES[1].name]
    # A known node's cosignature of another tree is refused, and nothing changes.
    wrong = add_signatures(note, cosign(Checkpoint(ORIGIN, cp.size + 1, cp.root), NODES[0], T))
    with pytest.raises(SignatureError, match="n0: "):
        led.add_cosignatures(wrong)
    assert led.checkpoint() == kept
    # Only the latest checkpoint takes cosignatures.
    old = Checkpoint(ORIGIN, cp.size - 1, cp.root).text()
    with pytest.raises(NotFoundError, match="not the ledger's latest checkpoint"):
        led.add_cosignatures(Note(old, note.signatures))
    # Re-cosigning replaces a node's older cosignature.
    newer = parse_note(led.add_cosignatures(_cosign(note, NODES[1], at=T + 60)))
    assert len(newer.signatures) == 2
    assert dict(led.policy.evaluate(newer).cosigned) == {"n1": T + 60}


def test_genesis_refuses_a_policy_for_another_log(tmp_path: Path) -> None:
    other = verifier_of(make_signer(ORIGIN))
    with pytest.raises(MalformedError, match="do not include the log key"):
        _init(tmp_path / "a", checkpoint_policy=f"log {other}\n{POLICY}")
    assert not (tmp_path / "a" / "ledger.db").exists()
    log_key = verifier_of(Ed25519Signer(ORIGIN, bytes(32)))
    members = [Founder(verifier_of(alice), "acme", ("admin",)).to_json()]
    body = genesis_body(ORIGIN, log_key, members)
    for bad, match in (
        (7, "checkpoint_policy is tlog-policy text"),
        ("quorum nobody\n", "quorum 'nobody' is not a defined witness"),
        (f"log {other}\nquorum none\n", "do not include the log key"),
    ):
        with pytest.raises(MalformedError, match=match):
            check_genesis({**body, "checkpoint_policy": bad})


class _Cosigning(httpx.BaseTransport):
    """A real transport that cosigns each checkpoint the server sends with
    ``signers``, as witnesses in front of the server would."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.signers: list[Ed25519Signer] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.url.path != "/checkpoint" or response.status_code != 200:
            return response
        body = _cosign(response.read(), *self.signers).to_bytes()
        return httpx.Response(200, headers={"content-type": "text/plain"}, content=body)

    def close(self) -> None:
        self.inner.close()


def test_remote_ledger_verifies_under_the_genesis_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELCHAIN_HOME", str(tmp_path / "home"))
    with _init(tmp_path / "ledger", checkpoint_policy=POLICY) as led:
        for i in range(3):
            led.record_event("pipeline.step", {"i": i}, bob)
        vkey, policy = led.log_key.to_string(), led.policy
    transport = _Cosigning()
    with running_server(tmp_path / "ledger", "--reads", "open") as url:
        remote = mc.connect(url, log_key=vkey, cache=tmp_path / "mirror", transport=transport)
        try:
            _check_remote(remote, transport, policy)
        finally:
            remote.close()


def _check_remote(remote: RemoteLedger, transport: _Cosigning, policy: CheckpointPolicy) -> None:
    transport.signers = [NODES[1]]
    with pytest.raises(SignatureError, match="group 'nodes' needs 2 of n0, n1, n2; met: n1"):
        remote.sync()
    assert remote._store.size == 0  # nothing stored from a checkpoint that does not count
    transport.signers = [NODES[1], OUTSIDER, NODES[2]]
    cp = remote.sync()
    assert remote.policy == policy
    assert remote.size == cp.size == 4
    # The mirror keeps every signature that verified (not the outsider's).
    names = [s.name for s in parse_note(remote.checkpoint()).signatures]
    assert names == [ORIGIN, NODES[1].name, NODES[2].name]
    receipt = remote.tlog_proof(2)
    assert verify_tlog_proof(receipt, leaf_hash(remote.entry_bytes(2)), policy).size == 4
    assert verify_checkpoint(receipt.checkpoint, policy)[0] == cp
    # A server whose next checkpoint lacks the quorum cannot move the mirror.
    transport.signers = [NODES[0]]
    with pytest.raises(SignatureError, match="met: n0"):
        remote.sync()


def test_cli_init_takes_a_policy_file(tmp_path: Path, env: dict[str, str]) -> None:
    given = tmp_path / "given.txt"
    given.write_text(POLICY)
    ledger = tmp_path / "ledger"
    args = ("--ledger", str(ledger), "--origin", ORIGIN, "--unencrypted")
    run_cli(env, "init", *args, "--checkpoint-policy", str(given))
    with mc.open(ledger, readonly=True) as led:
        assert led.policy == CheckpointPolicy.parse(POLICY).with_log(led.log_key)
    given.write_text("quorum nobody\n")
    other = ("--ledger", str(tmp_path / "l2"), *args[2:], "--checkpoint-policy", str(given))
    bad = run_cli(env, "init", *other, ok=False)
    assert "quorum 'nobody' is not a defined witness or group" in bad.stderr
    assert not (tmp_path / "l2" / "ledger.db").exists()


def test_cli_prints_the_policy_and_verifies_with_it(tmp_path: Path, env: dict[str, str]) -> None:
    ledger = tmp_path / "ledger"
    with _init(ledger, checkpoint_policy=POLICY) as led:
        led.record_event("pipeline.step", {"i": 0}, bob)
        led.add_cosignatures(_cosign(led.checkpoint(), NODES[0], NODES[2]))
        vkey, policy = str(led.log_key), led.policy
    printed = run_cli(env, "log", "policy", "--ledger", str(ledger)).stdout
    assert CheckpointPolicy.parse(printed) == policy
    policy_file = tmp_path / "policy.txt"
    policy_file.write_text(printed)
    logs = tmp_path / "logs.jsonl"
    run_cli(env, "report", "logs", "--ledger", str(ledger), "-o", str(logs))
    for trust in (str(policy_file), vkey):
        run_cli(env, "report", "verify-logs", str(logs), "--vkey", trust)
    # The export's checkpoint without its cosignatures fails under the policy file
    # (and still passes under the bare log key, which asks for none).
    head, *rest = logs.read_text().splitlines(keepends=True)
    first = json.loads(head)
    note = parse_note(first["note"])
    first["note"] = Note(note.text, note.signatures[:2]).to_bytes().decode()
    logs.write_text(json.dumps(first) + "\n" + "".join(rest))
    bad = run_cli(env, "report", "verify-logs", str(logs), "--vkey", str(policy_file), ok=False)
    assert "group 'nodes' needs 2 of n0, n1, n2; met: n0" in bad.stderr


def test_a_second_implementation_reads_the_cosigned_note(led: mc.Ledger) -> None:
    """sigstore-python's signed-note parser (Rekor v2 checkpoints) splits a note
    cosigned here into the same text and signature lines, and the signatures it
    finds verify with `cryptography` over the messages the specs define."""
    checkpoint_mod = pytest.importorskip("sigstore._internal.rekor.checkpoint")
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    note = _cosign(led.checkpoint(), NODES[0], NODES[1])
    other = checkpoint_mod.SignedNote.from_text(note.to_bytes().decode())
    assert other.note == note.text
    assert [(s.name, s.sig_hash) for s in other.signatures] == [
        (s.name, s.key_id) for s in note.signatures
    ]
    raw = [base64.b64decode(s.signature) for s in other.signatures]
    Ed25519PublicKey.from_public_bytes(led.log_key.public_key).verify(raw[0], note.text.encode())
    for signer, sig in zip(NODES[:2], raw[1:], strict=True):
        timestamp = int.from_bytes(sig[:8], "big")
        message = f"cosignature/v1\ntime {timestamp}\n{note.text}".encode()
        Ed25519PublicKey.from_public_bytes(signer.public_key).verify(sig[8:], message)
        assert timestamp == T


def test_a_cluster_quorum_must_be_met_by_its_nodes_alone() -> None:
    nodes = {n: (make_signer(n).public_key, None) for n in ("n1", "n2", "n3")}
    cluster = CheckpointPolicy.of_cluster(ORIGIN, nodes, 2)
    cluster.check_cluster()  # two of three nodes: reachable
    witness = verifier_of(make_signer("w1.example")).with_type(COSIGNATURE_V1)
    text = cluster.to_text().replace(
        "quorum nodes\n", f"witness w1 {witness}\ngroup both all nodes w1\nquorum both\n"
    )
    needs_witness = CheckpointPolicy.parse(text)
    with pytest.raises(MalformedError, match="cannot be met by the nodes"):
        needs_witness.check_cluster()
    CheckpointPolicy.of_log(verifier_of(make_signer(ORIGIN))).check_cluster()  # not a cluster
