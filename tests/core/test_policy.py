"""Checkpoint policies (c2sp.org/tlog-policy): parsing, formatting, refusals and evaluation."""

from __future__ import annotations

import hashlib
import re

import pytest
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA44PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from modelchain.core.checkpoint import (
    Checkpoint,
    cosign,
    cosign_note,
    ml_dsa_44_cosignature_message,
    sign_checkpoint,
)
from modelchain.core.identity import (
    COSIGNATURE_V1,
    ML_DSA_44_COSIGNATURE,
    Ed25519Signer,
    VerifierKey,
    key_id,
    verifier_of,
)
from modelchain.core.note import Note, NoteSignature, add_signatures, parse_note
from modelchain.core.policy import (
    CheckpointPolicy,
    PolicyGroup,
    PolicyLog,
    PolicyWitness,
    as_policy,
    verify_checkpoint,
)
from modelchain.errors import MalformedError, SignatureError

ORIGIN = "ledger.example.org/fraud-models"
LOG = Ed25519Signer(ORIGIN, bytes([7]) * 32)
OTHER_LOG = Ed25519Signer(ORIGIN, bytes([8]) * 32)
WITNESSES = [Ed25519Signer(f"witness.example.org/w{i}", bytes([20 + i]) * 32) for i in range(6)]
STRANGER = Ed25519Signer("witness.example.org/w0", bytes([99]) * 32)  # w0's name, not its key
CP = Checkpoint(ORIGIN, 13, hashlib.sha256(b"root").digest())
SIGNED = sign_checkpoint(CP, LOG)
T = 1_700_000_000


def _log(name: str) -> Ed25519Signer:
    return Ed25519Signer(name, bytes([7]) * 32)


def _wkey(signer: Ed25519Signer) -> str:
    return str(verifier_of(signer, COSIGNATURE_V1))


LOG_LINE = f"log {verifier_of(LOG)}"
WITNESS_LINES = "".join(f"witness W{i} {_wkey(w)}\n" for i, w in enumerate(WITNESSES))
TWO_OF_THREE = f"{LOG_LINE}\n{WITNESS_LINES}group nodes 2 W0 W1 W2\nquorum nodes\n"


def _cosigned(note: Note, *indexes: int, at: int = T) -> Note:
    for i in indexes:
        note = cosign_note(note, WITNESSES[i], at)
    return note


# -- parsing and formatting ------------------------------------------------


def test_single_node_policy_is_the_log_key() -> None:
    policy = CheckpointPolicy.of_log(verifier_of(LOG))
    assert policy.to_text() == f"{LOG_LINE}\nquorum none\n"
    assert CheckpointPolicy.parse(policy.to_text()) == policy
    assert policy.log_key == verifier_of(LOG)
    assert as_policy(verifier_of(LOG)) == policy
    assert as_policy(str(verifier_of(LOG))) == policy
    assert verify_checkpoint(SIGNED.to_bytes(), policy) == (CP, SIGNED)


def test_spec_example_shape_round_trips() -> None:
    # The two-level example of c2sp.org/tlog-policy, with comments, tabs,
    # blank lines, URLs and surrounding whitespace.
    text = (
        "# example policy\n"
        f"  {LOG_LINE}\thttps://log.example.org/\n"
        "\n"
        f"witness X1 {_wkey(WITNESSES[0])} https://w1.example.org/\n"
        f"witness X2 {_wkey(WITNESSES[1])}\n"
        f"witness X3\t{_wkey(WITNESSES[2])}\n"
        "group X-witnesses 2 X1 X2 X3\n"
        "   # comment after whitespace\n"
        f"witness Y1 {_wkey(WITNESSES[3])}\n"
        f"witness Y2 {_wkey(WITNESSES[4])}\n"
        f"witness Y3 {_wkey(WITNESSES[5])}\n"
        "group Y-witnesses any Y1 Y2 Y3\n"
        "group X-and-Y all X-witnesses Y-witnesses  \n"
        "quorum X-and-Y"  # no final newline
    )
    policy = CheckpointPolicy.parse(text)
    assert policy.logs == (PolicyLog(verifier_of(LOG), "https://log.example.org/"),)
    assert [w.name for w in policy.witnesses] == ["X1", "X2", "X3", "Y1", "Y2", "Y3"]
    assert policy.witnesses[0].url == "https://w1.example.org/"
    assert policy.groups == (
        PolicyGroup("X-witnesses", 2, ("X1", "X2", "X3")),
        PolicyGroup("Y-witnesses", 1, ("Y1", "Y2", "Y3"), "any"),
        PolicyGroup("X-and-Y", 2, ("X-witnesses", "Y-witnesses"), "all"),
    )
    assert policy.quorum == "X-and-Y"
    formatted = policy.to_text()
    assert "group Y-witnesses any Y1 Y2 Y3\n" in formatted
    assert formatted.endswith("quorum X-and-Y\n")
    assert CheckpointPolicy.parse(formatted) == policy
    assert CheckpointPolicy.parse(formatted.encode()) == policy
    assert CheckpointPolicy.parse(formatted).to_text() == formatted


def test_quorum_may_be_one_witness() -> None:
    policy = CheckpointPolicy.parse(f"{LOG_LINE}\n{WITNESS_LINES}quorum W4\n")
    with pytest.raises(SignatureError, match="witness 'W4' has not cosigned"):
        verify_checkpoint(SIGNED, policy)
    assert verify_checkpoint(_cosigned(SIGNED, 4), policy)[0] == CP


_W = _wkey(WITNESSES[0])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no quorum line"),
        (f"{LOG_LINE}\n", "no quorum line"),
        (f"{LOG_LINE}\nquorum none\nquorum none\n", "line 3: a policy has exactly one quorum"),
        ("quorum\n", "line 1: want 'quorum <name|none>'"),
        ("quorum a b\n", "want 'quorum <name|none>'"),
        ("quorum W0\n", "quorum 'W0' is not a defined witness or group"),
        (f"witness W0 {_W}\nquorum W0\nbogus x\n", "line 3: unknown keyword 'bogus'"),
        ("Quorum none\n", "unknown keyword 'Quorum'"),
        ("log\nquorum none\n", re.escape("line 1: want 'log <vkey> [url]'")),
        (f"{LOG_LINE} url extra\nquorum none\n", re.escape("want 'log <vkey> [url]'")),
        ("log not-a-vkey\nquorum none\n", "line 1: bad vkey"),
        (f"log {_W}\nquorum none\n", r"must be an Ed25519 \(0x01\) note key"),
        (f"witness W0 {verifier_of(WITNESSES[0])}\nquorum none\n", "not a cosignature key"),
        ("witness W0\nquorum none\n", re.escape("want 'witness <name> <vkey> [url]'")),
        (f"{LOG_LINE}\n{LOG_LINE}\nquorum none\n", "line 2: log .* is listed twice"),
        (
            f"{LOG_LINE}\nlog {verifier_of(_log('x.org/l'))}\nquorum none\n",
            "listed twice",  # the same public key under another name
        ),
        (f"witness W0 {_W}\nwitness W0 {_wkey(WITNESSES[1])}\nquorum none\n", "defined twice"),
        (f"witness W0 {_W}\nwitness W9 {_W}\nquorum none\n", "have the same key"),
        (f"witness none {_W}\nquorum none\n", "'none' is predefined"),
        (f"witness W0 {_W}\ngroup none any W0\nquorum none\n", "'none' is predefined"),
        (f"witness W0 {_W}\ngroup W0 any W0\nquorum none\n", "'W0' is defined twice"),
        (f"witness W0 {_W}\ngroup g any none\nquorum none\n", "'none' cannot be a member"),
        (f"witness W0 {_W}\ngroup g any W0 W9\nquorum none\n", "member 'W9' is not a witness"),
        (f"witness W0 {_W}\ngroup g any W0 W0\nquorum none\n", "already a member of group 'g'"),
        (
            f"{WITNESS_LINES}group a any W0 W1\ngroup b any W0 W2\nquorum b\n",
            "'W0' is already a member of group 'a'",
        ),
        (f"witness W0 {_W}\ngroup g 0 W0\nquorum g\n", "threshold 0 is not between 1 and 1"),
        (f"witness W0 {_W}\ngroup g 2 W0\nquorum g\n", "threshold 2 is not between 1 and 1"),
        (f"witness W0 {_W}\ngroup g 01 W0\nquorum g\n", "is not all, any or a number"),
        (f"witness W0 {_W}\ngroup g -1 W0\nquorum g\n", "is not all, any or a number"),
        (f"witness W0 {_W}\ngroup g some W0\nquorum g\n", "is not all, any or a number"),
        (f"witness W0 {_W}\ngroup g any\nquorum g\n", "want 'group <name>"),
        (f"{LOG_LINE}\r\nquorum none\n", "line 1: control character U\\+000D"),
        ("quorum none\x7f\n", "control character U\\+007F"),
        (b"quorum \xff\n", "not valid UTF-8"),
        ("quorum \udc80\n", "not valid UTF-8"),
    ],
)
def test_parse_refuses(text: str | bytes, message: str) -> None:
    with pytest.raises(MalformedError, match=message):
        CheckpointPolicy.parse(text)


def test_cycles_cannot_be_written() -> None:
    # Names must be defined on earlier lines, so a cycle always names a group
    # not yet defined: a self-reference, or two groups naming each other.
    w = WITNESS_LINES
    for text in (
        f"{w}group a any a W0\nquorum a\n",
        f"{w}group a any b W0\ngroup b any a W1\nquorum a\n",
    ):
        with pytest.raises(MalformedError, match=r"defined before it .* cycles are impossible"):
            CheckpointPolicy.parse(text)


def test_constructor_checks_like_the_parser() -> None:
    w = PolicyWitness("W0", verifier_of(WITNESSES[0], COSIGNATURE_V1))
    with pytest.raises(MalformedError, match="not a defined witness"):
        CheckpointPolicy((), (w,), (), "W1")
    with pytest.raises(MalformedError, match="not between 1 and 1"):
        PolicyGroup("g", 2, ("W0",))
    with pytest.raises(MalformedError, match="'all' means 2"):
        PolicyGroup("g", 1, ("W0", "W1"), "all")
    with pytest.raises(MalformedError, match="threshold spelled '1'"):
        PolicyGroup("g", 1, ("W0", "W1"), "1")
    with pytest.raises(MalformedError, match="one word"):
        PolicyWitness("two words", w.key)
    assert CheckpointPolicy((), (w,), (PolicyGroup("g", 1, ("W0",)),), "g").to_text() == (
        f"witness W0 {w.key}\ngroup g 1 W0\nquorum g\n"
    )


def test_with_log_and_log_key() -> None:
    bare = CheckpointPolicy.parse(f"{WITNESS_LINES}group nodes 2 W0 W1 W2\nquorum nodes\n")
    with pytest.raises(MalformedError, match="names 0 logs"):
        _ = bare.log_key
    full = bare.with_log(verifier_of(LOG))
    assert full == CheckpointPolicy.parse(TWO_OF_THREE)
    assert full.with_log(verifier_of(LOG)) is full
    with pytest.raises(MalformedError, match="do not include the log key"):
        full.with_log(verifier_of(OTHER_LOG))


@given(
    k=st.integers(min_value=1, max_value=6),
    members=st.permutations(range(6)),
    count=st.integers(min_value=1, max_value=6),
    urls=st.lists(st.booleans(), min_size=6, max_size=6),
)
def test_format_parse_round_trip_property(
    k: int, members: list[int], count: int, urls: list[bool]
) -> None:
    chosen = tuple(f"W{i}" for i in members[:count])
    witnesses = tuple(
        PolicyWitness(
            f"W{i}",
            verifier_of(w, COSIGNATURE_V1),
            f"https://w{i}.example.org/" if urls[i] else None,
        )
        for i, w in enumerate(WITNESSES)
    )
    groups = (PolicyGroup("g", min(k, count), chosen),)
    policy = CheckpointPolicy((PolicyLog(verifier_of(LOG)),), witnesses, groups, "g")
    assert CheckpointPolicy.parse(policy.to_text()) == policy


# -- evaluation -------------------------------------------------------------


@pytest.mark.parametrize("valid", [0, 1, 2, 3])
def test_two_of_three(valid: int) -> None:
    policy = CheckpointPolicy.parse(TWO_OF_THREE)
    note = _cosigned(SIGNED, *range(valid))
    result = policy.evaluate(note)
    assert dict(result.cosigned) == {f"W{i}": T for i in range(valid)}
    assert result.satisfied == (valid >= 2)
    if valid >= 2:
        assert verify_checkpoint(note.to_bytes(), policy) == (CP, note)
    else:
        met = ", ".join(f"W{i}" for i in range(valid)) or "none"
        with pytest.raises(
            SignatureError, match=f"group 'nodes' needs 2 of W0, W1, W2; met: {met}"
        ):
            verify_checkpoint(note.to_bytes(), policy)


def test_log_signature_is_always_required() -> None:
    policy = CheckpointPolicy.parse(TWO_OF_THREE)
    cosigned = _cosigned(SIGNED, 0, 1, 2)
    without_log = Note(cosigned.text, cosigned.signatures[1:])
    with pytest.raises(SignatureError, match="no signature from a trusted key"):
        verify_checkpoint(without_log, policy)
    by_other_log = _cosigned(sign_checkpoint(CP, OTHER_LOG), 0, 1, 2)
    with pytest.raises(SignatureError, match="no signature from a trusted key"):
        verify_checkpoint(by_other_log, policy)
    foreign = _cosigned(
        sign_checkpoint(Checkpoint("other.org/log", 1, CP.root), _log("other.org/log")), 0, 1
    )
    with pytest.raises(
        SignatureError, match=r"origin 'other\.org/log' is not a log the policy trusts"
    ):
        verify_checkpoint(foreign, policy)


def test_a_bad_cosignature_is_named_and_not_counted() -> None:
    policy = CheckpointPolicy.parse(TWO_OF_THREE)
    good = cosign(CP, WITNESSES[0], T)
    # W1's cosignature of another checkpoint, pasted onto this one.
    other = Checkpoint(ORIGIN, 14, CP.root)
    bad = cosign(other, WITNESSES[1], T)
    note = add_signatures(SIGNED, good, bad)
    result = policy.evaluate(note)
    assert dict(result.cosigned) == {"W0": T}
    assert len(result.failed) == 1 and result.failed[0].startswith("W1: ")
    with pytest.raises(SignatureError, match=r"met: W0.*failed cosignatures: W1: signature by"):
        verify_checkpoint(note, policy)
    # A third, valid cosignature meets the quorum despite the bad one.
    assert policy.evaluate(_cosigned(note, 2)).satisfied


def test_log_signature_that_fails_rejects() -> None:
    policy = CheckpointPolicy.parse(TWO_OF_THREE)
    cosigned = _cosigned(SIGNED, 0, 1)
    forged = NoteSignature(ORIGIN, cosigned.signatures[0].key_id, bytes(64))
    with pytest.raises(SignatureError, match="does not verify"):
        verify_checkpoint(Note(cosigned.text, (forged, *cosigned.signatures[1:])), policy)


def test_unknown_cosigners_are_ignored() -> None:
    policy = CheckpointPolicy.parse(TWO_OF_THREE)
    # W3 is a witness of the policy but in no group of the quorum; STRANGER
    # has W0's name but another key (so another key id); W4 is not W0.
    note = _cosigned(SIGNED, 3, 1)
    note = add_signatures(note, cosign(CP, STRANGER, T))
    result = policy.evaluate(note)
    assert dict(result.cosigned) == {"W1": T, "W3": T}
    assert result.failed == ()
    assert not result.satisfied
    assert policy.evaluate(_cosigned(note, 0)).satisfied


def test_future_cosignatures_are_refused_when_now_is_given() -> None:
    policy = CheckpointPolicy.parse(TWO_OF_THREE)
    note = _cosigned(_cosigned(SIGNED, 0), 1, at=T + 100)
    assert verify_checkpoint(note, policy)[0] == CP
    assert verify_checkpoint(note, policy, now=T + 100)[0] == CP
    with pytest.raises(SignatureError, match=f"W1: cosignature dated {T + 100}, after {T}"):
        verify_checkpoint(note, policy, now=T)


def test_nested_groups_all_and_any() -> None:
    text = (
        f"{LOG_LINE}\n{WITNESS_LINES}"
        "group X 2 W0 W1 W2\n"
        "group Y any W3 W4 W5\n"
        "group XY all X Y\n"
        "quorum XY\n"
    )
    policy = CheckpointPolicy.parse(text)
    cases = {
        (0, 1, 3): True,
        (0, 2, 5): True,
        (0, 1, 2): False,  # X met, Y not
        (3, 4, 5, 0): False,  # Y met, X not
        (0, 3, 4, 5): False,
        (0, 1, 2, 3, 4, 5): True,
    }
    for signed_by, want in cases.items():
        assert policy.evaluate(_cosigned(SIGNED, *signed_by)).satisfied == want, signed_by
    with pytest.raises(SignatureError) as info:
        verify_checkpoint(_cosigned(SIGNED, 0, 1, 2), policy)
    assert info.value.message == (
        "checkpoint does not meet the policy: group 'XY' needs 2 of X, Y; met: X; "
        "group 'Y' needs 1 of W3, W4, W5; met: none; witness 'W3' has not cosigned; "
        "witness 'W4' has not cosigned; witness 'W5' has not cosigned"
    )
    anyone = CheckpointPolicy.parse(f"{LOG_LINE}\n{WITNESS_LINES}group g any W0 W1\nquorum g\n")
    assert not anyone.evaluate(SIGNED).satisfied
    assert anyone.evaluate(_cosigned(SIGNED, 1)).satisfied


def test_quorum_none_ignores_cosignatures_but_still_checks_the_log() -> None:
    policy = CheckpointPolicy.parse(f"{LOG_LINE}\n{WITNESS_LINES}quorum none\n")
    assert verify_checkpoint(SIGNED, policy)[0] == CP
    note = _cosigned(SIGNED, 0)
    assert dict(policy.evaluate(note).cosigned) == {"W0": T}


def test_cosign_note_keeps_every_signature_and_replaces_its_own() -> None:
    note = _cosigned(SIGNED, 0, 1)
    assert [s.name for s in note.signatures] == [ORIGIN, WITNESSES[0].name, WITNESSES[1].name]
    again = cosign_note(note.to_bytes(), WITNESSES[0], T + 5)
    assert len(again.signatures) == 3
    assert parse_note(again.to_bytes()) == again
    policy = CheckpointPolicy.parse(TWO_OF_THREE)
    assert dict(policy.evaluate(again).cosigned) == {"W0": T + 5, "W1": T}


# -- ML-DSA-44 (tlog-cosignature type 0x06) ---------------------------------


def _ml_dsa_witness(name: str) -> tuple[MLDSA44PrivateKey, VerifierKey]:
    private = MLDSA44PrivateKey.from_seed_bytes(hashlib.sha256(name.encode()).digest())
    public = private.public_key().public_bytes_raw()
    return private, VerifierKey(name, public, ML_DSA_44_COSIGNATURE)


def _ml_dsa_cosign(
    cp: Checkpoint, private: MLDSA44PrivateKey, key: VerifierKey, at: int
) -> NoteSignature:
    sig = private.sign(ml_dsa_44_cosignature_message(cp, key.name, at))
    return NoteSignature(key.name, key.key_id, at.to_bytes(8, "big") + sig)


def test_ml_dsa_44_cosignatures_count() -> None:
    private, key = _ml_dsa_witness("pq.example.org/w")
    assert key.key_id == key_id(key.name, 0x06, key.public_key)
    text = f"{LOG_LINE}\nwitness PQ {key}\n{WITNESS_LINES}group g 2 PQ W0\nquorum g\n"
    policy = CheckpointPolicy.parse(text)
    assert CheckpointPolicy.parse(policy.to_text()) == policy
    sig = _ml_dsa_cosign(CP, private, key, T)
    note = _cosigned(add_signatures(SIGNED, sig), 0)
    assert parse_note(note.to_bytes()) == note
    result = policy.evaluate(note.to_bytes())
    assert dict(result.cosigned) == {"PQ": T, "W0": T}
    assert result.satisfied
    # Signed for another size: named as failed, not counted.
    wrong = _ml_dsa_cosign(Checkpoint(ORIGIN, 12, CP.root), private, key, T)
    result = policy.evaluate(_cosigned(add_signatures(SIGNED, wrong), 0))
    assert result.failed and result.failed[0].startswith("PQ: ")
    assert not result.satisfied


def test_ml_dsa_44_message_layout() -> None:
    # c2sp.org/tlog-cosignature: label, name, timestamp, origin, start 0, end = size, root.
    msg = ml_dsa_44_cosignature_message(CP, "w", 5)
    assert msg == (
        b"subtree/v1\n\x00"
        + b"\x01w"
        + (5).to_bytes(8, "big")
        + bytes([len(ORIGIN)])
        + ORIGIN.encode()
        + bytes(8)
        + (13).to_bytes(8, "big")
        + CP.root
    )


def test_without_quorum_the_log_and_every_known_cosignature_must_verify() -> None:
    policy = CheckpointPolicy.parse(TWO_OF_THREE)
    assert verify_checkpoint(SIGNED, policy, require_quorum=False)[0] == CP
    assert verify_checkpoint(_cosigned(SIGNED, 0), policy, require_quorum=False)[0] == CP
    bad = add_signatures(SIGNED, cosign(Checkpoint(ORIGIN, 14, CP.root), WITNESSES[1], T))
    with pytest.raises(SignatureError, match="cosignature fails: W1: "):
        verify_checkpoint(bad, policy, require_quorum=False)
    other_log = sign_checkpoint(CP, OTHER_LOG)
    with pytest.raises(SignatureError, match="no signature from a trusted key"):
        verify_checkpoint(other_log, policy, require_quorum=False)


_POLICY_WORDS = st.sampled_from(
    [
        "log",
        "witness",
        "group",
        "quorum",
        "none",
        "any",
        "all",
        "2",
        "0",
        "W0",
        "W1",
        "g",
        "#",
        str(verifier_of(LOG)),
        _W,
        "\t",
        " ",
        "\n",
    ]
)


@given(st.lists(_POLICY_WORDS, max_size=30).map(" ".join) | st.text(max_size=80))
def test_parse_never_fails_but_with_malformed(text: str) -> None:
    try:
        policy = CheckpointPolicy.parse(text)
    except MalformedError:
        return
    assert CheckpointPolicy.parse(policy.to_text()) == policy
