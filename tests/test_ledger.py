"""The embedded ledger end to end: submit, outcomes, checkpoints, proofs, pushback."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import threading
import time
from pathlib import Path

import pytest
from conftest import ORIGIN, make_signer

import modelchain as mc
import modelchain.ledger
from modelchain.contracts import default_contracts
from modelchain.core.checkpoint import open_checkpoint
from modelchain.core.identity import Ed25519Signer
from modelchain.core.merkle import leaf_hash, verify_consistency, verify_inclusion
from modelchain.core.tlogproof import TlogProof, verify_tlog_proof
from modelchain.core.tx import Transaction
from modelchain.errors import NotFoundError, PushbackError, StorageError, UsageError
from modelchain.keys import FileSigner
from modelchain.ledger.ledger import Ledger, default_home, new_nonce
from modelchain.ledger.ledger import open as ledger_open
from modelchain.ledger.local import LocalBackend
from modelchain.node.node import Node, NodeConfig
from modelchain.node.sequencer import LocalSequencer, Ordered
from modelchain.storage.sqlite import SqliteStore


def test_init_writes_genesis_and_a_checkpoint(ledger: mc.Ledger) -> None:
    assert ledger.size == 1
    genesis = ledger.entry(0)
    assert genesis.transaction.type == "ledger.genesis"
    assert genesis.outcome.accepted
    cp = ledger.verified_checkpoint()
    assert (cp.origin, cp.size) == (ORIGIN, 1)
    assert cp.root == leaf_hash(ledger.entry_bytes(0))


def test_log_key_is_private_to_the_ledger_directory(ledger: mc.Ledger) -> None:
    key = ledger.path / "log.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert ledger.entry(0).transaction.body["log_key"] == ledger.log_key.to_string()


def test_events_are_acknowledged_durably_in_order(
    ledger: mc.Ledger, alice: Ed25519Signer, tmp_path: Path
) -> None:
    acks = [ledger.record_event("pipeline.step", {"i": i}, alice) for i in range(5)]
    assert [a.index for a in acks] == [1, 2, 3, 4, 5]
    for a in acks:
        assert a.outcome.accepted
        assert leaf_hash(ledger.entry_bytes(a.index)) == a.leaf_hash
    path = ledger.path
    ledger.close()
    with mc.open(path, readonly=True) as again:
        assert again.size == 6
        assert again.entry(3).transaction.body == {"event": "pipeline.step", "data": {"i": 2}}


def test_rejected_transactions_from_members_are_logged_as_evidence(
    ledger: mc.Ledger, carol: Ed25519Signer, alice: Ed25519Signer
) -> None:
    ack = ledger.record_event("model.peek", {}, carol)
    assert not ack.outcome.accepted
    assert ack.outcome.code == "not_permitted"
    assert "auditor" in ack.outcome.reason
    assert ledger.entry(ack.index).outcome == ack.outcome
    # a second genesis from the admin is refused by the contract, and logged
    tx = ledger.transaction("ledger.genesis", ledger.entry(0).transaction.body, "alice")
    ack2 = ledger.submit(tx.sign(alice))
    assert (ack2.outcome.accepted, ack2.outcome.code) == (False, "ledger_exists")
    report = ledger.audit()
    assert (report.accepted, report.rejected) == (1, 2)


def test_multi_signature_envelope(
    ledger: mc.Ledger, alice: Ed25519Signer, bob: Ed25519Signer
) -> None:
    tx = ledger.transaction("event.record", {"event": "joint", "data": {}}, "alice")
    env = tx.sign(alice).with_signature(bob)
    ack = ledger.submit(env)
    assert ack.outcome.accepted
    assert len(ledger.entry(ack.index).envelope.signatures) == 2
    assert ledger.audit().signatures == 3


def test_receipts_and_proofs_verify_offline(ledger: mc.Ledger, alice: Ed25519Signer) -> None:
    envs = [
        ledger.transaction("event.record", {"event": "e", "data": i}, "alice").sign(alice)
        for i in range(300)
    ]
    ledger.submit_many(envs)
    old = ledger.verified_checkpoint()
    for index in (0, 1, 150, 256, 300):
        text = ledger.tlog_proof(index).to_text()
        cp = verify_tlog_proof(
            TlogProof.from_text(text), leaf_hash(ledger.entry_bytes(index)), ledger.log_key
        )
        assert cp.size == 301
    ledger.record_event("e", "late", alice)
    new = ledger.verified_checkpoint()
    verify_consistency(
        old.size, new.size, old.root, new.root, ledger.consistency_proof(old.size, new.size)
    )
    proof = ledger.inclusion_proof(7, old.size)
    verify_inclusion(7, old.size, leaf_hash(ledger.entry_bytes(7)), proof, old.root)
    with pytest.raises(NotFoundError):
        ledger.inclusion_proof(new.size, new.size)


def test_checkpoints_are_published_every_n_entries(tmp_path: Path, alice: Ed25519Signer) -> None:
    config = NodeConfig(checkpoint_every=10, checkpoint_interval_ms=60_000)
    with mc.init(tmp_path / "l", ORIGIN, alice, config=config) as led:
        store = led.backend.store
        for i in range(20):
            led.record_event("e", i, alice)
        # The publisher signs in its own thread: wait for it, not for a guess.
        deadline = time.monotonic() + 10
        while not any(size >= 11 for size, _ in store.checkpoints()):
            assert time.monotonic() < deadline, "no checkpoint after 10 more entries"
            time.sleep(0.01)
        for i in range(20, 25):
            led.record_event("e", i, alice)
        sizes = [size for size, _ in store.checkpoints()]
    assert sizes[0] == 1
    assert any(11 <= s <= 21 for s in sizes)


def test_checkpoints_are_published_after_an_interval(tmp_path: Path, alice: Ed25519Signer) -> None:
    config = NodeConfig(checkpoint_every=1_000_000, checkpoint_interval_ms=50)
    with mc.init(tmp_path / "l", ORIGIN, alice, config=config) as led:
        led.record_event("e", 1, alice)
        deadline = time.monotonic() + 5
        store = led.backend.store
        while store.checkpoint() is None or store.checkpoint()[0] < 2:  # type: ignore[index]
            assert time.monotonic() < deadline, "no checkpoint was published after the interval"
            time.sleep(0.01)
        note = store.checkpoint()[1]  # type: ignore[index]
        cp, _ = open_checkpoint(note, led.log_key)
        assert cp.size == 2


class GatedSequencer(LocalSequencer):
    """A real Sequencer whose stream is read only once a gate opens: lets a
    test hold the writer."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def read(self, start: int, limit: int, stop: threading.Event) -> list[Ordered]:
        self.gate.wait(10)
        return super().read(start, limit, stop)


def test_overload_pushes_back_instead_of_queueing(ledger: mc.Ledger, alice: Ed25519Signer) -> None:
    path = ledger.path
    ledger.close()
    store = SqliteStore(path / "ledger.db")
    signer = FileSigner.load(ORIGIN, path / "log.key", None)
    seq = GatedSequencer()
    node = Node(store, signer, default_contracts(), seq, NodeConfig(max_backlog=5, max_batch=1))

    def envelope(i: int) -> bytes:
        t = Transaction(
            ORIGIN,
            "event.record",
            "alice",
            new_nonce(),
            int(time.time() * 1000),
            {"event": "e", "data": i},
        )
        return t.sign(alice).to_bytes()

    futures = []
    with pytest.raises(PushbackError) as info:
        for i in range(50):
            futures.append(node.submit_async(envelope(i)))
    assert info.value.retry_after > 0
    assert 5 <= len(futures) <= 7  # the queue bound plus what the writer holds
    seq.gate.set()
    acks = [f.result(10) for f in futures]
    assert [a.index for a in acks] == list(range(1, 1 + len(futures)))
    node.close()
    store.close()


def test_one_writer_at_a_time(ledger: mc.Ledger) -> None:
    with pytest.raises(StorageError, match="another process"):
        mc.open(ledger.path)
    with mc.open(ledger.path, readonly=True) as reader:
        assert reader.size == ledger.size
        with pytest.raises(UsageError):
            reader.record_event("e", {}, make_signer("alice"))


def test_open_missing_ledger(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="modelchain init"):
        mc.open(tmp_path / "nothing")


def test_init_refuses_an_existing_ledger(ledger: mc.Ledger, alice: Ed25519Signer) -> None:
    with pytest.raises(UsageError):
        mc.init(ledger.path, ORIGIN, alice)
    assert ledger.size == 1


def test_failed_init_leaves_nothing(tmp_path: Path, alice: Ed25519Signer) -> None:
    with pytest.raises(mc.Error):
        mc.init(tmp_path / "l", "bad origin with spaces", alice)
    assert not (tmp_path / "l" / "ledger.db").exists()
    assert not (tmp_path / "l" / "log.key").exists()


def test_checkpoints_asked_for_while_writing_sign_the_right_root(
    ledger: mc.Ledger, bob: Ed25519Signer
) -> None:
    """A reader asking for the latest checkpoint (as every HTTP client does) while
    the writer appends must never get a root that belongs to another size."""
    envs = [
        ledger.transaction("event.record", {"event": "x.y", "data": i}, "bob").sign(bob)
        for i in range(3000)
    ]
    done = threading.Event()
    notes: list[bytes] = []

    def ask() -> None:
        while not done.is_set():
            notes.append(ledger.checkpoint())

    asker = threading.Thread(target=ask)
    asker.start()
    try:
        for lo in range(0, len(envs), 50):
            ledger.submit_many(envs[lo : lo + 50])
    finally:
        done.set()
        asker.join()
    assert len(set(notes)) > 10
    report = ledger.audit()  # checks every stored checkpoint's root against the entries
    assert report.checkpoints >= len(set(notes))


# -- the ledger over a backend, the facades over the port ---------------------------------


def test_a_ledger_over_a_backend_is_the_ledger_opened_by_path(ledger: mc.Ledger) -> None:
    path = ledger.path
    ledger.close()
    with Ledger(backend=LocalBackend(path, readonly=True)) as led:
        assert (led.origin, led.size, led.readonly) == (ORIGIN, 1, True)
        assert led.verified_checkpoint().size == 1
        with pytest.raises(UsageError, match="read-only"):
            led.node  # noqa: B018
    with pytest.raises(UsageError, match="not both"):
        Ledger(path, backend=LocalBackend(path, readonly=True))
    with pytest.raises(UsageError, match="directory or a backend"):
        Ledger()


def test_home_is_an_argument_read_from_the_environment_only_at_the_entry_points(
    ledger: mc.Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = ledger.path
    ledger.close()
    monkeypatch.setenv("MODELCHAIN_HOME", str(tmp_path / "from-env"))
    with mc.open(path, readonly=True) as led:
        assert led.home == tmp_path / "from-env"
    with Ledger(path, readonly=True) as led:
        assert led.home == default_home() != tmp_path / "from-env"
    with ledger_open(path, readonly=True) as led:
        assert led.home == default_home()
    given = tmp_path / "given"
    alice = make_signer("alice")
    with Ledger(path, home=given, identity=alice) as led:
        table = tmp_path / "t.csv"
        table.write_text("a,b\n1,2\n3,4\n")
        led.datasets.register("t", table)
        assert (given / "records" / ORIGIN.replace("/", "_") / "t@1.key").is_file()
        assert not (tmp_path / "from-env").exists(), "the library read no environment"


def _module_imports() -> dict[str, set[str]]:
    """Every modelchain module and the modules it imports anywhere in its text
    (under TYPE_CHECKING and inside functions too)."""
    src = Path(mc.__file__).parent
    modules: dict[str, Path] = {}
    for p in src.rglob("*.py"):
        parts = list(p.relative_to(src.parent).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    graph: dict[str, set[str]] = {}
    for name, p in modules.items():
        package = name if p.name == "__init__.py" else name.rsplit(".", 1)[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = (
                    ".".join(base + ([node.module] if node.module else []))
                    if node.level
                    else node.module or ""
                )
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    found.add(sub if sub in modules else target)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def _reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        here = todo.pop()
        for nxt in graph[here]:
            if nxt == goal:
                return True
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return False


def test_the_ledger_package_receipts_and_guard_import_in_no_circle() -> None:
    graph = _module_imports()
    ours = [m for m in graph if m.startswith("modelchain.ledger")]
    ours += ["modelchain.receipts", "modelchain.guard"]
    circles = [m for m in ours if m in graph and _reaches(graph, m, m)]
    assert circles == []


def test_the_facades_know_the_port_not_the_ledger_or_its_store() -> None:
    graph = _module_imports()
    facades = ["datasets", "runs", "models", "deployments", "members", "policies"]
    facades += ["lineage", "trail", "_facade", "port"]
    concrete = {
        "modelchain.ledger.ledger",
        "modelchain.ledger.local",
        "modelchain.ledger.remote",
        "modelchain.ledger.backend",
        "modelchain.storage.sqlite",
    }
    for name in facades:
        assert not graph[f"modelchain.ledger.{name}"] & concrete, name


def test_every_ledger_module_exports_what_it_names() -> None:
    package = modelchain.ledger
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"modelchain.ledger.{info.name}")
        names = getattr(module, "__all__", None)
        assert names, f"modelchain.ledger.{info.name} has no __all__"
        missing = [n for n in names if not hasattr(module, n)]
        assert missing == [], f"modelchain.ledger.{info.name}"
    assert {"Backend", "Ledger", "LedgerPort", "LocalBackend", "open", "init"} <= set(
        package.__all__
    )
