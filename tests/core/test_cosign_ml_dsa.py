"""ML-DSA-44 cosignatures (tlog-cosignature v1.1, type 0x06): the signer against
Wycheproof's ML-DSA-44 vectors, a cosignature made by another implementation
(torchwood), round trips through verify_cosignature and checkpoint policies,
and tampered cosignatures refused."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import pytest

from modelchain.core.checkpoint import (
    MAX_TIMESTAMP,
    Checkpoint,
    cosign,
    cosign_note,
    cosignatures,
    ml_dsa_44_cosignature_message,
    sign_checkpoint,
    verify_cosignature,
)
from modelchain.core.identity import (
    ML_DSA_44_COSIGNATURE,
    Ed25519Signer,
    MlDsa44Signer,
    Signer,
    VerifierKey,
    cosigner_of,
    key_id,
    verifier_of,
    verify_ml_dsa_44,
)
from modelchain.core.note import NoteSignature, add_signatures, parse_note
from modelchain.core.policy import CheckpointPolicy, verify_checkpoint
from modelchain.errors import MalformedError, SignatureError

DATA = Path(__file__).parent.parent / "data"
VECTORS = json.loads((DATA / "mldsa44_wycheproof.json").read_text())
TORCHWOOD = json.loads((DATA / "mldsa44_torchwood.json").read_text(encoding="utf-8"))
ORIGIN = "ledger.example.org/fraud-models"
LOG = Ed25519Signer(ORIGIN, bytes([7]) * 32)
PQ = MlDsa44Signer("witness.example.org/pq", bytes([42]) * 32)
CP = Checkpoint(ORIGIN, 13, hashlib.sha256(b"root").digest())
SIGNED = sign_checkpoint(CP, LOG)
T = 1_700_000_000
POLICY = CheckpointPolicy.parse(
    f"log {verifier_of(LOG)}\nwitness PQ {cosigner_of(PQ)}\nquorum PQ\n"
)


def test_key_generation_matches_the_wycheproof_seed_vector() -> None:
    signer = MlDsa44Signer("w", bytes.fromhex(VECTORS["privateSeed"]))
    assert signer.public_key == bytes.fromhex(VECTORS["publicKey"])


@pytest.mark.parametrize("case", VECTORS["tests"], ids=lambda t: f"tc{t['tcId']}")
def test_verification_matches_the_wycheproof_vectors(case: dict[str, str]) -> None:
    public_key = bytes.fromhex(VECTORS["publicKey"])
    msg, sig = bytes.fromhex(case["msg"]), bytes.fromhex(case["sig"])
    # Cosignatures are signed with the empty context: a signature made under
    # another context (tc3) must not verify here, though Wycheproof calls it valid.
    if case["result"] == "valid" and not case.get("ctx"):
        verify_ml_dsa_44(public_key, msg, sig, "w")
    else:
        with pytest.raises(SignatureError, match="does not verify"):
            verify_ml_dsa_44(public_key, msg, sig, "w")


def test_a_signature_by_the_vector_key_verifies_under_its_public_key() -> None:
    signer = MlDsa44Signer("w", bytes.fromhex(VECTORS["privateSeed"]))
    msg = bytes.fromhex(VECTORS["tests"][0]["msg"])
    verify_ml_dsa_44(bytes.fromhex(VECTORS["publicKey"]), msg, signer.sign_ml_dsa_44(msg))


def test_a_cosignature_made_by_torchwood_verifies() -> None:
    # Another implementation's bytes: the subtree/v1 message layout, the key id
    # and the empty ML-DSA context must all agree with ours for this to pass.
    key = VerifierKey.from_string(TORCHWOOD["vkey"])
    assert key.type_byte == ML_DSA_44_COSIGNATURE
    note = parse_note(TORCHWOOD["note"].encode())
    cp = Checkpoint.from_text(note.text)
    (sig,) = note.signatures
    assert verify_cosignature(cp, sig, key) == 0
    assert cosignatures(note, cp, [key]) == {key.name: 0}
    with pytest.raises(SignatureError, match="does not verify"):
        verify_cosignature(cp, _tampered(sig, 8 + 500), key)
    with pytest.raises(SignatureError, match="does not verify"):
        verify_cosignature(Checkpoint(cp.origin, cp.size + 1, cp.root), sig, key)


def test_cosign_makes_a_type_0x06_line_that_verifies() -> None:
    sig = cosign(CP, PQ, T)
    key = cosigner_of(PQ)
    assert key.type_byte == ML_DSA_44_COSIGNATURE
    assert sig.name == PQ.name
    assert sig.key_id == key_id(PQ.name, 0x06, PQ.public_key) == key.key_id
    assert len(sig.signature) == 8 + 2420
    assert sig.signature[:8] == T.to_bytes(8, "big")
    verify_ml_dsa_44(
        PQ.public_key, ml_dsa_44_cosignature_message(CP, PQ.name, T), sig.signature[8:]
    )
    assert verify_cosignature(CP, sig, key) == T
    # Through the vkey string, as a policy names it.
    assert verify_cosignature(CP, sig, VerifierKey.from_string(str(key))) == T


def test_cosigned_note_round_trips_and_satisfies_a_policy() -> None:
    note = cosign_note(SIGNED, PQ, T)
    assert parse_note(note.to_bytes()) == note
    assert cosignatures(note, CP, [cosigner_of(PQ)]) == {PQ.name: T}
    assert dict(POLICY.evaluate(note.to_bytes()).cosigned) == {"PQ": T}
    assert verify_checkpoint(note.to_bytes(), POLICY)[0] == CP
    # Without the cosignature the quorum is not met.
    with pytest.raises(SignatureError):
        verify_checkpoint(SIGNED, POLICY)


def test_extension_lines_are_not_signed() -> None:
    with_ext = Checkpoint(CP.origin, CP.size, CP.root, ("ext line",))
    assert verify_cosignature(CP, cosign(with_ext, PQ, T), cosigner_of(PQ)) == T


def _tampered(sig: NoteSignature, at: int) -> NoteSignature:
    raw = bytearray(sig.signature)
    raw[at] ^= 0x01
    return NoteSignature(sig.name, sig.key_id, bytes(raw))


@pytest.mark.parametrize("at", [7, 8, 8 + 1000, 8 + 2419], ids=["timestamp", "c", "z", "last"])
def test_a_tampered_cosignature_is_refused(at: int) -> None:
    bad = _tampered(cosign(CP, PQ, T), at)
    with pytest.raises(SignatureError, match="does not verify"):
        verify_cosignature(CP, bad, cosigner_of(PQ))
    note = add_signatures(SIGNED, bad)
    result = POLICY.evaluate(note.to_bytes())
    assert not result.satisfied and result.failed[0].startswith("PQ: ")
    with pytest.raises(SignatureError):
        verify_checkpoint(note.to_bytes(), POLICY)


def test_a_cosignature_for_another_tree_or_name_is_refused() -> None:
    for other in (Checkpoint(ORIGIN, 14, CP.root), Checkpoint("other.example/log", 13, CP.root)):
        with pytest.raises(SignatureError, match="does not verify"):
            verify_cosignature(other, cosign(CP, PQ, T), cosigner_of(PQ))
    # The message commits to the cosigner's name: the same key under another
    # name does not verify, even with that name's key id.
    renamed = VerifierKey("witness.example.org/other", PQ.public_key, ML_DSA_44_COSIGNATURE)
    sig = cosign(CP, PQ, T)
    moved = NoteSignature(renamed.name, renamed.key_id, sig.signature)
    with pytest.raises(SignatureError, match="does not verify"):
        verify_cosignature(CP, moved, renamed)


def test_a_truncated_cosignature_is_refused() -> None:
    sig = cosign(CP, PQ, T)
    short = NoteSignature(sig.name, sig.key_id, sig.signature[:-1])
    with pytest.raises(SignatureError, match="bytes, want 2428"):
        verify_cosignature(CP, short, cosigner_of(PQ))


def test_timestamps() -> None:
    # Zero is allowed by the spec (no statement about the largest tree seen).
    assert verify_cosignature(CP, cosign(CP, PQ, 0), cosigner_of(PQ)) == 0
    assert verify_cosignature(CP, cosign(CP, PQ, MAX_TIMESTAMP), cosigner_of(PQ)) == MAX_TIMESTAMP
    for bad in (-1, MAX_TIMESTAMP + 1):
        with pytest.raises(MalformedError, match="out of range"):
            cosign(CP, PQ, bad)


def test_the_ml_dsa_signer_is_not_an_ed25519_signer() -> None:
    # Nothing may take it for a note or DSSE signer: it only cosigns.
    assert not isinstance(PQ, Signer)
    assert repr(PQ).startswith("MlDsa44Signer(name='witness.example.org/pq', key_id=")
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(PQ)
    with pytest.raises(MalformedError, match="32 bytes"):
        MlDsa44Signer("w", bytes(31))
    with pytest.raises(MalformedError, match="invalid key name"):
        MlDsa44Signer("has space", bytes(32))
