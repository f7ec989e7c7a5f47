"""Bad input: each kind gets its own clear error, and the log is left unchanged."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import ORIGIN, make_signer

import modelchain as mc
from modelchain import errors
from modelchain.core import canonical
from modelchain.core.dsse import Envelope, EnvelopeSignature, sign_envelope
from modelchain.core.identity import Ed25519Signer
from modelchain.core.tx import MAX_ENVELOPE_BYTES, PAYLOAD_TYPE, Transaction
from modelchain.node.node import system_clock_ms

NOW = 1_800_000_000_000


def _tx(led: mc.Ledger, **changes: object) -> Transaction:
    fields: dict[str, object] = {
        "ledger": ORIGIN,
        "type": "event.record",
        "actor": "alice",
        "nonce": "n" * 32,
        "time": led.clock(),
        "body": {"event": "e", "data": {}},
    }
    fields.update(changes)
    return Transaction(**fields)  # type: ignore[arg-type]


def _signed(led: mc.Ledger, signer: Ed25519Signer | None = None, **changes: object) -> bytes:
    return _tx(led, **changes).sign(signer or make_signer("alice")).to_bytes()


def _raw_envelope(payload: bytes, payload_type: str = PAYLOAD_TYPE) -> bytes:
    env = sign_envelope(payload_type, payload, [make_signer("alice")])
    return env.to_bytes()


def _forged(led: mc.Ledger) -> bytes:
    env = Envelope.from_bytes(_signed(led))
    sig = env.signatures[0]
    bad = EnvelopeSignature(sig.keyid, bytes([sig.sig[0] ^ 1]) + sig.sig[1:])
    return Envelope(env.payload_type, env.payload, (bad,)).to_bytes()


def _bad_base64(led: mc.Ledger) -> bytes:
    obj = json.loads(_signed(led))
    obj["payload"] = obj["payload"][:-2] + "!!"
    return json.dumps(obj).encode()


def _noncanonical(led: mc.Ledger) -> bytes:
    payload = json.dumps(_tx(led).to_json(), indent=1).encode()
    return _raw_envelope(payload)


def _oversize(led: mc.Ledger) -> bytes:
    return _raw_envelope(b"x" * MAX_ENVELOPE_BYTES)


def _unknown_type(led: mc.Ledger) -> bytes:
    return _signed(led, type="model.teleport")


def _bad_body(led: mc.Ledger) -> bytes:
    return _signed(led, body={"event": "has space", "data": 1})


def _missing_field(led: mc.Ledger) -> bytes:
    obj = _tx(led).to_json()
    del obj["nonce"]
    return _raw_envelope(canonical.dumps(obj))


Case = tuple[str, Callable[[mc.Ledger], bytes], type[errors.Error], str]

CASES: list[Case] = [
    ("malformed-json", lambda led: b'{"payload": ', errors.MalformedError, "not valid JSON"),
    ("not-an-object", lambda led: b"[1, 2]", errors.MalformedError, "JSON object"),
    (
        "no-signatures",
        lambda led: json.dumps(
            {"payload": "e30=", "payloadType": PAYLOAD_TYPE, "signatures": []}
        ).encode(),
        errors.MalformedError,
        "signatures",
    ),
    (
        "wrong-payload-type",
        lambda led: _raw_envelope(_tx(led).payload(), "application/vnd.in-toto+json"),
        errors.PayloadTypeError,
        "payloadType",
    ),
    ("bad-base64", _bad_base64, errors.Base64Error, "base64"),
    ("non-canonical-payload", _noncanonical, errors.NonCanonicalError, "canonical"),
    ("missing-field", _missing_field, errors.MalformedError, "nonce"),
    ("oversize", _oversize, errors.OversizeError, "limit"),
    ("unknown-type", _unknown_type, errors.UnknownTypeError, "model.teleport"),
    ("bad-body", _bad_body, errors.MalformedError, "event type"),
    (
        "wrong-ledger",
        lambda led: _signed(led, ledger="other.example/x"),
        errors.WrongLedgerError,
        "other.example/x",
    ),
    (
        "future-time",
        lambda led: _signed(led, time=led.clock() + 3_600_000),
        errors.ClockSkewError,
        "in the future",
    ),
    (
        "past-time",
        lambda led: _signed(led, time=led.clock() - 3_600_000),
        errors.ClockSkewError,
        "in the past",
    ),
    (
        "unknown-key",
        lambda led: _signed(led, make_signer("mallory"), actor="mallory"),
        errors.UnknownKeyError,
        "not the key of any member",
    ),
    ("forged-signature", _forged, errors.SignatureError, "does not verify"),
    (
        "actor-did-not-sign",
        lambda led: _signed(led, make_signer("bob"), actor="alice"),
        errors.SignatureError,
        "did not sign",
    ),
]


@pytest.mark.parametrize(
    ("make", "error", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_refused_and_nothing_is_written(
    ledger: mc.Ledger, make: Callable[[mc.Ledger], bytes], error: type[errors.Error], words: str
) -> None:
    before = (ledger.size, ledger.checkpoint())
    data = make(ledger)
    with pytest.raises(error, match=words) as info:
        ledger.submit(data)
    assert type(info.value) is error, f"want exactly {error.__name__}, got {info.type.__name__}"
    assert (ledger.size, ledger.checkpoint()) == before
    ledger.audit()


def test_resubmitted_envelope_answers_its_entry_and_nonce_reuse_is_refused(
    ledger: mc.Ledger,
) -> None:
    data = _signed(ledger)
    first = ledger.submit(data)
    assert first.outcome.accepted
    size = ledger.size
    # The same envelope again (a retry whose answer was lost): its entry, nothing written.
    assert ledger.submit(data) == first
    # A different transaction reusing the nonce is a replay.
    with pytest.raises(errors.ReplayError, match=f"at index {first.index}"):
        ledger.submit(_signed(ledger, body={"event": "other", "data": 2}))
    assert ledger.size == size


def test_a_retry_past_the_time_window_still_gets_its_entry(tmp_path: Path) -> None:
    """The answer was lost and the client retried much later: the envelope's
    time is now outside the window, yet it is in the log, so it gets its entry."""
    now = [system_clock_ms()]
    led = mc.init(tmp_path / "l", ORIGIN, make_signer("alice"), org="acme", clock=lambda: now[0])
    with led:
        then = now[0]
        data = _signed(led)
        first = led.submit(data)
        now[0] += 60 * 60 * 1000  # an hour later
        assert led.submit(data) == first
        with pytest.raises(errors.ClockSkewError):  # a new one with that time is refused
            led.submit(_signed(led, nonce="m" * 32, time=then))
        assert led.size == first.index + 1


def test_same_envelope_three_times_at_once_is_applied_once(ledger: mc.Ledger) -> None:
    data = _signed(ledger)
    futures = [ledger.node.submit_async(data) for _ in range(3)]
    acks = {f.result(5) for f in futures}
    assert len(acks) == 1 and ledger.size == 2


def test_same_nonce_other_transaction_in_one_batch_is_refused(ledger: mc.Ledger) -> None:
    first, other = _signed(ledger), _signed(ledger, body={"event": "other", "data": 2})
    futures = ledger.node.submit_many([first, other])
    assert futures[0].result(5).outcome.accepted
    with pytest.raises(errors.ReplayError, match="already used"):
        futures[1].result(5)
    assert ledger.size == 2


def test_each_kind_of_bad_input_has_its_own_error_code() -> None:
    named = {c[0]: c[2] for c in CASES}
    kinds = [
        "malformed-json",
        "wrong-payload-type",
        "bad-base64",
        "oversize",
        "future-time",
        "unknown-key",
        "forged-signature",
    ]
    codes = {named[k].code for k in kinds} | {errors.ReplayError.code}
    assert len(codes) == len(kinds) + 1
