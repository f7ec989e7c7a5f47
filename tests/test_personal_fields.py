"""Personal fields (contract-set version 8, ADR 18): salted commitments on the ledger,
the values in an encrypted vault beside it, erasure that leaves the log verifying."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ORIGIN, PEOPLE, founders, init_on_version, make_signer, run_cli
from serving import running_server

import modelchain as mc
from modelchain.contracts.policy import DEFAULT_POLICIES
from modelchain.core.disclosure import digest_of, disclose, is_commitment, open_disclosure
from modelchain.core.tx import Transaction
from modelchain.errors import IntegrityError, MalformedError, RejectedError, UsageError
from modelchain.ledger.disclosures import ERASED, WITHHELD
from modelchain.storage.vault import DisclosureVault

JANE = "Dr. Jane Roe, St. Mary's ward 4"
NURSE = "nurse Ratched"


def _s(name: str) -> Any:
    return make_signer(name)


def _ledger(path: Path, version: int | None = None) -> mc.Ledger:
    policies = {t: DEFAULT_POLICIES[t] for t in ("record.erase", "artifact.erase")}
    return init_on_version(
        path / "l", version, org="acme", members=founders(PEOPLE), policies=policies,
        home=path / "home",
    )  # fmt: skip


@pytest.fixture
def led(tmp_path: Path) -> Iterator[mc.Ledger]:
    """Dataset "patients": v1 registered with a source naming a doctor, v2 ingested
    by a named collector."""
    led = _ledger(tmp_path)
    data = tmp_path / "p.csv"
    data.write_text("id,x\n1,2\n")
    led.datasets.register("patients", data, source=JANE, description="ward", signer=_s("steward"))
    data.write_text("id,x\n1,2\n3,4\n")
    led.datasets.ingest(
        "patients", data, source=JANE, batch="b-7", collected_by=NURSE, signer=_s("steward")
    )
    try:
        yield led
    finally:
        led.close()


def _backup(src: Path, dest: Path) -> None:
    with (
        contextlib.closing(sqlite3.connect(src)) as a,
        contextlib.closing(sqlite3.connect(dest)) as b,
    ):
        a.backup(b)


def _log_bytes(led: mc.Ledger) -> bytes:
    return b"".join(led.entry_bytes(i) for i in range(led.size))


def test_disclosures_are_rfc_9901_disclosures() -> None:
    # RFC 9901 section 4.2.3's example: the digest of a disclosure
    example = "WyI2cU1RdlJMNWhhaiIsICJmYW1pbHlfbmFtZSIsICJNw7ZiaXVzIl0"
    assert digest_of(example) == "uutlBuYeMDyjLLTpf6Jxi7yNkEF35jdyWMn9U7b_RYY"
    opened = open_disclosure(example, "uutlBuYeMDyjLLTpf6Jxi7yNkEF35jdyWMn9U7b_RYY")
    assert (opened.salt, opened.field, opened.value) == ("6qMQvRL5haj", "family_name", "Möbius")
    ours = disclose("comment", "ok by Jane", bytes(range(16)))
    assert open_disclosure(ours.text, ours.digest).value == "ok by Jane"
    assert disclose("comment", "ok by Jane", bytes(range(1, 17))).digest != ours.digest
    with pytest.raises(IntegrityError):
        open_disclosure(ours.text, digest_of(example))
    for bad in ("", "not base64!", "e30", "WzEsMiwzXQ"):  # {} and [1,2,3]
        with pytest.raises(MalformedError):
            open_disclosure(bad)
    with pytest.raises(MalformedError):
        disclose("comment", "x", b"short")
    assert is_commitment({"_sd": ours.digest})
    assert not is_commitment({"_sd": ours.digest, "x": 1}) and not is_commitment(ours.digest)


def test_personal_fields_never_reach_the_log_and_read_back_here(led: mc.Ledger) -> None:
    log = _log_bytes(led)
    for text in (JANE, NURSE, "b-7", "ward"):
        assert text.encode() not in log
    register = led.entry(1).transaction.body
    assert is_commitment(register["source"]) and is_commitment(register["description"])
    assert led.datasets.info("patients")["source"] == JANE
    v2 = led.datasets.get("patients", 2).record
    assert v2["ingest"]["collected_by"] == NURSE and v2["ingest"]["batch"] == "b-7"
    # an empty field holds nothing personal: it stays "" (no vault entry)
    assert led.entry(1).transaction.body["license"] == ""


def test_a_value_is_refused_at_admission_and_nothing_is_logged(led: mc.Ledger) -> None:
    size = led.size
    body = {"artifact": {"kind": "dataset", "name": "patients", "version": 1}, "purpose": JANE}
    tx = Transaction(ORIGIN, "access.log", "steward", "a" * 32, led.clock(), body)
    with pytest.raises(MalformedError, match="purpose may hold personal data"):
        led.submit(tx.sign(_s("steward")))
    assert led.size == size and JANE.encode() not in _log_bytes(led)


def test_older_versions_keep_text_and_refuse_commitments(tmp_path: Path) -> None:
    led = _ledger(tmp_path, version=7)
    try:
        data = tmp_path / "d.csv"
        data.write_text("a\n1\n")
        led.datasets.register("d", data, source="plain text", signer=_s("steward"))
        assert led.entry(1).transaction.body["source"] == "plain text"
        d = disclose("purpose", "x", bytes(16))
        body = {
            "artifact": {"kind": "dataset", "name": "d", "version": 1},
            "purpose": {"_sd": d.digest},
        }
        tx = Transaction(ORIGIN, "access.log", "steward", "c" * 32, led.clock(), body)
        with pytest.raises(MalformedError, match="need contract-set version 8"):
            led.submit(tx.sign(_s("steward")))
        erase = {"entry": 1, "fields": [d.digest], "reason": "x"}
        tx = Transaction(ORIGIN, "record.erase", "steward", "d" * 32, led.clock(), erase)
        ack = led.submit(tx.sign(_s("steward"), _s("dave")))
        assert ack.outcome.code == "unknown_type"
        led.audit()
    finally:
        led.close()


def test_erasing_an_entrys_fields(led: mc.Ledger, tmp_path: Path) -> None:
    vault_file = tmp_path / "home" / "disclosures" / f"{ORIGIN.replace('/', '_')}.sqlite"
    backup = tmp_path / "vault-backup.sqlite"
    _backup(vault_file, backup)  # the vault file alone, as a nightly backup would copy it
    source = led.entry(1).transaction.body["source"]["_sd"]
    with contextlib.closing(sqlite3.connect(vault_file)) as db:
        (key,) = db.execute("SELECT key FROM disclosures WHERE digest = ?", (source,)).fetchone()
    with contextlib.closing(sqlite3.connect(f"{vault_file}.keys")) as db:
        (wrapped,) = db.execute("SELECT wrapped FROM keys WHERE key = ?", (key,)).fetchone()
    with pytest.raises(RejectedError, match="policy"):
        led.artifacts.erase_fields(1, "subject asked", signers=[_s("steward")])
    with pytest.raises(UsageError, match="no committed field"):
        led.artifacts.erase_fields(1, "x", signers=[_s("steward"), _s("dave")], fields=["license"])
    done = led.artifacts.erase_fields(1, "GDPR art. 17", signers=[_s("steward"), _s("dave")])
    assert done.fields == ("description", "source") and done.deleted == 2
    info = led.datasets.info("patients")
    assert info["source"] == ERASED and info["description"] == ERASED
    # v2's own fields were not named: still readable
    assert led.datasets.get("patients", 2).record["ingest"]["collected_by"] == NURSE
    record = led.disclosures.erasure(led.entry(1).transaction.body["source"]["_sd"])
    assert record is not None and record["entry"] == 1
    assert record["signers"] == ["steward", "dave"]
    assert led.disclosures.field(record["reason"]) == "GDPR art. 17"
    led.audit()  # the whole log re-executes to the same state; the commitments stay
    with pytest.raises(RejectedError, match="erased already"):
        led.artifacts.erase_fields(1, "again", signers=[_s("steward"), _s("dave")])
    # a copy of the vault taken before the erasure opens nothing: the key is gone
    # (and neither file, nor a write-ahead log, holds a deleted row's bytes)
    saved = DisclosureVault(backup, led.keys().kek, keys_path=f"{vault_file}.keys")
    try:
        assert saved.has(source) and saved.get(source) is None
        kept = saved.get(led.entry(2).transaction.body["collected_by"]["_sd"])
        assert kept is not None and kept.value == NURSE
    finally:
        saved.close()
    for f in vault_file.parent.iterdir():  # the erased key's bytes are gone from disk
        assert wrapped not in f.read_bytes(), f


def test_erasing_a_dataset_version_erases_its_ingest_fields(led: mc.Ledger) -> None:
    result = led.artifacts.erase(
        "dataset", "patients", 2, "withdrawn consent", signers=[_s("steward"), _s("dave")]
    )
    assert result.fields_deleted == 3  # source, batch, collected_by
    ingest = led.datasets.get("patients", 2).record["ingest"]
    assert ingest["collected_by"] == ERASED and ingest["batch"] == ERASED
    assert led.datasets.info("patients")["source"] == JANE  # the dataset's own: kept
    assert led.artifacts.erasure("dataset", "patients", 2)["reason"] == "withdrawn consent"
    led.audit()


def test_another_side_reads_withheld_then_erased(led: mc.Ledger, tmp_path: Path) -> None:
    other = mc.open(led.path, readonly=True, home=tmp_path / "elsewhere")
    try:
        assert other.datasets.info("patients")["source"] == WITHHELD
        assert not (tmp_path / "elsewhere" / "disclosures").exists()  # reading made nothing
        led.artifacts.erase_fields(1, "asked", signers=[_s("steward"), _s("dave")])
        assert other.datasets.info("patients")["source"] == ERASED
    finally:
        other.close()


def test_cli_erases_an_entrys_fields_in_two_hands(tmp_path: Path, env: dict[str, str]) -> None:
    run_cli(env, "init", "--origin", ORIGIN, "--admin", "alice")
    run_cli(env, "identity", "new", "steve")
    run_cli(env, "member", "add", "steve", "--role", "data-steward", "--org", "acme")
    data = tmp_path / "rows.csv"
    data.write_text("a\n1\n")
    run_cli(env, "dataset", "register", "rows", str(data), "--source", JANE, "--as", "steve")
    size = int(run_cli(env, "log", "checkpoint").stdout.splitlines()[1])
    index = size - 1
    shown = run_cli(env, "log", "show", str(index)).stdout
    assert "dataset.register" in shown
    assert f"source:    {JANE}" in shown and '"_sd"' in shown
    draft = tmp_path / "erase.json"
    run_cli(
        env, "erase", "--entry", str(index), "--reason", "asked", "--draft", str(draft),
        "--as", "steve",
    )  # fmt: skip
    run_cli(env, "tx", "sign", str(draft), "--as", "alice")
    out = json.loads(run_cli(env, "erase", "--signed", str(draft), "--json").stdout)
    assert out["entry"] == index and out["by"] == ["steve", "alice"]
    assert out["reason"] == "asked" and out["fields_deleted"] == 1
    assert f"source:    {ERASED}" in run_cli(env, "log", "show", str(index)).stdout
    run_cli(env, "log", "verify")
    bad = run_cli(env, "erase", "--entry", "0", "--reason", "x", "--as", "steve", ok=False)
    assert bad.returncode == 2 and "no committed field" in bad.stderr


def test_a_served_ledger_keeps_its_clients_disclosures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELCHAIN_HOME", str(tmp_path / "home"))
    made = _ledger(tmp_path)
    vkey = made.log_key.to_string()
    made.close()
    data = tmp_path / "d.csv"
    data.write_text("a\n1\n")
    client = tmp_path / "client-home"  # the client's own vault, apart from the server's
    with running_server(tmp_path / "l", "--reads", "open") as url:
        with mc.connect(url, identity=_s("steward"), log_key=vkey, home=client) as remote:
            ack = remote.datasets.register("d", data, source=JANE)
            assert JANE.encode() not in remote.entry_bytes(ack.index)
            assert remote.datasets.info("d")["source"] == JANE  # from the client's vault
            # a draft built here, co-signed, then submitted: its disclosure follows it
            body = {"artifact": {"kind": "dataset", "name": "d", "version": 1}, "purpose": NURSE}
            draft = remote.members.draft("access.log", body, "steward")
            fetched = remote.members.submit(draft.with_signature(_s("steward")))
        info = httpx.get(f"{url}/v1/datasets/d", timeout=30).json()
        assert info["result"]["source"] == JANE  # the server's vault holds it
        server_side = mc.open(tmp_path / "l", readonly=True, home=tmp_path / "home")
        try:
            purpose = server_side.entry(fetched.index).transaction.body["purpose"]
            assert server_side.disclosures.field(purpose) == NURSE
        finally:
            server_side.close()
        # a disclosure that is not the preimage of one of the entry's commitments
        forged = disclose("source", "someone else", bytes(16)).text
        r = httpx.post(
            f"{url}/v1/entries/{ack.index}/disclosures",
            json={"disclosures": [forged]},
            timeout=30,
        )
        assert r.status_code == 400 and "commits to none" in r.text
        for body in ({"disclosures": "x"}, [], {"disclosures": [1]}):
            r = httpx.post(f"{url}/v1/entries/1/disclosures", json=body, timeout=30)
            assert r.status_code == 400
        r = httpx.post(f"{url}/v1/entries/999/disclosures", json={"disclosures": [forged]})
        assert r.status_code == 404
