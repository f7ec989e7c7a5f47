"""Signed notes: the C2SP and Go examples, tampering, unknown keys and malformed input."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelchain.core.identity import COSIGNATURE_V1, Ed25519Signer, VerifierKey, verifier_of
from modelchain.core.note import (
    MAX_SIGNATURES,
    Note,
    NoteSignature,
    add_signatures,
    parse_note,
    sign_note,
    verify_note,
)
from modelchain.errors import MalformedError, SignatureError

DATA = Path(__file__).resolve().parents[1] / "data" / "merkle_rfc9162.json"
SPEC = json.loads(DATA.read_text())["signed_note_example"]

# golang.org/x/mod/sumdb/note package documentation (the reference implementation).
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_PETER_LINE = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAc"
    "ElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
GO_ENOCH_LINE = (
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOX"
    "m2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
)
# The seed of PeterNeumann's key, from the same documentation's signer key.
GO_PETER_SEED = base64.b64decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")[1:]

# The example at the top of c2sp.org/signed-note; its public key is not published.
SPEC_POEM = (
    "Ognuno sta solo sul cuor della terra\n"
    "trafitto da un raggio di sole:\n"
    "\n"
    "ed è subito sera.\n"
    "\n"
    "— quasimodo.example/salvatore NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ"
    "2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n"
)

ALICE = Ed25519Signer("alice.example/log", bytes(range(32)))
BOB = Ed25519Signer("bob.example/witness", bytes(range(1, 33)))


def test_spec_example_verifies() -> None:
    key = VerifierKey.from_string(SPEC["vkey"])
    note, verified = verify_note(SPEC["note"], [key])
    assert note.text == "This is an example message.\n"
    assert verified == (key,)
    assert note.to_bytes() == SPEC["note"].encode()


def test_go_example_verifies_and_reproduces() -> None:
    peter = VerifierKey.from_string(GO_PETER_VKEY)
    _, verified = verify_note(GO_TEXT + "\n" + GO_PETER_LINE, [peter])
    assert verified == (peter,)
    # Ed25519 is deterministic: signing again gives the documented line.
    signer = Ed25519Signer("PeterNeumann", GO_PETER_SEED)
    assert sign_note(GO_TEXT, signer).to_bytes() == (GO_TEXT + "\n" + GO_PETER_LINE).encode()


def test_go_doubly_signed_example_verifies_with_one_known_key() -> None:
    peter = VerifierKey.from_string(GO_PETER_VKEY)
    data = GO_TEXT + "\n" + GO_PETER_LINE + GO_ENOCH_LINE
    note, verified = verify_note(data, [peter])
    assert verified == (peter,)
    assert [s.name for s in note.signatures] == ["PeterNeumann", "EnochRoot"]


def test_spec_poem_parses_with_blank_lines_in_text() -> None:
    note = parse_note(SPEC_POEM)
    assert note.text.endswith("ed è subito sera.\n")
    assert "\n\n" in note.text
    assert note.signatures[0].name == "quasimodo.example/salvatore"
    assert note.signatures[0].key_id.hex() == "367ba04b"
    assert len(note.signatures[0].signature) == 64
    assert note.to_bytes() == SPEC_POEM.encode()


def test_text_ends_at_the_last_blank_line() -> None:
    note = parse_note("hello\n\n— a AAAAAAA=\n\n— b AAAAAAA=\n")
    assert note.text == "hello\n\n— a AAAAAAA=\n"
    assert [s.name for s in note.signatures] == ["b"]


def test_unknown_extra_signature_is_ignored() -> None:
    key = VerifierKey.from_string(SPEC["vkey"])
    other = sign_note("This is an example message.\n", BOB).signatures[0]
    note = add_signatures(parse_note(SPEC["note"]), other)
    _, verified = verify_note(note.to_bytes(), [key])
    assert verified == (key,)


def test_signature_sharing_only_name_or_only_id_is_ignored() -> None:
    key = VerifierKey.from_string(SPEC["vkey"])
    note = parse_note(SPEC["note"])
    real = note.signatures[0]
    same_name = NoteSignature(real.name, b"\x00\x00\x00\x00", b"\x01" * 64)
    same_id = NoteSignature("example.com/bar", real.key_id, b"\x01" * 64)
    _, verified = verify_note(add_signatures(note, same_name, same_id), [key])
    assert verified == (key,)


def test_every_changed_byte_fails() -> None:
    key = VerifierKey.from_string(SPEC["vkey"])
    data = SPEC["note"].encode()
    for i in range(len(data)):
        tampered = bytearray(data)
        tampered[i] ^= 0x01
        with pytest.raises((SignatureError, MalformedError)):
            verify_note(bytes(tampered), [key])


def test_known_key_signature_that_fails_rejects() -> None:
    alice = verifier_of(ALICE)
    good = sign_note("hello\n", ALICE)
    bad = NoteSignature(ALICE.name, good.signatures[0].key_id, bytes(64))
    # A second, valid signature by another known key does not save the note.
    note = Note("hello\n", (sign_note("hello\n", BOB).signatures[0], bad))
    with pytest.raises(SignatureError):
        verify_note(note, [alice, verifier_of(BOB)])


def test_no_known_signature_rejects() -> None:
    note = sign_note("hello\n", ALICE)
    with pytest.raises(SignatureError):
        verify_note(note, [verifier_of(BOB)])
    with pytest.raises(SignatureError):
        verify_note(note, [])


def test_cosignature_keys_do_not_verify_plain_signatures() -> None:
    note = sign_note("hello\n", ALICE)
    with pytest.raises(SignatureError):
        verify_note(note, [verifier_of(ALICE, COSIGNATURE_V1)])


def test_same_key_listed_twice_counts_once() -> None:
    a = verifier_of(ALICE)
    _, verified = verify_note(sign_note("x\n", ALICE), [a, a])
    assert verified == (a,)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param("hello\n— a AAAAAAA=\n", id="no blank line"),
        pytest.param("hello\n\n", id="no signatures"),
        pytest.param("hello\n\n— a AAAAAAA=", id="no final newline"),
        pytest.param("hello\n\n— a AAAA!AA=\n", id="bad base64"),
        pytest.param("hello\n\n— a AAAAAAB=\n", id="non-canonical base64"),
        pytest.param("hello\n\n— a AAAAAA==\n", id="short signature"),
        pytest.param("hello\n\n— a AAAAAAA\n", id="unpadded base64"),
        pytest.param("hel\tlo\n\n— a AAAAAAA=\n", id="tab in text"),
        pytest.param("hello\r\n\n— a AAAAAAA=\n", id="carriage return"),
        pytest.param("hello\n\n- a AAAAAAA=\n", id="hyphen not em dash"),
        pytest.param("hello\n\n—a AAAAAAA=\n", id="no space after dash"),
        pytest.param("hello\n\n— a+b AAAAAAA=\n", id="plus in name"),
        pytest.param("hello\n\n—  AAAAAAA=\n", id="empty name"),
        pytest.param("hello\n\n— a\u00a0b AAAAAAA=\n", id="unicode space in name"),
        pytest.param("hello\n\n— a AAAAAAA= \n", id="trailing space"),
        pytest.param("hello\n\n— a\n", id="no signature"),
        pytest.param("hello\n\n— a AAAAAAA=\n\n", id="blank line after sigs"),
        pytest.param("hello\n\n— a AAAAAAA=\n— a AAAAAAA=\nx\n", id="trailing garbage"),
        pytest.param(b"hello\xff\n\n\xe2\x80\x94 a AAAAAAA=\n", id="invalid utf-8"),
        pytest.param("hello\ud800\n\n— a AAAAAAA=\n", id="lone surrogate"),
    ],
)
def test_malformed_notes(data: str | bytes) -> None:
    with pytest.raises(MalformedError):
        parse_note(data)


def test_signature_count_limit() -> None:
    line = sign_note("hi\n", ALICE).signatures[0].line()
    ok = "hi\n\n" + line * MAX_SIGNATURES
    assert len(parse_note(ok).signatures) == MAX_SIGNATURES
    with pytest.raises(MalformedError):
        parse_note(ok + line)


def test_sign_parse_round_trip() -> None:
    note = sign_note("line one\n\nline three\n", ALICE)
    parsed = parse_note(note.to_bytes())
    assert parsed == note
    _, verified = verify_note(parsed.to_bytes(), [verifier_of(ALICE)])
    assert verified == (verifier_of(ALICE),)


def test_sign_rejects_bad_text() -> None:
    with pytest.raises(MalformedError):
        sign_note("no newline", ALICE)
    with pytest.raises(MalformedError):
        sign_note("bell\x07\n", ALICE)


def test_add_signatures_replaces_same_key() -> None:
    note = sign_note("hello\n", ALICE)
    bob1 = NoteSignature(BOB.name, b"\x01\x02\x03\x04", b"one")
    bob2 = NoteSignature(BOB.name, b"\x01\x02\x03\x04", b"two")
    both = add_signatures(add_signatures(note, bob1), bob2)
    assert both.signatures == (note.signatures[0], bob2)
    _, verified = verify_note(both, [verifier_of(ALICE)])
    assert verified == (verifier_of(ALICE),)


def test_note_signature_validation() -> None:
    with pytest.raises(MalformedError):
        NoteSignature("a b", b"\x00" * 4, b"x")
    with pytest.raises(MalformedError):
        NoteSignature("a", b"\x00" * 3, b"x")
    with pytest.raises(MalformedError):
        NoteSignature("a", b"\x00" * 4, b"")
    with pytest.raises(MalformedError):
        Note("hello\n", ())


_text_lines = st.text(alphabet=st.characters(min_codepoint=0x20, codec="utf-8"), max_size=20)


@given(lines=st.lists(_text_lines, min_size=1, max_size=5))
def test_round_trip_property(lines: list[str]) -> None:
    text = "".join(line + "\n" for line in lines)
    note = sign_note(text, ALICE)
    assert parse_note(note.to_bytes()) == note
    verify_note(note.to_bytes(), [verifier_of(ALICE)])


@given(data=st.binary(max_size=200))
def test_parser_never_crashes(data: bytes) -> None:
    try:
        note = parse_note(data)
    except MalformedError:
        return
    assert note.to_bytes() == data
