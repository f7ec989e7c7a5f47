"""The dashboard's view of encrypted artifacts (ADR 17): a model's and a dataset's
erasures, how versions are stored, the grants in force and every grant, revocation and
key request, accepted or refused, as auditors read them; hostile input is a 4xx."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from conftest import ORIGIN, PEOPLE, founders, make_signer

import modelchain as mc
from modelchain.contracts.policy import DEFAULT_POLICIES
from modelchain.errors import RejectedError
from modelchain.keys.wrap import DataKeyStore, FileKek
from modelchain.ledger.artifacts import KeyService
from modelchain.server import ServerConfig, create_app
from modelchain.storage.artifacts import open_store

HOSTILE = "<script>alert('purpose')</script>"


@dataclass
class World:
    led: mc.Ledger
    at: dict[str, int]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("dash-artifacts")
    s = make_signer
    led = mc.init(
        root / "l",
        ORIGIN,
        s("alice"),
        org="acme",
        members=founders(PEOPLE),
        policies={"artifact.erase": DEFAULT_POLICIES["artifact.erase"]},
        home=root / "home",
    )
    at: dict[str, int] = {}
    keys = KeyService(FileKek(root / "k.kek"), (DataKeyStore(root / "dk"),))
    store = open_store(root / "store")
    w1, w2, d = root / "w1.bin", root / "w2.bin", root / "d.csv"
    w1.write_bytes(b"weights-1")
    w2.write_bytes(b"weights-2")
    d.write_text("a\n1\n")
    led.models.register("m", w1, signer=s("bob"))
    led.models.register("m", w2, signer=s("bob"))
    at["store"] = led.artifacts.encrypt("model", "m", 2, w2, store, keys, signer=s("bob")).index
    with pytest.raises(RejectedError) as refused:
        led.artifacts.fetch_key("model", "m", 2, keys, purpose=HOSTILE, signer=s("mon"))
    at["refused"] = refused.value.index
    at["grant"] = led.artifacts.grant("model", "m", "ops", version=2, signer=s("steward")).index
    led.artifacts.fetch_key("model", "m", 2, keys, purpose="scoring", signer=s("ops"))
    at["fetch"] = led.size - 1
    at["revoke"] = led.artifacts.revoke("model", "m", "ops", signer=s("steward")).index
    at["grant_lead"] = led.artifacts.grant("model", "m", "lead", signer=s("steward")).index
    with pytest.raises(RejectedError) as refused:
        led.artifacts.erase("model", "m", 1, "alone", signers=[s("steward")])
    at["erase_refused"] = refused.value.index
    at["erase"] = led.artifacts.erase(
        "model", "m", 1, "licence withdrawn <b>", signers=[s("steward"), s("dave")]
    ).index
    led.datasets.register("d", d, signer=s("steward"))
    at["data_grant"] = led.artifacts.grant("dataset", "d", "bob", signer=s("steward")).index
    with pytest.raises(RejectedError) as refused:
        led.artifacts.fetch_key("dataset", "d", 1, keys, signer=s("bob"))
    at["data_refused"] = refused.value.index
    try:
        yield World(led, at)
    finally:
        led.close()


def _get(led: mc.Ledger, *paths: str) -> list[httpx.Response]:
    app = create_app(led, ServerConfig(reads="open"))

    async def get() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return [await client.get(p) for p in paths]

    return asyncio.run(get())


def _part(page: str, start: str, end: str = "</table>") -> str:
    assert start in page, start
    return page.split(start, 1)[1].split(end, 1)[0]


def _rows(table: str) -> dict[int, str]:
    out = {}
    for row in table.split("<tr ")[1:]:
        if "data-index=" in row:
            out[int(row.split('data-index="', 1)[1].split('"', 1)[0])] = row
    return out


def test_the_model_page_shows_erasure_storage_and_every_key_event(world: World) -> None:
    (page,) = _get(world.led, "/ui/models/m")
    assert page.status_code == 200, page.text[:500]
    text, at = page.text, world.at
    erased = _part(text, 'id="erasures">', "</dl>")
    assert "steward, dave" in erased and f'href="/ui/entries/{at["erase"]}"' in erased
    assert "licence withdrawn &lt;b&gt;" in erased and "<b>" not in erased
    versions = _part(text, 'id="versions">')
    v1 = versions.split('data-version="1"', 1)[1].split("</tr>", 1)[0]
    v2 = versions.split('data-version="2"', 1)[1].split("</tr>", 1)[0]
    assert "erased" in v1 and "encrypted" in v2 and "erased" not in v2
    stored = _part(text, 'id="stored">')
    assert "tink-streaming-aes256-gcm-hkdf-1mb" in stored and f"#{at['store']}" in stored
    grants = _part(text, 'id="grants">')
    assert "lead" in grants and "every version" in grants and "ops" not in grants
    events = _rows(_part(text, 'id="key-events">'))
    assert set(events) == {
        at["refused"],
        at["grant"],
        at["fetch"],
        at["revoke"],
        at["grant_lead"],
        at["erase_refused"],
    }
    refused = events[at["refused"]]
    assert 'class="rejected"' in refused and "no_grant" in refused and "mon (bank)" in refused
    assert "&lt;script&gt;alert(" in refused and HOSTILE not in text
    assert "accepted" in events[at["fetch"]] and "scoring" in events[at["fetch"]]
    assert "policy_denied" in events[at["erase_refused"]]
    assert "grant revoked" in events[at["revoke"]]


def test_the_model_list_marks_an_erased_version(world: World) -> None:
    (page,) = _get(world.led, "/ui/models")
    assert page.status_code == 200
    rows = page.text.split('<td class="version">')[1:]
    marked = {
        row.split("</a>", 1)[0].rsplit(">v", 1)[1]: "erased" in row.split("</td>")[0]
        for row in rows
    }
    assert marked == {"2": False, "1": True}


def test_a_version_page_reads_as_erased_or_encrypted(world: World) -> None:
    v1, v2 = _get(world.led, "/ui/models/m/versions/1", "/ui/models/m/versions/2")
    assert v1.status_code == v2.status_code == 200
    banner = _part(v1.text, 'id="erased">', "</p>")
    assert "steward, dave" in banner and "can no longer be pulled" in banner
    assert "not recorded as encrypted" in _part(v1.text, 'id="stored">', "</dd>")
    assert 'id="erased"' not in v2.text
    assert "encrypted (tink-streaming" in _part(v2.text, 'id="stored">', "</dd>")


def test_the_dataset_page_shows_its_grants_and_refusals(world: World) -> None:
    (page,) = _get(world.led, "/ui/datasets/d")
    assert page.status_code == 200
    events = _rows(_part(page.text, 'id="key-events">'))
    assert set(events) == {world.at["data_grant"], world.at["data_refused"]}
    assert "not_encrypted" in events[world.at["data_refused"]]
    assert "every version" in _part(page.text, 'id="grants">')


def test_an_entry_about_an_erased_version_says_so(world: World) -> None:
    led, at = world.led, world.at
    v1 = led.models.get("m", 1).index
    v2 = led.models.get("m", 2).index
    erased, kept, refused = _get(
        led, f"/ui/entries/{v1}", f"/ui/entries/{v2}", f"/ui/entries/{at['erase_refused']}"
    )
    assert erased.status_code == kept.status_code == refused.status_code == 200
    banner = _part(erased.text, 'id="erased">', "</p>")
    assert "Model m version 1, which this entry concerns, was erased" in banner
    assert f"#{at['erase']}" in banner and "licence withdrawn &lt;b&gt;" in banner
    assert 'id="erased"' not in kept.text
    assert 'id="erased"' in refused.text  # the refused attempt concerns version 1 too


@pytest.mark.parametrize(
    "path",
    [
        "/ui/models/%00",
        "/ui/models/" + "x" * 5000,
        "/ui/models/%ff%fe",
        "/ui/models/m%2F..%2F..",
        "/ui/models/m/versions/0",
        "/ui/models/m/versions/-1",
        "/ui/models/m/versions/99999999999999999999999",
        "/ui/models/m/versions/%00",
        "/ui/models/m/versions/3",
        "/ui/datasets/%00",
        "/ui/datasets/" + "é" * 3000,
        "/ui/datasets/no-such",
        "/ui/entries/-1",
        "/ui/entries/999999",
        "/ui/entries/" + "9" * 400,
    ],
)
def test_network_input_never_causes_a_500(world: World, path: str) -> None:
    (response,) = _get(world.led, path)
    assert 400 <= response.status_code < 500, (path, response.status_code, response.text[:300])
