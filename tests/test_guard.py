"""The runtime guard: verify against the ledger, record the access, then load;
on any mismatch raise IntegrityError and load nothing."""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ORIGIN, make_signer

import modelchain as mc
from modelchain import guard
from modelchain.core.identity import verifier_of
from modelchain.errors import ArtifactError, IntegrityError, UsageError
from modelchain.ledger.ledger import Founder

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")
joblib = pytest.importorskip("joblib")

PEOPLE = {"ops": ("acme", ("deployer",)), "mon": ("acme", ("monitor",))}


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELCHAIN_HOME", str(tmp_path / "home"))


@pytest.fixture
def led(tmp_path: Path) -> Iterator[mc.Ledger]:
    members = [
        Founder(verifier_of(make_signer(n)), org, roles) for n, (org, roles) in PEOPLE.items()
    ]
    ledger = mc.init(tmp_path / "l", ORIGIN, make_signer("alice"), org="acme", members=members)
    ledger.identity = make_signer("alice")
    try:
        yield ledger
    finally:
        ledger.close()


def _state_dict(seed: int) -> dict[str, Any]:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _accesses(led: mc.Ledger) -> list[dict[str, Any]]:
    out = []
    for i in range(led.size):
        entry = led.entry(i)
        if entry.transaction.type == "access.log":
            # the purpose is committed in the log; this side's vault opens it
            out.append(led.disclosures.reveal(entry.transaction.body))
    return out


def _tamper(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def _refused(led: mc.Ledger, call: Any, name: str) -> IntegrityError:
    before = led.size
    with pytest.raises(IntegrityError) as info:
        call()
    assert any(name in line for line in info.value.differences), info.value.differences
    assert led.size == before, "a refused load records nothing"
    return info.value


def test_safetensors(led: mc.Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "model.safetensors"
    weights = _state_dict(0)
    safetensors_torch.save_file(weights, path)
    v = led.models.register("net", path)

    loaded = guard.load_safetensors(led, path, model="net", purpose="batch-scoring")
    assert set(loaded) == set(weights)
    assert all(torch.equal(loaded[k], weights[k]) for k in weights)
    assert _accesses(led) == [
        {
            "artifact": {"kind": "model", "name": "net", "version": v.version},
            "purpose": "batch-scoring",
        }
    ]

    # same shapes, other values: only the tensor bytes differ
    safetensors_torch.save_file(_state_dict(1), path)
    calls: list[object] = []
    monkeypatch.setattr(safetensors_torch, "load_file", lambda *a, **k: calls.append(a))
    _refused(led, lambda: guard.load_safetensors(led, path, model="net"), "model.safetensors")
    assert calls == [], "nothing was loaded"


def test_torch_file_and_file_in_folder(
    led: mc.Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pt = tmp_path / "model.pt"
    weights = _state_dict(0)
    torch.save(weights, pt)
    led.models.register("pt", pt)
    loaded = guard.load_torch(led, pt, model="pt", version=1)
    assert all(torch.equal(loaded[k], weights[k]) for k in weights)
    assert _accesses(led)[-1]["artifact"] == {"kind": "model", "name": "pt", "version": 1}

    folder = tmp_path / "bundle"
    folder.mkdir()
    torch.save(weights, folder / "weights.pt")
    (folder / "config.json").write_text(json.dumps({"layers": 2}))
    led.models.register("bundle", folder)
    loaded = guard.load_torch(led, folder / "weights.pt", model="bundle", root=folder)
    assert set(loaded) == set(weights)
    with pytest.raises(UsageError, match="not inside"):
        guard.load_torch(led, pt, model="bundle", root=folder)

    # a change anywhere in the registered folder refuses the load of any file in it
    (folder / "config.json").write_text(json.dumps({"layers": 3}))
    calls: list[object] = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(a))
    _refused(
        led,
        lambda: guard.load_torch(led, folder / "weights.pt", model="bundle", root=folder),
        "config.json",
    )
    _tamper(pt)
    _refused(led, lambda: guard.load_torch(led, pt, model="pt"), "model.pt")
    assert calls == []


class _Payload:
    """Unpickling this makes a directory: stands in for arbitrary code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.marker),))


def test_sklearn_tampered_pickle_never_runs(led: mc.Ledger, tmp_path: Path) -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    data = load_iris()
    clf = LogisticRegression(max_iter=500).fit(data.data, data.target)
    path = tmp_path / "clf.joblib"
    joblib.dump(clf, path)
    led.models.register("clf", path)

    loaded = guard.load_sklearn(led, path, model="clf", purpose="eval")
    assert (loaded.predict(data.data) == clf.predict(data.data)).all()
    assert _accesses(led)[-1] == {
        "artifact": {"kind": "model", "name": "clf", "version": 1},
        "purpose": "eval",
    }

    # the payload is live: unpickling it does run code
    probe = tmp_path / "probe"
    pickle.loads(pickle.dumps(_Payload(probe)))
    assert probe.is_dir()

    marker = tmp_path / "pwned"
    path.write_bytes(pickle.dumps(_Payload(marker)))
    _refused(led, lambda: guard.load_sklearn(led, path, model="clf"), "clf.joblib")
    assert not marker.exists(), "the tampered pickle was never unpickled"


def test_onnx(led: mc.Ledger, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    def build(op: str) -> Any:
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
        z = helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 2])
        graph = helper.make_graph([helper.make_node(op, ["x", "y"], ["z"])], "g", [x, y], [z])
        return helper.make_model(graph, producer_name="modelchain-test")

    path = tmp_path / "model.onnx"
    onnx.save(build("Add"), path)
    led.models.register("graph", path)
    loaded = guard.load_onnx(led, path, model="graph")
    assert loaded.graph.node[0].op_type == "Add"
    assert _accesses(led)[-1]["artifact"] == {"kind": "model", "name": "graph", "version": 1}

    onnx.save(build("Mul"), path)
    _refused(led, lambda: guard.load_onnx(led, path, model="graph"), "model.onnx")


def test_env_pinning(led: mc.Ledger, tmp_path: Path) -> None:
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    torch.save(_state_dict(0), one)
    torch.save(_state_dict(1), two)
    # the same file name on disk, two registered versions
    model = tmp_path / "deploy" / "model.pt"
    model.parent.mkdir()
    model.write_bytes(one.read_bytes())
    assert led.models.register("m", model).version == 1
    led.deployments.deploy("m", 1, "staging", signer=make_signer("ops"))
    model.write_bytes(two.read_bytes())
    assert led.models.register("m", model).version == 2

    # staging is pinned to v1: v2's bytes are refused there, fine as latest
    _refused(led, lambda: guard.load_torch(led, model, model="m", env="staging"), "model.pt")
    guard.load_torch(led, model, model="m")
    assert _accesses(led)[-1]["artifact"]["version"] == 2

    model.write_bytes(one.read_bytes())
    guard.load_torch(led, model, model="m", env="staging")
    assert _accesses(led)[-1]["artifact"]["version"] == 1
    _refused(led, lambda: guard.load_torch(led, model, model="m", version=2), "model.pt")

    with pytest.raises(UsageError, match="not both"):
        guard.load_torch(led, model, model="m", version=1, env="staging")


def test_no_signer_no_load(led: mc.Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "model.pt"
    torch.save(_state_dict(0), path)
    led.models.register("m", path)
    led.identity = None
    calls: list[object] = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(a))
    before = led.size
    with pytest.raises(UsageError, match="signer"):
        guard.load_torch(led, path, model="m")
    assert calls == [] and led.size == before
    # an explicit signer is enough
    monkeypatch.undo()
    guard.load_torch(led, path, model="m", signer=make_signer("ops"))
    assert _accesses(led)[-1]["artifact"]["version"] == 1

    with pytest.raises(ArtifactError, match="not a file"):
        guard.load_torch(led, tmp_path / "missing.pt", model="m", signer=make_signer("ops"))


def test_watch_reports_drift(led: mc.Ledger, tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.save(_state_dict(0), path)
    good = path.read_bytes()
    led.models.register("m", path)
    led.deployments.deploy("m", 1, "prod", signer=make_signer("ops"))

    # round 1 clean, round 2-3 drifted (one report), round 4 restored (one report)
    script = {2: lambda: _tamper(path), 4: lambda: path.write_bytes(good)}
    slept: list[float] = []
    seen: list[dict[str, Any]] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        action = script.get(len(slept) + 1)
        if action is not None:
            action()

    reports = guard.watch(
        led, path, "m", "prod", 5.0, rounds=4, signer=make_signer("mon"),
        sleep=sleep, on_round=seen.append,
    )  # fmt: skip
    assert slept == [5.0, 5.0, 5.0]
    assert [r["ok"] for r in seen] == [True, False, False, True]
    assert reports == [{"drift": 1.0, "files_changed": 1}, {"drift": 0.0, "files_changed": 0}]
    filed = [
        led.entry(i).transaction.body
        for i in range(led.size)
        if led.entry(i).transaction.type == "monitor.report"
    ]
    assert [b["metrics"] for b in filed] == reports
    assert all(b["model"] == "m" and b["env"] == "prod" for b in filed)


# -- versions stored encrypted (ADR 17) -------------------------------------------------


def _types(led: mc.Ledger, since: int) -> list[tuple[str, str, str]]:
    return [
        (e.transaction.type, e.transaction.actor, e.outcome.code or "accepted")
        for e in (led.entry(i) for i in range(since, led.size))
    ]


def _plaintext_left(led: mc.Ledger) -> list[Path]:
    return [p for p in (led.home / "pulled").rglob("*") if p.is_file()]


@pytest.fixture
def encrypted(led: mc.Ledger, tmp_path: Path) -> dict[str, Any]:
    """Model "net" version 1 (a safetensors file) stored encrypted by alice, its file
    deleted: the store holds the only copy."""
    from modelchain.keys.wrap import DataKeyStore, FileKek
    from modelchain.ledger.artifacts import KeyService
    from modelchain.storage.artifacts import open_store

    keys = KeyService(FileKek(tmp_path / "kek" / "org.kek"), (DataKeyStore(tmp_path / "dk"),))
    store = open_store(tmp_path / "store")
    path = tmp_path / "model.safetensors"
    weights = _state_dict(3)
    safetensors_torch.save_file(weights, path)
    led.models.register("net", path)
    led.artifacts.encrypt("model", "net", 1, path, store, keys)
    path.unlink()
    return {"keys": keys, "store": store, "weights": weights}


def test_an_encrypted_version_loads_through_a_logged_key_request(
    led: mc.Ledger, encrypted: dict[str, Any]
) -> None:
    before = led.size
    loaded = guard.load_safetensors(
        led, model="net", stores=[encrypted["store"]], keys=encrypted["keys"], purpose="scoring"
    )
    weights = encrypted["weights"]
    assert set(loaded) == set(weights) and all(torch.equal(loaded[k], weights[k]) for k in weights)
    assert _types(led, before) == [
        ("artifact.key.fetch", "alice", "accepted"),
        ("access.log", "alice", "accepted"),
    ]
    purpose = led.entry(led.size - 2).transaction.body["purpose"]
    assert led.disclosures.field(purpose) == "scoring"
    assert _plaintext_left(led) == [], "nothing decrypted stays on disk"


def test_an_encrypted_version_needs_the_key_service(
    led: mc.Ledger, encrypted: dict[str, Any]
) -> None:
    before = led.size
    with pytest.raises(UsageError, match="stored encrypted: loading it needs"):
        guard.load_safetensors(led, model="net", stores=[encrypted["store"]])
    assert led.size == before


def test_a_member_without_a_grant_is_refused_and_the_refusal_is_logged(
    led: mc.Ledger, encrypted: dict[str, Any]
) -> None:
    from modelchain.errors import RejectedError

    load = lambda: guard.load_safetensors(  # noqa: E731
        led,
        model="net",
        stores=[encrypted["store"]],
        keys=encrypted["keys"],
        signer=make_signer("ops"),
    )
    before = led.size
    with pytest.raises(RejectedError, match="ops holds no grant"):
        load()
    assert _types(led, before) == [("artifact.key.fetch", "ops", "no_grant")]
    assert _plaintext_left(led) == []
    led.artifacts.grant("model", "net", "ops", version=1)
    assert set(load()) == set(encrypted["weights"])
    assert _types(led, before)[-2:] == [
        ("artifact.key.fetch", "ops", "accepted"),
        ("access.log", "ops", "accepted"),
    ]


def test_a_damaged_ciphertext_loads_nothing_and_leaves_nothing(
    led: mc.Ledger, encrypted: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = encrypted["store"]
    (obj,) = store.objects()
    path = Path(store._key(obj.ref))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    calls: list[object] = []
    monkeypatch.setattr(safetensors_torch, "load_file", lambda *a, **k: calls.append(a))
    for cache in (False, True):
        before = led.size
        with pytest.raises(IntegrityError):
            guard.load_safetensors(
                led, model="net", stores=[store], keys=encrypted["keys"], cache=cache
            )
        assert calls == [] and _plaintext_left(led) == [], "no plaintext, not even staged"
        # the key request is on record; no access is
        assert [t for t, _, _ in _types(led, before)] == ["artifact.key.fetch"]


def test_a_cache_is_kept_only_when_asked_for_and_verified_again(
    led: mc.Ledger, encrypted: dict[str, Any]
) -> None:
    kw: dict[str, Any] = {"stores": [encrypted["store"]], "keys": encrypted["keys"]}
    guard.load_safetensors(led, model="net", cache=True, **kw)
    cached = led.home / "pulled" / "net@1" / "model.safetensors"
    assert _plaintext_left(led) == [cached]
    before = led.size
    guard.load_safetensors(led, model="net", cache=True, **kw)
    assert _types(led, before) == [("access.log", "alice", "accepted")]  # no key needed
    _tamper(cached)
    _refused(led, lambda: guard.load_safetensors(led, model="net", cache=True, **kw), "model")


def test_an_erased_version_is_refused_from_the_store_the_cache_and_a_path(
    led: mc.Ledger, encrypted: dict[str, Any], tmp_path: Path
) -> None:
    from modelchain.errors import ErasedError

    kw: dict[str, Any] = {"stores": [encrypted["store"]], "keys": encrypted["keys"]}
    guard.load_safetensors(led, model="net", cache=True, **kw)
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes((led.home / "pulled" / "net@1" / "model.safetensors").read_bytes())
    led.artifacts.erase("model", "net", 1, "licence withdrawn", keys=encrypted["keys"])
    before = led.size
    for call in (
        lambda: guard.load_safetensors(led, model="net", **kw),
        lambda: guard.load_safetensors(led, model="net", cache=True, **kw),
        lambda: guard.load_safetensors(led, copy, model="net"),
    ):
        with pytest.raises(ErasedError, match=r"erased at entry \d+ by alice: licence withdrawn"):
            call()
    assert led.size == before, "a refused load records nothing"
