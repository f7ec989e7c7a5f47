"""The C2SP tlog-witness: every answer of add-checkpoint on a real ledger's
checkpoints, a forked log refused, state kept across restarts, the
compare-and-set under concurrency, and `modelchain witness serve` as a process."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import ORIGIN, make_signer, run_cli
from hypothesis import given, settings
from hypothesis import strategies as st
from serving import STARTUP_S, free_port, stop_process
from starlette.applications import Starlette

import modelchain as mc
from modelchain.core.b64 import b64
from modelchain.core.checkpoint import Checkpoint, sign_checkpoint
from modelchain.core.identity import COSIGNATURE_V1, Ed25519Signer, verifier_of
from modelchain.core.merkle import tree_root
from modelchain.core.note import Note, NoteSignature, add_signatures, parse_note
from modelchain.core.policy import CheckpointPolicy, verify_checkpoint
from modelchain.core.witness import EMPTY_ROOT, AddCheckpoint, origin_hash
from modelchain.errors import MalformedError
from modelchain.keys import FileSigner, KeyStore
from modelchain.ledger import LOG_KEY_NAME
from modelchain.server.witness import SIZE_CONTENT_TYPE, create_witness_app
from modelchain.storage.witness import WitnessState

W = make_signer("w1.example")
NOW = 1_800_000_000


@pytest.fixture
def led(tmp_path: Path, alice: Ed25519Signer) -> Iterator[mc.Ledger]:
    with mc.init(tmp_path / "a", ORIGIN, alice) as ledger:
        yield ledger


def _grow(led: mc.Ledger, n: int, signer: Ed25519Signer) -> bytes:
    for i in range(n):
        led.record_event("e", i, signer)
    return led.checkpoint()


def _size(note: bytes) -> int:
    return Checkpoint.from_text(parse_note(note).text).size


def _body(old: int, proof: list[bytes], note: bytes) -> bytes:
    return f"old {old}\n".encode() + b"".join(b64(p).encode() + b"\n" for p in proof) + b"\n" + note


class Client:
    """Synchronous requests to the witness app in this process, over httpx's ASGI transport."""

    def __init__(self, app: Starlette) -> None:
        self.app = app

    def request(self, method: str, path: str, content: bytes | None = None) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://w") as client:
                response = await client.request(method, path, content=content)
                await response.aread()
                return response

        return asyncio.run(go())

    def post(self, path: str, content: bytes) -> httpx.Response:
        return self.request("POST", path, content)

    def get(self, path: str) -> httpx.Response:
        return self.request("GET", path)


def _client(led: mc.Ledger, state: Path) -> Client:
    policy = CheckpointPolicy.parse(f"log {led.log_key}\nquorum none\n")
    return Client(create_witness_app(policy, WitnessState(state), W, clock=lambda: NOW))


def _post(client: Client, body: bytes) -> httpx.Response:
    return client.post("/add-checkpoint", body)


def test_cosigns_a_growing_log_and_the_cosignature_counts(led: mc.Ledger, tmp_path: Path) -> None:
    client = _client(led, tmp_path / "w")
    first = led.checkpoint()
    r = _post(client, _body(0, [], first))
    assert r.status_code == 200, r.text
    assert r.text.startswith("\u2014 w1.example ") and r.text.endswith("\n")
    assert r.text.count("\n") == 1
    # Appended to the checkpoint, the answer verifies under a policy naming the witness.
    policy = CheckpointPolicy.parse(
        f"log {led.log_key}\nwitness w1 {verifier_of(W, COSIGNATURE_V1)}\nquorum w1\n"
    )
    cp, _ = verify_checkpoint(first + r.content, policy)
    assert policy.evaluate(first + r.content).cosigned == {"w1": NOW}
    # The next checkpoint goes with a consistency proof from the size last cosigned.
    old = cp.size
    second = _grow(led, 5, make_signer("alice"))
    r = _post(client, _body(old, led.consistency_proof(old), second))
    assert r.status_code == 200, r.text
    verify_checkpoint(second + r.content, policy)
    # Re-submitting the same checkpoint from its own size is cosigned again.
    assert _post(client, _body(_size(second), [], second)).status_code == 200
    # The monitoring endpoint serves it with the log's signature and the cosignature.
    m = client.get(f"/{origin_hash(ORIGIN)}/checkpoint")
    assert m.status_code == 200
    assert verify_checkpoint(m.content, policy)[0].size == _size(second)
    assert client.get(f"/{'0' * 64}/checkpoint").status_code == 404
    assert client.get(f"/{origin_hash(ORIGIN).upper()}/checkpoint").status_code == 404


def test_conflict_answers_the_size_held(led: mc.Ledger, tmp_path: Path) -> None:
    client = _client(led, tmp_path / "w")
    first = led.checkpoint()
    assert _post(client, _body(0, [], first)).status_code == 200
    second = _grow(led, 3, make_signer("alice"))
    # old 0 learns the size; any other wrong old size too.
    for old in (0, _size(first) + 1):
        r = _post(client, _body(old, [] if old == 0 else led.consistency_proof(old), second))
        assert r.status_code == 409
        assert r.headers["content-type"] == SIZE_CONTENT_TYPE
        assert r.text == f"{_size(first)}\n"


def test_unknown_origin_and_bad_signatures(led: mc.Ledger, tmp_path: Path) -> None:
    client = _client(led, tmp_path / "w")
    note = led.checkpoint()
    cp = Checkpoint.from_text(parse_note(note).text)
    # An origin the witness does not serve: 404.
    other = make_signer("other.example/log")
    foreign = sign_checkpoint(Checkpoint("other.example/log", cp.size, cp.root), other)
    assert _post(client, _body(0, [], foreign.to_bytes())).status_code == 404
    # Signed by another key of the same name: no trusted signature, 403.
    impostor = sign_checkpoint(cp, make_signer(ORIGIN))
    assert _post(client, _body(0, [], impostor.to_bytes())).status_code == 403
    # The trusted key's name and id with a signature that fails: 403.
    good = parse_note(note)
    sig = good.signatures[0]
    bad = NoteSignature(sig.name, sig.key_id, bytes(64))
    assert _post(client, _body(0, [], Note(good.text, (bad,)).to_bytes())).status_code == 403
    # Signatures by unknown keys beside the log's are ignored, and not kept.
    extra = add_signatures(good, NoteSignature("x.example", b"abcd", b"s"))
    assert _post(client, _body(0, [], extra.to_bytes())).status_code == 200
    kept = parse_note(client.get(f"/{origin_hash(ORIGIN)}/checkpoint").content)
    assert [s.name for s in kept.signatures] == [ORIGIN, "w1.example"]


def test_malformed_bodies_and_old_past_the_checkpoint(led: mc.Ledger, tmp_path: Path) -> None:
    client = _client(led, tmp_path / "w")
    note = _grow(led, 3, make_signer("alice"))
    size = _size(note)
    assert _post(client, _body(size + 1, [], note)).status_code == 400
    proof_line = b64(bytes(32)).encode() + b"\n"
    for body in (
        b"",
        b"old 01\n\n" + note,
        b"old -1\n\n" + note,
        b"old 1 \n\n" + note,
        b"old 0\n" + note,  # no empty line
        b"old 0\n" + b"AAAA\n\n" + note,  # a proof line that is not 32 bytes
        b"old 1\n" + proof_line * 64 + b"\n" + note,  # more than 63 lines
        b"old 0\n\n" + note[:-1],
        b"old 0\n\nnot a note\n",
        b"\xff\xfe",
    ):
        r = _post(client, body)
        assert r.status_code == 400, (body, r.text)
    assert client.post("/add-checkpoint", b"x" * (65 << 10)).status_code == 413
    assert client.get("/add-checkpoint").status_code == 405


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400) | st.text(max_size=400).map(str.encode))
def test_any_body_parses_or_raises_malformed(body: bytes) -> None:
    for data in (body, b"old 0\n\n" + body, b"old 1\n" + body):
        with contextlib.suppress(MalformedError):
            AddCheckpoint.parse(data)


def test_huge_numbers_are_400_not_500(led: mc.Ledger, tmp_path: Path) -> None:
    client = _client(led, tmp_path / "w")
    note = parse_note(led.checkpoint())
    origin, _, root = note.text.splitlines()[:3]
    huge = Note(f"{origin}\n{'9' * 5000}\n{root}\n", note.signatures).to_bytes()
    for body in (b"old " + b"9" * 5000 + b"\n\n" + led.checkpoint(), _body(0, [], huge)):
        assert _post(client, body).status_code == 400


# The add-checkpoint example of c2sp.org/tlog-witness, byte for byte.
SPEC_EXAMPLE = (
    "old 20852014\n"
    "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n"
    "jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n"
    "5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=\n"
    "/6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=\n"
    "\n"
    "example.com/behind-the-sofa\n"
    "20852163\n"
    "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    "\n"
    "— example.com/behind-the-sofa "
    "Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
    "— example.com/behind-the-sofa "
    "opLqBQsREYCgu6xQkYQwJr9fo45a62DN9EdmHXnZdXNqlcVGlCum2Wks+49/V6267UEjw6QUXTS5Rovnzv++qbSzm9Q=\n"
).encode()


def test_the_spec_example_parses() -> None:
    request = AddCheckpoint.parse(SPEC_EXAMPLE)
    assert (request.old, len(request.proof), request.checkpoint.size) == (20852014, 4, 20852163)
    assert request.checkpoint.origin == "example.com/behind-the-sofa"
    assert [s.name for s in request.note.signatures] == [request.checkpoint.origin] * 2


def test_parse_is_strict_about_the_old_line() -> None:
    with pytest.raises(MalformedError, match="old"):
        AddCheckpoint.parse(b"old +1\n\n")
    with pytest.raises(MalformedError, match="empty line"):
        AddCheckpoint.parse(b"old 0\n")


def test_proofs_that_fail_are_422(led: mc.Ledger, tmp_path: Path, alice: Ed25519Signer) -> None:
    client = _client(led, tmp_path / "w")
    first = led.checkpoint()
    assert _post(client, _body(0, [], first)).status_code == 200
    old = _size(first)
    second = _grow(led, 6, alice)
    proof = led.consistency_proof(old)
    tampered = [bytes(32), *proof[1:]]
    assert _post(client, _body(old, tampered, second)).status_code == 422
    assert _post(client, _body(old, [], second)).status_code == 422
    # A non-empty proof from size 0 (a fresh witness state).
    fresh = _client(led, tmp_path / "w2")
    assert _post(fresh, _body(0, proof, second)).status_code == 422
    # Nothing was cosigned by the refusals: the state still holds the first size.
    r = _post(client, _body(0, [], second))
    assert (r.status_code, r.text) == (409, f"{old}\n")


def test_an_empty_tree_must_have_the_empty_root(tmp_path: Path) -> None:
    log = make_signer("empty.example/log")
    policy = CheckpointPolicy.parse(f"log {verifier_of(log)}\nquorum none\n")
    client = Client(create_witness_app(policy, WitnessState(tmp_path / "w"), W, lambda: NOW))
    wrong = sign_checkpoint(Checkpoint(log.name, 0, bytes(32)), log)
    assert _post(client, _body(0, [], wrong.to_bytes())).status_code == 422
    empty = sign_checkpoint(Checkpoint(log.name, 0, EMPTY_ROOT), log)
    assert _post(client, _body(0, [], empty.to_bytes())).status_code == 200


def test_a_forked_log_is_refused(led: mc.Ledger, tmp_path: Path, alice: Ed25519Signer) -> None:
    client = _client(led, tmp_path / "w")
    first = _grow(led, 4, alice)
    old = _size(first)
    assert _post(client, _body(0, [], first)).status_code == 200
    # Another tree of the same origin, its checkpoints signed with the log's own key.
    log_signer = FileSigner.load(ORIGIN, led.path / LOG_KEY_NAME, None)
    with mc.init(tmp_path / "b", ORIGIN, alice) as other:
        for i in range(8):
            other.record_event("fork", i, alice)
        fork_root = tree_root(other.store.node_reader(), old)
        same_size = sign_checkpoint(Checkpoint(ORIGIN, old, fork_root), log_signer)
        r = _post(client, _body(old, [], same_size.to_bytes()))
        assert r.status_code == 422 and "forked" in r.text
        branch = Checkpoint.from_text(parse_note(other.checkpoint()).text)
        longer = sign_checkpoint(branch, log_signer).to_bytes()
        assert _post(client, _body(old, other.consistency_proof(old), longer)).status_code == 422
    # The honest log still advances from the size cosigned.
    second = _grow(led, 2, alice)
    assert _post(client, _body(old, led.consistency_proof(old), second)).status_code == 200


def test_state_survives_a_restart(led: mc.Ledger, tmp_path: Path, alice: Ed25519Signer) -> None:
    first = _grow(led, 2, alice)
    assert _post(_client(led, tmp_path / "w"), _body(0, [], first)).status_code == 200
    again = _client(led, tmp_path / "w")
    r = _post(again, _body(0, [], first))
    assert (r.status_code, r.text) == (409, f"{_size(first)}\n")
    second = _grow(led, 2, alice)
    old = _size(first)
    assert _post(again, _body(old, led.consistency_proof(old), second)).status_code == 200
    assert _size(again.get(f"/{origin_hash(ORIGIN)}/checkpoint").content) == _size(second)


def test_two_requests_from_the_same_old_size_advance_once(
    led: mc.Ledger, tmp_path: Path, alice: Ed25519Signer
) -> None:
    first = led.checkpoint()
    old = _size(first)
    bodies = []
    for n in (3, 4):
        note = _grow(led, n, alice)
        bodies.append(_body(old, led.consistency_proof(old, _size(note)), note))
    policy = CheckpointPolicy.parse(f"log {led.log_key}\nquorum none\n")

    async def race(app: Starlette) -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://w") as client:
            assert (await client.post("/add-checkpoint", content=_body(0, [], first))).is_success
            return list(
                await asyncio.gather(*(client.post("/add-checkpoint", content=b) for b in bodies))
            )

    for attempt in range(5):
        state = WitnessState(tmp_path / f"w{attempt}")
        answers = asyncio.run(race(create_witness_app(policy, state, W, clock=lambda: NOW)))
        assert sorted(a.status_code for a in answers) == [200, 409]
        # The state holds the winner's checkpoint; the loser is told its size.
        won = AddCheckpoint.parse(bodies[[a.status_code for a in answers].index(200)])
        assert state.latest(ORIGIN) == won.checkpoint
        lost = next(a for a in answers if a.status_code == 409)
        assert lost.text == f"{won.checkpoint.size}\n"


def test_state_update_is_a_compare_and_set(tmp_path: Path) -> None:
    """Two threads that read the same latest size: the second sees the first's write."""
    log = make_signer("cas.example/log")
    state = WitnessState(tmp_path / "w")
    seen: list[int | None] = []
    inside = threading.Event()

    def advance(latest: Checkpoint | None) -> Note:
        seen.append(None if latest is None else latest.size)
        inside.set()
        time.sleep(0.05)  # widen the window a racing update would use
        return sign_checkpoint(Checkpoint(log.name, len(seen), EMPTY_ROOT), log)

    threads = [threading.Thread(target=state.update, args=(log.name, advance)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [None, 1]
    assert WitnessState(tmp_path / "w").latest(log.name) == Checkpoint(log.name, 2, EMPTY_ROOT)


def test_witness_serve_runs_as_a_process(
    led: mc.Ledger, tmp_path: Path, env: dict[str, str]
) -> None:
    KeyStore(Path(env["MODELCHAIN_HOME"])).create("w1.example", b"pw")
    policy = tmp_path / "policy"
    policy.write_text(f"log {led.log_key}\n")
    port = free_port()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "modelchain", "witness", "serve"),
            *("--policy", str(policy), "--state", str(tmp_path / "w")),
            *("--identity", "w1.example", "--port", str(port)),
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
        # The line `witness vkey` prints names the witness in a policy.
        line = run_cli(env, "witness", "vkey", "--identity", "w1.example").stdout
        assert line.startswith("witness w1.example w1.example+")
        policy_w = CheckpointPolicy.parse(f"log {led.log_key}\n{line}quorum w1.example\n")
        cosigned = policy_w.evaluate(note + r.content).cosigned["w1.example"]
        assert abs(cosigned - time.time()) < 300
        m = httpx.get(f"{url}/{hashlib.sha256(ORIGIN.encode()).hexdigest()}/checkpoint")
        assert m.status_code == 200
    finally:
        stop_process(proc)
    assert os.path.exists(tmp_path / "w" / f"{origin_hash(ORIGIN)}.checkpoint")


def test_a_ledger_keeps_the_witness_cosignature_its_policy_asks_for(
    tmp_path: Path, alice: Ed25519Signer
) -> None:
    asks = f"witness w1 {verifier_of(W, COSIGNATURE_V1)}\nquorum w1\n"
    with mc.init(tmp_path / "l", ORIGIN, alice, checkpoint_policy=asks) as led:
        client = _client(led, tmp_path / "w")
        note = led.checkpoint()
        r = _post(client, _body(0, [], note))
        assert r.status_code == 200
        # The client appends the answer to the checkpoint; the ledger keeps the cosignature.
        led.add_cosignatures(note + r.content)
        assert led.policy.evaluate(led.checkpoint()).cosigned == {"w1": NOW}
        assert led.verified_checkpoint().size == _size(note)
