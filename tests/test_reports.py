"""Compliance exports: Annex IV documentation (JSON, HTML, PDF) and the Art. 12
log export, built from a realistic lifecycle ledger and checked against its proofs."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pypdf
import pytest
from conftest import ORIGIN, PEOPLE, founders, make_signer, run_cli

import modelchain as mc
from modelchain.contracts.policy import DEFAULT_POLICIES
from modelchain.core.checkpoint import open_checkpoint
from modelchain.core.identity import verifier_of
from modelchain.core.merkle import leaf_hash
from modelchain.core.tlogproof import TlogProof, verify_tlog_proof
from modelchain.errors import (
    MalformedError,
    NotFoundError,
    ProofError,
    RejectedError,
    SignatureError,
    UsageError,
)
from modelchain.keys.wrap import DataKeyStore, FileKek
from modelchain.ledger.artifacts import KeyService
from modelchain.reports import (
    TO_COMPLETE,
    AnnexIV,
    Statement,
    annex_iv,
    export_logs,
    parse_time,
    read_annex_iv,
    render_html,
    render_json,
    render_pdf,
    verify_annex_iv,
    verify_logs,
)
from modelchain.reports._pdf import FONT_DIRS
from modelchain.reports.annex.gaps import fill_from_card
from modelchain.storage.artifacts import open_store

DAY = 86_400_000
T0 = 1_795_176_000_000  # 2026-11-20T12:00:00Z: phase A; B, C and D follow a day apart
HOSTILE_METRIC = "<script>alert('metric')</script>"
HOSTILE_COMMENT = "fine </li><script>alert(1)</script> – Zoë"


def s(name: str) -> mc.Signer:
    return make_signer(name)


class Clock:
    """A clock that moves only when told, so that entry times are exact."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


@dataclass
class World:
    led: mc.Ledger
    path: Path
    at: dict[str, int] = field(default_factory=dict)  # what happened -> entry index
    digests: dict[int, str] = field(default_factory=dict)


def _build(root: Path) -> World:
    clock = Clock(T0 - 3_600_000)
    members = founders(PEOPLE)
    led = mc.init(
        root / "ledger",
        ORIGIN,
        s("alice"),
        org="acme",
        members=members,
        policies=DEFAULT_POLICIES,
        clock=clock,
    )
    w = World(led, root / "ledger")
    files = root / "files"
    files.mkdir()
    tx1, tx2, holdout = files / "tx-10.csv", files / "tx-11.csv", files / "holdout.csv"
    tx1.write_text("amount,fraud\n" + "".join(f"{i},{i % 2}\n" for i in range(40)))
    tx2.write_text("amount,fraud\n" + "".join(f"{i},{i % 3 == 0:d}\n" for i in range(60)))
    holdout.write_text("amount,fraud\n" + "".join(f"{i},{i % 2}\n" for i in range(20)))
    v1, v2 = files / "v1.bin", files / "v2.bin"
    v1.write_bytes(b"weights-1")
    v2.write_bytes(b"weights-2")
    d, m = led.datasets, led.models
    deps = led.deployments

    clock.ms = T0  # phase A: data, the first run and version, staging
    w.at["tx1"] = d.register(
        "tx",
        tx1,
        source="s3://lake/tx",
        license="internal",
        description="Transaktionen für Betrugserkennung — Zoë 模型",
        signer=s("steward"),
    ).index
    w.at["att1"] = d.attest(
        "tx", 1, {"passed": True, "checks": [{"name": "nulls"}]}, signer=s("val")
    ).index
    w.at["tx2"] = d.ingest(
        "tx", tx2, source="s3://lake/tx", batch="2026-11", collected_by="etl", signer=s("steward")
    ).index
    w.at["att2"] = d.attest(
        "tx", 2, {"passed": True, "checks": [{"name": "range"}]}, signer=s("val")
    ).index
    w.at["holdout"] = d.register("holdout", holdout, signer=s("steward")).index
    w.at["att_holdout"] = d.attest("holdout", 1, {"passed": True}, signer=s("val")).index
    w.at["erase_tx1"] = led.artifacts.erase(
        "dataset", "tx", 1, "retention period over", signers=[s("steward"), s("dave")]
    ).index
    led.runs.record(
        "run-1",
        outputs=[v1],
        datasets=[("tx", 2)],
        parameters={"lr": 0.01},
        metrics={"f1": 0.88},
        code_dir=None,
        signer=s("bob"),
    )
    w.at["run1"] = led.runs.get("run-1")["index"]
    mv1 = m.register(
        "fraud", v1, run="run-1", card={"intended_use": "<script>card</script>"}, signer=s("bob")
    )
    w.at["v1"], w.digests[1] = mv1.index, mv1.digest
    w.at["eval1"] = m.evaluate(
        "fraud", 1, dataset=("holdout", 1), metrics={"accuracy": 0.95}, signer=s("ev")
    ).index
    w.at["deploy_staging"] = deps.deploy("fraud", 1, "staging", signer=s("ops")).index

    clock.ms = T0 + DAY  # phase B: version 2, approvals, production
    led.runs.record(
        "run-2",
        outputs=[v2],
        datasets=[("tx", 2)],
        base_models=[("fraud", 1)],
        parameters={"lr": 0.005},
        code_dir=None,
        signer=s("bob"),
    )
    w.at["run2"] = led.runs.get("run-2")["index"]
    mv2 = m.register("fraud", v2, run="run-2", parent=("fraud", 1), signer=s("bob"))
    w.at["v2"], w.digests[2] = mv2.index, mv2.digest
    w.at["eval2"] = m.evaluate(
        "fraud",
        2,
        dataset=("holdout", 1),
        metrics={"accuracy": 0.97, HOSTILE_METRIC: 1.0},
        signer=s("ev"),
    ).index
    with pytest.raises(RejectedError) as denied:
        deps.deploy("fraud", 2, "production", signer=s("ops"))
    w.at["denied"] = denied.value.index
    w.at["approve_risk"] = deps.approve(
        "fraud", 2, "production", role="risk", comment=HOSTILE_COMMENT, signer=s("risk")
    ).index
    w.at["approve_lead"] = deps.approve(
        "fraud", 2, "production", role="ml-lead", signer=s("lead")
    ).index
    w.at["deploy_prod"] = deps.deploy(
        "fraud", 2, "production", rollback_rule="metrics.error_rate > 0.05", signer=s("ops")
    ).index

    clock.ms = T0 + 2 * DAY  # phase C: monitoring, inference, a guarded load
    w.at["report_ok"] = deps.report(
        "fraud", "production", {"error_rate": 0.01}, signer=s("mon")
    ).index
    for n in range(2):
        body = {
            "model": "fraud",
            "version": 2,
            "env": "production",
            "root": f"{n:02d}" * 32,
            "count": 10 + n,
            "first_time": T0 + 2 * DAY - 5000,
            "last_time": T0 + 2 * DAY - 1000,
            "batch_id": f"{n:032x}",
        }
        ack = led.submit(led.transaction("inference.batch", body, "mon").sign(s("mon")))
        w.at[f"batch{n}"] = ack.index
    w.at["access"] = deps.log_access("model", "fraud", 2, "guard load", signer=s("ops")).index

    clock.ms = T0 + 3 * DAY  # phase D: a breaching report rolls back; version 1 revoked
    w.at["report_bad"] = deps.report(
        "fraud", "production", {"error_rate": 0.2}, signer=s("mon")
    ).index
    w.at["revoke1"] = deps.revoke(
        "fraud", 1, reason="leaked training data", signer=s("alice")
    ).index

    clock.ms = T0 + 4 * DAY  # phase E: version 2 stored encrypted, its keys; version 1 erased
    keys = KeyService(FileKek(root / "kek" / "org.kek"), (DataKeyStore(root / "datakeys"),))
    store = open_store(root / "store")
    w.at["store2"] = led.artifacts.encrypt(
        "model", "fraud", 2, v2, store, keys, signer=s("bob")
    ).index
    with pytest.raises(RejectedError) as refused:
        led.artifacts.fetch_key("model", "fraud", 2, keys, purpose="scoring", signer=s("mon"))
    w.at["key_refused"] = refused.value.index
    w.at["grant"] = led.artifacts.grant(
        "model", "fraud", "mon", version=2, signer=s("steward")
    ).index
    for n in range(2):
        led.artifacts.fetch_key("model", "fraud", 2, keys, purpose="scoring", signer=s("mon"))
        w.at[f"key{n}"] = led.size - 1
    w.at["key_revoke"] = led.artifacts.revoke("model", "fraud", "mon", signer=s("steward")).index
    with pytest.raises(RejectedError) as refused:
        led.artifacts.grant("model", "fraud", "mon", signer=s("bob"))  # a trainer may not
    w.at["grant_refused"] = refused.value.index
    w.at["data_grant"] = led.artifacts.grant("dataset", "tx", "bob", signer=s("steward")).index
    with pytest.raises(RejectedError) as refused:
        led.artifacts.fetch_key("dataset", "tx", 2, keys, signer=s("bob"))  # not encrypted
    w.at["data_refused"] = refused.value.index
    w.at["erase_v1"] = led.artifacts.erase(
        "model",
        "fraud",
        1,
        "licence of a training source withdrawn",
        signers=[s("steward"), s("dave")],
    ).index
    led.checkpoint()
    return w


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("reports")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODELCHAIN_HOME", str(root / "home"))
        w = _build(root)
        try:
            yield w
        finally:
            w.led.close()


@pytest.fixture(scope="module")
def doc(world: World) -> AnnexIV:
    return annex_iv(world.led, "fraud")


def _statements(doc: AnnexIV, key: str, kind: str) -> list[Statement]:
    return [st for st in doc.section(key).statements if st.kind == kind]


# -- Annex IV: facts and proofs --------------------------------------------------------


def test_every_cited_entry_is_proven_against_the_recorded_checkpoint(
    world: World, doc: AnnexIV
) -> None:
    led = world.led
    cp, _ = open_checkpoint(doc.checkpoint.note.encode(), led.log_key)
    assert (cp.size, cp.origin) == (doc.checkpoint.size, ORIGIN)
    assert base64.b64encode(cp.root).decode() == doc.checkpoint.root
    assert doc.checkpoint.log_key == led.log_key.to_string()
    cited = {e.index for e in doc.entries}
    for section in doc.sections:
        for st in section.statements:
            assert st.entries, f"{st.kind} cites nothing: {st.text}"
            assert set(st.entries) <= cited
    for e in doc.entries:
        data = led.entry_bytes(e.index)
        assert e.leaf_hash == leaf_hash(data).hex()
        receipt = TlogProof.from_text(e.proof)
        assert receipt.index == e.index
        assert receipt.checkpoint == doc.checkpoint.note.encode()
        assert verify_tlog_proof(receipt, leaf_hash(data), led.log_key) == cp
        assert e.type == led.entry(e.index).transaction.type
        assert e.link == f"entries/{e.index}"


def test_general_description_lists_versions_and_software(world: World, doc: AnnexIV) -> None:
    assert (doc.model, doc.version, doc.origin) == ("fraud", 2, ORIGIN)
    versions = {st.data["version"]: st for st in _statements(doc, "general", "version")}
    assert set(versions) == {1, 2}
    assert versions[2].data["digest"] == world.digests[2]
    assert versions[2].data["subject"] and not versions[1].data["subject"]
    assert versions[2].data["parent"] == {"name": "fraud", "version": 1}
    assert versions[1].entries == (world.at["v1"], world.at["revoke1"], world.at["erase_v1"])
    assert versions[2].entries == (world.at["v2"], world.at["store2"])
    assert "ERASED at 2026-11-24" in versions[1].text and versions[2].data["erased"] is None
    assert versions[1].data["erased"]["by"] == ["steward", "dave"]
    assert versions[2].data["stored"]["scheme"] == "tink-streaming-aes256-gcm-hkdf-1mb"
    (card,) = _statements(doc, "general", "model_card")
    assert card.entries == (world.at["v1"],)
    (software,) = _statements(doc, "general", "software")
    assert software.data["run"] == "run-2" and software.entries == (world.at["run2"],)
    assert software.data["environment"]["python"]


def test_development_names_runs_and_the_base_model(world: World, doc: AnnexIV) -> None:
    runs = {st.data["run"]: st for st in _statements(doc, "development", "run")}
    assert set(runs) == {"run-1", "run-2"}
    assert runs["run-2"].data["parameters"] == {"lr": 0.005}
    assert runs["run-2"].entries == (world.at["run2"],)
    assert runs["run-1"].data["metrics"] == {"f1": 0.88}
    assert "model fraud@1" in runs["run-2"].data["inputs"]
    (base,) = _statements(doc, "development", "base_model")
    assert (base.data["name"], base.data["version"], base.data["org"]) == ("fraud", 1, "acme")
    assert base.entries == (world.at["v1"],) and base.data["digest"] == world.digests[1]
    assert base.data["use"] == "the parent of fraud version 2; a base model of training run run-2"


def test_data_section_shows_an_erasure_with_who_when_and_why(world: World, doc: AnnexIV) -> None:
    (erased,) = _statements(doc, "data", "data_erasure")
    assert erased.entries == (world.at["erase_tx1"],)
    assert erased.data["by"] == ["steward", "dave"] and erased.data["version"] == 1
    assert "retention period over" in erased.text and "erased at" in erased.text


def test_a_model_erasure_says_who_when_why_and_what_it_destroys(world: World, doc: AnnexIV) -> None:
    (erased,) = _statements(doc, "changes", "erasure")
    assert erased.entries == (world.at["erase_v1"],)  # stored in plaintext: no store entry
    assert erased.data["model"] == "fraud" and erased.data["version"] == 1
    assert erased.data["by"] == ["steward", "dave"]
    assert erased.data["reason"] == "licence of a training source withdrawn"
    assert erased.data["time"] == "2026-11-24T12:00:00.000Z"
    assert erased.data["destroyed"] == {"data_key": None, "objects": [], "record_key": False}
    assert "steward (acme), dave (bank)" in erased.text and "stored file(s)" in erased.text
    # the change history keeps entry order: the erasure comes after the revocation
    kinds = [st.kind for st in doc.section("changes").statements]
    assert kinds.index("erasure") > kinds.index("revocation")
    # the data erasure names what it destroys too
    (data,) = _statements(doc, "data", "data_erasure")
    assert data.data["destroyed"]["record_key"] is True and "record-proof key" in data.text


def test_every_grant_key_request_and_refusal_is_cited(world: World, doc: AnnexIV) -> None:
    at = world.at
    (grant,) = _statements(doc, "monitoring", "key_grant")
    assert grant.entries == (at["grant"],)
    assert (grant.data["by"], grant.data["member"], grant.data["version"]) == ("steward", "mon", 2)
    (revoke,) = _statements(doc, "monitoring", "key_revoke")
    assert revoke.entries == (at["key_revoke"],) and revoke.data["member"] == "mon"
    (requests,) = _statements(doc, "monitoring", "key_request")
    assert requests.entries == (at["key0"], at["key1"]) and requests.data["count"] == 2
    assert requests.data["purposes"] == ["scoring"] and requests.data["accepted"] is True
    refused = {st.entries: st for st in _statements(doc, "monitoring", "key_refused")}
    assert set(refused) == {(at["key_refused"],), (at["grant_refused"],)}
    no_grant = refused[(at["key_refused"],)]
    assert (no_grant.data["code"], no_grant.data["by"], no_grant.data["accepted"]) == (
        "no_grant",
        "mon",
        False,
    )
    assert "requested the data key of model fraud version 2" in no_grant.text
    assert "refused, no_grant: mon holds no grant" in no_grant.text
    assert refused[(at["grant_refused"],)].data["type"] == "artifact.grant"
    # the refusals are not counted twice among the denied attempts
    assert [d.entries for d in _statements(doc, "monitoring", "denied")] == [(at["denied"],)]
    # the datasets the document covers: their grants and refusals are in section 3
    (data_grant,) = _statements(doc, "data", "key_grant")
    assert data_grant.entries == (at["data_grant"],) and data_grant.data["version"] is None
    assert "every version of dataset tx" in data_grant.text
    (data_refused,) = _statements(doc, "data", "key_refused")
    assert data_refused.entries == (at["data_refused"],)
    assert data_refused.data["code"] == "not_encrypted"
    # each cited entry is the refusal itself, as the log holds it
    assert doc.entry(at["key_refused"]).outcome["result"] == "rejected"
    assert doc.entry(at["key_refused"]).type == "artifact.key.fetch"


def test_data_section_has_provenance_ingest_and_quality(world: World, doc: AnnexIV) -> None:
    (dataset,) = _statements(doc, "data", "dataset")
    assert dataset.data["source"] == "s3://lake/tx" and dataset.entries == (world.at["tx1"],)
    versions = {st.data["version"]: st for st in _statements(doc, "data", "dataset_version")}
    assert set(versions) == {1, 2}
    assert versions[1].data["used_by_runs"] == []
    assert versions[2].data["used_by_runs"] == ["run-1", "run-2"]
    assert versions[2].data["ingest"]["batch"] == "2026-11"
    assert versions[2].data["records"]["count"] == 60
    assert versions[2].entries == (world.at["tx2"], world.at["run1"], world.at["run2"])
    atts = {st.data["version"]: st for st in _statements(doc, "data", "quality_attestation")}
    assert atts[1].entries == (world.at["att1"],) and atts[2].entries == (world.at["att2"],)
    assert atts[2].data["by"] == "val" and atts[2].data["passed"] is True
    assert atts[2].data["keyids"] == [verifier_of(s("val")).key_id.hex()]


def test_validation_cites_the_signed_evaluation(world: World, doc: AnnexIV) -> None:
    (evaluation,) = _statements(doc, "validation", "evaluation")
    assert evaluation.data["by"] == "ev" and evaluation.data["org"] == "qa-co"
    assert evaluation.data["metrics"]["accuracy"] == 0.97
    assert evaluation.entries == (world.at["eval2"], world.at["holdout"])
    (test_data,) = _statements(doc, "validation", "test_data_attestation")
    assert test_data.entries == (world.at["att_holdout"],)
    v1 = annex_iv(world.led, "fraud", 1)
    assert v1.version == 1
    (evaluation,) = _statements(v1, "validation", "evaluation")
    assert evaluation.entries[0] == world.at["eval1"]


def test_approvals_name_signers_roles_and_the_policy(world: World, doc: AnnexIV) -> None:
    approvals = _statements(doc, "approvals", "approval")
    assert [(a.data["by"], a.data["role"], a.data["decision"], a.entries) for a in approvals] == [
        ("risk", "risk", "approved", (world.at["approve_risk"],)),
        ("lead", "ml-lead", "approved", (world.at["approve_lead"],)),
    ]
    assert approvals[0].data["time"] == "2026-11-21T12:00:00.000Z"
    assert approvals[0].data["comment"] == HOSTILE_COMMENT
    signers = {st.data["name"]: st for st in _statements(doc, "approvals", "signer")}
    assert {"risk", "lead", "ev"} <= set(signers)
    assert "approver:risk" in signers["risk"].data["roles"]
    policies = {st.data["action"]: st for st in _statements(doc, "approvals", "policy")}
    assert policies["model.deploy:production"].entries == (0,)


def test_change_history_per_environment(world: World, doc: AnnexIV) -> None:
    deployments = _statements(doc, "changes", "deployment")
    seen = [(d.data["env"], d.data["action"], d.data["from"], d.data["to"]) for d in deployments]
    assert seen == [
        ("staging", "deploy", None, 1),
        ("production", "deploy", None, 2),
        ("production", "rollback", 2, None),
        ("staging", "rollback", 1, None),
    ]
    assert deployments[1].entries == (
        world.at["deploy_prod"],
        world.at["approve_risk"],
        world.at["approve_lead"],
    )
    assert deployments[2].data["cause"] == "monitor.report"
    assert deployments[2].entries == (world.at["report_bad"],)
    assert deployments[3].data["cause"] == "model.revoke"
    (revocation,) = _statements(doc, "changes", "revocation")
    assert revocation.entries == (world.at["revoke1"],)
    assert revocation.data["reason"] == "leaked training data"
    current = {
        st.data["env"]: st.data["version"]
        for st in _statements(doc, "changes", "current_deployment")
    }
    assert current == {"production": None, "staging": None}


def test_monitoring_reports_inference_access_and_denied(world: World, doc: AnnexIV) -> None:
    reports = _statements(doc, "monitoring", "monitor_report")
    assert [r.entries for r in reports] == [(world.at["report_ok"],), (world.at["report_bad"],)]
    assert reports[0].data["version"] == 2 and reports[0].data["action"] is None
    assert "rolled production back" in reports[1].data["action"]
    (inference,) = _statements(doc, "monitoring", "inference")
    assert inference.data["batches"] == 2 and inference.data["records"] == 21
    assert inference.entries == (world.at["batch0"], world.at["batch1"])
    (access,) = _statements(doc, "monitoring", "access")
    assert access.entries == (world.at["access"],) and access.data["by"] == ["ops"]
    (denied,) = _statements(doc, "monitoring", "denied")
    assert denied.entries == (world.at["denied"],)
    assert denied.data["code"] == "policy_denied" and denied.data["by"] == "ops"
    assert doc.entry(world.at["denied"]).outcome["result"] == "rejected"


def test_what_the_ledger_cannot_know_is_left_to_the_provider(doc: AnnexIV) -> None:
    data = doc.to_json()
    provider = {p["point"]: p for p in data["provider_sections"]}
    assert {"2(b)", "2(c)", "2(e)", "2(f)", "2(h)", "4", "5", "7", "8"} == set(provider)
    assert all(p["status"] == TO_COMPLETE for p in provider.values())
    general = doc.section("general")
    gaps = {p.point: p.text for p in general.to_complete}
    assert "Intended purpose" in gaps["1(a)"]
    assert {"1(b)", "1(d)", "1(e)", "1(h)"} <= set(gaps)
    # every point of Annex IV is either served by a ledger section or left open
    served = {p for sec in doc.sections for p in sec.annex}
    assert served | set(provider) >= {"1(a)", "2(a)", "2(d)", "2(g)", "3", "6", "9"}
    assert "energy" in provider["2(c)"]["text"] and "Cybersecurity" in provider["2(h)"]["text"]


def test_points_the_model_card_answers_are_filled_from_it(world: World, doc: AnnexIV) -> None:
    # version 2 has no card: nothing is filled, not even from version 1's card
    kinds = {st.kind for sec in doc.sections for st in sec.statements}
    assert "model_card_point" not in kinds
    # version 1's card states its intended use: Annex IV 1(a), cited, and no longer open
    v1 = annex_iv(world.led, "fraud", version=1)
    (filled,) = _statements(v1, "general", "model_card_point")
    assert filled.entries == (world.at["v1"],)
    fields = {"intended_use": "<script>card</script>"}
    assert filled.data == {"point": "1(a)", "version": 1, "fields": fields}
    assert "registrant's declaration" in filled.text and "<script>card</script>" in filled.text
    gaps = {p.point for p in v1.section("general").to_complete}
    assert "1(a)" not in gaps and {"1(b)", "1(e)", "1(h)"} <= gaps
    check = verify_annex_iv(json.loads(render_json(v1)), world.led.log_key.to_string())
    assert check.version == 1 and check.statements == sum(len(s.statements) for s in v1.sections)
    assert "&lt;script&gt;card&lt;/script&gt;" in render_html(v1)
    # points of the provider's own list go to the first section
    record = {"version": 2, "by": "bob", "index": world.at["v2"]}
    card = {"cybersecurity": "mTLS everywhere", "hardware": "x86-64, 2 GiB", "hobby": "chess"}
    given = {**record, "card": card}
    sections, provider = fill_from_card(given, doc.sections, doc.provider_sections)
    assert {p.point for p in doc.provider_sections} - {p.point for p in provider} == {"2(h)"}
    points = {
        st.data["point"]: st for st in sections[0].statements if st.kind == "model_card_point"
    }
    assert set(points) == {"1(e)", "2(h)"}
    assert "mTLS everywhere" in points["2(h)"].text and points["1(e)"].entries == (world.at["v2"],)
    assert "1(e)" not in {p.point for p in sections[0].to_complete}
    assert "chess" not in " ".join(st.text for sec in sections for st in sec.statements)
    assert fill_from_card({**record, "card": {}}, doc.sections, doc.provider_sections) == (
        doc.sections,
        doc.provider_sections,
    )


def test_json_round_trips(doc: AnnexIV) -> None:
    data = json.loads(json.dumps(doc.to_json()))
    assert data["format"] == "modelchain.dev/annex-iv/v1"
    assert [s["number"] for s in data["sections"]] == [1, 2, 3, 4, 5, 6, 7]
    assert AnnexIV.from_json(data).to_json() == data


def test_unknown_model_or_version_is_not_found(world: World) -> None:
    with pytest.raises(NotFoundError, match="no model named 'nosuch'"):
        annex_iv(world.led, "nosuch")
    with pytest.raises(NotFoundError, match="no version 7"):
        annex_iv(world.led, "fraud", 7)


# -- Annex IV: checked offline -----------------------------------------------------------


def test_verify_annex_iv_offline(world: World, doc: AnnexIV) -> None:
    vkey = world.led.log_key.to_string()
    data = json.loads(render_json(doc))
    check = verify_annex_iv(data, vkey)
    assert (check.model, check.version, check.entries) == ("fraud", 2, len(doc.entries))
    assert check.statements == sum(len(sec.statements) for sec in doc.sections)
    assert check.checkpoint.size == doc.checkpoint.size
    # The PDF carries the same JSON; the HTML does not.
    assert read_annex_iv(render_pdf(doc)) == data
    with pytest.raises(MalformedError, match="not an Annex IV JSON or PDF"):
        read_annex_iv(render_html(doc).encode())
    # Every cited entry carries its exact bytes.
    for e in doc.entries:
        assert base64.b64decode(e.entry) == world.led.entry_bytes(e.index)


def _tampered(doc: AnnexIV, change: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(render_json(doc))
    change(data)
    return data


def _other_entry(data: dict[str, Any]) -> None:
    # Bytes and leaf hash of another real entry under the first citation's index.
    data["entries"][0].update(entry=data["entries"][1]["entry"])
    data["entries"][0].update(leaf_hash=data["entries"][1]["leaf_hash"])


def _bad_path(data: dict[str, Any]) -> None:
    # The proof's first path hash replaced: the right index, the wrong root.
    lines = data["entries"][2]["proof"].split("\n")
    assert lines[1].startswith("index ") and len(base64.b64decode(lines[2])) == 32
    lines[2] = base64.b64encode(bytes(32)).decode()
    data["entries"][2]["proof"] = "\n".join(lines)


def _subject(data: dict[str, Any]) -> dict[str, Any]:
    general = data["sections"][0]["statements"]
    return next(st for st in general if st["kind"] == "version" and st["data"]["subject"])


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (lambda d: d["entries"][2].update(actor="mallory"), ProofError, "its actor"),
        (lambda d: d["entries"][2].update(time_ms=T0 + 1), ProofError, "its time_ms"),
        (lambda d: d["entries"][2].update(outcome={"result": "denied"}), ProofError, "outcome"),
        (lambda d: d["entries"][2].update(entry=d["entries"][3]["entry"]), ProofError, "leaf"),
        (_other_entry, ProofError, "its index"),
        (lambda d: d["entries"][2].update(proof=d["entries"][3]["proof"]), ProofError, "for entry"),
        (_bad_path, ProofError, "does not lead to the tree root"),
        (lambda d: d["entries"].pop(0), ProofError, "does not prove"),
        (lambda d: d["entries"].append(d["entries"][0]), ProofError, "cited twice"),
        (lambda d: d["sections"][3]["statements"][0].update(entries=[]), ProofError, "none"),
        (lambda d: _subject(d)["data"].update(digest="sha256:" + "0" * 64), ProofError, "bytes"),
        (lambda d: d.update(model="other"), ProofError, "under that name"),
        (lambda d: d.update(version=1), ProofError, "does not state its subject"),
        (lambda d: d["checkpoint"].update(size=1), ProofError, "size"),
        (lambda d: d.update(origin="elsewhere.example/log"), ProofError, "names ledger"),
        (lambda d: d["entries"][1].pop("entry"), MalformedError, "entry"),
        (lambda d: d["entries"][1].update(entry="not base64!"), MalformedError, "not a cited"),
        (lambda d: d.update(format="something/else"), MalformedError, "not an Annex IV"),
    ],
)
def test_verify_annex_iv_catches_tampering(
    world: World,
    doc: AnnexIV,
    change: Callable[[dict[str, Any]], object],
    error: type[Exception],
    match: str,
) -> None:
    with pytest.raises(error, match=match):
        verify_annex_iv(_tampered(doc, change), world.led.log_key)


def test_verify_annex_iv_needs_the_log_key(world: World, doc: AnnexIV) -> None:
    with pytest.raises(SignatureError):
        verify_annex_iv(json.loads(render_json(doc)), verifier_of(s("alice")))


# -- HTML and PDF ----------------------------------------------------------------------


def test_html_is_standalone_escaped_and_links_every_entry(doc: AnnexIV) -> None:
    page = render_html(doc)
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(&#x27;metric&#x27;)&lt;/script&gt;" in page
    assert "&lt;script&gt;card&lt;/script&gt;" in page
    assert "fine &lt;/li&gt;&lt;script&gt;" in page and "Zoë" in page
    for banned in ("http://", "https://", "<link", "src=", "@import"):
        assert banned not in page
    for e in doc.entries:
        assert f'href="entries/{e.index}"' in page
        assert f'id="entry-{e.index}"' in page
        assert e.leaf_hash in page
    assert doc.checkpoint.root in page and TO_COMPLETE in page
    assert "refused, no_grant: mon holds no grant" in page
    assert "licence of a training source withdrawn" in page


def pdf_text(data: bytes) -> str:
    """The visible text of a PDF, as a PDF reader extracts it."""
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(data)).pages)


def _fonts_present() -> bool:
    return any((Path(d) / "DejaVuSans.ttf").is_file() for d in FONT_DIRS)


@pytest.mark.parametrize("core_fonts", [True, False])
def test_pdf_holds_the_key_facts(world: World, doc: AnnexIV, core_fonts: bool) -> None:
    if not core_fonts and not _fonts_present():
        pytest.skip("no DejaVu fonts here (Debian: fonts-dejavu-core)")
    pdf = render_pdf(doc, core_fonts=core_fonts)
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    assert render_pdf(doc, core_fonts=core_fonts) == pdf, "the same document, the same bytes"
    text = pdf_text(pdf)
    for fact in (
        "Technical documentation",
        "fraud version 2",
        "accuracy=0.97",
        "risk (bank) approved version 2 for environment production",
        "policy_denied",
        TO_COMPLETE,
        f"Entry {world.at['denied']} ",
        "c2sp.org/tlog-proof@v1",
        doc.checkpoint.root,
        "<script>alert('metric')</script>",  # text in a PDF is not markup
    ):
        assert fact in text, fact
    words = " ".join(text.split())  # sentences wrap across lines
    for fact in (
        "refused, no_grant: mon holds no grant",
        "ERASED at 2026-11-24T12:00:00.000Z by steward, dave: licence of a training source",
        "steward (acme) granted mon (bank) the data key of model fraud version 2",
    ):
        assert fact in words, fact
    if core_fonts:
        assert "Zoë" in text and "?" in text  # Windows-1252 keeps Zoë; CJK becomes '?'
    else:
        assert "Zoë" in text and "Betrugserkennung — Zoë" in text
    assert read_annex_iv(pdf) == doc.to_json()  # the JSON travels inside
    # The signed checkpoint is printed once, in appendix A, not again in every
    # entry's proof; each entry's inclusion path and leaf hash are still there.
    signature = doc.checkpoint.note.rstrip("\n").rsplit(" ", 1)[1]
    assert text.count(signature[-24:]) == 1
    appendix = text.split("Appendix A: the signed checkpoint", 1)[1]
    assert signature[-24:] in appendix.split("Appendix B: cited entries", 1)[0]
    flat = "".join(appendix.split())
    for e in doc.entries:
        proof = TlogProof.from_text(e.proof)
        assert proof.checkpoint.decode() == doc.checkpoint.note
        assert e.leaf_hash in flat
        assert all(base64.b64encode(h).decode() in flat for h in proof.proof), e.index


# -- Art. 12 logs ----------------------------------------------------------------------


def _export(led: mc.Ledger, start: int | None, end: int | None) -> list[dict[str, Any]]:
    buf = io.StringIO()
    count = export_logs(led, start, end, buf)
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert lines[0]["kind"] == "checkpoint" and len(lines) == count + 1
    return lines


def test_logs_export_is_inclusive_and_every_line_proves_itself(world: World) -> None:
    led = world.led
    times = {i: led.entry(i).transaction.time for i in range(led.size)}
    lines = _export(led, T0 + DAY, T0 + 2 * DAY)
    got = [line["index"] for line in lines[1:]]
    assert got == sorted(i for i, t in times.items() if T0 + DAY <= t <= T0 + 2 * DAY)
    assert world.at["run2"] == got[0] and world.at["access"] == got[-1]  # both ends kept
    assert world.at["report_bad"] not in got and world.at["eval1"] not in got
    assert _export(led, T0 + DAY + 1, T0 + 2 * DAY - 1)[1:] == []
    head = lines[0]
    assert head["from"] == "2026-11-21T12:00:00.000Z" and head["to_ms"] == T0 + 2 * DAY
    for line in lines[1:]:
        data = base64.b64decode(line["entry"])
        assert line["leaf_hash"] == leaf_hash(data).hex()
        receipt = TlogProof.from_text(line["proof"])
        cp = verify_tlog_proof(receipt, leaf_hash(data), led.log_key)
        assert cp.size == head["size"] and receipt.checkpoint.decode() == head["note"]
        assert line["time_ms"] in (T0 + DAY, T0 + 2 * DAY)
    denied = next(line for line in lines if line.get("index") == world.at["denied"])
    assert denied["outcome"]["result"] == "rejected" and denied["actor"] == "ops"
    everything = _export(led, None, None)
    assert len(everything) - 1 == head["size"] == led.size
    text = "".join(json.dumps(line) + "\n" for line in lines)
    check = verify_logs(io.StringIO(text), led.log_key.to_string())
    assert check.entries == len(lines) - 1 and check.checkpoint.size == head["size"]


def test_verify_logs_catches_tampering(world: World) -> None:
    led = world.led
    lines = _export(led, T0 + DAY, T0 + DAY)

    def check(mutated: list[dict[str, Any]]) -> None:
        verify_logs([json.dumps(line) for line in mutated], led.log_key)

    check(lines)
    body = json.loads(json.dumps(lines))
    body[2]["body"]["version"] = 99
    with pytest.raises(ProofError, match="body"):
        check(body)
    proof = json.loads(json.dumps(lines))
    proof[3]["proof"] = lines[4]["proof"]
    with pytest.raises(ProofError):
        check(proof)
    dropped = json.loads(json.dumps(lines))
    dropped[1]["time_ms"] = T0
    with pytest.raises(ProofError):
        check(dropped)
    with pytest.raises(SignatureError):
        verify_logs([json.dumps(line) for line in lines], verifier_of(s("alice")))
    with pytest.raises(UsageError):
        export_logs(led, T0 + DAY, T0, io.StringIO())


def test_parse_time() -> None:
    assert parse_time("2026-11-20T12:00:00Z") == T0
    assert parse_time("2026-11-20T14:00:00.5+02:00") == T0 + 500
    assert parse_time(str(T0)) == T0
    assert parse_time("2026-11-20") == T0 - 12 * 3_600_000
    assert parse_time("2026-11-20", end=True) == T0 + 12 * 3_600_000 - 1
    assert parse_time("2026-11-20T12:00:00") == T0  # no offset: UTC
    for bad in ("yesterday", "2026-11-20 noon", "2026-13-01", "", "\u00b2", "9" * 5000):
        with pytest.raises(UsageError):
            parse_time(bad)


# -- the command line ------------------------------------------------------------------


def test_cli_reports(world: World, env: dict[str, str], tmp_path: Path) -> None:
    ledger = str(world.path)
    out = tmp_path / "annex.json"
    run_cli(
        env, "report", "annex-iv", "fraud", "--ledger", ledger, "--format", "json", "-o", str(out)
    )
    data = json.loads(out.read_text())
    assert (data["model"], data["version"]) == ("fraud", 2)
    page = run_cli(env, "report", "annex-iv", "fraud", "--version", "1", "--ledger", ledger).stdout
    assert page.startswith("<!DOCTYPE html>") and "version <strong>1</strong>" in page
    pdf = tmp_path / "annex.pdf"
    run_cli(env, "report", "annex-iv", "fraud", "--ledger", ledger, "-o", str(pdf))
    assert pdf.read_bytes().startswith(b"%PDF-")

    vkey = world.led.log_key.to_string()
    for document in (out, pdf):
        said = run_cli(env, "report", "verify-annex-iv", str(document), "--vkey", vkey, "--json")
        result = json.loads(said.stdout)
        assert (result["ok"], result["model"], result["version"]) == (True, "fraud", 2)
        assert result["entries"] == len(data["entries"])
    data["entries"][0]["actor"] = "mallory"
    out.write_text(json.dumps(data))
    bad = run_cli(env, "report", "verify-annex-iv", str(out), "--vkey", vkey, ok=False)
    assert bad.returncode == 1 and "actor" in bad.stderr and not bad.stdout
    html = tmp_path / "annex.html"
    html.write_text(page)
    bad = run_cli(env, "report", "verify-annex-iv", str(html), "--vkey", vkey, ok=False)
    assert bad.returncode == 4 and "not an Annex IV JSON or PDF" in bad.stderr

    missing = run_cli(env, "report", "annex-iv", "nosuch", "--ledger", ledger, ok=False)
    assert missing.returncode == 3 and "error: no model named 'nosuch'" in missing.stderr

    logs = tmp_path / "logs.jsonl"
    run_cli(
        env,
        "report",
        "logs",
        "--ledger",
        ledger,
        "--from",
        "2026-11-21",
        "--to",
        "2026-11-22",
        "-o",
        str(logs),
    )
    lines = logs.read_text().splitlines()
    assert {json.loads(line)["time_ms"] for line in lines[1:]} == {T0 + DAY, T0 + 2 * DAY}
    ok = run_cli(env, "report", "verify-logs", str(logs), "--vkey", vkey, "--json").stdout
    assert json.loads(ok)["entries"] == len(lines) - 1
    lines[1] = lines[1].replace('"actor":"bob"', '"actor":"eve"')
    logs.write_text("\n".join(lines) + "\n")
    bad = run_cli(env, "report", "verify-logs", str(logs), "--vkey", vkey, ok=False)
    assert bad.returncode == 1 and "actor" in bad.stderr

    for args in (("--from", "yesterday"), ("--from", "2026-11-22", "--to", "2026-11-21")):
        usage = run_cli(env, "report", "logs", "--ledger", ledger, *args, ok=False)
        assert usage.returncode == 2 and usage.stderr.startswith("error: ")


def test_every_reports_module_exports_what_it_names() -> None:
    """``reports`` and each module of ``reports.annex`` name their exports in
    ``__all__``, and have them; the package keeps its public API."""
    import importlib
    import pkgutil

    import modelchain.reports
    import modelchain.reports.annex

    modules = [modelchain.reports, modelchain.reports.annex] + [
        importlib.import_module(info.name)
        for info in pkgutil.iter_modules(
            modelchain.reports.annex.__path__, "modelchain.reports.annex."
        )
    ]
    for module in modules:
        names = getattr(module, "__all__", None)
        assert names, f"{module.__name__} has no __all__"
        assert len(set(names)) == len(names), module.__name__
        missing = [n for n in names if not hasattr(module, n)]
        assert missing == [], module.__name__
    assert {
        "annex_iv",
        "render_html",
        "render_json",
        "render_pdf",
        "read_annex_iv",
        "verify_annex_iv",
        "export_logs",
        "verify_logs",
    } <= set(modelchain.reports.__all__)
