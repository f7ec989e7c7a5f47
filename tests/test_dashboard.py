"""The auditors' dashboard in a real browser against a real server process.

A ledger shared by two organisations (a bank and its ML vendor) is built with
the SDK: a dataset with two versions and quality attestations, two training
runs, two model versions with evaluations, approvals, deployments, a rollback
and denied attempts. Then `modelchain serve` runs it and Debian's chromium,
driven by Playwright, plays an auditor, two approvers (signing with the real
CLI) and a member whose key the server holds. Screenshots go to
$MODELCHAIN_ARTIFACTS, else to the test session's temporary directory.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cluster_sim import NODE_NAMES, LedgerCluster, node_signer, serving, wait_for
from conftest import ORIGIN, make_signer, run_cli
from serving import running_server

import modelchain as mc
from modelchain.contracts import ContractSet, default_contracts
from modelchain.contracts.policy import DEFAULT_POLICIES
from modelchain.core.identity import Signer, verifier_of
from modelchain.core.times import human_time
from modelchain.core.tx import Outcome, Transaction
from modelchain.errors import RejectedError
from modelchain.keys import KeyStore
from modelchain.ledger.ledger import Founder, Ledger
from modelchain.ledger.lineage import DatasetNode, ExternalInput, ModelNode, RunNode
from modelchain.server.dashboard.standing import standings
from modelchain.server.lineage import lineage_svg

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSPHRASE = "pw"
PAGE_TIMEOUT_MS = 120_000
HOSTILE_METRIC = "<script>alert('metric')</script>"
HOSTILE_COMMENT = "<script>alert('comment')</script>"
HOSTILE_DESCRIPTION = "<img src=x onerror=alert('description')>"
APPROVE_POLICY = 'actor.org == "bank"'
CUSTODIAL_RULE = 'actor.org == "bank" && env == "staging"'
REJECT_COMMENT = "drift on the November data"
REVOKE_REASON = "leaks a customer identifier"

PEOPLE: dict[str, tuple[str, tuple[str, ...]]] = {
    # name: (org, roles); alice (vendor) is the genesis admin
    "dave": ("bank", ("admin",)),
    "steward": ("vendor", ("data-steward",)),
    "val": ("bank", ("validator",)),
    "bob": ("vendor", ("trainer",)),
    "ev": ("bank", ("evaluator",)),
    "risk": ("bank", ("approver", "approver:risk")),
    "lead": ("vendor", ("approver", "approver:ml-lead")),
    "sam": ("bank", ("approver", "approver:compliance")),
    "ops": ("vendor", ("deployer",)),
    "carol": ("bank", ("auditor",)),
}
# They sign with the real CLI, or the server holds their key: they live in the keystore.
IN_KEYSTORE = ("risk", "lead", "sam")


@dataclass
class World:
    ledger: Path
    env: dict[str, str]
    url: str
    artifacts: Path
    tokens: dict[str, str]
    files: dict[str, Path]
    signers: dict[str, Signer]

    def api(self, path: str, token: str = "carol") -> Any:
        headers = {"Authorization": f"Bearer {self.tokens[token]}"}
        response = httpx.get(self.url + path, headers=headers, timeout=120)
        response.raise_for_status()
        return response.json()


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _rejected(call: Any) -> None:
    with pytest.raises(RejectedError):
        call()


def _build(root: Path, home: Path) -> tuple[Path, dict[str, Path], dict[str, Signer]]:
    keys = KeyStore(home)
    signers: dict[str, Signer] = {"alice": make_signer("alice")}
    for name in PEOPLE:
        if name in IN_KEYSTORE:
            keys.create(name, PASSPHRASE.encode())
            signers[name] = keys.signer(name, lambda: PASSPHRASE.encode())
        else:
            signers[name] = make_signer(name)
    members = [Founder(verifier_of(signers[n]), org, roles) for n, (org, roles) in PEOPLE.items()]
    policies = {
        **DEFAULT_POLICIES,
        "model.approve:production": {
            "rule": APPROVE_POLICY,
            "description": "production approvals come from the bank, which carries the risk",
        },
    }
    files = {
        "data1": _write(root / "tx-2026-10.csv", b"amount,fraud\n1,0\n2,1\n3,0\n"),
        "data2": _write(root / "tx-2026-11.csv", b"amount,fraud\n1,0\n2,1\n3,0\n4,1\n"),
        "v1_weights": _write(root / "fraud-v1" / "weights.bin", b"weights one " * 100),
        "v2_weights": _write(root / "fraud-v2" / "weights.bin", b"weights two " * 100),
    }
    _write(root / "fraud-v1" / "config.json", b'{"layers": 2}')
    _write(root / "fraud-v2" / "config.json", b'{"layers": 3}')
    _write(root / "churn-v1" / "tree.json", b'{"depth": 4}')
    s = signers
    ledger_dir = root / "ledger"
    led = mc.init(ledger_dir, ORIGIN, s["alice"], org="vendor", members=members, policies=policies)
    try:
        led.datasets.register(
            "transactions",
            files["data1"],
            source="s3://lake/tx",
            license="internal",
            description=HOSTILE_DESCRIPTION,
            signer=s["steward"],
        )
        led.datasets.attest(
            "transactions", 1, {"passed": True, "checks": [{"name": "nulls"}]}, signer=s["val"]
        )
        led.datasets.ingest(
            "transactions",
            files["data2"],
            source="s3://lake/tx",
            batch="2026-11",
            collected_by="etl",
            signer=s["steward"],
        )
        led.datasets.attest(
            "transactions", 2, {"passed": True, "checks": [{"name": "ranges"}]}, signer=s["val"]
        )
        led.runs.record(
            "run-1",
            outputs=[root / "fraud-v1"],
            datasets=[("transactions", 1)],
            parameters={"lr": 0.01},
            code_dir=None,
            signer=s["bob"],
        )
        led.models.register("fraud", root / "fraud-v1", run="run-1", signer=s["bob"])
        led.models.evaluate(
            "fraud", 1, dataset=("transactions", 1), metrics={"accuracy": 0.95}, signer=s["ev"]
        )
        deps = led.deployments
        deps.approve("fraud", 1, "production", role="risk", signer=s["risk"])
        deps.approve("fraud", 1, "production", role="compliance", signer=s["sam"])
        # the vendor's approver is not the bank: the approval policy logs and refuses it
        _rejected(lambda: deps.approve("fraud", 1, "production", role="ml-lead", signer=s["lead"]))
        _rejected(lambda: deps.deploy("fraud", 1, "production", signer=s["bob"]))  # no role
        deps.deploy("fraud", 1, "production", signer=s["ops"])
        deps.deploy("fraud", 1, "staging", signer=s["ops"])

        led.runs.record(
            "run-2",
            outputs=[root / "fraud-v2"],
            datasets=[("transactions", 2)],
            base_models=[("fraud", 1)],
            parameters={"lr": 0.005},
            code_dir=None,
            signer=s["bob"],
        )
        led.models.register(
            "fraud", root / "fraud-v2", run="run-2", parent=("fraud", 1), signer=s["bob"]
        )
        led.models.evaluate(
            "fraud",
            2,
            dataset=("transactions", 2),
            metrics={"accuracy": 0.97, HOSTILE_METRIC: 1.0},
            signer=s["ev"],
        )
        deps.approve(
            "fraud", 2, "staging", role="ml-lead", comment=HOSTILE_COMMENT, signer=s["lead"]
        )
        deps.deploy("fraud", 2, "staging", signer=s["ops"])
        deps.rollback("fraud", "staging", reason="canary error rate", signer=s["ops"])
        # production needs two approvals of version 2 first
        _rejected(lambda: deps.deploy("fraud", 2, "production", signer=s["ops"]))
        deps.reject(
            "fraud", 2, "production", role="compliance", comment=REJECT_COMMENT, signer=s["sam"]
        )

        # a second model, deployed to staging and then revoked
        led.runs.record(
            "run-3",
            outputs=[root / "churn-v1"],
            datasets=[("transactions", 2)],
            parameters={"depth": 4},
            code_dir=None,
            signer=s["bob"],
        )
        led.models.register("churn", root / "churn-v1", run="run-3", signer=s["bob"])
        deps.deploy("churn", 1, "staging", signer=s["ops"])
        deps.revoke("churn", 1, reason=REVOKE_REASON, signer=s["dave"])
        led.checkpoint()
    finally:
        led.close()
    return ledger_dir, files, signers


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("dashboard")
    home = root / "home"
    artifacts = Path(
        os.environ.get("MODELCHAIN_ARTIFACTS") or tmp_path_factory.mktemp("dashboard-artifacts")
    )
    artifacts.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        MODELCHAIN_HOME=str(home),
        MODELCHAIN_LEDGER=str(root / "ledger"),
        MODELCHAIN_KEY_PASSPHRASE=PASSPHRASE,
        MODELCHAIN_CUSTODIAL="sam",
    )
    env.pop("MODELCHAIN_IDENTITY", None)
    with pytest.MonkeyPatch.context() as mp:
        # the SDK keeps its digest cache and record keys under MODELCHAIN_HOME
        mp.setenv("MODELCHAIN_HOME", str(home))
        ledger_dir, files, signers = _build(root, home)
    tokens = {}
    for member, scope in (
        ("carol", "read"),
        ("risk", "read"),
        ("lead", "read"),
        ("sam", "approve"),
    ):
        tokens[member] = run_cli(
            env, "token", "issue", member, "--scope", scope, "--ledger", str(ledger_dir)
        ).stdout.strip()
    with running_server(ledger_dir, env=env, log=artifacts / "server.log") as url:
        yield World(ledger_dir, env, url, artifacts, tokens, files, signers)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium for the browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any, world: World) -> Iterator[Any]:
    context = browser.new_context(base_url=world.url, accept_downloads=True)
    # Generous: the cores are shared with other suites; a page that never comes
    # still fails, after two minutes rather than a guess at how busy the machine is.
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    context.set_default_navigation_timeout(PAGE_TIMEOUT_MS)
    p = context.new_page()
    dialogs: list[str] = []
    p.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        yield p
    finally:
        context.close()
    assert dialogs == [], f"a script ran in the page: {dialogs}"


def login(page: Any, world: World, member: str) -> None:
    page.goto("/ui/login")
    page.fill("#token", world.tokens[member])
    page.click("#login-submit")
    page.wait_for_url("**/ui/")
    assert page.inner_text("#who") == member


def shot(page: Any, world: World, name: str) -> None:
    page.screenshot(path=str(world.artifacts / f"{name}.png"), full_page=True)


def column(page: Any, table: str, cls: str) -> list[str]:
    return [t.strip() for t in page.locator(f"{table} tbody td.{cls}").all_inner_texts()]


# -- reading ------------------------------------------------------------------------


def test_pages_redirect_to_login_without_a_token(page: Any, world: World) -> None:
    response = page.goto("/ui/models/fraud")
    assert response is not None and response.ok
    assert "/ui/login?next=%2Fui%2Fmodels%2Ffraud" in page.url
    page.fill("#token", "mct_not-a-token")
    page.click("#login-submit")
    assert "unknown or revoked token" in page.inner_text("#login-error")
    page.fill("#token", world.tokens["carol"])
    page.click("#login-submit")
    page.wait_for_url("**/ui/models/fraud")
    assert page.inner_text("#who") == "carol"
    # the cookie is HttpOnly and SameSite=Strict; scripts cannot read it
    cookie = next(c for c in page.context.cookies() if c["name"] == "modelchain_token")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]
    assert httpx.get(world.url + "/ui/models").status_code == 303


def test_overview_shows_the_checkpoint_and_recent_activity(page: Any, world: World) -> None:
    login(page, world, "carol")
    info = world.api("/v1/ledger")
    assert page.inner_text("h1") == ORIGIN
    assert int(page.inner_text("#cp-size")) >= info["checkpoint"]["size"] - 1
    assert ORIGIN in page.inner_text("#cp-signers")
    assert page.inner_text("#cp-note").startswith(ORIGIN)
    rows = page.locator("#recent tbody tr")
    assert rows.count() == 20
    shot(page, world, "overview")


def _standing(page: Any, row: str) -> dict[str, str]:
    cells = ("serving", "decisions", "withdrawals", "status")
    return {c: page.inner_text(f"{row} td.{c}") for c in cells}


def test_model_list_shows_where_each_version_stands(page: Any, world: World) -> None:
    login(page, world, "carol")
    page.goto("/ui/models")
    fraud = "#models tbody[data-model='fraud']"
    assert page.locator(f"{fraud} tr[data-version]").count() == 2
    v1 = _standing(page, f"{fraud} tr[data-version='1']")
    assert v1["serving"].split() == ["production", "staging"]  # staging rolled back to it
    assert "approved for production by risk (risk)" in v1["decisions"]
    assert "approved for production by sam (compliance)" in v1["decisions"]
    assert v1["withdrawals"] == "-" and v1["status"] == "serving"
    v2 = _standing(page, f"{fraud} tr[data-version='2']")
    assert v2["serving"] == "nowhere"
    assert "approved for staging by lead (ml-lead)" in v2["decisions"]
    # recorded before the rollback from staging: it would not count there again
    assert "stale (before rollback at entry" in v2["decisions"]
    assert "rejected for production by sam (compliance)" in v2["decisions"]
    assert "rolled back from staging by ops" in v2["withdrawals"]
    assert "canary error rate" in v2["withdrawals"]
    assert v2["status"] == "withdrawn"  # not "valid": it was rolled back and serves nowhere
    churn = _standing(page, "#models tbody[data-model='churn'] tr[data-version='1']")
    assert churn["serving"] == "nowhere" and churn["status"] == "revoked"
    assert "rolled back from staging by dave" in churn["withdrawals"]
    assert "revoked by dave #" in churn["withdrawals"] and REVOKE_REASON in churn["withdrawals"]
    shot(page, world, "models")

    # the search box is a GET form filtering by name
    page.fill("#model-search input[name=q]", "CHU")
    page.click("#search-submit")
    page.wait_for_url("**/ui/models?q=CHU")
    assert page.locator("#models tbody[data-model]").count() == 1
    assert page.locator("#models tbody[data-model='churn']").count() == 1
    assert page.inner_text("#search-result").startswith("1 of 2 models")
    shot(page, world, "models-search")
    page.goto("/ui/models?q=%3Cscript%3Ealert(3)%3C%2Fscript%3E")
    assert page.locator("#models tbody[data-model]").count() == 0
    assert "<script>alert(3)</script>" in page.inner_text("#models")
    response = page.goto("/ui/models?q=" + "x" * 201)
    assert response is not None and response.status == 400

    # the model page's versions say the same
    page.goto("/ui/models/fraud")
    assert page.inner_text("#versions tr[data-version='2'] td.status") == "withdrawn"
    assert "rejected for production" in page.inner_text("#versions tr[data-version='2']")
    assert "valid" not in page.inner_text("#versions")

    # the overview says what is in production, and what serves elsewhere
    page.goto("/ui/")
    production = page.locator("#production tbody tr").all_inner_texts()
    assert len(production) == 1 and production[0].startswith("fraud\tv1")
    assert "risk (risk), sam (compliance)" in production[0]
    assert "fraud v1 in staging" in page.inner_text("#elsewhere")
    assert "churn" not in page.inner_text("#elsewhere")


def test_auditor_reads_a_version_page(page: Any, world: World) -> None:
    login(page, world, "carol")
    page.goto("/ui/models/fraud")
    page.click("#versions a:text('v1')")
    page.wait_for_url("**/ui/models/fraud/versions/1")
    labels = page.locator("#lineage svg .lineage-label").all_text_contents()
    assert set(labels) == {"transactions@1", "run-1", "fraud@1", "production", "staging"}
    assert page.locator("#lineage svg .lineage-focus .lineage-label").text_content() == "fraud@1"
    signers = column(page, "#approvals", "signer")
    assert signers == ["risk (bank)", "sam (bank)"]
    production = page.locator("ol.timeline[data-env='production'] li").all_inner_texts()
    assert len(production) == 1 and "deploy" in production[0] and "by ops" in production[0]
    staging = page.locator("ol.timeline[data-env='staging'] li").all_inner_texts()
    assert [s.split()[3] for s in staging] == ["deploy", "deploy", "rollback"]
    assert "canary error rate" in staging[2]
    denied = page.locator("#denied tbody tr").all_inner_texts()
    assert any("lead" in d and "model.approve" in d and "policy_denied" in d for d in denied)
    assert any("bob" in d and "model.deploy" in d and "not_permitted" in d for d in denied)
    shot(page, world, "version-1")

    page.goto("/ui/models/fraud/versions/2")
    labels = page.locator("#lineage svg .lineage-label").all_text_contents()
    assert {"transactions@1", "transactions@2", "run-1", "run-2", "fraud@1", "fraud@2"} <= set(
        labels
    )
    assert "staging" in labels  # deployed before, rolled back
    # every box links to its page
    page.click("#lineage svg a:has(.lineage-run) >> nth=1")
    page.wait_for_url("**/ui/runs/**")
    assert page.inner_text("h1").startswith("Training run run-")
    page.go_back()
    assert "accuracy = 0.97" in page.inner_text("#evaluations")
    assert "ev (bank)" in page.inner_text("#evaluations")
    assert "passed" in page.inner_text("#quality") and "val (bank)" in page.inner_text("#quality")
    files = page.locator("#files tbody tr").all_inner_texts()
    assert any(f.startswith("weights.bin") for f in files) and len(files) == 2
    shot(page, world, "version-2")

    page.goto("/ui/datasets/transactions")
    assert page.locator("section.version").count() == 2
    assert "batch 2026-11" in page.inner_text("#v2")


def test_datasets_show_what_used_them(page: Any, world: World) -> None:
    login(page, world, "carol")
    page.goto("/ui/datasets/transactions")
    v1 = page.inner_text("#used-by-v1")
    assert "training run run-1 by bob" in v1 and "which produced fraud@1" in v1
    assert "evaluation of fraud@1 by ev" in v1
    assert "run-2" not in v1 and "churn" not in v1
    v2 = page.locator("#used-by-v2 li").all_inner_texts()
    assert [t.split(" (#")[0] for t in v2] == [
        "training run run-2 by bob",
        "training run run-3 by bob",
        "evaluation of fraud@2 by ev",
    ]
    assert "which produced fraud@2" in v2[0] and "which produced churn@1" in v2[1]
    shot(page, world, "dataset")
    page.click("#used-by-v2 a:text('churn@1')")
    page.wait_for_url("**/ui/models/churn/versions/1")
    # the SDK answers the same question
    with mc.open(world.ledger, readonly=True) as led:
        uses = led.datasets.used_by("transactions")
    assert sorted(uses) == [1, 2]
    assert [(r.id, r.models) for r in uses[2].runs] == [
        ("run-2", (("fraud", 2),)),
        ("run-3", (("churn", 1),)),
    ]
    assert [(e.model, e.version, e.by) for e in uses[1].evaluations] == [("fraud", 1, "ev")]


def test_auditor_filters_the_audit_trail(page: Any, world: World) -> None:
    login(page, world, "carol")
    page.goto("/ui/audit")
    page.fill("input[name=actor]", "ops")
    page.click("#filter-submit")
    page.wait_for_url("**actor=ops**")
    actors = column(page, "#trail", "actor")
    assert actors and set(actors) == {"ops"}

    page.goto("/ui/audit")
    page.select_option("select[name=outcome]", "rejected")
    page.click("#filter-submit")
    page.wait_for_url("**outcome=rejected**")
    outcomes = column(page, "#trail", "outcome")
    denied = world.api("/v1/denied")["result"]
    assert len(outcomes) == len(denied) >= 3
    assert all(o.startswith("rejected") for o in outcomes)
    shot(page, world, "audit-rejected")

    page.goto("/ui/audit")
    page.fill("input[name=type]", "model.approve")
    page.select_option("select[name=org]", "bank")
    page.click("#filter-submit")
    types = column(page, "#trail", "type")
    assert types and set(types) == {"model.approve"}
    assert set(column(page, "#trail", "org")) == {"bank"}

    page.goto("/ui/audit?type=model.&before=12")
    indices = [
        int(i)
        for i in page.locator("#trail tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.index)"
        )
    ]
    assert indices and all(i < 12 for i in indices) and indices == sorted(indices, reverse=True)

    first = indices[0]
    page.click(f"#trail a:text('#{first}')")
    page.wait_for_url(f"**/ui/entries/{first}")
    entry = world.api(f"/v1/entries/{first}")
    assert page.inner_text("#proof").strip() == entry["tlog_proof"].strip()
    assert page.inner_text("#proof").startswith("c2sp.org/tlog-proof@v1")
    leaf = hashlib.sha256(b"\x00" + base64.b64decode(entry["entry"])).hexdigest()
    assert page.inner_text("#leaf-hash") == leaf
    assert json.loads(page.inner_text("#tx"))["type"].startswith("model.")
    shot(page, world, "entry")

    page.goto("/ui/audit?since=not-a-time")
    assert "since" in page.inner_text("#error-message")


def test_the_audit_trail_leaves_out_types(page: Any, world: World) -> None:
    login(page, world, "carol")
    page.goto("/ui/audit")
    every = set(column(page, "#trail", "type"))
    assert {"model.approve", "dataset.register"} <= every
    page.fill("input[name=exclude]", "model.approve, dataset.")
    page.click("#filter-submit")
    page.wait_for_url("**exclude=**")
    types = set(column(page, "#trail", "type"))
    assert types and not any(t == "model.approve" or t.startswith("dataset.") for t in types)
    assert "model.deploy" in types
    assert page.locator("input[name=exclude]").input_value() == "model.approve, dataset."
    shot(page, world, "audit-excluding")
    # the link that hides inference receipt batches keeps the other exclusions
    page.click("#hide-batches")
    assert page.locator("input[name=exclude]").input_value() == (
        "model.approve, dataset., inference.batch"
    )
    assert page.locator("#hide-batches").count() == 0
    # the API's trail takes the same exclusions, repeated
    path = "/v1/audit?exclude=model.&exclude=dataset.attest&limit=1000"
    listed = {e["type"] for e in world.api(path)["result"]}
    assert listed and not any(t.startswith("model.") or t == "dataset.attest" for t in listed)
    assert "dataset.register" in listed
    headers = {"Authorization": f"Bearer {world.tokens['carol']}"}
    many = "&".join(f"exclude=t{i}" for i in range(21))
    r = httpx.get(f"{world.url}/v1/audit?{many}", headers=headers, timeout=120)
    assert r.status_code == 400 and "at most 20" in r.text
    assert page.goto("/ui/audit?exclude=" + "x" * 129).status == 400  # type: ignore[union-attr]


def test_auditor_verifies_files(page: Any, world: World, tmp_path: Path) -> None:
    login(page, world, "carol")
    page.goto("/ui/verify")
    page.set_input_files("#verify-file", str(world.files["v2_weights"]))
    page.click("#verify-submit")
    assert page.inner_text("#verdict").startswith("Registered")
    matches = page.inner_text("#matches")
    assert "fraud@2" in matches and "weights.bin" in matches
    digest = hashlib.sha256(world.files["v2_weights"].read_bytes()).hexdigest()
    assert page.inner_text("#verified-digest") == f"sha256:{digest}"
    assert "c2sp.org/tlog-proof@v1" in page.locator("#matches pre").first.text_content()
    shot(page, world, "verify-registered")

    stranger = _write(tmp_path / "random.bin", secrets.token_bytes(4096))
    page.goto("/ui/verify")
    page.set_input_files("#verify-file", str(stranger))
    page.click("#verify-submit")
    assert page.inner_text("#verdict").startswith("Not registered")
    shot(page, world, "verify-unknown")

    artifact = world.api("/v1/models/fraud?version=1")["result"]["artifact"]["digest"]
    page.goto("/ui/verify")
    page.fill("#verify-digest", artifact)
    page.click("#verify-submit")
    assert "fraud@1" in page.inner_text("#matches")
    assert "the whole artifact" in page.inner_text("#matches")

    # the server's body limit (8 MiB by default) caps what it will hash
    big = {"name": "big.bin", "mimeType": "application/octet-stream", "buffer": bytes(9 << 20)}
    assert page.request.post("/ui/verify", multipart={"file": big}).status == 413


def test_annex_iv_exports(page: Any, world: World) -> None:
    login(page, world, "carol")
    page.goto("/ui/models/fraud/versions/2")
    with page.expect_download() as pdf:
        page.click("#annex-pdf")
    pdf_path = world.artifacts / "annex-iv-fraud-v2.pdf"
    pdf.value.save_as(pdf_path)
    assert pdf_path.read_bytes().startswith(b"%PDF")
    response = page.request.get("/ui/models/fraud/annex-iv.json?version=2")
    assert response.ok and response.headers["content-type"].startswith("application/json")
    json.loads(response.body())
    page.click("#annex-html")
    page.wait_for_url("**/annex-iv.html?version=2")
    assert "fraud" in page.content()
    shot(page, world, "annex-iv")
    cited = page.locator("a.cite[href^='entries/']").first
    index = cited.get_attribute("href").split("/")[1]
    cited.click()
    page.wait_for_url(f"**/ui/entries/{index}")
    assert page.inner_text("h1").startswith(f"Entry #{index}")


# -- approving ------------------------------------------------------------------------


def _download_draft(page: Any, path: Path, env: str, role: str, actor: str, comment: str) -> Path:
    page.fill("#draft-form input[name=env]", env)
    page.fill("#draft-form input[name=role]", role)
    page.fill("#draft-form input[name=comment]", comment)
    page.fill("#draft-form input[name=actor]", actor)
    with page.expect_download() as download:
        page.click("#draft-download")
    download.value.save_as(path)
    return path


def test_approvers_sign_a_draft_offline_and_upload_it(
    page: Any, world: World, tmp_path: Path
) -> None:
    login(page, world, "risk")
    page.goto("/ui/models/fraud/versions/2")
    draft = _download_draft(
        page, tmp_path / "risk.json", "production", "risk", "risk", "holdout looks fine"
    )
    unsigned = json.loads(draft.read_text())
    assert unsigned["payloadType"] == "application/vnd.modelchain.tx+json"
    assert unsigned["signatures"] == []
    run_cli(world.env, "tx", "sign", str(draft), "--as", "risk", "--ledger", str(world.ledger))
    page.set_input_files("#envelope", str(draft))
    page.click("#upload-submit")
    assert page.inner_text("#result") == "Accepted"
    assert page.inner_text("#signed-by") == "risk"
    shot(page, world, "approval-accepted")
    page.goto("/ui/models/fraud/versions/2")
    assert "risk (bank)" in column(page, "#approvals", "signer")

    # the vendor's approver does not qualify under the production approval policy
    page.goto("/ui/models/fraud/versions/2")
    draft = _download_draft(page, tmp_path / "lead.json", "production", "ml-lead", "lead", "")
    run_cli(world.env, "tx", "sign", str(draft), "--as", "lead", "--ledger", str(world.ledger))
    page.set_input_files("#envelope", str(draft))
    page.click("#upload-submit")
    assert page.inner_text("#result") == "Rejected"
    reason = page.inner_text("#reason")
    assert "policy_denied" in reason and "model.approve:production" in reason
    assert APPROVE_POLICY in reason
    shot(page, world, "approval-rejected")

    # an unsigned draft, or one about another version, is refused before the log
    page.goto("/ui/models/fraud/versions/2")
    draft = _download_draft(page, tmp_path / "u.json", "production", "risk", "risk", "")
    page.set_input_files("#envelope", str(draft))
    page.click("#upload-submit")
    assert "no signatures yet" in page.inner_text("#error-message")
    page.goto("/ui/models/fraud/versions/1")
    page.set_input_files("#envelope", str(tmp_path / "lead.json"))
    page.click("#upload-submit")
    assert "not a decision on fraud version 1" in page.inner_text("#error-message")


def test_forms_are_shown_only_to_those_who_can_use_them(page: Any, world: World) -> None:
    # carol is an auditor: no approval role, so no approval form (nor a custodial one)
    login(page, world, "carol")
    page.goto("/ui/models/fraud/versions/2")
    assert page.locator("#approve, #draft-form, #upload-form, #custodial").count() == 0
    assert page.locator("#approve-login").count() == 0
    assert page.locator("main form").count() == 0
    shot(page, world, "version-2-auditor")
    # risk holds approver:risk: the forms, with the role filled in
    login(page, world, "risk")
    page.goto("/ui/models/fraud/versions/2")
    assert page.locator("#draft-form").count() == 1 and page.locator("#upload-form").count() == 1
    assert page.locator("#draft-form input[name=role]").input_value() == "risk"
    assert page.locator("#custodial").count() == 0  # the server holds no key for risk


def _set_custodial_policy(world: World) -> None:
    """Two admins of different organisations sign the policy change, through the API."""
    s = world.signers
    with mc.open(world.ledger, readonly=True) as led:
        tx = led.transaction(
            "policy.set",
            {
                "action": "custodial:model.approve",
                "rule": CUSTODIAL_RULE,
                "description": "the server may approve for bank members, in staging only",
            },
            "alice",
        )
    envelope = tx.sign(s["alice"]).with_signature(s["dave"])
    ack = httpx.post(world.url + "/v1/entries", content=envelope.to_bytes(), timeout=120)
    assert ack.status_code == 200 and ack.json()["outcome"]["result"] == "accepted", ack.text


def test_custodial_approval_needs_a_policy(page: Any, world: World) -> None:
    login(page, world, "carol")  # read scope: nothing custodial is offered
    page.goto("/ui/models/fraud/versions/2")
    assert page.locator("#custodial").count() == 0

    login(page, world, "sam")
    page.goto("/ui/models/fraud/versions/2")
    assert "no policy" in page.inner_text("#custodial-off")
    assert page.locator("#custodial-form").count() == 0
    csrf = page.locator("#upload-form input[name=csrf]").get_attribute("value")
    url = "/ui/models/fraud/versions/2/approve/custodial"
    form = {"csrf": csrf, "env": "staging", "role": "compliance", "comment": "ok"}
    refused = page.request.post(url, form=form)
    assert refused.status == 403
    assert "no policy is set for custodial:model.approve" in refused.text()
    assert page.request.post(url, form={**form, "csrf": "forged"}).status == 403

    _set_custodial_policy(world)
    page.reload()
    assert CUSTODIAL_RULE in page.inner_text("#custodial")
    page.fill("#custodial-form input[name=env]", "staging")
    page.fill("#custodial-form input[name=role]", "compliance")
    page.fill("#custodial-form input[name=comment]", "canary passed")
    page.click("#custodial-submit")
    assert page.inner_text("#result") == "Accepted"
    assert "sam" in page.inner_text("#signed-by")
    shot(page, world, "custodial-accepted")
    approvals = world.api("/v1/models/fraud?version=2")["result"]["approvals"]
    mine = [a for a in approvals if a["by"] == "sam" and a["env"] == "staging"]
    assert len(mine) == 1 and "custodial signature" in mine[0]["comment"]

    # the rule allows staging only: production is refused and nothing is signed
    size = world.api("/v1/ledger")["size"]
    page.goto("/ui/models/fraud/versions/2")
    page.fill("#custodial-form input[name=env]", "production")
    page.click("#custodial-submit")
    assert "custodial:model.approve v1 denies it" in page.inner_text("#error-message")
    assert world.api("/v1/ledger")["size"] == size


# -- hostile input ----------------------------------------------------------------------


def test_hostile_text_is_shown_escaped(page: Any, world: World) -> None:
    login(page, world, "carol")
    page.goto("/ui/models/fraud/versions/2")
    assert HOSTILE_METRIC in page.inner_text("#evaluations")
    assert HOSTILE_COMMENT in page.inner_text("#approvals")
    assert page.locator("#evaluations script, #approvals script").count() == 0
    page.goto("/ui/datasets/transactions")
    assert page.inner_text("#description") == HOSTILE_DESCRIPTION
    assert page.locator("#description img").count() == 0
    response = page.goto("/ui/models/%3Cscript%3Ealert(1)%3C%2Fscript%3E")
    assert response is not None and response.status == 404
    assert "<script>alert(1)</script>" in page.inner_text("#error-message")
    page.goto("/ui/audit?actor=%3Cscript%3Ealert(2)%3C%2Fscript%3E")
    assert page.locator("input[name=actor]").input_value() == "<script>alert(2)</script>"
    shot(page, world, "hostile")
    # the page fixture asserts that no dialog opened


# Words of an element's text that the browser split across lines.
BROKEN_WORDS_JS = """el => {
  const broken = [];
  const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (const m of node.data.matchAll(/\\S+/g)) {
      const range = document.createRange();
      range.setStart(node, m.index);
      range.setEnd(node, m.index + m[0].length);
      const tops = new Set(Array.from(range.getClientRects(), r => Math.round(r.top)));
      if (tops.size > 1) broken.push(m[0]);
    }
  }
  return broken;
}"""


def test_policies_wrap_between_words(page: Any, world: World) -> None:
    login(page, world, "carol")
    page.set_viewport_size({"width": 900, "height": 900})
    page.goto("/ui/policies")
    rules = page.locator("#policies td.rule")
    assert rules.count() >= 3
    wrapped = 0
    for i in range(rules.count()):
        cell = rules.nth(i)
        assert cell.evaluate(BROKEN_WORDS_JS) == [], cell.inner_text()
        lines = cell.evaluate("el => el.getClientRects()[0].height") / 16
        wrapped += lines > 1.5
    assert wrapped >= 1  # the test means something only if some rule wraps at all
    shot(page, world, "policies")


def test_error_pages_know_who_is_signed_in(page: Any, world: World) -> None:
    login(page, world, "carol")
    response = page.goto("/ui/models/no-such-model")
    assert response is not None and response.status == 404
    assert page.inner_text("#who") == "carol"
    assert "Log in" not in page.inner_text("header")
    response = page.goto("/ui/no-such-page")
    assert response is not None and response.status == 404
    assert page.inner_text("#who") == "carol"
    shot(page, world, "not-found")


def test_logout_needs_the_csrf_token(page: Any, world: World) -> None:
    login(page, world, "carol")
    assert page.request.post("/ui/logout", form={"csrf": "nope"}).status == 403
    page.click("header form button")
    page.wait_for_url("**/ui/login")
    assert page.goto("/ui/models") is not None
    assert "/ui/login" in page.url


# -- the picture, without a browser ---------------------------------------------------------


def test_lineage_svg_escapes_text_and_links_every_box() -> None:
    lineage = ModelNode(
        "m",
        2,
        "sha256:2",
        5,
        parent=ModelNode("m", 1, "sha256:1", 2),
        run=RunNode(
            "r-1",
            4,
            "alice",
            (
                DatasetNode("d", 3, "sha256:d", 1),
                ExternalInput("<script>alert(1)</script>&\"'", None),
                ModelNode("m", 1, "sha256:1", 2, repeated=True),
            ),
        ),
    )
    svg = lineage_svg(lineage, [{"env": "prod<b>", "current": True}])
    assert "<script>" not in svg and "<b>" not in svg
    tree = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    labels = [t.text for t in tree.iter(f"{ns}text") if t.get("class") == "lineage-label"]
    assert sorted(labels) == sorted(
        ["d@3", "<script>alert(1)</script>…", "m@1", "r-1", "m@2", "prod<b>"]
    )
    hrefs = {a.get("href") for a in tree.iter(f"{ns}a")}
    assert hrefs == {
        "/ui/datasets/d#v3",
        "/ui/models/m/versions/1",
        "/ui/runs/r-1",
        "/ui/models/m/versions/2",
        "/ui/models/m/versions/2#env-prod%3Cb%3E",
    }
    xs = {
        g.get("data-key"): float(g.find(f"{ns}rect").get("x"))  # type: ignore[union-attr]
        for g in tree.iter(f"{ns}g")
    }
    # columns left to right: data and base model, run, model, deployment
    assert xs["dataset/d@3"] == xs["model/m@1"] < xs["run/r-1"] < xs["model/m@2"]
    assert xs["model/m@2"] < xs["deployment/prod<b>"]


# -- where a version stands, without a server -------------------------------------------------


def test_a_versions_standing_puts_revocation_first_and_serving_before_history() -> None:
    def decision(env: str, by: str) -> dict[str, Any]:
        return {"env": env, "by": by, "role": "risk", "index": 1}

    records = [
        {"version": 5, "revoked": {"by": "dave", "index": 9, "reason": "leak"}},
        {"version": 4},  # rolled back from staging, then deployed there again
        {"version": 3, "approvals": [decision("production", "risk")]},
        {"version": 2, "rejections": [decision("production", "sam")]},
        {"version": 1, "rejections": [decision("staging", "sam")]},
        {"version": 0},
    ]
    records[4]["approvals"] = [decision("production", "risk")]
    history = [
        {"env": "staging", "action": "deploy", "from": None, "to": 4, "index": 2},
        {"env": "staging", "action": "rollback", "from": 4, "to": None, "index": 3},
        {"env": "staging", "action": "deploy", "from": None, "to": 4, "index": 4},
        {"env": "prod", "action": "deploy", "from": None, "to": 5, "index": 5},
        {"env": "prod", "action": "rollback", "from": 5, "to": None, "index": 9},
    ]
    current = {"staging": {"version": 4}, "prod": None}
    found = standings(records, history, current)
    assert [s.state for s in found] == [
        "revoked",
        "serving",
        "approved",
        "rejected",
        "approved",  # an approval for one environment, a rejection for another
        "registered",
    ]
    assert found[0].rolled_back[0]["index"] == 9 and found[0].serving == ()
    assert found[1].serving == ("staging",) and len(found[1].rolled_back) == 1
    assert [s.good for s in found] == [False, True, True, False, True, False]


def test_approvals_go_stale_by_age_or_by_a_rollback_from_their_environment() -> None:
    def approval(env: str, index: int, time: int) -> dict[str, Any]:
        return {"env": env, "by": "risk", "role": "risk", "index": index, "time": time}

    records = [
        {"version": 2, "approvals": [approval("prod", 1, 1000)]},  # expired
        {"version": 1, "approvals": [approval("staging", 2, 5000), approval("prod", 4, 5000)]},
    ]
    history = [
        {"env": "staging", "action": "deploy", "from": None, "to": 1, "index": 3},
        {"env": "staging", "action": "rollback", "from": 1, "to": None, "index": 5},
    ]
    current: dict[str, Any] = {"staging": None}
    old, rolled = standings(records, history, current, now=6000, approval_ttl=4000)
    assert old.stale == {1: "expired"} and old.counting == () and old.state == "stale"
    assert not old.good
    assert rolled.stale == {2: "before rollback at entry 5"}  # prod's approval still counts
    assert [a["index"] for a in rolled.counting] == [4]
    # before contract-set version 5 (no approval period) nothing goes stale
    old, rolled = standings(records, history, current, now=6000, approval_ttl=None)
    assert old.stale == {} and old.state == "approved"


def test_the_model_and_version_pages_mark_stale_approvals(tmp_path: Path) -> None:
    now = [1_800_000_000_000]
    day = 24 * 60 * 60 * 1000
    people = {
        "dave": ("bank", ("admin",)),
        "risk": ("bank", ("approver", "approver:risk")),
        "ops": ("bank", ("deployer",)),
    }
    members = [Founder(verifier_of(make_signer(n)), o, r) for n, (o, r) in people.items()]
    alice = make_signer("alice")
    risk, ops = make_signer("risk"), make_signer("ops")
    with mc.init(
        tmp_path / "l", ORIGIN, alice, org="bank", members=members, clock=lambda: now[0]
    ) as led:
        assert led.members.approval_ttl is not None
        for n in (1, 2, 3):
            led.models.register("m", _write(tmp_path / f"m{n}.bin", bytes([n])), signer=alice)
        deps = led.deployments
        old = deps.approve("m", 1, "staging", role="risk", signer=risk)
        deps.deploy("m", 1, "staging", signer=ops)
        deps.approve("m", 2, "staging", role="risk", signer=risk)
        deps.deploy("m", 2, "staging", signer=ops)
        rollback = deps.rollback("m", "staging", reason="latency", signer=ops)
        now[0] += led.members.approval_ttl - day  # v1's approval is a day short of expiry
        fresh = deps.approve("m", 3, "staging", role="risk", signer=risk)
        now[0] += 2 * day
        model, v1, v2, v3 = _get(
            led,
            "/ui/models/m",
            "/ui/models/m/versions/1",
            "/ui/models/m/versions/2",
            "/ui/models/m/versions/3",
        )
    for r in (model, v1, v2, v3):
        assert r.status_code == 200, r.text[:300]

    def row(version: int) -> str:
        found = re.search(rf'<tr[^>]*data-version="{version}".*?</tr>', model.text, re.S)
        assert found, model.text[:2000]
        return found.group(0)

    assert "stale (expired)" in row(1) and 'class="state ok">serving<' in row(1)
    assert f"stale (before rollback at entry {rollback.index})" in row(2)
    assert 'class="state bad">withdrawn<' in row(2)
    assert "stale" not in row(3) and 'class="state ok">approved<' in row(3)
    assert "stale (expired)" in v1.text and f"#{old.index}" in v1.text
    assert f"stale (before rollback at entry {rollback.index})" in v2.text
    assert "stale" not in v3.text.split('id="approvals"')[1].split("</table>")[0]
    assert f"#{fresh.index}" in v3.text


def test_a_version_with_only_stale_approvals_is_not_approved(tmp_path: Path) -> None:
    now = [1_800_000_000_000]
    risk = make_signer("risk")
    members = [Founder(verifier_of(risk), "bank", ("approver", "approver:risk"))]
    alice = make_signer("alice")
    with mc.init(
        tmp_path / "l", ORIGIN, alice, org="bank", members=members, clock=lambda: now[0]
    ) as led:
        led.models.register("m", _write(tmp_path / "m.bin", b"m"), signer=alice)
        led.deployments.approve("m", 1, "production", role="risk", signer=risk)
        assert led.members.approval_ttl is not None
        (before,) = _get(led, "/ui/models/m")
        now[0] += led.members.approval_ttl + 1
        (after,) = _get(led, "/ui/models/m")
    assert 'class="state ok">approved<' in before.text and "stale" not in before.text
    assert 'class="state muted">stale<' in after.text and "stale (expired)" in after.text
    assert 'class="state ok">approved<' not in after.text


# -- the custodial gate, without a server -----------------------------------------------------


def test_custodial_decision_needs_a_policy_that_holds(tmp_path: Path) -> None:
    alice, dave, sam = make_signer("alice"), make_signer("dave"), make_signer("sam")
    members = [
        Founder(verifier_of(dave), "bank", ("admin",)),
        Founder(verifier_of(sam), "bank", ("approver", "approver:compliance")),
    ]
    with mc.init(tmp_path / "l", ORIGIN, alice, org="vendor", members=members) as led:
        weights = tmp_path / "m.bin"
        weights.write_bytes(b"m")
        led.models.register("m", weights, signer=alice)

        def decide(env: str, version: int = 1) -> Any:
            body = {"model": "m", "version": version, "env": env, "role": "compliance"}
            draft = led.members.draft("model.approve", {**body, "comment": ""}, "sam")
            return led.policies.test_custodial(draft)

        off = decide("staging")
        assert not off.allowed and off.rule is None and "no policy is set" in off.reason
        led.policies.set("custodial:model.approve", CUSTODIAL_RULE, signers=[alice, dave])
        on = decide("staging")
        assert on.allowed and on.rule == CUSTODIAL_RULE and on.version == 1
        missing = decide("staging", version=2)  # the rules see the version: it must exist
        assert not missing.allowed and "m version 2 is not registered" in missing.reason
        denied = decide("production")
        assert not denied.allowed and "custodial:model.approve v1 denies it" in denied.reason
        led.policies.set("custodial:model.approve", "tx.body.nope == 1", signers=[alice, dave])
        broken = decide("staging")
        assert not broken.allowed and broken.version == 2 and "failed to evaluate" in broken.reason


def test_an_anonymous_reader_is_told_to_log_in_to_approve(tmp_path: Path) -> None:
    alice = make_signer("alice")
    with mc.init(tmp_path / "l", ORIGIN, alice, org="vendor") as led:
        weights = _write(tmp_path / "m.bin", b"m")
        led.models.register("m", weights, signer=alice)
        (anonymous,) = _get(led, "/ui/models/m/versions/1")
    assert anonymous.status_code == 200, anonymous.text[:300]
    html = anonymous.text
    assert 'id="approve-login"' in html and 'href="/ui/login?next=/ui/models/m/versions/1"' in html
    assert 'id="draft-form"' not in html and 'id="upload-form"' not in html


# -- a cluster node ----------------------------------------------------------------------


def _diverging_contracts() -> ContractSet:
    """The default contracts, but an event named 'diverge' is refused: the
    test-only fault that makes a node's root differ from the others'."""
    contracts = default_contracts()
    honest = contracts.execute

    def altered(state: Any, index: int, tx: Transaction, keyids: tuple[str, ...]) -> Any:
        if tx.body.get("event") == "diverge":
            return Outcome.rejected("altered", "this node executes wrongly"), {}
        return honest(state, index, tx, keyids)

    contracts.execute = altered  # type: ignore[method-assign]
    return contracts


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LedgerCluster]:
    """Three nodes in this process (2 of 3 make a checkpoint final); n2
    executes one event differently, and diverges once it is logged."""
    admin = make_signer("alice")
    c = LedgerCluster(
        tmp_path_factory.mktemp("cluster"),
        admin,
        node_contracts={"n2": _diverging_contracts()},
    )
    try:
        for i in range(3):
            c[i].record_event("pipeline.step", {"i": i}, admin)
        c.settle()
        yield c
    finally:
        c.close()


def _get(led: Ledger, *paths: str, reads: str | None = "open") -> list[httpx.Response]:
    """GET ``paths`` from the real app over ``led`` (reads open unless told), in this process."""
    from modelchain.server import ServerConfig, create_app

    app = create_app(led, ServerConfig(reads=reads))

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return [await client.get(p) for p in paths]

    # In a thread of its own: Playwright's sync API keeps an event loop running in this one.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(run())).result()


def _metric(text: str, name: str) -> float:
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")]
    assert len(values) == 1, f"{name} in {text[:2000]}"
    return values[0]


def test_the_nodes_page_shows_the_cluster_from_this_nodes_view(cluster: LedgerCluster) -> None:
    led = cluster[1]
    page, metrics, health = _get(led, "/ui/nodes", "/metrics", "/healthz")
    assert page.status_code == 200, page.text[:300]
    html = page.text
    assert '<a href="/ui/nodes">Nodes</a>' in html and 'id="alarm"' not in html
    assert '<strong id="quorum">2 of 3 (group nodes)</strong>' in html
    assert '<strong id="this-node">n1</strong>' in html
    cosigners = {w.name: w.key for w in cluster.policy.nodes}
    for name in NODE_NAMES:
        row = html.split(f'<tr data-node="{name}"><td class="name">{name}', 1)[1].split("</tr>")[0]
        assert f'<td class="key-id"><code>{cosigners[name].key_id_hex}</code>' in row
        log_key_id = verifier_of(node_signer(name)).key_id_hex
        assert f'<td class="log-key-id"><code>{log_key_id}</code>' in row
    assert html.count('<span class="badge">this node</span>') == 1
    status = led.node.cluster_status()
    assert status is not None
    assert f'<dd id="final-size">{status["final_size"]}</dd>' in html
    assert f'<dd id="node-size">{led.size}</dd>' in html
    assert f'<dd id="applied-revision">{status["applied_revision"]}</dd>' in html
    # The latest final checkpoints, newest first, each with the nodes that
    # cosigned it and when (each cosignature verified under the policy).
    sizes = [int(s) for s in re.findall(r'<tr data-size="(\d+)">', html)]
    stored = [size for size, _ in led.node.store.latest_checkpoints(50)]
    assert sizes == stored[:20] and sizes == sorted(sizes, reverse=True)
    assert sizes[0] == led.node.final_size == led.size
    newest = led.node.store.latest_checkpoints(1)[0][1]
    cosigned = cluster.policy.evaluate(newest).cosigned
    assert len(cosigned) >= 2
    row = html.split(f'<tr data-size="{sizes[0]}">', 1)[1].split("</tr>", 1)[0]
    assert '<td class="log">n1</td>' in row  # this node's copy: its own log signature
    for name, seconds in cosigned.items():
        cell = row.split(f'data-node="{name}">', 1)[1].split("</td>", 1)[0]
        assert human_time(seconds * 1000) + " UTC" in cell
    # Metrics of a cluster node.
    assert _metric(metrics.text, "modelchain_cluster_final_size") == led.node.final_size
    assert _metric(metrics.text, "modelchain_cluster_diverged") == 0
    assert (
        _metric(metrics.text, "modelchain_cluster_applied_revision") == (status["applied_revision"])
    )
    assert health.status_code == 200


def test_a_diverged_node_raises_the_alarm_on_every_page(
    cluster: LedgerCluster, browser: Any
) -> None:
    admin = make_signer("alice")
    cluster[0].record_event("diverge", {}, admin)
    bad = cluster[2]
    wait_for("n2 to diverge", lambda: bad.node.divergence is not None)
    d = bad.node.divergence
    assert d is not None
    pages = _get(bad, "/ui/", "/ui/nodes", "/ui/members", "/ui/no-such-page", "/ui/login")
    for r in pages[:3]:
        assert r.status_code == 200, r.text[:300]
    for r in pages:
        html = r.text
        assert 'id="alarm"' in html and "This node diverged from the cluster" in html
        assert f'<span id="alarm-size">{d.size}</span>' in html
        assert '<span id="alarm-nodes">n0, n1</span>' in html
        assert d.theirs.hex()[:16] in html and d.mine.hex()[:16] in html
        todo = html.split('<p id="alarm-todo">', 1)[1].split("</p>", 1)[0]
        assert "stop this node" in todo and "keep its data directory" in todo
        assert "re-bootstrap it from a peer" in todo and "README" in todo
    assert '<span class="bad">stopped</span>' in pages[1].text
    # Whoever may not read the ledger learns only that the node stopped.
    (login,) = _get(bad, "/ui/login", reads=None)
    assert "This node diverged from the cluster" in login.text and "stop this node" in login.text
    assert 'id="alarm-nodes"' not in login.text and d.theirs.hex()[:16] not in login.text
    metrics, health = _get(bad, "/metrics", "/healthz")
    assert _metric(metrics.text, "modelchain_cluster_diverged") == 1
    assert _metric(metrics.text, "modelchain_writes_stopped") == 1
    assert _metric(metrics.text, "modelchain_cluster_final_size") == bad.node.final_size < d.size
    assert health.status_code == 503 and health.json()["error"]["code"] == "node_stopped"
    # The others go on, without an alarm.
    good, good_health = _get(cluster[0], "/ui/", "/healthz")
    assert 'id="alarm"' not in good.text and good_health.status_code == 200

    # In a real browser: the nodes page of the diverged node, alarm and all.
    artifacts = Path(os.environ.get("MODELCHAIN_ARTIFACTS") or bad.path.parent / "artifacts")
    artifacts.mkdir(parents=True, exist_ok=True)
    with serving(bad) as url:
        context = browser.new_context(base_url=url)
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        try:
            p = context.new_page()
            p.goto("/ui/nodes")
            assert "This node diverged" in p.inner_text("#alarm")
            assert p.inner_text("#this-node") == "n2"
            assert p.locator("#nodes tbody tr").count() == 3
            assert p.locator("#checkpoints tbody tr").count() >= 1
            p.screenshot(path=str(artifacts / "cluster-nodes-diverged.png"), full_page=True)
        finally:
            context.close()


def test_a_single_node_ledger_has_no_nodes_page(world: World) -> None:
    headers = {"Authorization": f"Bearer {world.tokens['carol']}"}
    overview = httpx.get(world.url + "/ui/", headers=headers, timeout=120)
    assert overview.status_code == 200
    assert "/ui/nodes" not in overview.text and 'id="alarm"' not in overview.text
    nodes = httpx.get(world.url + "/ui/nodes", headers=headers, timeout=120)
    assert nodes.status_code == 200 and 'id="not-cluster"' in nodes.text
    assert "not a cluster" in nodes.text
    metrics = httpx.get(world.url + "/metrics", headers=headers, timeout=120).text
    assert "modelchain_cluster_" not in metrics
    assert "modelchain_writes_stopped 0.0" in metrics
