"""Post-quantum witnesses: ML-DSA-44 identities in the key store and the CLI, a
witness that cosigns with one (type 0x06), a ledger whose policy asks for it,
and the places that need an Ed25519 key refusing it cleanly."""

from __future__ import annotations

import base64
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import ORIGIN, make_signer, run_cli
from serving import STARTUP_S, free_port, stop_process
from test_witness import NOW, Client, _body, _size

import modelchain as mc
from modelchain.core.checkpoint import Checkpoint
from modelchain.core.identity import (
    ML_DSA_44_COSIGNATURE,
    Ed25519Signer,
    MlDsa44Signer,
    VerifierKey,
    cosigner_of,
)
from modelchain.core.note import NoteSignature, parse_note
from modelchain.core.policy import CheckpointPolicy, verify_checkpoint
from modelchain.core.witness import origin_hash
from modelchain.errors import KeyStoreError, SignatureError
from modelchain.keys import FileSigner, KeyStore
from modelchain.server.witness import create_witness_app
from modelchain.storage.witness import WitnessState

PQ = MlDsa44Signer("pq.example", bytes([42]) * 32)
PASS = b"correct horse"


def _never() -> bytes:
    raise AssertionError("the passphrase was asked for")


def _pq_client(led: mc.Ledger, state: Path, signer: MlDsa44Signer = PQ) -> Client:
    policy = CheckpointPolicy.parse(f"log {led.log_key}\nquorum none\n")
    return Client(create_witness_app(policy, WitnessState(state), signer, clock=lambda: NOW))


def _tampered(answer: bytes) -> bytes:
    """The witness's cosignature line with one bit of the ML-DSA signature flipped."""
    dash, name, blob = answer.decode().rstrip("\n").split(" ")
    raw = bytearray(base64.b64decode(blob))
    raw[4 + 8 + 100] ^= 0x01
    return f"{dash} {name} {base64.b64encode(bytes(raw)).decode()}\n".encode()


def test_an_ml_dsa_identity_is_an_encrypted_key_file(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "home")
    vk = store.create("pq.example", PASS, "ml-dsa-44")
    assert vk.type_byte == ML_DSA_44_COSIGNATURE and len(vk.public_key) == 1312
    key_file = store.directory / "pq.example.key"
    assert key_file.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert store.verifier("pq.example") == vk
    assert store.list() == [(vk, "file")]
    cosigner = store.cosigner("pq.example", lambda: PASS)
    assert isinstance(cosigner, MlDsa44Signer) and cosigner_of(cosigner) == vk
    with pytest.raises(KeyStoreError, match="wrong passphrase"):
        store.cosigner("pq.example", lambda: b"wrong")
    # An Ed25519 identity cosigns as itself, with type 0x04.
    store.create("ed.example", PASS)
    assert isinstance(store.cosigner("ed.example", lambda: PASS), FileSigner)


def test_an_ml_dsa_identity_cannot_sign_as_a_member(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "home")
    store.create("pq.example", None, "ml-dsa-44")
    # Refused before any passphrase is asked for.
    with pytest.raises(KeyStoreError, match="ML-DSA-44 key, which only cosigns"):
        store.signer("pq.example", _never)
    with pytest.raises(KeyStoreError, match="not an Ed25519 key"):
        FileSigner.load("pq.example", store.directory / "pq.example.key", None)


def test_a_swapped_ml_dsa_key_file_is_caught(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "home")
    store.create("a", None, "ml-dsa-44")
    store.create("b", None, "ml-dsa-44")
    (store.directory / "a.key").unlink()
    (store.directory / "b.key").rename(store.directory / "a.key")
    with pytest.raises(KeyStoreError, match="does not match"):
        store.cosigner("a")


def test_a_witness_cosigns_with_ml_dsa_and_a_ledger_keeps_it(
    tmp_path: Path, alice: Ed25519Signer
) -> None:
    asks = f"witness pq {cosigner_of(PQ)}\nquorum pq\n"
    with mc.init(tmp_path / "l", ORIGIN, alice, checkpoint_policy=asks) as led:
        client = _pq_client(led, tmp_path / "w")
        note = led.checkpoint()
        r = client.post("/add-checkpoint", _body(0, [], note))
        assert r.status_code == 200, r.text
        sig = parse_note(note + r.content).signatures[-1]
        assert sig.name == "pq.example" and sig.key_id == cosigner_of(PQ).key_id
        assert len(sig.signature) == 8 + 2420
        # A tampered answer is refused and nothing is kept.
        with pytest.raises(SignatureError, match="pq: "):
            led.add_cosignatures(note + _tampered(r.content))
        assert led.policy.evaluate(led.checkpoint()).cosigned == {}
        with pytest.raises(SignatureError):
            led.verified_checkpoint()
        # The real answer satisfies the policy.
        led.add_cosignatures(note + r.content)
        assert led.policy.evaluate(led.checkpoint()).cosigned == {"pq": NOW}
        assert led.verified_checkpoint().size == _size(note)
        # The next checkpoint goes with a consistency proof, as for Ed25519.
        old = _size(note)
        for i in range(3):
            led.record_event("e", i, make_signer("alice"))
        second = led.checkpoint()
        r = client.post("/add-checkpoint", _body(old, led.consistency_proof(old), second))
        assert r.status_code == 200, r.text
        assert verify_checkpoint(second + r.content, led.policy)[0].size == old + 3


def test_a_cosignature_by_another_ml_dsa_key_does_not_count(
    tmp_path: Path, alice: Ed25519Signer
) -> None:
    impostor = MlDsa44Signer(PQ.name, bytes([43]) * 32)  # the witness's name, not its key
    policy_text = f"witness pq {cosigner_of(PQ)}\nquorum pq\n"
    with mc.init(tmp_path / "l", ORIGIN, alice, checkpoint_policy=policy_text) as led:
        note = led.checkpoint()
        r = _pq_client(led, tmp_path / "w", impostor).post("/add-checkpoint", _body(0, [], note))
        assert r.status_code == 200
        assert led.policy.evaluate(note + r.content).cosigned == {}
        with pytest.raises(SignatureError, match="has not cosigned"):
            verify_checkpoint(note + r.content, led.policy)
        # Relabelled with the real witness's key id, it fails outright.
        sig = parse_note(note + r.content).signatures[-1]
        forged = NoteSignature(sig.name, cosigner_of(PQ).key_id, sig.signature)
        with pytest.raises(SignatureError, match="pq: "):
            verify_checkpoint(note + forged.line().encode(), led.policy)


def test_cli_identity_and_witness_vkey(env: dict[str, str]) -> None:
    out = run_cli(env, "identity", "new", "pq.example", "--algorithm", "ml-dsa-44").stdout
    vk = VerifierKey.from_string(out)
    assert vk.type_byte == ML_DSA_44_COSIGNATURE
    assert "algorithm: ml-dsa-44" in run_cli(env, "identity", "show", "pq.example").stdout
    line = run_cli(env, "witness", "vkey", "--identity", "pq.example").stdout
    name, key = line.removeprefix("witness ").split()
    assert name == "pq.example" and VerifierKey.from_string(key) == vk
    # The default stays Ed25519, cosigning as type 0x04.
    ed = VerifierKey.from_string(run_cli(env, "identity", "new", "ed.example").stdout)
    assert ed.type_byte == 0x01
    assert run_cli(env, "witness", "vkey", "--identity", "ed.example").stdout.endswith(
        f"{ed.with_type(0x04)}\n"
    )
    hsm = run_cli(
        env,
        *("identity", "new", "hsm", "--algorithm", "ml-dsa-44"),
        *("--pkcs11-module", "/nonexistent.so", "--token", "t"),
        ok=False,
    )
    assert hsm.returncode == 2 and "key files" in hsm.stderr


def test_cli_refuses_an_ml_dsa_identity_where_ed25519_is_needed(env: dict[str, str]) -> None:
    run_cli(env, "identity", "new", "alice")
    run_cli(env, "identity", "new", "pq.example", "--algorithm", "ml-dsa-44")
    admin = run_cli(env, "init", "--origin", ORIGIN, "--admin", "pq.example", ok=False)
    assert admin.returncode == 6, admin.stderr
    assert "ML-DSA-44" in admin.stderr and "Traceback" not in admin.stderr
    founding = run_cli(
        env, "init", "--origin", ORIGIN, "--admin", "alice", "--member", "pq.example", ok=False
    )
    assert founding.returncode == 2, founding.stderr
    assert "a member's key must be Ed25519" in founding.stderr
    run_cli(env, "init", "--origin", ORIGIN, "--admin", "alice")
    event = run_cli(env, "event", "record", "e", "--body", "{}", "--as", "pq.example", ok=False)
    assert event.returncode == 6, event.stderr
    assert "only cosigns checkpoints as a witness" in event.stderr
    assert "Traceback" not in event.stderr
    # Nothing is submitted for a member with an ML-DSA-44 key.
    size = run_cli(env, "log", "checkpoint").stdout
    added = run_cli(env, "member", "add", "pq.example", "--role", "trainer", ok=False)
    assert added.returncode == 2 and "a member's key must be Ed25519" in added.stderr
    assert run_cli(env, "log", "checkpoint").stdout == size


def test_witness_serve_cosigns_with_an_ml_dsa_identity(
    tmp_path: Path, env: dict[str, str], alice: Ed25519Signer
) -> None:
    run_cli(env, "identity", "new", "pq.example", "--algorithm", "ml-dsa-44")
    witness_line = run_cli(env, "witness", "vkey", "--identity", "pq.example").stdout
    asks = f"{witness_line}quorum pq.example\n"
    with mc.init(tmp_path / "l", ORIGIN, alice, checkpoint_policy=asks) as led:
        policy = tmp_path / "policy"
        policy.write_text(f"log {led.log_key}\n")
        port = free_port()
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "modelchain", "witness", "serve"),
                *("--policy", str(policy), "--state", str(tmp_path / "w")),
                *("--identity", "pq.example", "--port", str(port)),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + STARTUP_S
            while True:
                assert proc.poll() is None, f"witness exited with {proc.returncode}"
                try:
                    httpx.get(f"{url}/{origin_hash(ORIGIN)}/checkpoint", timeout=5)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "the witness did not come up"
                    time.sleep(0.05)
            note = led.checkpoint()
            r = httpx.post(f"{url}/add-checkpoint", content=_body(0, [], note), timeout=30)
            assert r.status_code == 200, r.text
        finally:
            stop_process(proc)
        led.add_cosignatures(note + r.content)
        cosigned = led.policy.evaluate(led.checkpoint()).cosigned["pq.example"]
        assert abs(cosigned - time.time()) < 300
        cp = Checkpoint.from_text(parse_note(note).text)
        assert led.verified_checkpoint() == cp
