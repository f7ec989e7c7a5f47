"""The server's bounds against hostile or unlucky clients, on a real
`modelchain serve` process on loopback: numbers out of range, forged Host
headers, identical uploads at once, concurrent token commands, a damaged
access file, slow request heads, too many connections; and the dashboard's
denied attempts, answered from the audit-trail index without a cache."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from conftest import ORIGIN, make_signer, run_cli
from serving import running_server

import modelchain as mc
from modelchain.core.identity import verifier_of
from modelchain.errors import RejectedError
from modelchain.ledger.ledger import Founder

alice, bob, carol = make_signer("alice"), make_signer("bob"), make_signer("carol")
DEADLINE = 60.0  # seconds any condition below may take on a loaded machine


def _wait_for(condition: Callable[[], bool], what: str, within: float = DEADLINE) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within:g} s")
        time.sleep(0.05)


def _new_ledger(root: Path) -> tuple[Path, dict[str, str]]:
    members = [
        Founder(verifier_of(bob), "acme", ("trainer",)),
        Founder(verifier_of(carol), "audit-co", ("auditor",)),
    ]
    mc.init(root / "ledger", ORIGIN, alice, org="acme", members=members).close()
    env = {
        **os.environ,
        "MODELCHAIN_HOME": str(root / "home"),
        "MODELCHAIN_LEDGER": str(root / "ledger"),
    }
    return root / "ledger", env


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, dict[str, str]]]:
    """A ledger with a model and denied attempts on it, served; yields (url, ledger
    dir, tokens by member: carol reads, bob writes)."""
    root = tmp_path_factory.mktemp("bounds")
    ledger_dir, env = _new_ledger(root)
    model = root / "model.bin"
    model.write_bytes(b"weights " * 100)
    with mc.open(ledger_dir) as led:
        led.models.register("fraud", model, signer=bob)
        with pytest.raises(RejectedError):
            led.deployments.deploy("fraud", 1, "production", signer=carol)  # an auditor may not
        assert not led.record_event("audit.note", {"n": 1}, carol).outcome.accepted
    tokens = {
        "carol": run_cli(env, "token", "issue", "carol").stdout.strip(),
        "bob": run_cli(env, "token", "issue", "bob", "--scope", "write").stdout.strip(),
    }
    with running_server(ledger_dir, env=env, log=root / "server.log") as url:
        yield url, ledger_dir, tokens


def _size(url: str, token: str) -> int:
    return int(httpx.get(url + "/v1/ledger", headers=_auth(token), timeout=30).json()["size"])


# -- numbers ----------------------------------------------------------------------


def test_numbers_out_of_range_are_400_on_every_route(
    served: tuple[str, Path, dict[str, str]],
) -> None:
    url, _, tokens = served
    h = _auth(tokens["carol"])
    before = _size(url, tokens["carol"])
    for n in ("99999999999999999999", "9" * 5000, str(2**63), "-1"):
        api = [
            f"/checkpoint?covering={n}",
            f"/v1/entries:range?start={n}&end=3",
            f"/v1/entries:range?start=0&end={n}",
            f"/v1/entries/{n}",
            f"/v1/receipts/{n}",
            f"/v1/proof/inclusion?index={n}",
            f"/v1/proof/inclusion?index=0&size={n}",
            f"/v1/proof/consistency?old={n}",
            f"/v1/proof/consistency?old=1&new={n}",
            f"/v1/models/fraud?version={n}",
            f"/v1/models/fraud/lineage?version={n}",
            f"/v1/models/fraud/deployments/prod?at={n}",
            f"/v1/models/fraud/diff?old={n}&new=1",
            f"/v1/datasets/d?version={n}",
            f"/v1/denied?before={n}",
            f"/v1/denied?limit={n}",
            f"/v1/audit?since={n}",
            f"/v1/audit?until={n}",
            f"/v1/audit?before={n}",
            f"/tile/0/{n}",
            f"/tile/entries/{n}",
        ]
        for path in api:
            r = httpx.get(url + path, headers=h, timeout=30)
            assert r.status_code in (400, 404), (path[:80], r.status_code, r.text[:200])
            assert r.json()["error"]["code"] in ("bad_request", "malformed", "not_found")
        ui = [
            f"/ui/entries/{n}",
            f"/ui/audit?since={n}",
            f"/ui/audit?until={n}",
            f"/ui/audit?before={n}",
            f"/ui/models/fraud/versions/{n}",
            f"/ui/models/fraud/versions/{n}/draft?env=prod&role=risk",
            f"/ui/models/fraud/entries/{n}",
            f"/ui/models/fraud/annex-iv.json?version={n}",
        ]
        for path in ui:
            r = httpx.get(url + path, headers=h, timeout=30)
            assert r.status_code == 400, (path[:80], r.status_code, r.text[:200])
            assert "Bad request" in r.text
    assert _size(url, tokens["carol"]) == before


# -- redirects --------------------------------------------------------------------


def _raw_get(url: str, path: str, host: str) -> bytes:
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    return answer


def test_redirects_never_name_the_host_header(served: tuple[str, Path, dict[str, str]]) -> None:
    url, _, _ = served
    for path in ("/v1/models/", "/v1/ledger/", "/healthz/", "/ui", "/"):
        answer = _raw_get(url, path, "evil.example")
        assert b"evil.example" not in answer, (path, answer[:300])
    assert _raw_get(url, "/v1/models/", "evil.example").startswith(b"HTTP/1.1 404")
    ui = _raw_get(url, "/ui", "evil.example")
    assert ui.startswith(b"HTTP/1.1 308") and b"\r\nlocation: /ui/\r\n" in ui.lower()


# -- blobs ------------------------------------------------------------------------


def test_identical_uploads_at_once_all_succeed(served: tuple[str, Path, dict[str, str]]) -> None:
    url, ledger_dir, tokens = served
    clients = 16
    for _ in range(8):  # rounds, each a new blob that all clients upload at once
        data = os.urandom(256 * 1024)
        barrier = threading.Barrier(clients)

        def upload(
            _: int, data: bytes = data, barrier: threading.Barrier = barrier
        ) -> httpx.Response:
            with httpx.Client(timeout=DEADLINE) as client:
                barrier.wait()
                return client.post(url + "/v1/blobs", content=data, headers=_auth(tokens["bob"]))

        with ThreadPoolExecutor(clients) as pool:
            answers = list(pool.map(upload, range(clients)))
        assert [r.status_code for r in answers] == [200] * clients, [r.text for r in answers]
        refs = {r.json()["ref"] for r in answers}
        assert len(refs) == 1
        (ref,) = refs
        got = httpx.get(f"{url}/v1/blobs/{ref}", headers=_auth(tokens["carol"]), timeout=30)
        assert got.content == data
        digest = ref.split(":")[1]
        named = [p.name for p in ledger_dir.rglob("*") if p.is_file() and digest in p.name]
        assert named == [digest], "one blob, no temporary left over"


# -- the dashboard's denied attempts ---------------------------------------------------


def test_denied_attempts_on_a_version_page_and_in_the_api(
    served: tuple[str, Path, dict[str, str]],
) -> None:
    url, ledger_dir, tokens = served
    page = httpx.get(url + "/ui/models/fraud/versions/1", headers=_auth(tokens["carol"]))
    assert page.status_code == 200
    table = page.text.split('id="denied"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r'<tr class="rejected" data-index="(\d+)"', table)
    assert len(rows) == 1 and "model.deploy" in table and "carol" in table
    assert "audit.note" not in table  # not about this model
    api = httpx.get(url + "/v1/denied?limit=1", headers=_auth(tokens["carol"])).json()
    assert len(api["result"]) == 1 and api["next_before"] is not None
    rest = httpx.get(
        url + f"/v1/denied?before={api['next_before']}", headers=_auth(tokens["carol"])
    ).json()
    paged = [e["index"] for e in api["result"] + rest["result"]]
    with mc.open(ledger_dir, readonly=True) as led:
        sdk = [d["index"] for d in led.denied()]
    assert paged == sdk[::-1] and len(sdk) == 2 and int(rows[0]) in sdk


def test_the_dashboard_keeps_no_rejected_entries_in_memory(tmp_path: Path) -> None:
    """Serving the version page holds on to nothing that grows with the log's
    rejected entries (it used to keep every one, body included, for good)."""
    from modelchain.server import create_app

    ledger_dir, _ = _new_ledger(tmp_path)
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights")
    led = mc.open(ledger_dir)
    try:
        led.models.register("fraud", model, signer=bob)
        app = create_app(led)
        secret = led_token(ledger_dir)

        async def views(n: int) -> None:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                for _ in range(n):
                    r = await client.get("/ui/models/fraud/versions/1", headers=_auth(secret))
                    assert r.status_code == 200, r.text[:300]

        tracemalloc.start()
        try:
            asyncio.run(views(2))  # templates compiled, caches warm
            for i in range(120):  # 120 x 30 KB of rejected bodies
                ack = led.record_event("bulk", {"i": i, "pad": "x" * 30_000}, carol)
                assert not ack.outcome.accepted
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            asyncio.run(views(3))
            gc.collect()
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert grown < 1_000_000, f"{grown} bytes kept after serving the page"
        assert len(led.denied()) == 120
    finally:
        led.close()


def test_configuration_comes_from_the_edge_not_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server reads no environment variable: the keys it holds for custodial
    approval are what ``ServerConfig.custodial`` says (``modelchain serve`` reads
    $MODELCHAIN_CUSTODIAL), not what the process environment names."""
    from modelchain.server import ServerConfig, create_app
    from modelchain.server.access import AccessList

    # Read deep inside, these would stop create_app: no key store, no passphrase.
    monkeypatch.setenv("MODELCHAIN_CUSTODIAL", "bob")
    monkeypatch.setenv("MODELCHAIN_HOME", str(tmp_path / "no-keys-here"))
    ledger_dir, _ = _new_ledger(tmp_path)
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights")
    led = mc.open(ledger_dir)
    try:
        led.models.register("fraud", model, signer=bob)
        secret = AccessList(ledger_dir).issue("alice", scope="approve")[1]

        async def version_page(config: ServerConfig | None) -> str:
            transport = httpx.ASGITransport(app=create_app(led, config))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                r = await client.get("/ui/models/fraud/versions/1", headers=_auth(secret))
                assert r.status_code == 200, r.text[:300]
                return r.text

        assert 'id="custodial"' not in asyncio.run(version_page(None))
        # The form is for approvers only: an admin without an approval role sees none.
        held = asyncio.run(version_page(ServerConfig(custodial={"alice": alice})))
        assert 'id="custodial"' not in held
        led.members.update("alice", roles=["admin", "approver:risk"], signers=[alice])
        held = asyncio.run(version_page(ServerConfig(custodial={"alice": alice})))
        assert 'id="custodial"' in held and "holds for alice" in held
    finally:
        led.close()


def led_token(ledger_dir: Path) -> str:
    from modelchain.server.access import AccessList

    return AccessList(ledger_dir).issue("carol")[1]


# -- tokens ---------------------------------------------------------------------------

_WORKER = """
import json, sys
from pathlib import Path
from modelchain.server.access import AccessList

ledger, n, revoke = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
issued = []
for i in range(n):
    issued.append(AccessList(ledger).issue("carol", label=f"w{i}")[1])
    if i < len(revoke):
        AccessList(ledger).revoke(revoke[i])
print(json.dumps(issued))
"""


def test_concurrent_token_commands_lose_no_update(tmp_path: Path) -> None:
    ledger_dir, env = _new_ledger(tmp_path)
    doomed = [
        json.loads(run_cli(env, "token", "issue", "carol", "--json").stdout) for _ in range(8)
    ]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(ledger_dir), "12"]
            + [d["id"] for d in doomed[2 * w : 2 * w + 2]],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for w in range(4)
    ]
    clis = [
        subprocess.Popen(
            [sys.executable, "-m", "modelchain", "token", "issue", "carol", "--json"],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    issued: list[str] = []
    for p in workers:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        issued += json.loads(out)
    for p in clis:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        issued.append(json.loads(out)["token"])
    access = ledger_dir / "access.json"
    listed = json.loads(access.read_text())["tokens"]
    assert len(listed) == len(issued) == 4 * 12 + 3
    assert [p.name for p in ledger_dir.iterdir() if p.name.endswith(".tmp")] == []
    with running_server(ledger_dir, env=env) as url:
        for secret in issued:
            r = httpx.get(url + "/v1/ledger", headers=_auth(secret), timeout=30)
            assert r.status_code == 200, r.text
        for d in doomed:
            r = httpx.get(url + "/v1/ledger", headers=_auth(d["token"]), timeout=30)
            assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"


def test_a_damaged_access_file_names_no_path_and_stops_serve(tmp_path: Path) -> None:
    ledger_dir, env = _new_ledger(tmp_path)
    token = run_cli(env, "token", "issue", "carol").stdout.strip()
    access = ledger_dir / "access.json"
    with running_server(ledger_dir, env=env, log=tmp_path / "server.log") as url:
        assert httpx.get(url + "/v1/models", headers=_auth(token)).status_code == 200
        access.write_text('{"reads": "token", "tokens": [')
        for path in ("/v1/models", "/checkpoint", "/ui/"):
            r = httpx.get(url + path, headers=_auth(token), timeout=30)
            assert r.status_code == 500, (path, r.status_code)
            assert str(tmp_path) not in r.text and "access.json" not in r.text
        assert httpx.get(url + "/v1/models", headers=_auth(token)).json()["error"] == {
            "code": "storage",
            "message": "the ledger store failed; see the log",
        }
        assert httpx.get(url + "/healthz").status_code == 200
    assert "access.json is damaged" in (tmp_path / "server.log").read_text()
    proc = run_cli(env, "serve", "--ledger", str(ledger_dir), "--port", "0", ok=False)
    assert proc.returncode == 7  # StorageError, before serving anything
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert "access.json is damaged" in line
    issued = run_cli(env, "token", "issue", "carol", ok=False)
    assert issued.returncode == 7 and "damaged" in issued.stderr


# -- connections ----------------------------------------------------------------------


def _closed_by_server(s: socket.socket) -> bool:
    """Whether the server closed ``s`` (non-blocking check)."""
    try:
        return s.recv(4096) == b""
    except BlockingIOError:
        return False
    except OSError:  # reset
        return True


def test_slow_request_heads_are_cut_off(tmp_path: Path) -> None:
    ledger_dir, env = _new_ledger(tmp_path)
    with running_server(ledger_dir, "--header-timeout", "1", "--reads", "open", env=env) as url:
        port = int(url.rsplit(":", 1)[1])
        socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(50)]
        try:
            for i, s in enumerate(socks):
                s.setblocking(False)
                if i % 2:  # half send a partial head; the other half nothing at all
                    s.send(b"GET /v1/ledger HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            started = time.monotonic()
            open_ = set(range(len(socks)))

            def all_closed() -> bool:
                for i in list(open_):
                    try:
                        socks[i].send(b"a")  # trickle on
                    except OSError:
                        open_.discard(i)
                        continue
                    if _closed_by_server(socks[i]):
                        open_.discard(i)
                return not open_

            _wait_for(all_closed, "the server closed every slow connection")
            assert time.monotonic() - started >= 0.5  # the timeout, not a refusal
        finally:
            for s in socks:
                s.close()
        r = httpx.get(url + "/v1/ledger", timeout=30)
        assert r.status_code == 200


def test_connections_beyond_the_limit_get_503_and_service_recovers(tmp_path: Path) -> None:
    ledger_dir, env = _new_ledger(tmp_path)
    args = ("--max-connections", "10", "--header-timeout", "300", "--reads", "open")
    with running_server(ledger_dir, *args, env=env) as url:
        port = int(url.rsplit(":", 1)[1])
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(10)]
        try:
            extra = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
            for s in extra:
                s.settimeout(DEADLINE)
                answer = b""
                while chunk := s.recv(4096):
                    answer += chunk
                s.close()
                assert answer.startswith(b"HTTP/1.1 503"), answer[:100]
                assert b'"overloaded"' in answer and b"retry-after: 1" in answer
            # the ten held ones are still served
            held[0].sendall(b"GET /v1/ledger HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            held[0].settimeout(DEADLINE)
            assert held[0].recv(12) == b"HTTP/1.1 200"
        finally:
            for s in held:
                s.close()

        def served_again() -> bool:
            return httpx.get(url + "/v1/ledger", timeout=30).status_code == 200

        _wait_for(served_again, "a new connection is served once the held ones closed")


def test_an_oversized_request_head_is_431(served: tuple[str, Path, dict[str, str]]) -> None:
    url, _, _ = served
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as s:
        answer = b""
        try:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            for _ in range(40):  # 80 KiB of headers
                s.sendall(b"X-Pad: " + b"p" * 2000 + b"\r\n")
            s.sendall(b"\r\n")
        except OSError:
            pass  # the server answered and closed already
        try:
            while chunk := s.recv(4096):
                answer += chunk
        except OSError:
            pass
    # 431 where uvicorn parses with httptools (installed with the server extra); h11 says 400
    assert answer.startswith((b"HTTP/1.1 431", b"HTTP/1.1 400")), answer[:100]
