"""Checkpoints and tlog-cosignature/v1: spec examples, round trips, strict parsing, tampering."""

from __future__ import annotations

import base64
import hashlib

import nacl.signing
import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelchain.core.checkpoint import (
    MAX_TIMESTAMP,
    Checkpoint,
    cosign,
    cosignature_message,
    cosignatures,
    open_checkpoint,
    sign_checkpoint,
    verify_cosignature,
)
from modelchain.core.identity import COSIGNATURE_V1, ED25519, Ed25519Signer, key_id, verifier_of
from modelchain.core.note import Note, NoteSignature, add_signatures, parse_note
from modelchain.errors import MalformedError, SignatureError

ORIGIN = "ledger.example.org/fraud-models"
LOG = Ed25519Signer(ORIGIN, bytes([7]) * 32)
W1 = Ed25519Signer("witness.example.org/w1", bytes([9]) * 32)
W2 = Ed25519Signer("witness.example.org/w2", bytes([10]) * 32)
ROOT = hashlib.sha256(b"root").digest()
CP = Checkpoint(ORIGIN, 13, ROOT)

# Golden bytes (Ed25519 is deterministic): a change here breaks every
# receipt and witness already handed out.
GOLDEN_LOG_VKEY = (
    "ledger.example.org/fraud-models+4fdc46f4+AepKbGPinFIKvvVQexMuxfmVR3auvr57kkIe6mkURtIs"
)
GOLDEN_W1_VKEY = "witness.example.org/w1+33f915cc+BP0XJDhaoMdbZPt4zWAvodmR/ev3axPFjtcC6sg16fYY"
GOLDEN_NOTE = (
    "ledger.example.org/fraud-models\n13\nSBNJTRN+FjG7owHVrKtue7eqdM4RhdRWVl71HXN2d7I=\n\n"
    "— ledger.example.org/fraud-models T9xG9BRp3WR3NA16fLIRcEqqcKk6BK"
    "0evNG9nqm+C0qkIYYwO3pUsQpNTwzi++uMN/1qis11141EKPAkq61T5Jswlww=\n"
)
GOLDEN_W1_LINE = (
    "— witness.example.org/w1 M/kVzAAAAABlU/EAUeY9NjOSJMiWqaEsoue85Gvo"
    "FqGNsPpvAIuSrEcFdJU0KZffHIxMBMqzMTxoI3V4lOEYGBk0axcZxVaS52lWCw==\n"
)

# The examples in c2sp.org/tlog-checkpoint and c2sp.org/tlog-cosignature. Their
# public keys are not published, so they can be parsed but not verified.
SPEC_CHECKPOINT = (
    "example.com/behind-the-sofa\n"
    "20852163\n"
    "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    "\n"
    "— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZni"
    "Mp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
    "— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcr"
    "tPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n"
)
SPEC_COSIGNED_MESSAGE = (
    "cosignature/v1\n"
    "time 1679315147\n"
    "example.com/behind-the-sofa\n"
    "20852163\n"
    "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
)


def test_text_round_trip() -> None:
    cp = Checkpoint(ORIGIN, 1234, ROOT, ("ext one", "ext two"))
    assert cp.text() == (f"{ORIGIN}\n1234\n{base64.b64encode(ROOT).decode()}\next one\next two\n")
    assert Checkpoint.from_text(cp.text()) == cp


def test_empty_tree_is_size_zero() -> None:
    empty = Checkpoint(ORIGIN, 0, hashlib.sha256(b"").digest())
    assert empty.text().split("\n")[1] == "0"
    assert Checkpoint.from_text(empty.text()) == empty


def test_spec_examples_parse() -> None:
    note = parse_note(SPEC_CHECKPOINT)
    cp = Checkpoint.from_text(note.text)
    assert (cp.origin, cp.size, cp.extensions) == ("example.com/behind-the-sofa", 20852163, ())
    assert note.to_bytes() == SPEC_CHECKPOINT.encode()
    cosig = note.signatures[1]
    assert cosig.key_id.hex() == "8d66cf3f"
    assert len(cosig.signature) == 8 + 64
    timestamp = int.from_bytes(cosig.signature[:8], "big")
    # The spec's signed-message example is for this very cosignature.
    assert cosignature_message(cp, timestamp) == SPEC_COSIGNED_MESSAGE.encode()


def test_golden_log_signature_and_cosignature() -> None:
    assert verifier_of(LOG).to_string() == GOLDEN_LOG_VKEY
    assert verifier_of(W1, COSIGNATURE_V1).to_string() == GOLDEN_W1_VKEY
    assert sign_checkpoint(CP, LOG).to_bytes() == GOLDEN_NOTE.encode()
    assert cosign(CP, W1, 1_700_000_000).line() == GOLDEN_W1_LINE


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(f"{ORIGIN}\n013\n{base64.b64encode(ROOT).decode()}\n", id="leading zero"),
        pytest.param(f"{ORIGIN}\n00\n{base64.b64encode(ROOT).decode()}\n", id="double zero"),
        pytest.param(f"{ORIGIN}\n-1\n{base64.b64encode(ROOT).decode()}\n", id="negative"),
        pytest.param(f"{ORIGIN}\n+1\n{base64.b64encode(ROOT).decode()}\n", id="plus sign"),
        pytest.param(f"{ORIGIN}\n 1\n{base64.b64encode(ROOT).decode()}\n", id="space"),
        pytest.param(f"{ORIGIN}\n1_0\n{base64.b64encode(ROOT).decode()}\n", id="underscore"),
        pytest.param(f"{ORIGIN}\n١\n{base64.b64encode(ROOT).decode()}\n", id="arabic digit"),
        pytest.param(f"{ORIGIN}\n{2**64}\n{base64.b64encode(ROOT).decode()}\n", id="over u64"),
        pytest.param(f"{ORIGIN}\n\n{base64.b64encode(ROOT).decode()}\n", id="empty size"),
        pytest.param(f"{ORIGIN}\n1\nnot*base64\n", id="bad base64 root"),
        pytest.param(f"{ORIGIN}\n1\n{base64.b64encode(ROOT[:31]).decode()}\n", id="short root"),
        pytest.param(f"{ORIGIN}\n1\n{base64.b64encode(ROOT + b'x').decode()}\n", id="long root"),
        pytest.param(f"{ORIGIN}\n1\n{base64.b64encode(ROOT).decode()[:-2]}\n", id="unpadded"),
        pytest.param(f"{ORIGIN}\n1\n", id="missing root"),
        pytest.param(f"{ORIGIN}\n", id="missing size"),
        pytest.param("", id="empty"),
        pytest.param(f"\n1\n{base64.b64encode(ROOT).decode()}\n", id="empty origin"),
        pytest.param(f"{ORIGIN}\n1\n{base64.b64encode(ROOT).decode()}", id="no final newline"),
        pytest.param(f"{ORIGIN}\n1\n{base64.b64encode(ROOT).decode()}\n\n", id="empty ext"),
        pytest.param(f"{ORIGIN}\r\n1\n{base64.b64encode(ROOT).decode()}\n", id="carriage return"),
    ],
)
def test_from_text_rejects(text: str) -> None:
    with pytest.raises(MalformedError):
        Checkpoint.from_text(text)


def test_constructor_rejects() -> None:
    with pytest.raises(MalformedError):
        Checkpoint("", 1, ROOT)
    with pytest.raises(MalformedError):
        Checkpoint("a\nb", 1, ROOT)
    with pytest.raises(MalformedError):
        Checkpoint(ORIGIN, -1, ROOT)
    with pytest.raises(MalformedError):
        Checkpoint(ORIGIN, 1, ROOT[:16])
    with pytest.raises(MalformedError):
        Checkpoint(ORIGIN, 1, ROOT, ("",))


def test_sign_and_open() -> None:
    note = sign_checkpoint(CP, LOG)
    cp, opened = open_checkpoint(note.to_bytes(), verifier_of(LOG))
    assert cp == CP
    assert opened == note


def test_log_key_name_must_equal_origin() -> None:
    other = Ed25519Signer("someone.else/log", bytes([7]) * 32)
    with pytest.raises(MalformedError):
        sign_checkpoint(CP, other)
    # A checkpoint whose origin is not the log key's name is refused when opened.
    from modelchain.core.note import sign_note

    foreign = sign_note(Checkpoint("someone.else/other", 1, ROOT).text(), other)
    with pytest.raises(SignatureError):
        open_checkpoint(foreign, verifier_of(other))


def test_open_rejects_wrong_key_and_tampering() -> None:
    note = sign_checkpoint(CP, LOG)
    impostor = Ed25519Signer(ORIGIN, bytes([8]) * 32)
    with pytest.raises(SignatureError):
        open_checkpoint(note, verifier_of(impostor))
    tampered = note.to_bytes().replace(b"\n13\n", b"\n14\n")
    with pytest.raises(SignatureError):
        open_checkpoint(tampered, verifier_of(LOG))
    with pytest.raises(MalformedError):
        open_checkpoint(note, verifier_of(LOG, COSIGNATURE_V1))


def test_open_rejects_signed_garbage() -> None:
    from modelchain.core.note import sign_note

    with pytest.raises(MalformedError):
        open_checkpoint(sign_note(f"{ORIGIN}\n01\n", LOG), verifier_of(LOG))


def test_cosign_round_trip() -> None:
    sig = cosign(CP, W1, 1_700_000_000)
    assert sig.key_id == key_id(W1.name, COSIGNATURE_V1, W1.public_key)
    assert verify_cosignature(CP, sig, verifier_of(W1, COSIGNATURE_V1)) == 1_700_000_000
    # A plain Ed25519 verifier key of the witness is accepted and converted.
    assert verify_cosignature(CP, sig, verifier_of(W1, ED25519)) == 1_700_000_000


def test_cosignature_matches_spec_construction() -> None:
    # Rebuilt by hand from tlog-cosignature, independently of cosign().
    ts = 1_679_315_147
    cp = Checkpoint(ORIGIN, 7, ROOT, ("extension",))
    message = (
        f"cosignature/v1\ntime {ts}\n{ORIGIN}\n7\n{base64.b64encode(ROOT).decode()}\nextension\n"
    )
    sig = cosign(cp, W1, ts)
    assert sig.signature[:8] == ts.to_bytes(8, "big")
    nacl.signing.VerifyKey(W1.public_key).verify(message.encode(), sig.signature[8:])


def test_cosignature_tampering_fails() -> None:
    sig = cosign(CP, W1, 1_700_000_000)
    key = verifier_of(W1, COSIGNATURE_V1)
    later = NoteSignature(
        sig.name, sig.key_id, (1_700_000_001).to_bytes(8, "big") + sig.signature[8:]
    )
    with pytest.raises(SignatureError):
        verify_cosignature(CP, later, key)
    with pytest.raises(SignatureError):
        verify_cosignature(Checkpoint(ORIGIN, 14, ROOT), sig, key)
    with pytest.raises(SignatureError):
        verify_cosignature(Checkpoint(ORIGIN, 13, ROOT, ("x",)), sig, key)
    for i in range(8, len(sig.signature)):
        flipped = bytearray(sig.signature)
        flipped[i] ^= 0x80
        with pytest.raises(SignatureError):
            verify_cosignature(CP, NoteSignature(sig.name, sig.key_id, bytes(flipped)), key)
    with pytest.raises(SignatureError):
        verify_cosignature(CP, NoteSignature(sig.name, sig.key_id, sig.signature[:-1]), key)
    with pytest.raises(SignatureError):
        verify_cosignature(CP, sig, verifier_of(W2, COSIGNATURE_V1))


def test_cosignature_timestamp_range() -> None:
    assert verify_cosignature(CP, cosign(CP, W1, MAX_TIMESTAMP), verifier_of(W1)) == MAX_TIMESTAMP
    with pytest.raises(MalformedError):
        cosign(CP, W1, MAX_TIMESTAMP + 1)
    with pytest.raises(MalformedError):
        cosign(CP, W1, -1)
    # A well-signed but out-of-range timestamp is still refused.
    big = MAX_TIMESTAMP + 1
    raw = W1.sign(cosignature_message(CP, big))
    sig = NoteSignature(
        W1.name, key_id(W1.name, COSIGNATURE_V1, W1.public_key), big.to_bytes(8, "big") + raw
    )
    with pytest.raises(SignatureError):
        verify_cosignature(CP, sig, verifier_of(W1))


def test_cosignatures_on_a_note() -> None:
    note = add_signatures(sign_checkpoint(CP, LOG), cosign(CP, W1, 100), cosign(CP, W2, 200))
    parsed = parse_note(note.to_bytes())
    # The log's own signature verifies the note; the cosignatures are unknown to it.
    cp, _ = open_checkpoint(parsed, verifier_of(LOG))
    witnesses = [verifier_of(W1, COSIGNATURE_V1), verifier_of(W2)]
    assert cosignatures(parsed, cp, witnesses) == {W1.name: 100, W2.name: 200}
    assert cosignatures(note.to_bytes(), cp, witnesses[:1]) == {W1.name: 100}
    assert cosignatures(parsed, cp, []) == {}


def test_cosignatures_known_failing_rejects() -> None:
    good = cosign(CP, W1, 100)
    bad = NoteSignature(good.name, good.key_id, good.signature[:8] + bytes(64))
    note = add_signatures(sign_checkpoint(CP, LOG), bad, cosign(CP, W2, 200))
    with pytest.raises(SignatureError):
        cosignatures(note, CP, [verifier_of(W1), verifier_of(W2)])
    # Unknown to this verifier, the bad one is ignored.
    assert cosignatures(note, CP, [verifier_of(W2)]) == {W2.name: 200}


def test_cosignatures_need_the_same_checkpoint() -> None:
    note = add_signatures(sign_checkpoint(CP, LOG), cosign(CP, W1, 100))
    with pytest.raises(MalformedError):
        cosignatures(note, Checkpoint(ORIGIN, 14, ROOT), [verifier_of(W1)])


def test_recosigning_replaces_older_cosignature() -> None:
    note = add_signatures(sign_checkpoint(CP, LOG), cosign(CP, W1, 100))
    note = add_signatures(note, cosign(CP, W1, 300))
    assert len(note.signatures) == 2
    assert cosignatures(note, CP, [verifier_of(W1)]) == {W1.name: 300}


def test_log_signature_is_not_a_cosignature() -> None:
    # Same key used as log and witness: the type byte keeps the key ids apart.
    same = Ed25519Signer(ORIGIN, bytes([7]) * 32)
    note: Note = sign_checkpoint(CP, LOG)
    assert cosignatures(note, CP, [verifier_of(same)]) == {}
    note = add_signatures(note, cosign(CP, same, 5))
    cp, _ = open_checkpoint(note, verifier_of(LOG))
    assert cosignatures(note, cp, [verifier_of(same)]) == {ORIGIN: 5}


@given(
    size=st.integers(min_value=0, max_value=2**64 - 1),
    root=st.binary(min_size=32, max_size=32),
    extensions=st.lists(
        st.text(alphabet=st.characters(min_codepoint=0x20, codec="utf-8"), min_size=1),
        max_size=3,
    ),
)
def test_round_trip_property(size: int, root: bytes, extensions: list[str]) -> None:
    cp = Checkpoint(ORIGIN, size, root, tuple(extensions))
    assert Checkpoint.from_text(cp.text()) == cp


@given(text=st.text(max_size=120))
def test_from_text_never_crashes(text: str) -> None:
    try:
        cp = Checkpoint.from_text(text)
    except MalformedError:
        return
    assert cp.text() == text
