"""An implementation we did not write reads our formats: Go's golang.org/x/mod
(sumdb/note, sumdb/tlog) opens a real ledger's checkpoints, checks its
cosignatures, inclusion and consistency proofs and tlog-proofs, and rebuilds
its tiles.

The Go side is tests/interop/noteverify (its input is described there); it is
built in GOPATH mode against Debian's golang-golang-x-mod-dev, offline.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ORIGIN, make_signer

import modelchain as mc
from modelchain.core.b64 import b64
from modelchain.core.checkpoint import Checkpoint, cosign_note
from modelchain.core.identity import COSIGNATURE_V1, verifier_of
from modelchain.core.note import Note, NoteSignature, parse_note
from modelchain.ledger.ledger import Founder

GO = shutil.which("go")
GOPATH = Path("/usr/share/gocode")
XMOD = GOPATH / "src/golang.org/x/mod/sumdb"
if GO is None or not XMOD.is_dir():
    pytest.skip(
        "needs Go and golang.org/x/mod in GOPATH (Debian: golang-go golang-golang-x-mod-dev)",
        allow_module_level=True,
    )

SOURCE = Path(__file__).parent / "interop" / "noteverify"
alice, bob = make_signer("alice"), make_signer("bob")
WITNESSES = [make_signer(f"w{i}.example.org") for i in range(2)]
T = 1_800_000_000
POLICY = (
    "".join(f"witness w{i} {verifier_of(w, COSIGNATURE_V1)}\n" for i, w in enumerate(WITNESSES))
    + "group all 2 w0 w1\n"
    + "quorum all\n"
)
# Old checkpoints for consistency proofs: a power of two, tile edges and odd sizes.
OLD_SIZES = (1, 5, 64, 255, 256, 257, 513)
SIZE = 700
INDEXES = (0, 1, 4, 255, 256, 511, 512, 600, SIZE - 1)
RECEIPTS = (0, 300, SIZE - 1)


@pytest.fixture(scope="module")
def noteverify(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("go")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(out),
        "GO111MODULE": "off",
        "GOPATH": str(GOPATH),
        "GOPROXY": "off",
        "GOFLAGS": "",
        "GOCACHE": str(out / "cache"),
        "CGO_ENABLED": "0",
    }
    binary = out / "noteverify"
    assert GO is not None
    proc = subprocess.run(
        [GO, "build", "-o", str(binary), "."],
        cwd=SOURCE,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return binary


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The Go program's input for a cosigned ledger of SIZE entries, every part valid."""
    path = tmp_path_factory.mktemp("ledger")
    members = [Founder(verifier_of(bob), "acme", ("trainer",))]
    with mc.init(
        path / "ledger", ORIGIN, alice, org="acme", members=members, checkpoint_policy=POLICY
    ) as led:
        old_notes = []
        for size in OLD_SIZES:
            envs = [
                led.transaction("event.record", {"event": "e", "data": i}, "bob").sign(bob)
                for i in range(led.size, size)
            ]
            led.submit_many(envs)
            note = led.checkpoint()
            assert Checkpoint.from_text(parse_note(note).text).size == size
            old_notes.append(note)
        envs = [
            led.transaction("event.record", {"event": "e", "data": i}, "bob").sign(bob)
            for i in range(led.size, SIZE)
        ]
        led.submit_many(envs)
        latest = parse_note(led.checkpoint())
        for w in WITNESSES:
            latest = cosign_note(latest, w, T)
        led.add_cosignatures(latest)
        led.export_tiles(path / "www")
        www = path / "www"
        served = (www / "checkpoint").read_bytes()
        assert len(parse_note(served).signatures) == 3
        tiles = {
            p.relative_to(www).as_posix(): b64(p.read_bytes())
            for p in sorted(www.rglob("*"))
            if p.is_file() and p.name != "checkpoint"
        }
        yield {
            "log_key": str(led.log_key),
            "checkpoint": served.decode(),
            "cosigners": [str(verifier_of(w, COSIGNATURE_V1)) for w in WITNESSES],
            "inclusion": [
                {
                    "index": i,
                    "entry": b64(led.entry_bytes(i)),
                    "proof": [b64(h) for h in led.inclusion_proof(i, SIZE)],
                }
                for i in INDEXES
            ],
            "consistency": [
                {
                    "old_checkpoint": n.decode(),
                    "proof": [b64(h) for h in led.consistency_proof(s, SIZE)],
                }
                for s, n in zip(OLD_SIZES, old_notes, strict=True)
            ],
            "tlog_proofs": [
                {"entry": b64(led.entry_bytes(i)), "text": led.tlog_proof(i).to_text()}
                for i in RECEIPTS
            ],
            "tiles": tiles,
        }


def _run(binary: Path, data: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary)], input=json.dumps(data), capture_output=True, text=True, timeout=120
    )


def test_x_mod_accepts_the_ledgers_formats(noteverify: Path, good: dict[str, Any]) -> None:
    proc = _run(noteverify, good)
    assert proc.returncode == 0, proc.stderr
    cp = Checkpoint.from_text(parse_note(good["checkpoint"]).text)
    lines = proc.stdout.splitlines()
    assert lines[0] == f"checkpoint origin={ORIGIN} size={SIZE} root={b64(cp.root)}"
    assert lines[1:3] == [f"cosignature {w.name} time={T} ok" for w in WITNESSES]
    # tiles for 700 entries: level 0 has 000, 001 and 002.p/188; level 1 has 000.p/2.
    assert lines[3] == f"tiles 4 hash tiles, 3 entry bundles, {SIZE} entries ok"
    assert lines[4:] == [
        *(f"inclusion {i} in {SIZE} ok" for i in INDEXES),
        *(f"consistency {s} -> {SIZE} ok" for s in OLD_SIZES),
        *(f"tlog-proof {i} in {SIZE} ok" for i in RECEIPTS),
    ]


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


def _flip_b64(text: str, at: int) -> str:
    return b64(_flip(base64.b64decode(text), at))


def _replace_signature(note_text: str, name: str, change: Callable[[bytes], bytes]) -> str:
    note = parse_note(note_text)
    sigs = tuple(
        NoteSignature(s.name, s.key_id, change(s.signature)) if s.name == name else s
        for s in note.signatures
    )
    return Note(note.text, sigs).to_bytes().decode()


def _other_size(d: dict[str, Any]) -> None:
    d["checkpoint"] = d["checkpoint"].replace(f"\n{SIZE}\n", f"\n{SIZE + 1}\n", 1)


def _other_log_key(d: dict[str, Any]) -> None:
    d["log_key"] = str(verifier_of(make_signer(ORIGIN)))


def _bad_log_signature(d: dict[str, Any]) -> None:
    d["checkpoint"] = _replace_signature(d["checkpoint"], ORIGIN, lambda s: _flip(s, 10))


def _bad_cosignature(d: dict[str, Any]) -> None:
    d["checkpoint"] = _replace_signature(d["checkpoint"], "w1.example.org", lambda s: _flip(s, 40))


def _cosignature_time(d: dict[str, Any]) -> None:
    # The timestamp is signed: a cosignature moved to another time does not verify.
    d["checkpoint"] = _replace_signature(d["checkpoint"], "w0.example.org", lambda s: _flip(s, 7))


def _cosigner_missing(d: dict[str, Any]) -> None:
    d["cosigners"].append(str(verifier_of(make_signer("w9.example.org"), COSIGNATURE_V1)))


def _inclusion_path(d: dict[str, Any]) -> None:
    p = d["inclusion"][3]["proof"]
    p[2] = _flip_b64(p[2], 0)


def _inclusion_index(d: dict[str, Any]) -> None:
    d["inclusion"][4]["index"] += 1


def _inclusion_entry(d: dict[str, Any]) -> None:
    d["inclusion"][0]["entry"] = _flip_b64(d["inclusion"][0]["entry"], 5)


def _inclusion_short(d: dict[str, Any]) -> None:
    d["inclusion"][1]["proof"].pop()


def _consistency_path(d: dict[str, Any]) -> None:
    p = d["consistency"][1]["proof"]
    p[0] = _flip_b64(p[0], 31)


def _consistency_old_size(d: dict[str, Any]) -> None:
    # A proof from 255 offered as one from 256.
    d["consistency"][3]["proof"] = d["consistency"][4]["proof"]


def _tlog_proof_index(d: dict[str, Any]) -> None:
    d["tlog_proofs"][1]["text"] = d["tlog_proofs"][1]["text"].replace("index 300", "index 301")


def _tlog_proof_checkpoint(d: dict[str, Any]) -> None:
    p = d["tlog_proofs"][2]
    p["text"] = p["text"].replace(f"\n{SIZE}\n", f"\n{SIZE + 1}\n", 1)


def _tlog_proof_cosignature(d: dict[str, Any]) -> None:
    p = d["tlog_proofs"][0]
    head, sep, note = p["text"].partition("\n\n")
    p["text"] = head + sep + _replace_signature(note, "w0.example.org", lambda s: _flip(s, 9))


def _hash_tile(d: dict[str, Any]) -> None:
    d["tiles"]["tile/0/001"] = _flip_b64(d["tiles"]["tile/0/001"], 32 * 17)


def _upper_tile(d: dict[str, Any]) -> None:
    d["tiles"]["tile/1/000.p/2"] = _flip_b64(d["tiles"]["tile/1/000.p/2"], 40)


def _missing_tile(d: dict[str, Any]) -> None:
    del d["tiles"]["tile/0/002.p/188"]


def _entry_bundle(d: dict[str, Any]) -> None:
    path = "tile/entries/001"
    d["tiles"][path] = _flip_b64(d["tiles"][path], 100)


def _x_mod_tile_path(d: dict[str, Any]) -> None:
    # x/mod's spelling with the height is not a C2SP path.
    d["tiles"]["tile/8/0/000"] = d["tiles"].pop("tile/0/000")


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (_other_size, "checkpoint: note.Open: invalid signature for key " + ORIGIN),
        (_other_log_key, "checkpoint: note.Open: note has no verifiable signatures"),
        (_bad_log_signature, "checkpoint: note.Open: invalid signature for key " + ORIGIN),
        (_bad_cosignature, "checkpoint: cosignature by w1.example.org (time 1800000000) does not"),
        (_cosignature_time, "checkpoint: cosignature by w0.example.org (time 1800000001) does not"),
        (_cosigner_missing, "checkpoint: cosigner w9.example.org+"),
        (_inclusion_path, "inclusion proof for entry 255 in size 700: tlog.CheckRecord"),
        (_inclusion_index, "inclusion proof for entry 257 in size 700: tlog.CheckRecord"),
        (_inclusion_entry, "inclusion proof for entry 0 in size 700: tlog.CheckRecord"),
        (_inclusion_short, "inclusion proof for entry 1 in size 700: tlog.CheckRecord"),
        (_consistency_path, "consistency proof 5 -> 700: tlog.CheckTree"),
        (_consistency_old_size, "consistency proof 255 -> 700: tlog.CheckTree"),
        (_tlog_proof_index, "tlog-proof 1 (entry 301 in size 700): tlog.CheckRecord"),
        (_tlog_proof_checkpoint, "tlog-proof 2: checkpoint: note.Open: invalid signature"),
        (
            _tlog_proof_cosignature,
            "tlog-proof 0: checkpoint: cosignature by w0.example.org (time 1800000000) does not",
        ),
        (_hash_tile, "hash tile tile/0/001 differs from the one x/mod builds"),
        (_upper_tile, "hash tile tile/1/000.p/2 differs from the one x/mod builds"),
        (_missing_tile, "hash tile tile/0/002.p/188 is missing"),
        (_entry_bundle, "root of the 700 entries in the bundles is"),
        (_x_mod_tile_path, "tlog.ParseTilePath"),
    ],
    ids=lambda v: v.__name__.strip("_") if callable(v) else "",
)
def test_x_mod_rejects_a_tampered_part(
    noteverify: Path, good: dict[str, Any], tamper: Callable[[dict[str, Any]], None], message: str
) -> None:
    data = json.loads(json.dumps(good))
    tamper(data)
    assert data != good
    proc = _run(noteverify, data)
    assert proc.returncode == 1, proc.stdout
    assert proc.stderr.startswith("noteverify: FAIL: "), proc.stderr
    assert message in proc.stderr, proc.stderr
