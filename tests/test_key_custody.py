"""Key custody: a passphrase per identity, and a ledger's log key kept
encrypted; the CLI cases run the real `modelchain` console script."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import modelchain
from modelchain.core.identity import Ed25519Signer
from modelchain.errors import KeyStoreError
from modelchain.keys import (
    KeyStore,
    LogKeySecrets,
    identity_passphrase_env,
    os_keyring,
    passphrase_source,
)

ORIGIN = "ledger.example.org/custody"
ALICE_PASS = "alice's own passphrase"
BOB_PASS = "bob's own passphrase"
SHARED = "the shared passphrase"
LOG_PASS = "the log key's passphrase"
ADMIN = Ed25519Signer("admin", bytes(range(32)))


# -- which variable holds whose passphrase ------------------------------------


@pytest.mark.parametrize(
    ("name", "variable"),
    [
        ("alice", "MODELCHAIN_KEY_PASSPHRASE_ALICE"),
        ("ci-bot@acme.example", "MODELCHAIN_KEY_PASSPHRASE_CI_BOT_ACME_EXAMPLE"),
        ("Org_A.admin", "MODELCHAIN_KEY_PASSPHRASE_ORG_A_ADMIN"),
    ],
)
def test_identity_variable_rule(name: str, variable: str) -> None:
    assert identity_passphrase_env(name) == variable


def test_own_variable_then_shared_then_error() -> None:
    environ = {
        "MODELCHAIN_KEY_PASSPHRASE_ALICE": ALICE_PASS,
        "MODELCHAIN_KEY_PASSPHRASE_BOB": BOB_PASS,
        "MODELCHAIN_KEY_PASSPHRASE": SHARED,
    }
    assert passphrase_source("alice", environ, interactive=False)() == ALICE_PASS.encode()
    assert passphrase_source("bob", environ, interactive=False)() == BOB_PASS.encode()
    assert passphrase_source("carol", environ, interactive=False)() == SHARED.encode()
    with pytest.raises(KeyStoreError) as err:
        passphrase_source("carol", {}, interactive=False)()
    assert "MODELCHAIN_KEY_PASSPHRASE_CAROL or MODELCHAIN_KEY_PASSPHRASE" in err.value.message
    with pytest.raises(KeyStoreError, match="MODELCHAIN_KEY_PASSPHRASE_ALICE is set but empty"):
        passphrase_source("alice", {"MODELCHAIN_KEY_PASSPHRASE_ALICE": ""}, interactive=False)()


def test_ambiguous_variable_is_refused() -> None:
    # ci-bot and ci.bot both map to ..._CI_BOT: one variable cannot say whose it is.
    environ = {"MODELCHAIN_KEY_PASSPHRASE_CI_BOT": ALICE_PASS, "MODELCHAIN_KEY_PASSPHRASE": SHARED}

    def names() -> list[str]:
        return ["ci-bot", "ci.bot", "alice"]

    with pytest.raises(KeyStoreError, match=r"ambiguous.*'ci\.bot'"):
        passphrase_source("ci-bot", environ, others=names, interactive=False)()
    # Without the clashing variable, the shared one serves both.
    del environ["MODELCHAIN_KEY_PASSPHRASE_CI_BOT"]
    assert passphrase_source("ci-bot", environ, others=names)() == SHARED.encode()


def test_ambiguous_variable_in_a_key_store(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "home")
    store.create("ci-bot", ALICE_PASS.encode())
    environ = {"MODELCHAIN_KEY_PASSPHRASE_CI_BOT": ALICE_PASS}
    source = passphrase_source("ci-bot", environ, others=store.names, interactive=False)
    assert store.signer("ci-bot", source).name == "ci-bot"  # alone, the variable is its own
    store.create("CI.bot", BOB_PASS.encode())
    with pytest.raises(KeyStoreError, match=r"ambiguous.*'CI\.bot'"):
        store.signer("ci-bot", source)


def test_keyring_comes_after_the_variables() -> None:
    stored = {"alice": "from the keyring"}
    source = passphrase_source("alice", {}, keyring=stored.get, interactive=False)
    assert source() == b"from the keyring"
    env = {"MODELCHAIN_KEY_PASSPHRASE": SHARED}
    assert passphrase_source("alice", env, keyring=stored.get)() == SHARED.encode()
    with pytest.raises(KeyStoreError, match="OS keyring"):
        passphrase_source("bob", {}, keyring=stored.get, interactive=False)()


def test_os_keyring_lookup() -> None:
    try:
        import keyring  # noqa: F401
    except ImportError:
        pytest.skip("the optional keyring package is not installed (pip install keyring)")
    # Whatever backend this machine has (none, or one without this entry),
    # the lookup answers without raising.
    assert os_keyring()("modelchain-test-no-such-entry") is None


def test_cli_takes_a_passphrase_from_the_keyring(env: dict[str, str], tmp_path: Path) -> None:
    """`keyring set modelchain NAME` is all a user does: the CLI signs with it, and
    a wrong one stored there is refused like a wrong variable. The backend is
    keyrings.alt's file keyring (a real keyring backend, chosen the documented
    way, through PYTHON_KEYRING_BACKEND), in a throwaway data folder."""
    pytest.importorskip("keyring")
    pytest.importorskip("keyrings.alt")
    ring = {
        **{k: v for k, v in env.items() if not k.startswith("MODELCHAIN_KEY_PASSPHRASE")},
        "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
        "XDG_DATA_HOME": str(tmp_path / "data"),
    }

    def keyring_set(name: str, secret: str) -> None:
        subprocess.run(
            [sys.executable, "-m", "keyring", "set", "modelchain", name],
            env=ring,
            input=secret + "\n",
            text=True,
            check=True,
            capture_output=True,
            timeout=60,
        )

    run({**ring, "MODELCHAIN_KEY_PASSPHRASE_ALICE": ALICE_PASS}, "identity", "new", "alice")
    keyring_set("alice", ALICE_PASS)
    run(ring, "init", "--origin", ORIGIN, "--admin", "alice", "--unencrypted")
    run(ring, "event", "record", "step", "--body", "{}", "--as", "alice")
    # The variable still comes first: a right one wins over a wrong keyring entry.
    keyring_set("alice", "not alice's passphrase")
    wrong = run(ring, "event", "record", "step", "--body", "{}", "--as", "alice", code=6)
    assert "wrong passphrase for key 'alice'" in wrong.stderr
    assert "not alice's passphrase" not in wrong.stderr
    run(
        {**ring, "MODELCHAIN_KEY_PASSPHRASE_ALICE": ALICE_PASS},
        "event",
        "record",
        "step",
        "--body",
        "{}",
        "--as",
        "alice",
    )
    assert json.loads(run(ring, "log", "verify", "--json").stdout)["size"] == 3


def test_two_identities_each_with_its_own_passphrase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = KeyStore(tmp_path / "home")
    store.create("alice", ALICE_PASS.encode())
    store.create("bob", BOB_PASS.encode())
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # no terminal to fall back on
    environ = {
        "MODELCHAIN_KEY_PASSPHRASE_ALICE": ALICE_PASS,
        "MODELCHAIN_KEY_PASSPHRASE": BOB_PASS,  # the fallback, right for bob only
    }
    for name in ("alice", "bob"):
        signer = store.signer(name, passphrase_source(name, environ, others=store.names))
        assert signer.name == name
    environ["MODELCHAIN_KEY_PASSPHRASE_BOB"] = ALICE_PASS  # bob's own variable, wrong
    with pytest.raises(KeyStoreError, match="wrong passphrase for key 'bob'"):
        store.signer("bob", passphrase_source("bob", environ, others=store.names))


# -- an encrypted log key, through the library --------------------------------


def test_encrypted_log_key_library(tmp_path: Path) -> None:
    path = tmp_path / "ledger"
    with modelchain.init(
        path, ORIGIN, ADMIN, home=tmp_path / "home", log_key_passphrase=LOG_PASS.encode()
    ) as led:
        size = led.size
    assert (path / "log.key").read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    with pytest.raises(KeyStoreError, match="encrypted and no passphrase"):
        modelchain.open(path, home=tmp_path / "home")
    wrong = LogKeySecrets(passphrase=lambda: b"not it")
    with pytest.raises(KeyStoreError, match="wrong passphrase"):
        modelchain.open(path, home=tmp_path / "home", log_key_secrets=wrong)
    with modelchain.open(path, readonly=True, home=tmp_path / "home") as led:
        assert led.size == size
        led.audit()
    right = LogKeySecrets(passphrase=lambda: LOG_PASS.encode())
    with modelchain.open(path, home=tmp_path / "home", log_key_secrets=right) as led:
        led.record_event("step", {"n": 1}, ADMIN)
        led.checkpoint()
        assert led.size == size + 1


# -- the CLI: per-identity variables and an encrypted log key -----------------


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    e = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MODELCHAIN_KEY_PASSPHRASE", "MODELCHAIN_LOG_KEY"))
    }
    e.update(MODELCHAIN_HOME=str(tmp_path / "home"), MODELCHAIN_LEDGER=str(tmp_path / "ledger"))
    e.pop("MODELCHAIN_IDENTITY", None)
    return e


def run(env: dict[str, str], *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "modelchain", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == code, proc.stderr
    return proc


def test_cli_per_identity_passphrases_and_encrypted_log_key(
    env: dict[str, str], tmp_path: Path
) -> None:
    alice = {**env, "MODELCHAIN_KEY_PASSPHRASE_ALICE": ALICE_PASS}
    run(alice, "identity", "new", "alice")
    run({**env, "MODELCHAIN_KEY_PASSPHRASE_BOB": BOB_PASS}, "identity", "new", "bob")
    both = {
        **env,
        "MODELCHAIN_KEY_PASSPHRASE_ALICE": ALICE_PASS,
        "MODELCHAIN_KEY_PASSPHRASE_BOB": BOB_PASS,
        "MODELCHAIN_LOG_KEY_PASSPHRASE": LOG_PASS,
    }
    run(both, "init", "--origin", ORIGIN, "--admin", "alice", "--member", "bob:trainer")
    log_key = tmp_path / "ledger" / "log.key"
    assert log_key.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")

    # Each identity signs with its own passphrase, from its own variable.
    run(both, "event", "record", "step", "--body", "{}", "--as", "alice")
    run(both, "event", "record", "step", "--body", "{}", "--as", "bob")
    # The shared variable is the fallback; a wrong one is refused, naming the key.
    shared = {**both, "MODELCHAIN_KEY_PASSPHRASE": BOB_PASS}
    del shared["MODELCHAIN_KEY_PASSPHRASE_BOB"]
    run(shared, "event", "record", "step", "--body", "{}", "--as", "bob")
    shared["MODELCHAIN_KEY_PASSPHRASE"] = ALICE_PASS
    wrong = run(shared, "event", "record", "step", "--body", "{}", "--as", "bob", code=6)
    assert "wrong passphrase for key 'bob'" in wrong.stderr
    size = json.loads(run(env, "log", "verify", "--json").stdout)["size"]
    assert size == 4  # genesis and three events

    # Without the log key's passphrase: a clear error, exit 6, nothing written.
    db = (tmp_path / "ledger" / "ledger.db").read_bytes()
    no_log = {k: v for k, v in both.items() if k != "MODELCHAIN_LOG_KEY_PASSPHRASE"}
    refused = run(no_log, "event", "record", "step", "--body", "{}", "--as", "alice", code=6)
    assert "MODELCHAIN_LOG_KEY_PASSPHRASE" in refused.stderr
    assert LOG_PASS not in refused.stderr and ALICE_PASS not in refused.stderr
    bad = {**both, "MODELCHAIN_LOG_KEY_PASSPHRASE": "not it"}
    refused = run(bad, "event", "record", "step", "--body", "{}", "--as", "alice", code=6)
    assert "wrong passphrase" in refused.stderr
    assert (tmp_path / "ledger" / "ledger.db").read_bytes() == db
    # Read-only commands never need the log key.
    assert json.loads(run(env, "log", "verify", "--json").stdout)["size"] == size


def test_encrypted_node_key(tmp_path: Path) -> None:
    from modelchain.cluster.node import init_node
    from modelchain.keys import open_log_key

    node = tmp_path / "node"
    vkey = init_node(node, ORIGIN, passphrase=LOG_PASS.encode())
    assert (node / "log.key").read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    with pytest.raises(KeyStoreError, match="encrypted and no passphrase"):
        open_log_key(node, ORIGIN, LogKeySecrets())
    signer = open_log_key(node, ORIGIN, LogKeySecrets(passphrase=lambda: LOG_PASS.encode()))
    assert signer.public_key == vkey.public_key
    assert LOG_PASS not in repr(LogKeySecrets(passphrase=lambda: LOG_PASS.encode()))


def test_cli_node_key_encrypted_and_serve_refuses_without_it(
    env: dict[str, str], tmp_path: Path
) -> None:
    with_pass = {**env, "MODELCHAIN_LOG_KEY_PASSPHRASE": LOG_PASS}
    out = run(
        with_pass, "node", "init", str(tmp_path / "node"), "--origin", ORIGIN, "--name", "org-a"
    ).stdout
    assert out.startswith(f"log {ORIGIN}+")
    key = tmp_path / "node" / "log.key"
    assert key.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")

    # A ledger made with the variable set is encrypted; serve will not start without it.
    admin = {**with_pass, "MODELCHAIN_KEY_PASSPHRASE_ADMIN": ALICE_PASS}
    run(admin, "init", "--origin", ORIGIN)
    refused = run(env, "serve", "--port", "0", code=6)
    assert "MODELCHAIN_LOG_KEY_PASSPHRASE" in refused.stderr
