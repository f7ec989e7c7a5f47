"""The remote SDK and `--server` CLI against a real server, and what it does
when the server (or something between) lies: forged entries, bad proofs,
forked checkpoints, false acknowledgements."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from conftest import ORIGIN, make_signer, run_cli
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from serving import free_port, running_server

import modelchain as mc
from modelchain.core.identity import verifier_of
from modelchain.core.tiles import decode_entry_bundle, encode_entry_bundle
from modelchain.errors import (
    AuthError,
    IntegrityError,
    MalformedError,
    NotFoundError,
    ProofError,
    ReplayError,
    SignatureError,
    UnavailableError,
    UsageError,
    WrongLedgerError,
)
from modelchain.ledger.ledger import Founder
from modelchain.ledger.remote import RemoteBackend, RemoteLedger
from modelchain.receipts import verify_inference_receipt

alice, bob, carol = make_signer("alice"), make_signer("bob"), make_signer("carol")
Rewrite = Callable[[httpx.Request, httpx.Response], httpx.Response]


class Tamper(httpx.BaseTransport):
    """A real HTTP transport with a hook that may rewrite answers in transit."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.rewrite: Rewrite | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if self.rewrite is None:
            return response
        response.read()
        return self.rewrite(request, response)

    def close(self) -> None:
        self.inner.close()


def _with_body(response: httpx.Response, body: bytes) -> httpx.Response:
    return httpx.Response(response.status_code, headers={}, content=body)


def _make_ledger(directory: Path, events: int) -> str:
    members = [
        Founder(verifier_of(bob), "acme", ("trainer",)),
        Founder(verifier_of(carol), "audit-co", ("auditor",)),
    ]
    led = mc.init(directory, ORIGIN, alice, org="acme", members=members)
    try:
        for i in range(events):
            led.record_event("pipeline.step", {"i": i}, bob)
        return led.log_key.to_string()
    finally:
        led.close()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MODELCHAIN_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def served(tmp_path: Path, home: Path) -> Iterator[tuple[str, Path, str]]:
    vkey = _make_ledger(tmp_path / "ledger", 300)
    with running_server(tmp_path / "ledger", "--reads", "open") as url:
        yield url, tmp_path / "ledger", vkey


def test_remote_sdk_has_the_embedded_interface(
    served: tuple[str, Path, str], tmp_path: Path
) -> None:
    url, _, vkey = served
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(os.urandom(4096))
    (model / "config.json").write_text('{"layers": 2}')
    with mc.connect(url, identity=bob, log_key=vkey) as led:
        assert isinstance(led, RemoteLedger) and led.origin == ORIGIN
        assert isinstance(led.backend, RemoteBackend) and led.identity is bob
        assert led.size == 301
        ack = led.record_event("pipeline.step", {"remote": True}, bob)
        assert led.entry(ack.index).transaction.body["data"] == {"remote": True}
        v = led.models.register("fraud", model)
        assert v.version == 1
        assert led.verify(model, model="fraud").version == 1
        (model / "weights.bin").write_bytes(b"tampered")
        with pytest.raises(IntegrityError) as caught:
            led.verify(model, model="fraud")
        assert any("weights.bin" in d for d in caught.value.differences)
        assert [m["name"] for m in led.members.list()] == ["alice", "bob", "carol"]
        receipt = led.tlog_proof(ack.index)
        assert receipt.index == ack.index
        refused = led.record_event("pipeline.step", {}, carol)  # auditors may not record
        assert not refused.outcome.accepted
        assert led.denied()[-1]["actor"] == "carol"
        env = led.transaction("event.record", {"event": "a.b", "data": 1}, "bob", "n" * 32)
        first = led.submit(env.sign(bob))
        assert led.submit(env.sign(bob)) == first  # a retry: its entry, applied once
        with pytest.raises(ReplayError):
            other = led.transaction("event.record", {"event": "a.b", "data": 2}, "bob", "n" * 32)
            led.submit(other.sign(bob))
        report = led.audit()
        assert report.size == led.size and report.rejected == 1
        with pytest.raises(UsageError, match="remote"):
            _ = led.node
    # A second client on the same mirror catches up from where it stopped.
    with mc.connect(url, log_key=vkey) as again:
        assert again.models.get("fraud").version == 1


def test_reads_with_tokens(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vkey = _make_ledger(tmp_path / "ledger", 3)
    env = {**os.environ, "MODELCHAIN_LEDGER": str(tmp_path / "ledger")}
    token = run_cli(env, "token", "issue", "carol").stdout.strip()
    with running_server(tmp_path / "ledger") as url:
        with pytest.raises(AuthError):
            mc.connect(url, log_key=vkey)
        with mc.connect(url, token=token, log_key=vkey) as led:
            assert led.size == 4
        monkeypatch.setenv("MODELCHAIN_TOKEN", token)
        with mc.connect(url, log_key=vkey) as led:  # the entry point reads the token
            assert led.size == 4
        with pytest.raises(AuthError):  # the library below it does not
            RemoteLedger(url, log_key=vkey, home=home)


def test_forged_entry_is_refused_and_nothing_stored(served: tuple[str, Path, str]) -> None:
    url, _, vkey = served
    tamper = Tamper()
    with mc.connect(url, log_key=vkey, transport=tamper) as led:
        assert led.size == 301
        httpx.post(url + "/v1/entries", content=_event(led, 1)).raise_for_status()
        tamper.rewrite = _forge_last_entry
        with pytest.raises(ProofError, match="do not give the root"):
            led.sync(covering=302)
        assert led._store.size == 301, "nothing of the forged range was stored"
        tamper.rewrite = None
        led.sync(covering=302)
        assert led.size == 302


def _event(led: RemoteLedger, value: int) -> bytes:
    tx = led.transaction("event.record", {"event": "x.y", "data": {"remote": value}}, "bob")
    return tx.sign(bob).to_bytes()


def _forge_last_entry(request: httpx.Request, response: httpx.Response) -> httpx.Response:
    """Rewrite the data of the bundle's last entry (signature and all else kept)."""
    if request.url.path != "/v1/entries:range":
        return response
    bundle = decode_entry_bundle(response.content)
    entry = json.loads(bundle[-1])
    payload = base64.b64decode(entry["envelope"]["payload"])
    forged = payload.replace(b'"remote":1', b'"remote":9')
    assert forged != payload
    entry["envelope"]["payload"] = base64.b64encode(forged).decode()
    bundle[-1] = json.dumps(entry, separators=(",", ":")).encode()
    return _with_body(response, encode_entry_bundle(bundle))


def test_bad_consistency_proof_is_refused(served: tuple[str, Path, str]) -> None:
    url, _, vkey = served
    tamper = Tamper()
    with mc.connect(url, log_key=vkey, transport=tamper) as led:
        assert led.size == 301
        httpx.post(url + "/v1/entries", content=_event(led, 1)).raise_for_status()

        def bad_proof(request: httpx.Request, response: httpx.Response) -> httpx.Response:
            if request.url.path != "/v1/proof/consistency":
                return response
            doc = response.json()
            first = bytearray(base64.b64decode(doc["proof"][0]))
            first[0] ^= 1
            doc["proof"][0] = base64.b64encode(bytes(first)).decode()
            return _with_body(response, json.dumps(doc).encode())

        tamper.rewrite = bad_proof
        with pytest.raises(ProofError, match="not consistent"):
            led.sync(covering=302)
        assert led._store.size == 301


def test_forked_log_is_detected(tmp_path: Path, home: Path) -> None:
    vkey = _make_ledger(tmp_path / "a", 10)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    # Same log key, same first 11 entries, then different histories.
    with mc.open(tmp_path / "a") as a:
        a.record_event("fork.side", {"side": "a"}, bob)
    with mc.open(tmp_path / "b") as b:
        b.record_event("fork.side", {"side": "b"}, bob)
        b.record_event("fork.side", {"side": "b2"}, bob)
    cache = tmp_path / "mirror"
    with (
        running_server(tmp_path / "a", "--reads", "open") as url,
        mc.connect(url, log_key=vkey, cache=cache) as led,
    ):
        assert led.size == 12
    with (
        running_server(tmp_path / "b", "--reads", "open") as url,
        mc.connect(url, log_key=vkey, cache=cache) as led,
    ):
        with pytest.raises(ProofError, match=r"not consistent|forked"):
            led.sync()
        assert led._store.size == 12
        assert json.loads(led._store.entry(11))["envelope"]  # side a kept


def test_wrong_log_key_and_false_ack(served: tuple[str, Path, str], tmp_path: Path) -> None:
    url, _, vkey = served
    other = _make_ledger(tmp_path / "other", 0)  # same origin, another log key
    with pytest.raises(SignatureError):
        mc.connect(url, log_key=other, cache=tmp_path / "m1")
    tamper = Tamper()
    with mc.connect(url, identity=bob, log_key=vkey, transport=tamper) as led:
        led.sync()

        def lie(request: httpx.Request, response: httpx.Response) -> httpx.Response:
            if request.url.path != "/v1/entries" or request.method != "POST":
                return response
            doc = response.json()
            doc["index"] = 5  # claim our transaction is an old entry
            return _with_body(response, json.dumps(doc).encode())

        tamper.rewrite = lie
        with pytest.raises(ProofError, match="acknowledged entry 5"):
            led.record_event("x.y", {"lie": 1}, bob)


def test_unreachable_server(home: Path) -> None:
    with pytest.raises(UnavailableError):
        mc.connect("http://127.0.0.1:9", timeout=2)


def test_cli_works_against_a_server(served: tuple[str, Path, str], tmp_path: Path) -> None:
    url, _, vkey = served
    env = {
        **os.environ,
        "MODELCHAIN_HOME": str(tmp_path / "cli-home"),
        "MODELCHAIN_KEY_PASSPHRASE": "pw",
        "MODELCHAIN_SERVER": url,
        "MODELCHAIN_LOG_KEY": vkey,
    }
    run_cli(env, "identity", "new", "dave")
    out = run_cli(env, "log", "show", "1", "--json").stdout
    assert json.loads(out)["index"] == 1
    assert "ok: 301 entries" in run_cli(env, "log", "verify").stdout
    refused = run_cli(env, "event", "record", "x.y", "--body", "{}", "--as", "dave", ok=False)
    assert refused.returncode == 5 and "not the key of any member" in refused.stderr
    with pytest.raises(NotFoundError), mc.connect(url, log_key=vkey) as led:
        led.models.get("nope")


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, for a TLS server on loopback."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_tls(tmp_path: Path, home: Path) -> None:
    vkey = _make_ledger(tmp_path / "ledger", 2)
    cert, key = _self_signed(tmp_path)
    with running_server(tmp_path / "ledger", "--reads", "open", tls=(cert, key)) as url:
        assert url.startswith("https://")
        with mc.connect(url, log_key=vkey, tls_verify=str(cert)) as led:
            assert led.size == 3
        with pytest.raises(UnavailableError):  # an untrusted certificate is refused
            mc.connect(url, log_key=vkey, cache=tmp_path / "m2")


def test_receipts_against_a_server_survive_an_outage(tmp_path: Path, home: Path) -> None:
    vkey = _make_ledger(tmp_path / "ledger", 0)
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights")
    port = free_port()
    store = tmp_path / "receipts.db"
    with running_server(tmp_path / "ledger", "--reads", "open", port=port) as url:
        led = mc.connect(url, identity=bob, log_key=vkey)
        led.models.register("fraud", model)
        log = led.receipts(
            "fraud", version=1, signer=alice, store=store, batch_size=10, batch_ms=50
        )
        for i in range(25):
            log.record({"x": i}, {"y": i}, request_id=f"r{i}")
        assert log.flush() == 0
    # the server is down: records go on, batches wait on disk
    for i in range(25, 50):
        log.record({"x": i}, {"y": i}, request_id=f"r{i}")
    assert log.flush() > 0
    with running_server(tmp_path / "ledger", "--reads", "open", port=port):
        assert log.flush() == 0
        led.sync()
        receipts = [log.receipt(f"r{i}") for i in (0, 24, 25, 49)]
        log.close()
        vk = led.log_key
    for r in receipts:
        verify_inference_receipt(r, vk)
    led.close()


def test_one_client_from_several_threads(served: tuple[str, Path, str]) -> None:
    url, _, vkey = served
    errors: list[BaseException] = []
    with mc.connect(url, identity=bob, log_key=vkey, staleness=0) as led:

        def work(k: int) -> None:
            try:
                for i in range(15):
                    ack = led.record_event("thread.step", {"k": k, "i": i}, bob)
                    assert led.entry(ack.index).transaction.body["data"] == {"k": k, "i": i}
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert led.size == 301 + 60
        assert led.audit().size == 361


def _rewrite(path: str, change: Callable[[bytes], bytes]) -> Rewrite:
    def rewrite(request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if request.url.path != path:
            return response
        return _with_body(response, change(response.content))

    return rewrite


def test_the_outcome_comes_from_the_log_not_the_server(served: tuple[str, Path, str]) -> None:
    url, _, vkey = served
    tamper = Tamper()
    with mc.connect(url, log_key=vkey, transport=tamper) as led:
        tamper.rewrite = _rewrite(
            "/v1/entries",
            lambda b: json.dumps({**json.loads(b), "outcome": {"result": "accepted"}}).encode(),
        )
        ack = led.record_event("pipeline.step", {}, carol)  # auditors may not record
        assert not ack.outcome.accepted and ack.outcome.code == "not_permitted"


def test_an_ack_the_log_never_shows_is_refused(served: tuple[str, Path, str]) -> None:
    url, _, vkey = served

    class Drop(Tamper):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            if request.method == "POST":  # never forwarded; a made-up ack instead
                body = {"index": 10**6, "leaf_hash": "00" * 32, "outcome": {"result": "accepted"}}
                return httpx.Response(200, json=body)
            return super().handle_request(request)

    with mc.connect(url, log_key=vkey, transport=Drop(), confirm_wait=0.3) as led:
        with pytest.raises(ProofError, match="not in the log"):
            led.record_event("x.y", {}, bob)
        assert led.size == 301


def test_what_a_server_says_cannot_pass_for_the_clients_own_checks(
    served: tuple[str, Path, str], tmp_path: Path
) -> None:
    url, _, vkey = served
    tamper = Tamper()
    with mc.connect(url, log_key=vkey, transport=tamper) as led:
        # error codes of the verification family become MalformedError
        def claim(request: httpx.Request, response: httpx.Response) -> httpx.Response:
            if request.url.path != "/v1/entries":
                return response
            body = {"error": {"code": "bad_proof", "message": "the log forked"}}
            return httpx.Response(400, json=body)

        tamper.rewrite = claim
        with pytest.raises(MalformedError, match="bad_proof"):
            led.record_event("x.y", {}, bob)
        # a cosignature line nobody can check never reaches the mirror or a receipt
        junk = "\u2014 witness.example " + base64.b64encode(bytes(68)).decode() + "\n"
        tamper.rewrite = _rewrite("/checkpoint", lambda b: b + junk.encode())
        ack = httpx.post(url + "/v1/entries", content=_event(led, 5)).json()
        led.sync(covering=ack["index"] + 1)
        note = led.checkpoint()
        assert led._store.checkpoint()[1] == note  # type: ignore[index]
        assert b"witness.example" not in note and note.count("\u2014".encode()) == 1
        # an answer far too large is cut off, not read into memory
        tamper.rewrite = _rewrite("/checkpoint", lambda b: b + b"x" * (1 << 20))
        with pytest.raises(MalformedError, match="over"):
            led.sync()
        tamper.rewrite = None
    bad = Tamper()
    bad.rewrite = _rewrite("/v1/ledger", lambda b: b"nope")
    with pytest.raises(MalformedError, match="not JSON"):
        mc.connect(url, log_key=vkey, transport=bad, cache=tmp_path / "m")


def test_first_use_pins_per_url_and_only_a_key_that_signed(tmp_path: Path, home: Path) -> None:
    _make_ledger(tmp_path / "a", 1)
    port = free_port()
    with running_server(tmp_path / "a", "--reads", "open", port=port) as url:
        # a man in the middle announces his own key on the first connect: refused,
        # and nothing is pinned, so the honest server is trusted afterwards
        other = _make_ledger(tmp_path / "other", 0)
        mitm = Tamper()
        mitm.rewrite = _rewrite(
            "/v1/ledger", lambda b: json.dumps({**json.loads(b), "log_key": other}).encode()
        )
        with pytest.raises(SignatureError):
            mc.connect(url, transport=mitm)
        with mc.connect(url) as led:
            assert led.size == 2
    # later, another ledger (other origin, other key) answers at the same URL
    members = [Founder(verifier_of(bob), "acme", ("trainer",))]
    mc.init(tmp_path / "b", "ledger.example.org/other", alice, members=members).close()
    with (
        running_server(tmp_path / "b", "--reads", "open", port=port) as url,
        pytest.raises(WrongLedgerError),
    ):
        mc.connect(url)
