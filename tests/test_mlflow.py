"""The MLflow bridge against a real MLflow tracking server (SQLite backend,
artifacts served by it) on loopback: sync, webhooks, verify."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import run_cli as run
from hypothesis import given, settings
from hypothesis import strategies as st
from serving import free_port, running_server, stop_process

from modelchain.errors import AuthError, MalformedError
from modelchain.integrations.mlflow import (
    ledger_name,
    parse_model_uri,
    parse_webhook,
    verify_webhook,
)

pytest.importorskip("mlflow")
pytest.importorskip("sklearn")

ORIGIN = "ledger.example.org/mlflow"
SECRET = "webhook-secret-for-tests"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
STARTUP_S = 120
# MLflow's server and client, offline and quiet; webhooks may reach loopback over
# plain http, and the server reads its webhook list afresh for every event.
MLFLOW_ENV = {
    "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
    "MLFLOW_ENABLE_TELEMETRY": "false",
    "DO_NOT_TRACK": "1",
    "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
    "MLFLOW_WEBHOOK_CACHE_TTL": "0",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


def _wait(condition: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A real MLflow tracking server; yields (its URL, its artifact folder)."""
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    env = {**os.environ, **MLFLOW_ENV}
    log = open(root / "server.log", "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--serve-artifacts",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        env=env,
        stdout=log,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited: {(root / 'server.log').read_text()[-2000:]}")
        try:
            return httpx.get(url + "/health", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    try:
        _wait(up, "the MLflow server", STARTUP_S)
        yield url, root / "artifacts"
    finally:
        stop_process(proc)  # type: ignore[arg-type]
        log.close()


@pytest.fixture(scope="module")
def client(mlflow_server: tuple[str, Path]) -> Iterator[Any]:
    saved = {k: os.environ.get(k) for k in MLFLOW_ENV}
    os.environ.update(MLFLOW_ENV)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import mlflow

        mlflow.set_tracking_uri(mlflow_server[0])
        try:
            yield mlflow.MlflowClient(mlflow_server[0])
        finally:
            mlflow.set_tracking_uri(None)
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def log_version(client: Any, name: str, seed: int, dataset: str | None = None) -> int:
    """Train a small model, log it with parameters, metrics, an input dataset
    and a git commit, register it as ``name``; its version."""
    import mlflow
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = pd.DataFrame(
            {"a": [float(i * seed % 7) for i in range(20)], "b": [float(i % 3) for i in range(20)]}
        )
        df["y"] = [i % 2 for i in range(20)]
        with mlflow.start_run() as active:
            mlflow.log_params({"C": 0.5, "seed": seed})
            model = LogisticRegression(C=0.5).fit(df[["a", "b"]], df["y"])
            mlflow.log_metric("accuracy", 0.75)
            source = mlflow.data.from_pandas(
                df, source="/data/train.csv", name="train", targets="y"
            )
            tags = {"modelchain.dataset": dataset} if dataset else {}
            mlflow.log_input(source, context="training", tags=tags)
            mlflow.set_tag("mlflow.source.git.commit", COMMIT)
            info = mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"])
        assert active.info.run_id
        mv = mlflow.register_model(info.model_uri, name)
    return int(mv.version)


@pytest.fixture
def ledger_env(env: dict[str, str], mlflow_server: tuple[str, Path]) -> dict[str, str]:
    e = {**env, **MLFLOW_ENV, "MLFLOW_TRACKING_URI": mlflow_server[0]}
    run(e, "init", "--origin", ORIGIN, "--admin", "alice", "--no-default-policies")
    return e


def test_uris_names_and_payloads() -> None:
    assert parse_model_uri("models:/Fraud Model/3") == ("Fraud Model", 3)
    assert parse_model_uri("mlflow-models:/iris/12") == ("iris", 12)
    for other in ("models:/iris/latest", "models:/iris@best", "./models/iris/1", "models:/iris/0"):
        assert parse_model_uri(other) is None
    assert ledger_name("Fraud Model") == "fraud-model"
    assert ledger_name("  iris_v2 ") == "iris_v2"
    body = json.dumps(
        {"entity": "model_version", "action": "created", "data": {"name": "m", "version": "4"}}
    ).encode()
    assert parse_webhook(body) == ("m", 4)
    assert parse_webhook(b'{"entity": "registered_model", "action": "created"}') is None
    for bad in (b"[", b"[]", b'{"entity": "model_version", "action": "created", "data": 1}'):
        with pytest.raises(MalformedError):
            parse_webhook(bad)


def test_webhook_signatures_are_mlflows() -> None:
    from mlflow.webhooks.delivery import _generate_hmac_signature

    body = '{"entity": "model_version", "action": "created", "data": {}}'
    now = int(time.time())
    headers = {
        "x-mlflow-delivery-id": "d-1",
        "x-mlflow-timestamp": str(now),
        "x-mlflow-signature": _generate_hmac_signature(SECRET, "d-1", str(now), body),
    }
    assert verify_webhook(SECRET, headers, body.encode(), now) == "d-1"
    with pytest.raises(AuthError, match="does not verify"):
        verify_webhook("another secret", headers, body.encode(), now)
    with pytest.raises(AuthError, match="does not verify"):
        verify_webhook(SECRET, headers, body.encode() + b" ", now)
    with pytest.raises(AuthError, match="refused"):
        verify_webhook(SECRET, headers, body.encode(), now + 301)
    with pytest.raises(AuthError):
        verify_webhook(SECRET, {**headers, "x-mlflow-timestamp": "1e9"}, body.encode(), now)
    with pytest.raises(AuthError):
        verify_webhook(SECRET, {}, body.encode(), now)


@given(
    headers=st.dictionaries(
        st.sampled_from(["x-mlflow-delivery-id", "x-mlflow-timestamp", "x-mlflow-signature"]),
        st.text(max_size=60),
    ),
    body=st.binary(max_size=200),
)
@settings(max_examples=200, deadline=None)
def test_any_delivery_is_refused_cleanly(headers: dict[str, str], body: bytes) -> None:
    """Whatever arrives, the route's checks answer with our errors (401/400), never a bug."""
    with pytest.raises(AuthError):  # hypothesis does not forge HMACs
        verify_webhook(SECRET, headers, body, int(time.time()))
    with contextlib.suppress(MalformedError):
        parse_webhook(body)


@given(
    payload=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=10,
    ),
    data=st.dictionaries(
        st.sampled_from(["name", "version", "source"]),
        st.none() | st.integers() | st.text(max_size=20),
    ),
)
@settings(max_examples=200, deadline=None)
def test_any_json_parses_or_is_malformed(payload: object, data: dict[str, object]) -> None:
    for value in (payload, {"entity": "model_version", "action": "created", "data": data}):
        try:
            event = parse_webhook(json.dumps(value).encode())
        except MalformedError:
            continue
        if event is not None:
            name, version = event
            assert name and "/" not in name and version > 0


def test_sync_records_runs_and_versions_once_and_tags_them(
    ledger_env: dict[str, str], client: Any, tmp_path: Path
) -> None:
    data = tmp_path / "train.csv"
    data.write_text("a,b,y\n1,2,0\n")
    run(ledger_env, "dataset", "register", "train", str(data))
    first = log_version(client, "Sync Model", 1, dataset="train@1")
    second = log_version(client, "Sync Model", 2)

    out = run(ledger_env, "mlflow", "sync", "--name", "Sync Model", "--json")
    summary = json.loads(out.stdout)
    assert (summary["recorded"], summary["known"], summary["failed"]) == (2, 0, 0)
    assert "Sync Model 1  recorded: sync-model version 1" in out.stderr
    by_version = {v["mlflow_version"]: v for v in summary["versions"]}

    import modelchain as mc

    with mc.open(ledger_env["MODELCHAIN_LEDGER"], readonly=True) as led:
        v1 = led.models.get("sync-model", by_version[first]["version"])
        assert v1.record["card"]["mlflow"]["name"] == "Sync Model"
        assert v1.record["card"]["mlflow"]["version"] == first
        assert v1.record["metrics"] == {"accuracy": 0.75}
        recorded = led.runs.get(v1.record["run"])
        build = recorded["statement"]["predicate"]["buildDefinition"]
        assert build["externalParameters"]["parameters"] == {"C": "0.5", "seed": "1"}
        deps = build["resolvedDependencies"]
        assert deps[0]["uri"] == "modelchain:dataset/train@1"  # the tagged ledger dataset
        assert deps[-1]["digest"] == {"gitCommit": COMMIT}
        assert recorded["inputs"] == [{"kind": "dataset", "name": "train", "version": 1}]
        # the other version's input is not on the ledger: recorded as MLflow knows it
        v2 = led.models.get("sync-model", by_version[second]["version"])
        other = led.runs.get(v2.record["run"])["statement"]["predicate"]["buildDefinition"]
        dataset = other["resolvedDependencies"][0]
        assert dataset["name"] == "train" and dataset["uri"] == "/data/train.csv"
        assert set(dataset["digest"]) == {"mlflowDataset"}
        size = led.size

    tags = client.get_model_version("Sync Model", str(first)).tags
    assert tags["modelchain.ledger"] == ORIGIN
    assert tags["modelchain.model"] == "sync-model"
    assert tags["modelchain.digest"] == v1.digest
    assert tags["modelchain.entry"] == str(v1.index)
    assert tags["modelchain.run"] == v1.record["run"]

    again = json.loads(run(ledger_env, "mlflow", "sync", "--name", "Sync Model", "--json").stdout)
    assert (again["recorded"], again["known"], again["failed"]) == (0, 2, 0)
    with mc.open(ledger_env["MODELCHAIN_LEDGER"], readonly=True) as led:
        assert led.size == size  # nothing written twice

    ok = run(ledger_env, "verify", f"models:/Sync Model/{first}", "--json")
    assert json.loads(ok.stdout)["digest"] == v1.digest
    ok = run(ledger_env, "verify", f"mlflow-models:/Sync Model/{second}")
    assert "sync-model version 2" in ok.stdout


def test_verify_rehashes_what_mlflow_serves_and_ignores_its_tags(
    ledger_env: dict[str, str], client: Any, mlflow_server: tuple[str, Path]
) -> None:
    version = log_version(client, "Tampered", 3)
    run(ledger_env, "mlflow", "sync", "--name", "Tampered")
    run(ledger_env, "verify", f"models:/Tampered/{version}")

    # the tags are MLflow's to change: verify never reads them
    client.set_model_version_tag("Tampered", str(version), "modelchain.version", "99")
    run(ledger_env, "verify", f"models:/Tampered/{version}")

    source = client.get_model_version("Tampered", str(version)).source  # models:/m-...
    model_id = source.split("/")[-1]
    (weights,) = mlflow_server[1].glob(f"*/models/{model_id}/artifacts/model.*")
    weights.write_bytes(weights.read_bytes() + b"\0")
    bad = run(ledger_env, "verify", f"models:/Tampered/{version}", ok=False)
    assert bad.returncode == 1, bad.stderr
    said = f"models:/Tampered/{version}, as MLflow serves it, is not tampered version 1"
    assert said in bad.stderr
    assert weights.name in bad.stderr

    # one version that cannot be recorded does not stop the others
    broken = log_version(client, "Tampered", 8, dataset="absent@1")
    proc = run(ledger_env, "mlflow", "sync", "--name", "Tampered", "--json", ok=False)
    assert proc.returncode == 3, proc.stderr
    outcome = json.loads(proc.stdout)
    assert (outcome["known"], outcome["failed"]) == (1, 1)
    (failed,) = [v for v in outcome["versions"] if v["status"] == "failed"]
    assert failed["mlflow_version"] == broken and "absent" in failed["error"]["message"]

    unsynced = log_version(client, "Tampered", 4)
    missing = run(ledger_env, "verify", f"models:/Tampered/{unsynced}", ok=False)
    assert missing.returncode == 3 and "not on the ledger" in missing.stderr
    nowhere = run(ledger_env, "verify", "models:/Nothing/1", "--model", "tampered", ok=False)
    assert nowhere.returncode == 3, nowhere.stderr


def test_an_unreachable_mlflow_is_a_clear_error(ledger_env: dict[str, str], tmp_path: Path) -> None:
    gone = f"http://127.0.0.1:{free_port()}"
    proc = run(ledger_env, "mlflow", "sync", "--tracking-uri", gone, ok=False)
    assert proc.returncode == 69 and "cannot be reached" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run(ledger_env, "verify", "models:/x/1", "--model", "x", ok=False)
    assert proc.returncode == 3  # no ledger model x: said before anything is downloaded
    model = tmp_path / "m.bin"
    model.write_bytes(b"weights")
    run(ledger_env, "model", "register", "x", str(model))
    proc = run(
        ledger_env, "verify", "models:/x/1", "--model", "x", "--tracking-uri", gone, ok=False
    )
    assert proc.returncode == 69 and "cannot be reached" in proc.stderr
    no_uri = {k: v for k, v in ledger_env.items() if k != "MLFLOW_TRACKING_URI"}
    proc = run(no_uri, "mlflow", "sync", ok=False)
    assert proc.returncode == 2 and "tracking URI" in proc.stderr


def _signed(body: bytes, secret: str = SECRET, stamp: int | None = None) -> dict[str, str]:
    delivery, ts = str(uuid.uuid4()), str(int(time.time()) if stamp is None else stamp)
    mac = hmac.new(secret.encode(), f"{delivery}.{ts}.".encode() + body, hashlib.sha256)
    return {
        "Content-Type": "application/json",
        "X-MLflow-Delivery-Id": delivery,
        "X-MLflow-Timestamp": ts,
        "X-MLflow-Signature": "v1," + base64.b64encode(mac.digest()).decode(),
    }


def _created(name: str, version: int) -> bytes:
    data = {"name": name, "version": str(version), "source": "models:/m-x", "run_id": None}
    return json.dumps({"entity": "model_version", "action": "created", "data": data}).encode()


def test_webhooks_record_new_versions_and_bad_ones_are_refused(
    ledger_env: dict[str, str], client: Any, tmp_path: Path, mlflow_server: tuple[str, Path]
) -> None:
    e = {**ledger_env, "MODELCHAIN_MLFLOW_WEBHOOK_SECRET": SECRET}
    ledger_dir = Path(e["MODELCHAIN_LEDGER"])
    args = ("--mlflow-tracking-uri", mlflow_server[0], "--mlflow-as", "alice")
    log = tmp_path / "serve.log"
    # before the webhook exists, so that MLflow itself never announces it
    unrecorded = log_version(client, "Unsigned", 6)
    with running_server(ledger_dir, *args, env=e, log=log) as url:
        hook = url + "/v1/integrations/mlflow/webhook"
        created = run(e, "mlflow", "webhook", "create", "--url", hook, "--name", "ledger")
        assert "model_version.created" in created.stdout

        # pushed by MLflow itself, signed with the secret, recorded in the background
        version = log_version(client, "Pushed", 5)

        def tagged(v: int) -> bool:
            return "modelchain.entry" in client.get_model_version("Pushed", str(v)).tags

        _wait(lambda: tagged(version), "the webhook's version to be recorded")

        # refused before anything is queued: bad signature, stale, unsigned
        body = _created("Unsigned", unrecorded)
        for headers in (
            _signed(body, secret="wrong"),
            _signed(body, stamp=int(time.time()) - 3600),
            {"Content-Type": "application/json"},
        ):
            answer = httpx.post(hook, content=body, headers=headers)
            assert answer.status_code == 401, answer.text
            assert answer.json()["error"]["code"] == "unauthorized"
        bad = httpx.post(hook, content=b"{not json", headers=_signed(b"{not json"))
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "malformed"
        other = b'{"entity": "registered_model", "action": "created", "data": {}}'
        assert httpx.post(hook, content=other, headers=_signed(other)).status_code == 200

        # a good delivery after them is recorded (MLflow sends its own as well: the
        # second to arrive writes nothing); one queued before would have been first
        later = log_version(client, "Pushed", 7)
        good = _signed(_created("Pushed", later))
        first = httpx.post(hook, content=_created("Pushed", later), headers=good)
        assert first.status_code == 202 and first.json()["status"] == "accepted"
        again = httpx.post(hook, content=_created("Pushed", later), headers=good)
        assert again.status_code == 202 and again.json()["status"] == "duplicate"
        _wait(lambda: tagged(later), "the later version to be recorded")
        assert not any(
            k.startswith("modelchain.")
            for k in client.get_model_version("Unsigned", str(unrecorded)).tags
        )

        run(e, "verify", f"models:/Pushed/{version}")
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    recorded = [r for r in lines if r.get("logger") == "modelchain.server.mlflow"]
    assert any(r.get("mlflow_model") == "Pushed" and r.get("created") for r in recorded)
    assert SECRET not in log.read_text()
    assert not [r for r in lines if r["level"] == "error"], lines


def test_serve_needs_the_whole_webhook_configuration(ledger_env: dict[str, str]) -> None:
    ledger = ledger_env["MODELCHAIN_LEDGER"]
    base = ("serve", "--ledger", ledger, "--port", "0", "--mlflow-tracking-uri", "http://x")
    proc = run(ledger_env, *base, ok=False)
    assert proc.returncode == 2 and "--mlflow-as" in proc.stderr
    proc = run(ledger_env, *base, "--mlflow-as", "alice", ok=False)
    assert proc.returncode == 2 and "MODELCHAIN_MLFLOW_WEBHOOK_SECRET" in proc.stderr
