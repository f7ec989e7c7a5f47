"""Property-based fuzzing of the HTTP API from its own OpenAPI document
(schemathesis, against a real server): whatever a client sends, the server
never answers 5xx, and every error is JSON with a code and a message."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import schemathesis
from conftest import ORIGIN, make_signer, run_cli
from hypothesis import HealthCheck, settings
from serving import running_server

import modelchain as mc
from modelchain.core.identity import verifier_of
from modelchain.ledger.ledger import Founder

_TOKEN: dict[str, str] = {}


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[schemathesis.BaseSchema]:
    root = tmp_path_factory.mktemp("fuzz")
    alice, bob = make_signer("alice"), make_signer("bob")
    led = mc.init(
        root / "ledger",
        ORIGIN,
        alice,
        members=[Founder(verifier_of(bob), "acme", ("trainer",))],
    )
    model = root / "m.bin"
    model.write_bytes(b"w" * 1000)
    try:
        for i in range(20):
            led.record_event("fuzz.seed", {"i": i}, bob)
        led.models.register("fraud", model, signer=bob)
    finally:
        led.close()
    env = {**os.environ, "MODELCHAIN_LEDGER": str(root / "ledger")}
    _TOKEN["value"] = run_cli(env, "token", "issue", "bob").stdout.strip()
    with running_server(root / "ledger", env=env, log=root / "server.log") as url:
        yield schemathesis.openapi.from_url(url + "/openapi.json")
    log = (root / "server.log").read_text()
    assert '"level": "error"' not in log, "the server logged an error while fuzzed"


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)
def test_no_server_errors(case: schemathesis.Case) -> None:
    for headers in ({"Authorization": f"Bearer {_TOKEN['value']}"}, {}):
        response = case.call(headers=headers, timeout=30)
        assert response.status_code < 500, (case.method, case.formatted_path, response.text)
        if response.status_code >= 400:
            body = response.json()
            assert set(body["error"]) == {"code", "message"}, body
            assert body["error"]["code"] and body["error"]["message"]
