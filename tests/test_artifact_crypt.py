"""Encrypted artifacts, grants and erasure (contract-set version 7, ADR 17): a wrong key,
a flipped byte, a truncated file and a swapped chunk fail loudly with nothing written; a
member without a grant is refused and the refusal is in the log; after an erasure the
log verifies, nothing can be fetched or decrypted (not even a saved copy of the
ciphertext), and the erasure reads as such; a record proof reveals one row and the count."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ORIGIN, PEOPLE, founders, init_on_version, make_signer
from test_pkcs11 import Token, token  # noqa: F401  (the SoftHSM fixture)

import modelchain as mc
from modelchain.contracts.genesis import DEFAULT_PERMISSIONS
from modelchain.contracts.policy import DEFAULT_POLICIES
from modelchain.contracts.types import ARTIFACT_TYPES
from modelchain.core.merkle import leaf_hash
from modelchain.core.records import record_leaf
from modelchain.errors import (
    ErasedError,
    IntegrityError,
    KeyStoreError,
    RejectedError,
    UsageError,
)
from modelchain.keys.wrap import DataKeyStore, FileKek, Pkcs11Kek
from modelchain.ledger.artifacts import KeyService
from modelchain.storage.artifacts import FsspecArtifactStore, open_store
from modelchain.storage.crypt import associated_data, decrypt_object

MiB = 1 << 20


def _s(name: str) -> Any:
    return make_signer(name)


def _ledger(path: Path, version: int | None = None) -> mc.Ledger:
    policies = {"artifact.erase": DEFAULT_POLICIES["artifact.erase"]}
    return init_on_version(
        path / "l", version, org="acme", members=founders(PEOPLE), policies=policies,
        home=path / "home",
    )  # fmt: skip


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A ledger; dataset "patients" v1 (a 3 MiB CSV, with a record-level root, stored
    encrypted by the steward); its KEK, key store and artifact store."""
    led = _ledger(tmp_path)
    data = tmp_path / "patients.csv"
    with data.open("w") as f:
        f.write("id,consent,note\n")
        for i in range(40_000):
            f.write(f"{i},{'yes' if i % 3 else 'no'},{os.urandom(32).hex()}\n")
    keys = KeyService(FileKek(tmp_path / "kek" / "org.kek"), (DataKeyStore(tmp_path / "dk"),))
    store = open_store(tmp_path / "store")
    led.datasets.register("patients", data, signer=_s("steward"))
    led.artifacts.encrypt("dataset", "patients", 1, data, store, keys, signer=_s("steward"))
    try:
        yield {"led": led, "data": data, "keys": keys, "store": store, "tmp": tmp_path}
    finally:
        led.close()


def _types(led: mc.Ledger) -> list[tuple[str, str]]:
    return [
        (led.entry(i).transaction.type, led.entry(i).outcome.code or "accepted")
        for i in range(led.size)
    ]


def _pull(w: dict[str, Any], dest: Path, who: str = "steward", **kw: Any) -> Any:
    return w["led"].artifacts.pull(
        "dataset", "patients", dest, stores=[w["store"]], keys=w["keys"], signer=_s(who), **kw
    )


def test_the_ledger_records_digests_and_location_never_a_key(world: dict[str, Any]) -> None:
    led, store, keys = world["led"], world["store"], world["keys"]
    stored = led.artifacts.stored("dataset", "patients", 1)
    assert stored is not None and stored["scheme"] == "tink-streaming-aes256-gcm-hkdf-1mb"
    assert stored["location"] == store.url and len(stored["objects"]) == 1
    manifest = led.artifacts.manifest_of(led.datasets.get("patients", 1).record)
    assert {o["digest"] for o in stored["objects"]} == {
        f"{manifest.algorithm}:{f.digest}" for f in manifest.files
    }
    # no plaintext object in the store: only the ciphertexts, under their own digests
    assert {o.ref for o in store.objects()} == {o["ciphertext"] for o in stored["objects"]}
    assert set(led.artifacts.referenced()) == {o["ciphertext"] for o in stored["objects"]}
    # the wrapped key is in the key store; neither it nor the data key is in the log
    entry = keys.stores[0].get(stored["key"])
    data_key = keys.kek.unwrap(entry.wrapped)
    log = b"".join(json.dumps(led.entry(i).to_json()).encode() for i in range(led.size))
    for secret in (data_key, entry.wrapped, keys.kek.path.read_bytes()):
        assert secret not in log and secret.hex().encode() not in log


def test_the_owner_pulls_and_every_byte_matches(world: dict[str, Any]) -> None:
    dest = world["tmp"] / "out"
    number, result = _pull(world, dest)
    assert number == 1 and result.files == 1
    assert (dest / "patients.csv").read_bytes() == world["data"].read_bytes()
    assert _types(world["led"])[-2:] == [
        ("artifact.key.fetch", "accepted"),
        ("access.log", "accepted"),
    ]
    # another organisation's mirror holds the ciphertexts (verified by their digests)
    mirror = open_store(world["tmp"] / "mirror")
    synced = world["led"].artifacts.sync(mirror, world["store"])
    assert len(synced.copied) == 1 and not synced.damaged
    _, again = world["led"].artifacts.pull(
        "dataset",
        "patients",
        world["tmp"] / "again",
        stores=[mirror],
        keys=world["keys"],
        signer=_s("steward"),
    )
    assert again.served == {next(iter(again.served)): mirror.url}


def _damage(store: FsspecArtifactStore, ref: str, how: str, other: str | None = None) -> None:
    path = Path(store._key(ref))
    data = bytearray(path.read_bytes())
    if how == "flip":
        data[len(data) // 2] ^= 1
    elif how == "truncate":
        del data[MiB + 40 :]
    elif how == "swap":  # two whole 1 MiB segments change places
        seg = MiB  # Tink's AES256_GCM_HKDF_1MB ciphertext segment, near enough
        a, b = bytes(data[100 : 100 + seg]), bytes(data[100 + seg : 100 + 2 * seg])
        data[100 : 100 + seg], data[100 + seg : 100 + 2 * seg] = b, a
    elif how == "replace" and other is not None:
        data = bytearray(Path(store._key(other)).read_bytes())
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["flip", "truncate", "swap", "replace"])
def test_damaged_ciphertext_is_refused_with_nothing_written(
    world: dict[str, Any], how: str
) -> None:
    led, store, keys = world["led"], world["store"], world["keys"]
    stored = led.artifacts.stored("dataset", "patients", 1)
    assert stored is not None
    other = None
    if how == "replace":  # another dataset's ciphertext, under this one's name
        f = world["tmp"] / "other.csv"
        f.write_text("a\n1\n")
        led.datasets.register("other", f, signer=_s("steward"))
        led.artifacts.encrypt("dataset", "other", 1, f, store, keys, signer=_s("steward"))
        found = led.artifacts.stored("dataset", "other", 1)
        assert found is not None
        other = found["objects"][0]["ciphertext"]
    _damage(store, stored["objects"][0]["ciphertext"], how, other)
    before = led.size
    dest = world["tmp"] / "out"
    with pytest.raises(IntegrityError):
        _pull(world, dest)
    assert not dest.exists()
    staging = world["tmp"] / ".out.modelchain-pull"
    assert not any(staging.iterdir())  # no plaintext left behind, not even staged
    # the key request is logged; no access (nothing was placed)
    assert [t for t, _ in _types(led)[before:]] == ["artifact.key.fetch"]


def test_a_wrong_key_decrypts_nothing(world: dict[str, Any], tmp_path: Path) -> None:
    led, store = world["led"], world["store"]
    stored = led.artifacts.stored("dataset", "patients", 1)
    assert stored is not None
    other = KeyService(FileKek(tmp_path / "other.kek"), world["keys"].stores)
    with pytest.raises(UsageError, match="not by this key service's KEK"):
        _pull({**world, "keys": other}, tmp_path / "out")
    # a data key of another version (a real keyset, not this one) is refused by Tink
    from modelchain.storage.crypt import new_data_key

    o = stored["objects"][0]
    ad = associated_data("dataset", "patients", 1, o["digest"])
    out = tmp_path / "plain"
    with pytest.raises(IntegrityError, match="does not decrypt"):
        decrypt_object(store, o["ciphertext"], o["size"], o["digest"], 1, new_data_key(), ad, out)
    assert not out.exists()


def test_a_member_without_a_grant_is_refused_and_the_refusal_is_logged(
    world: dict[str, Any],
) -> None:
    led = world["led"]
    dest = world["tmp"] / "out"
    with pytest.raises(RejectedError, match="holds no grant"):
        _pull(world, dest, who="bob")
    assert not dest.exists()
    last = led.entry(led.size - 1)
    assert last.transaction.type == "artifact.key.fetch" and last.transaction.actor == "bob"
    assert last.outcome.code == "no_grant"
    # a trainer may not grant; the steward may
    with pytest.raises(RejectedError, match="needs one of the roles"):
        led.artifacts.grant("dataset", "patients", "bob", signer=_s("bob"))
    led.artifacts.grant("dataset", "patients", "bob", version=1, signer=_s("steward"))
    assert [g["member"] for g in led.artifacts.grants("dataset", "patients")] == ["bob"]
    _pull(world, dest, who="bob")
    assert (dest / "patients.csv").read_bytes() == world["data"].read_bytes()
    led.artifacts.revoke("dataset", "patients", "bob", signer=_s("steward"))
    with pytest.raises(RejectedError, match="holds no grant"):
        _pull(world, world["tmp"] / "again", who="bob")
    assert led.artifacts.grants("dataset", "patients") == []


def test_a_policy_can_gate_grants(world: dict[str, Any]) -> None:
    led = world["led"]
    rule = 'member.org == actor.org && "trainer" in member.roles'
    led.policies.set("artifact.grant", rule, signers=[_s("alice"), _s("dave")])
    with pytest.raises(RejectedError, match="policy"):
        led.artifacts.grant("dataset", "patients", "ev", signer=_s("steward"))  # qa-co
    led.artifacts.grant("dataset", "patients", "bob", signer=_s("steward"))  # acme trainer


def _erase(w: dict[str, Any], signers: list[str]) -> Any:
    return w["led"].artifacts.erase(
        "dataset",
        "patients",
        1,
        "subject asked for deletion (ticket 42)",
        signers=[_s(n) for n in signers],
        keys=w["keys"],
        stores=[w["store"]],
    )


def test_erasure_needs_a_steward_and_an_admin(world: dict[str, Any]) -> None:
    with pytest.raises(RejectedError, match="policy"):
        _erase(world, ["steward"])
    with pytest.raises(RejectedError, match="needs one of the roles"):
        _erase(world, ["bob", "dave"])  # the actor (first signer) holds neither role
    assert world["led"].artifacts.erasure("dataset", "patients", 1) is None


def test_after_erasure_nothing_decrypts_and_the_log_verifies(world: dict[str, Any]) -> None:
    led, store, keys, tmp = world["led"], world["store"], world["keys"], world["tmp"]
    stored = led.artifacts.stored("dataset", "patients", 1)
    assert stored is not None
    # a backup: a copy of every ciphertext object, taken before the erasure
    backup = tmp / "backup"
    shutil.copytree(store.root, backup)
    record_key = tmp / "home" / "records" / ORIGIN.replace("/", "_") / "patients@1.key"
    assert record_key.exists()
    proof = led.datasets.prove("patients", 1, 0, world["data"])

    result = _erase(world, ["steward", "dave"])
    assert result.keys_destroyed and len(result.objects_deleted) == 1
    assert result.record_key_destroyed and not record_key.exists()

    led.audit()  # the whole log re-executes to the same state
    erased = led.artifacts.erasure("dataset", "patients", 1)
    assert erased is not None and erased["by"] == "steward"
    assert erased["signers"] == ["steward", "dave"] and "ticket 42" in erased["reason"]
    with pytest.raises(ErasedError, match=r"erased at entry \d+ by steward: subject asked"):
        _pull(world, tmp / "out")
    assert list(store.objects()) == []
    assert list(keys.stores[0].entries()) == []
    assert not any((tmp / "dk").iterdir())
    # the saved ciphertext does not decrypt with anything the system still has
    saved = open_store(backup)
    for o in stored["objects"]:
        assert saved.has(o["ciphertext"])
    with pytest.raises(ErasedError):
        led.artifacts.fetch_key("dataset", "patients", 1, keys, signer=_s("steward"))
    assert list(keys.stores[0].entries()) == []
    # the record-proof key is gone too: no new proofs; old ones still check
    with pytest.raises(KeyStoreError):
        led.datasets.prove("patients", 1, 1, world["data"])
    led.datasets.verify_record(proof, "patients", 1)
    # an erased version is stored, granted-for and erased no more
    with pytest.raises(ErasedError):
        led.artifacts.encrypt(
            "dataset", "patients", 1, world["data"], store, keys, signer=_s("steward")
        )
    with pytest.raises(RejectedError, match="erased"):
        _erase(world, ["steward", "dave"])
    body = {"artifact": {"kind": "dataset", "name": "patients", "version": 1}, "purpose": "x"}
    env = led.transaction("artifact.key.fetch", body, "steward").sign(_s("steward"))
    assert led.submit(env).outcome.code == "erased"  # the contract refuses it too, logged
    assert led.artifacts.referenced() == {}


def test_erasing_a_version_stored_in_plaintext_deletes_its_objects(tmp_path: Path) -> None:
    led = _ledger(tmp_path)
    try:
        store = open_store(tmp_path / "store")
        f = tmp_path / "w.bin"
        f.write_bytes(os.urandom(1000))
        led.models.register("m", f, signer=_s("bob"), store=store)
        assert len(list(store.objects())) == 2  # the file and its manifest
        result = led.artifacts.erase(
            "model",
            "m",
            1,
            "licence withdrawn",
            signers=[_s("steward"), _s("dave")],
            stores=[store],
        )
        assert len(result.objects_deleted) == 2 and not result.keys_destroyed
        assert list(store.objects()) == []
        with pytest.raises(ErasedError):
            led.artifacts.pull("model", "m", tmp_path / "out", stores=[store], signer=_s("bob"))
        led.audit()
    finally:
        led.close()


def test_a_record_proof_reveals_one_row_and_the_count(tmp_path: Path) -> None:
    """An auditor given row 0's proof sees that row, its salt, the count and hashes. Every
    other row comes from a tiny domain (id, consent yes/no, age 20-69) and still cannot be
    recovered: its leaf is salted with a per-row secret the proof does not carry."""
    led = _ledger(tmp_path)
    try:
        data = tmp_path / "survey.csv"
        rows = [f"{i},{'yes' if i % 3 else 'no'},{20 + i % 50}" for i in range(200)]
        data.write_text("id,consent,age\n" + "\n".join(rows) + "\n")
        led.datasets.register("survey", data, signer=_s("steward"))
        proof = led.datasets.prove("survey", 1, 0, data)
        led.datasets.verify_record(proof, "survey", 1)
        assert proof.count == 200
        assert set(json.dumps(proof.record)) and proof.record["id"] in ("0", 0)
        sibling = proof.path[0]  # the leaf hash of row 1
        tried = 0
        for consent in ("yes", "no"):
            for age in range(20, 70):
                for id_ in ("1", 1):
                    for value in (str(age), age):
                        record = {"id": id_, "consent": consent, "age": value}
                        for salt in (proof.salt, bytes(32)):  # the salt it has, and none
                            assert leaf_hash(record_leaf(1, salt, record)) != sibling
                            tried += 1
        assert tried == 800
        # the right row with the right salt does give the sibling: the test can tell
        key = tmp_path / "home" / "records" / ORIGIN.replace("/", "_") / "survey@1.key"
        from modelchain.core.records import record_salt

        row1 = {
            "id": proof.record["id"].__class__(1),
            "consent": "yes",
            "age": type(proof.record["age"])(21),
        }
        assert leaf_hash(record_leaf(1, record_salt(key.read_bytes(), 1), row1)) == sibling
        # the same rows in a second version get other leaves (a key per version)
        data2 = tmp_path / "survey2.csv"
        data2.write_text(data.read_text() + "200,yes,30\n")
        led.datasets.ingest(
            "survey",
            data2,
            source="clinic",
            batch="b2",
            collected_by="nurse",
            signer=_s("steward"),
        )
        proof2 = led.datasets.prove("survey", 2, 0, data2)
        assert proof2.record == proof.record and proof2.salt != proof.salt
        assert proof2.path[0] != proof.path[0]
    finally:
        led.close()


def test_version_6_ledgers_know_no_artifact_types(tmp_path: Path) -> None:
    led = _ledger(tmp_path, 6)
    try:
        assert not set(led.members.permissions) & ARTIFACT_TYPES
        f = tmp_path / "d.csv"
        f.write_text("a\n1\n")
        led.datasets.register("d", f, signer=_s("steward"))
        with pytest.raises(RejectedError, match="no contract handles"):
            led.artifacts.grant("dataset", "d", "bob", signer=_s("steward"))
        admins = [_s("alice"), _s("dave")]
        at = led.size + 1
        led.members.activate_contracts(7, at=at, signers=admins)
        with pytest.raises(RejectedError, match="lists no roles"):
            led.artifacts.grant("dataset", "d", "bob", signer=_s("steward"))
        led.members.set_permissions("artifact.grant", ["data-steward"], signers=admins)
        led.artifacts.grant("dataset", "d", "bob", signer=_s("steward"))
        assert "artifact.erase" not in led.members.permissions
    finally:
        led.close()


def test_a_new_ledger_lists_the_artifact_types() -> None:
    assert set(DEFAULT_PERMISSIONS) >= ARTIFACT_TYPES
    assert "artifact.erase" in DEFAULT_POLICIES


def test_a_pkcs11_kek_end_to_end(token: Token, tmp_path: Path) -> None:  # noqa: F811
    led = _ledger(tmp_path)
    kek = Pkcs11Kek(token.module, token.label, token.pin, "org-kek")
    try:
        keys = KeyService(kek, (DataKeyStore(tmp_path / "dk"),))
        store = open_store(tmp_path / "store")
        f = tmp_path / "w.bin"
        f.write_bytes(os.urandom(2 * MiB))
        led.models.register("m", f, signer=_s("bob"))
        led.artifacts.encrypt("model", "m", 1, f, store, keys, signer=_s("bob"))
        led.models.pull("m", tmp_path / "out", stores=[store], keys=keys, signer=_s("bob"))
        assert (tmp_path / "out" / "w.bin").read_bytes() == f.read_bytes()
        led.artifacts.erase(
            "model",
            "m",
            1,
            "withdrawn",
            signers=[_s("steward"), _s("dave")],
            keys=keys,
            stores=[store],
        )
        assert list(keys.stores[0].entries()) == []
    finally:
        kek.close()
        led.close()


def test_encrypting_a_file_that_changed_stores_nothing(tmp_path: Path) -> None:
    led = _ledger(tmp_path)
    try:
        keys = KeyService(FileKek(tmp_path / "k.kek"), (DataKeyStore(tmp_path / "dk"),))
        store = open_store(tmp_path / "store")
        f = tmp_path / "w.bin"
        f.write_bytes(b"one")
        led.models.register("m", f, signer=_s("bob"))
        f.write_bytes(b"two")
        with pytest.raises(IntegrityError, match="changed since"):
            led.artifacts.encrypt("model", "m", 1, f, store, keys, signer=_s("bob"))
        assert list(store.objects()) == [] and list(keys.stores[0].entries()) == []
    finally:
        led.close()


def test_cli_encrypt_grant_pull_erase(tmp_path: Path) -> None:
    from conftest import run_cli as run

    e = dict(os.environ)
    e.update(
        MODELCHAIN_HOME=str(tmp_path / "home"),
        MODELCHAIN_LEDGER=str(tmp_path / "ledger"),
        MODELCHAIN_KEY_PASSPHRASE="pw",
        MODELCHAIN_STORE=str(tmp_path / "store"),
    )
    for name in ("MODELCHAIN_IDENTITY", "MODELCHAIN_KEK", "MODELCHAIN_KEYSTORE"):
        e.pop(name, None)
    run(e, "init", "--origin", ORIGIN, "--admin", "alice")
    run(e, "identity", "new", "steve")
    run(e, "identity", "new", "tess")
    run(e, "member", "add", "steve", "--role", "data-steward", "--org", "acme")
    run(e, "member", "add", "tess", "--role", "trainer", "--org", "acme")
    data = tmp_path / "rows.csv"
    data.write_text("id,consent\n" + "".join(f"{i},yes\n" for i in range(100)))
    run(e, "dataset", "register", "rows", str(data), "--store", "--encrypt", "--as", "steve")
    shown = run(e, "dataset", "show", "rows").stdout
    assert "stored:   encrypted (tink-streaming-aes256-gcm-hkdf-1mb)" in shown
    kek = tmp_path / "home" / "kek" / f"{ORIGIN.replace('/', '_')}.kek"
    assert kek.stat().st_mode & 0o777 == 0o600
    ls = json.loads(run(e, "store", "ls", "--json").stdout)
    assert len(ls) == 1 and ls[0]["referenced"]

    refused = run(e, "pull", "rows", str(tmp_path / "t"), "--as", "tess", ok=False)
    assert refused.returncode == 8 and "holds no grant" in refused.stderr
    assert not (tmp_path / "t").exists()
    run(e, "store", "grant", "rows", "tess", "--as", "steve")
    assert "tess\tevery version" in run(e, "store", "grants", "rows").stdout
    run(e, "pull", "rows", str(tmp_path / "t"), "--as", "tess")
    assert (tmp_path / "t" / "rows.csv").read_bytes() == data.read_bytes()

    # erasure: the steward drafts, the admin co-signs, either submits
    saved = tmp_path / "saved"
    shutil.copytree(tmp_path / "store", saved)
    draft = tmp_path / "erase.json"
    alone = run(e, "erase", "rows", "--version", "1", "--reason", "gdpr", "--as", "steve", ok=False)
    assert alone.returncode == 8 and "policy" in alone.stderr
    run(
        e,
        "erase",
        "rows",
        "--version",
        "1",
        "--reason",
        "gdpr art. 17",
        "--as",
        "steve",
        "--draft",
        str(draft),
    )
    run(e, "tx", "sign", str(draft), "--as", "alice")
    out = json.loads(run(e, "erase", "--signed", str(draft), "--json").stdout)
    assert out["by"] == ["steve", "alice"] and out["keys_destroyed"]
    assert out["record_key_destroyed"] and len(out["objects_deleted"]) == 1
    run(e, "log", "verify")
    shown = run(e, "dataset", "show", "rows").stdout
    assert "ERASED:" in shown and "steve, alice: gdpr art. 17" in shown
    assert next(ln for ln in shown.splitlines() if ln.startswith("version:")).endswith(" ERASED")
    # every entry about the version reads as erased: its registration, its key requests
    version = json.loads(run(e, "dataset", "show", "rows", "--json").stdout)["version"]
    entry = run(e, "log", "show", str(version["index"])).stdout
    assert "ERASED:    dataset rows version 1, which this entry concerns" in entry
    assert "steve, alice: gdpr art. 17" in entry
    as_json = json.loads(run(e, "log", "show", str(version["index"]), "--json").stdout)
    assert as_json["erasure"]["signers"] == ["steve", "alice"]
    assert "erasure" not in json.loads(run(e, "log", "show", "0", "--json").stdout)
    gone = run(e, "pull", "rows", str(tmp_path / "u"), "--as", "tess", ok=False)
    assert gone.returncode == 3 and "erased at entry" in gone.stderr and "gdpr" in gone.stderr
    # the saved ciphertext: every key entry left, under the KEK, decrypts none of it
    assert not any((tmp_path / "home" / "datakeys").rglob("*.json"))


def test_the_dashboard_shows_an_erasure(tmp_path: Path) -> None:
    import asyncio

    import httpx

    from modelchain.server import ServerConfig, create_app

    led = _ledger(tmp_path)
    try:
        f = tmp_path / "d.csv"
        f.write_text("a\n1\n")
        led.datasets.register("d", f, signer=_s("steward"))
        led.artifacts.erase(
            "dataset", "d", 1, "consent withdrawn", signers=[_s("steward"), _s("dave")]
        )
        app = create_app(led, ServerConfig(reads="open"))

        async def get() -> httpx.Response:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                return await client.get("/ui/datasets/d")

        page = asyncio.run(get())
        assert page.status_code == 200, page.text[:300]
        erased = page.text.split('class="bad erased">', 1)[1].split("</dd>", 1)[0]
        assert "steward, dave" in erased and "consent withdrawn" in erased
    finally:
        led.close()


def test_guarded_loads_without_a_path_name_encryption_and_erasure(tmp_path: Path) -> None:
    from modelchain.guard import pulled

    led = _ledger(tmp_path)
    try:
        keys = KeyService(FileKek(tmp_path / "k.kek"), (DataKeyStore(tmp_path / "dk"),))
        store = open_store(tmp_path / "store")
        f = tmp_path / "w.bin"
        f.write_bytes(b"weights")
        led.models.register("m", f, signer=_s("bob"))
        led.artifacts.encrypt("model", "m", 1, f, store, keys, signer=_s("bob"))
        with pytest.raises(UsageError, match="stored encrypted"):
            pulled(led, model="m", stores=[store])
        led.artifacts.erase("model", "m", 1, "withdrawn", signers=[_s("steward"), _s("dave")])
        with pytest.raises(ErasedError, match="withdrawn"):
            pulled(led, model="m", stores=[store])
    finally:
        led.close()
