"""tlog-proof receipts: all indexes of a 13-leaf tree, the spec example, parsing, tampering."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelchain.core.checkpoint import Checkpoint, cosign, cosignatures, sign_checkpoint
from modelchain.core.identity import Ed25519Signer, verifier_of
from modelchain.core.note import add_signatures, parse_note
from modelchain.core.tlogproof import PROOF_HEADER, TlogProof, verify_tlog_proof
from modelchain.errors import MalformedError, ProofError, SignatureError

ORIGIN = "ledger.example.org/fraud-models"
LOG = Ed25519Signer(ORIGIN, bytes([7]) * 32)
WITNESS = Ed25519Signer("witness.example.org/w1", bytes([9]) * 32)


# RFC 9162 section 2.1, written out here so the receipts are checked against a
# tree built independently of modelchain.core.merkle.
def _leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def _root(leaves: list[bytes]) -> bytes:
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return _node(_root(leaves[:k]), _root(leaves[k:]))


def _path(index: int, leaves: list[bytes]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return [*_path(index, leaves[:k]), _root(leaves[k:])]
    return [*_path(index - k, leaves[k:]), _root(leaves[:k])]


LEAVES = [_leaf(f"entry {i}".encode()) for i in range(13)]
CP = Checkpoint(ORIGIN, len(LEAVES), _root(LEAVES))
SIGNED = sign_checkpoint(CP, LOG).to_bytes()


def _receipt(index: int, extra: bytes | None = None) -> TlogProof:
    return TlogProof(index, tuple(_path(index, LEAVES)), SIGNED, extra)


# The example of c2sp.org/tlog-proof. Its signature lines are elided ("[...]")
# in the spec, so the checkpoint is re-signed here with a local key; the
# header, extra, index and path lines are the spec's own.
SPEC_HEAD = (
    "c2sp.org/tlog-proof@v1\n"
    "extra YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6kYXJ3aW4tYXJ\n"
    "index 73894\n"
    "gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=\n"
    "B95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=\n"
    "EKNzoDWG8LGC0Yp9o+sv3qllpMP9uHQ9B20KNL+Q1zs=\n"
    "RoopEkOdqkYqMB4MJXrbt/hMjOxsVn0IrWjpz1ZMMes=\n"
    "AHCioX9nLjsrse6YhjRRmk1WUEirVOLLRoOQ6vfO5vk=\n"
    "\n"
)
SPEC_LOG = Ed25519Signer("example.com/fancylog", bytes([3]) * 32)
SPEC_CP = Checkpoint.from_text(
    "example.com/fancylog\n109482\nsFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=\n"
)


def test_every_index_of_a_13_leaf_tree() -> None:
    log_key = verifier_of(LOG)
    for index in range(len(LEAVES)):
        receipt = _receipt(index)
        text = receipt.to_text()
        parsed = TlogProof.from_text(text)
        assert parsed == receipt
        assert parsed.to_text() == text
        assert verify_tlog_proof(parsed, LEAVES[index], log_key) == CP


def test_text_layout() -> None:
    receipt = _receipt(5)
    lines = receipt.to_text().split("\n")
    assert lines[0] == PROOF_HEADER
    assert lines[1] == "index 5"
    path = [base64.b64encode(h).decode() for h in _path(5, LEAVES)]
    assert lines[2 : 2 + len(path)] == path
    assert lines[2 + len(path)] == ""
    assert receipt.to_text().endswith("\n\n" + SIGNED.decode())


def test_extra_data_round_trip() -> None:
    for extra in (b"batch path 3/7", b""):
        receipt = _receipt(3, extra)
        text = receipt.to_text()
        assert text.split("\n")[1] == "extra " + base64.b64encode(extra).decode()
        parsed = TlogProof.from_text(text)
        assert parsed.extra == extra
        verify_tlog_proof(parsed, LEAVES[3], verifier_of(LOG))
    assert TlogProof.from_text(_receipt(3).to_text()).extra is None


def test_spec_example() -> None:
    signed = sign_checkpoint(SPEC_CP, SPEC_LOG).to_bytes()
    text = SPEC_HEAD + signed.decode()
    receipt = TlogProof.from_text(text)
    assert receipt.index == 73894
    assert len(receipt.proof) == 5
    assert receipt.extra is not None
    assert receipt.extra.startswith(b"age-v1.2.1-darwin-arm64.tar.gz")
    assert receipt.to_text() == text
    # The spec's path is illustrative (too short for this tree), so it cannot verify.
    with pytest.raises(ProofError):
        verify_tlog_proof(receipt, bytes(32), verifier_of(SPEC_LOG))


def test_single_leaf_tree_has_an_empty_path() -> None:
    cp = Checkpoint(ORIGIN, 1, LEAVES[0])
    receipt = TlogProof(0, (), sign_checkpoint(cp, LOG).to_bytes())
    text = receipt.to_text()
    assert text.startswith(f"{PROOF_HEADER}\nindex 0\n\n{ORIGIN}\n1\n")
    assert TlogProof.from_text(text) == receipt
    assert verify_tlog_proof(receipt, LEAVES[0], verifier_of(LOG)) == cp


def test_cosigned_checkpoint_in_a_receipt() -> None:
    note = add_signatures(parse_note(SIGNED), cosign(CP, WITNESS, 1_700_000_000))
    receipt = TlogProof(4, tuple(_path(4, LEAVES)), note.to_bytes())
    parsed = TlogProof.from_text(receipt.to_text())
    cp = verify_tlog_proof(parsed, LEAVES[4], verifier_of(LOG))
    assert cosignatures(parsed.checkpoint, cp, [verifier_of(WITNESS)]) == {
        WITNESS.name: 1_700_000_000
    }


def test_changed_index_fails() -> None:
    for index in range(len(LEAVES)):
        receipt = _receipt(index)
        for other in range(len(LEAVES)):
            if other == index:
                continue
            moved = TlogProof(other, receipt.proof, receipt.checkpoint)
            with pytest.raises(ProofError):
                verify_tlog_proof(moved, LEAVES[index], verifier_of(LOG))


def test_index_beyond_tree_fails() -> None:
    receipt = TlogProof(13, tuple(_path(12, LEAVES)), SIGNED)
    with pytest.raises(ProofError):
        verify_tlog_proof(receipt, LEAVES[12], verifier_of(LOG))


def test_changed_path_hash_fails() -> None:
    receipt = _receipt(6)
    for i in range(len(receipt.proof)):
        proof = list(receipt.proof)
        proof[i] = bytes([proof[i][0] ^ 1]) + proof[i][1:]
        with pytest.raises(ProofError):
            verify_tlog_proof(TlogProof(6, tuple(proof), SIGNED), LEAVES[6], verifier_of(LOG))
    for short_or_long in (receipt.proof[:-1], (*receipt.proof, receipt.proof[0])):
        bad = TlogProof(6, short_or_long, SIGNED)
        with pytest.raises(ProofError):
            verify_tlog_proof(bad, LEAVES[6], verifier_of(LOG))


def test_changed_leaf_fails() -> None:
    for index in range(len(LEAVES)):
        with pytest.raises(ProofError):
            verify_tlog_proof(_receipt(index), _leaf(b"forged"), verifier_of(LOG))


def test_changed_checkpoint_byte_fails() -> None:
    text = _receipt(2).to_text().encode()
    start = text.index(b"\n\n") + 2
    for i in range(start, len(text)):
        tampered = bytearray(text)
        tampered[i] ^= 0x01
        with pytest.raises((MalformedError, SignatureError, ProofError)):
            verify_tlog_proof(TlogProof.from_text(bytes(tampered)), LEAVES[2], verifier_of(LOG))


def test_wrong_log_key_fails() -> None:
    impostor = Ed25519Signer(ORIGIN, bytes([8]) * 32)
    with pytest.raises(SignatureError):
        verify_tlog_proof(_receipt(0), LEAVES[0], verifier_of(impostor))


_SIGNED_TEXT = SIGNED.decode()
_H = base64.b64encode(bytes(32)).decode()


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(f"c2sp.org/tlog-proof@v2\nindex 0\n\n{_SIGNED_TEXT}", id="wrong header"),
        pytest.param(f"index 0\n\n{_SIGNED_TEXT}", id="no header"),
        pytest.param(f"{PROOF_HEADER}\n\n{_SIGNED_TEXT}", id="no index"),
        pytest.param(f"{PROOF_HEADER}\nindex 01\n\n{_SIGNED_TEXT}", id="leading zero"),
        pytest.param(f"{PROOF_HEADER}\nindex -1\n\n{_SIGNED_TEXT}", id="negative"),
        pytest.param(f"{PROOF_HEADER}\nindex  1\n\n{_SIGNED_TEXT}", id="two spaces"),
        pytest.param(f"{PROOF_HEADER}\nindex\n\n{_SIGNED_TEXT}", id="bare index"),
        pytest.param(f"{PROOF_HEADER}\nindex {2**64}\n\n{_SIGNED_TEXT}", id="over u64"),
        pytest.param(f"{PROOF_HEADER}\nindex 1\nindex 2\n\n{_SIGNED_TEXT}", id="two indexes"),
        pytest.param(f"{PROOF_HEADER}\nindex 1\nextra AA==\n\n{_SIGNED_TEXT}", id="extra late"),
        pytest.param(f"{PROOF_HEADER}\nextra A\nindex 1\n\n{_SIGNED_TEXT}", id="bad extra"),
        pytest.param(
            f"{PROOF_HEADER}\nextra AA==\nextra AA==\nindex 1\n\n{_SIGNED_TEXT}", id="2 extras"
        ),
        pytest.param(f"{PROOF_HEADER}\nindex 1\n{_H[:-1]}\n\n{_SIGNED_TEXT}", id="bad hash b64"),
        pytest.param(
            f"{PROOF_HEADER}\nindex 1\n{base64.b64encode(bytes(31)).decode()}\n\n{_SIGNED_TEXT}",
            id="short hash",
        ),
        pytest.param(
            f"{PROOF_HEADER}\nindex 1\n" + f"{_H}\n" * 65 + f"\n{_SIGNED_TEXT}", id="65 hashes"
        ),
        pytest.param(f"{PROOF_HEADER}\nindex 1\n{_H}\n", id="no checkpoint"),
        pytest.param(f"{PROOF_HEADER}\nindex 1\n{_H}\n\n", id="empty checkpoint"),
        pytest.param(
            f"{PROOF_HEADER}\nindex 1\n{_H}\n\nhello\n\n— a AAAAAAA=\n", id="not a checkpoint"
        ),
        pytest.param(f"{PROOF_HEADER}\r\nindex 1\n\n{_SIGNED_TEXT}", id="carriage return"),
        pytest.param(b"c2sp.org/tlog-proof@v1\nindex 1\n\n\xff", id="invalid utf-8"),
    ],
)
def test_malformed_receipts(text: str | bytes) -> None:
    with pytest.raises(MalformedError):
        TlogProof.from_text(text)


def test_constructor_rejects() -> None:
    with pytest.raises(MalformedError):
        TlogProof(-1, (), SIGNED)
    with pytest.raises(MalformedError):
        TlogProof(0, (bytes(31),), SIGNED)
    with pytest.raises(MalformedError):
        TlogProof(0, (), b"not a note")


@given(
    index=st.integers(min_value=0, max_value=2**64 - 1),
    proof=st.lists(st.binary(min_size=32, max_size=32), max_size=64),
    extra=st.none() | st.binary(max_size=64),
)
def test_round_trip_property(index: int, proof: list[bytes], extra: bytes | None) -> None:
    receipt = TlogProof(index, tuple(proof), SIGNED, extra)
    assert TlogProof.from_text(receipt.to_text()) == receipt


@given(head=st.text(max_size=80))
def test_parser_never_crashes(head: str) -> None:
    try:
        receipt = TlogProof.from_text(head + "\n\n" + _SIGNED_TEXT)
    except MalformedError:
        return
    assert receipt.to_text() == head + "\n\n" + _SIGNED_TEXT
