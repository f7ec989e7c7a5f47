"""OMS v1.0 bundles, checked against the real model-signing package both ways.

Ours -> theirs: bundles from ``sign_bundle`` must pass ``model_signing``'s Python
API and its ``model_signing verify key`` CLI. Theirs -> ours: bundles from its key
signer must pass ``read_bundle`` + ``verify_against``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import model_signing.hashing
import model_signing.signing
import model_signing.verifying
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from modelchain.artifacts import DEFAULT_IGNORES, hash_path, oms
from modelchain.core import canonical
from modelchain.core.dsse import pae
from modelchain.core.manifest import BLAKE3, SHA256, FileDigest, Manifest
from modelchain.errors import IntegrityError, KeyStoreError, MalformedError, SignatureError

CURVES: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
}


def _write_keys(directory: Path, key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    private, public = directory / "key.pem", directory / "key.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


class Keys:
    def __init__(self, directory: Path, curve: ec.EllipticCurve | None = None) -> None:
        self.private = ec.generate_private_key(curve or ec.SECP256R1())
        self.private_pem, self.public_pem = _write_keys(directory, self.private)
        self.public = oms.load_public_key(self.public_pem.read_bytes())


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return Keys(tmp_path / "keys")


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """A folder with a nested dir, OMS-order traps ('a/b' sorts before 'a.b') and git
    files that model-signing leaves out by default."""
    root = tmp_path / "tiny-model"
    (root / "a").mkdir(parents=True)
    (root / "weights" / "shards").mkdir(parents=True)
    (root / ".git" / "objects").mkdir(parents=True)
    (root / "config.json").write_text('{"layers": 2}\n')
    (root / "a" / "b").write_bytes(b"nested b")
    (root / "a.b").write_bytes(b"dotted a.b")
    (root / "weights" / "shards" / "00001.bin").write_bytes(bytes(range(256)) * 40)
    (root / "weights" / "empty.bin").write_bytes(b"")
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / ".git" / "objects" / "x").write_bytes(b"blob")
    (root / ".gitignore").write_text("*.tmp\n")
    return root


@pytest.fixture
def single(tmp_path: Path) -> Path:
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      " + bytes(64))
    return path


def _ignored(rel: str, ignore: Sequence[str]) -> bool:
    return any(rel == p or rel.startswith(p + "/") for p in ignore)


def manifest_of(path: Path, ignore: Sequence[str] = oms.GIT_IGNORE_PATHS) -> Manifest:
    """Files mode, computed here independently of model-signing and of our hasher."""
    if path.is_file():
        data = path.read_bytes()
        files = [FileDigest(".", len(data), hashlib.sha256(data).hexdigest())]
    else:
        files = []
        for p in path.rglob("*"):
            rel = p.relative_to(path).as_posix()
            if p.is_file() and not _ignored(rel, ignore):
                data = p.read_bytes()
                files.append(FileDigest(rel, len(data), hashlib.sha256(data).hexdigest()))
    return Manifest(name=path.name, algorithm=SHA256, files=tuple(files))


def their_sign(model: Path, private_pem: Path, signature: Path) -> None:
    model_signing.signing.Config().use_elliptic_key_signer(private_key=private_pem).sign(
        model, signature
    )


def their_verify(model: Path, public_pem: Path, signature: Path) -> None:
    model_signing.verifying.Config().use_elliptic_key_verifier(public_key=public_pem).verify(
        model, signature
    )


def their_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "model_signing", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def statement_of(bundle: bytes) -> dict[str, Any]:
    payload = json.loads(bundle)["dsseEnvelope"]["payload"]
    statement: dict[str, Any] = json.loads(base64.b64decode(payload))
    return statement


def resign(
    bundle: bytes,
    key: ec.EllipticCurvePrivateKey,
    change: Callable[[dict[str, Any]], None] = lambda s: None,
    payload_type: str = oms.PAYLOAD_TYPE,
) -> bytes:
    """The bundle with its statement changed and validly signed again, so that only
    the statement checks can reject it."""
    statement = statement_of(bundle)
    change(statement)
    payload = canonical.dumps(statement)
    sig = key.sign(pae(payload_type, payload), ec.ECDSA(hashes_for(key)))
    obj = json.loads(bundle)
    obj["dsseEnvelope"] = {
        "payload": base64.b64encode(payload).decode(),
        "payloadType": payload_type,
        "signatures": [{"sig": base64.b64encode(sig).decode(), "keyid": ""}],
    }
    return json.dumps(obj).encode()


def hashes_for(key: ec.EllipticCurvePrivateKey) -> Any:
    from cryptography.hazmat.primitives import hashes

    return {256: hashes.SHA256(), 384: hashes.SHA384(), 521: hashes.SHA512()}[key.curve.key_size]


# --- the statement and bundle we write ---------------------------------------------------


def test_all_is_explicit() -> None:
    for name in oms.__all__:
        assert hasattr(oms, name), name
    assert sorted(oms.__all__) == oms.__all__


def test_statement_equals_what_model_signing_writes(
    model: Path, keys: Keys, tmp_path: Path
) -> None:
    sig = tmp_path / "theirs.sig"
    their_sign(model, keys.private_pem, sig)
    theirs = statement_of(sig.read_bytes())
    # model-signing writes ignore_paths in set order, which changes from run to run.
    theirs["predicate"]["serialization"]["ignore_paths"].sort()
    ours = oms.statement_for(manifest_of(model), oms.GIT_IGNORE_PATHS)
    assert ours == theirs
    names = [r["name"] for r in ours["predicate"]["resources"]]
    assert names == ["a/b", "a.b", "config.json", "weights/empty.bin", "weights/shards/00001.bin"]
    assert ours["subject"][0]["name"] == "tiny-model"


def test_single_file_statement_equals_what_model_signing_writes(
    single: Path, keys: Keys, tmp_path: Path
) -> None:
    sig = tmp_path / "theirs.sig"
    their_sign(single, keys.private_pem, sig)
    theirs = statement_of(sig.read_bytes())
    assert [r["name"] for r in theirs["predicate"]["resources"]] == ["."]
    assert theirs["subject"][0]["name"] == "model.safetensors"
    # model-signing lists its git defaults even for a single file, where they match nothing.
    theirs["predicate"]["serialization"]["ignore_paths"].sort()
    assert oms.statement_for(manifest_of(single), oms.GIT_IGNORE_PATHS) == theirs
    del theirs["predicate"]["serialization"]["ignore_paths"]
    assert oms.statement_for(manifest_of(single)) == theirs


def test_bundle_shape_and_key_hint(model: Path, keys: Keys, tmp_path: Path) -> None:
    ours = json.loads(oms.sign_bundle(manifest_of(model), keys.private))
    sig = tmp_path / "theirs.sig"
    their_sign(model, keys.private_pem, sig)
    theirs = json.loads(sig.read_bytes())
    assert ours["mediaType"] == theirs["mediaType"] == oms.BUNDLE_MEDIA_TYPE
    assert ours["verificationMaterial"] == theirs["verificationMaterial"]
    assert ours["verificationMaterial"]["publicKey"]["hint"] == oms.key_hint(keys.public)
    assert ours["verificationMaterial"]["tlogEntries"] == []
    assert ours["dsseEnvelope"]["payloadType"] == oms.PAYLOAD_TYPE
    assert ours["dsseEnvelope"].keys() == theirs["dsseEnvelope"].keys()


def test_without_ignore_paths_the_field_is_left_out(model: Path) -> None:
    statement = oms.statement_for(manifest_of(model))
    assert "ignore_paths" not in statement["predicate"]["serialization"]


def test_ignore_paths_are_normalised_and_merged_with_the_manifests(model: Path) -> None:
    manifest = manifest_of(model, ignore=(".git", ".gitignore", "weights"))
    manifest = Manifest(manifest.name, manifest.algorithm, manifest.files, ignored=("weights",))
    args = oms.statement_for(manifest, [".gitignore", ".git/"])["predicate"]["serialization"]
    assert args["ignore_paths"] == [".git", ".gitignore", "weights"]


@pytest.mark.parametrize("bad", ["/etc", "../x", "a/../b", "", ".", "a\\b"])
def test_ignore_paths_must_stay_inside_the_model(model: Path, bad: str) -> None:
    with pytest.raises(MalformedError):
        oms.statement_for(manifest_of(model), [bad])


def test_a_signed_file_under_an_ignore_path_is_refused(model: Path, keys: Keys) -> None:
    # model-signing would skip it when rehashing and always report it missing.
    with pytest.raises(MalformedError, match=r"weights/empty\.bin"):
        oms.sign_bundle(manifest_of(model), keys.private, ["weights"])


def test_git_files_model_signing_skips_by_default_cannot_be_signed(model: Path, keys: Keys) -> None:
    # `model_signing verify key` leaves out .gitattributes etc. unless told not to, so a
    # bundle signing one would fail there even with no ignore_paths written.
    (model / ".gitattributes").write_text("*.bin filter=lfs\n")
    manifest = manifest_of(model, ignore=(".git",))
    with pytest.raises(MalformedError, match=r"\.gitattributes"):
        oms.sign_bundle(manifest, keys.private)
    # Only at the top, as model-signing does: a nested one is an ordinary file.
    (model / ".gitattributes").rename(model / "a" / ".gitattributes")
    (model / ".gitignore").unlink()
    sig = model.parent / "model.sig"
    sig.write_bytes(oms.sign_bundle(manifest_of(model, ignore=(".git",)), keys.private))
    their_verify(model, keys.public_pem, sig)


def test_only_sha256_manifests_can_be_signed(model: Path, keys: Keys) -> None:
    m = manifest_of(model)
    with pytest.raises(MalformedError, match="blake3"):
        oms.sign_bundle(Manifest(m.name, BLAKE3, m.files), keys.private)


# --- keys ----------------------------------------------------------------------------------


def test_ed25519_keys_are_refused(tmp_path: Path) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(KeyStoreError, match="P-256"):
        oms.load_private_key(private)
    with pytest.raises(KeyStoreError, match="P-256"):
        oms.load_public_key(public)


def test_other_curves_are_refused(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256K1())
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(KeyStoreError, match="secp256k1"):
        oms.load_private_key(private)
    with pytest.raises(KeyStoreError):
        oms.sign_bundle(
            Manifest("m", SHA256, (FileDigest(".", 0, "0" * 64),)),
            key,
        )


def test_encrypted_keys_and_errors_never_show_key_bytes() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"s3cret"),
    )
    loaded = oms.load_private_key(pem, b"s3cret")
    assert loaded.private_numbers() == key.private_numbers()
    body = pem.decode().splitlines()[1]
    for password in (None, b"wrong"):
        with pytest.raises(KeyStoreError) as info:
            oms.load_private_key(pem, password)
        assert body not in str(info.value) and "s3cret" not in str(info.value)
    plain = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(KeyStoreError, match="not encrypted"):
        oms.load_private_key(plain, b"s3cret")
    with pytest.raises(KeyStoreError) as info:
        oms.load_private_key(plain[:-40] + b"\n-----END PRIVATE KEY-----\n")
    assert plain.decode().splitlines()[1] not in str(info.value)
    with pytest.raises(KeyStoreError):
        oms.load_public_key(b"not a key")


# --- ours -> theirs ------------------------------------------------------------------------


@pytest.mark.parametrize("curve", sorted(CURVES))
def test_model_signing_api_accepts_our_bundle(model: Path, tmp_path: Path, curve: str) -> None:
    keys = Keys(tmp_path / "keys", CURVES[curve])
    sig = tmp_path / "model.sig"
    sig.write_bytes(oms.sign_bundle(manifest_of(model), keys.private, oms.GIT_IGNORE_PATHS))
    their_verify(model, keys.public_pem, sig)


def test_model_signing_api_accepts_our_single_file_bundle(
    single: Path, keys: Keys, tmp_path: Path
) -> None:
    sig = tmp_path / "model.sig"
    sig.write_bytes(oms.sign_bundle(manifest_of(single), keys.private))
    their_verify(single, keys.public_pem, sig)


def test_model_signing_cli_accepts_our_bundles(
    model: Path, single: Path, keys: Keys, tmp_path: Path
) -> None:
    for path in (model, single):
        sig = tmp_path / f"{path.name}.sig"
        sig.write_bytes(oms.sign_bundle(manifest_of(path), keys.private, oms.GIT_IGNORE_PATHS))
        done = their_cli("verify", "key", path, "--signature", sig, "--public_key", keys.public_pem)
        assert done.returncode == 0, done.stderr
        assert "Verification succeeded" in done.stdout


def test_model_signing_rejects_our_bundle_for_a_tampered_model(
    model: Path, keys: Keys, tmp_path: Path
) -> None:
    sig = tmp_path / "model.sig"
    sig.write_bytes(oms.sign_bundle(manifest_of(model), keys.private, oms.GIT_IGNORE_PATHS))
    (model / "a.b").write_bytes(b"dotted a.b, changed")
    with pytest.raises(ValueError, match=r"a\.b"):
        their_verify(model, keys.public_pem, sig)
    done = their_cli("verify", "key", model, "--signature", sig, "--public_key", keys.public_pem)
    assert done.returncode == 1
    assert "Hash mismatch for" in done.stderr and "a.b" in done.stderr


def test_model_signing_rejects_our_bundle_with_another_key(
    model: Path, keys: Keys, tmp_path: Path
) -> None:
    other = Keys(tmp_path / "other")
    sig = tmp_path / "model.sig"
    sig.write_bytes(oms.sign_bundle(manifest_of(model), keys.private, oms.GIT_IGNORE_PATHS))
    with pytest.raises(ValueError, match="Key mismatch"):
        their_verify(model, other.public_pem, sig)


def test_model_signing_rejects_an_unsigned_extra_file(
    model: Path, keys: Keys, tmp_path: Path
) -> None:
    sig = tmp_path / "model.sig"
    sig.write_bytes(oms.sign_bundle(manifest_of(model), keys.private, oms.GIT_IGNORE_PATHS))
    (model / "extra.bin").write_bytes(b"slipped in")
    with pytest.raises(ValueError, match=r"extra\.bin"):
        their_verify(model, keys.public_pem, sig)


def test_our_ignore_paths_travel_in_the_bundle(model: Path, keys: Keys, tmp_path: Path) -> None:
    # With git defaults switched off, model-signing still skips what the bundle lists.
    (model / "notes.tmp").write_bytes(b"scratch")
    ignore = (*oms.GIT_IGNORE_PATHS, "notes.tmp")
    sig = tmp_path / "model.sig"
    sig.write_bytes(oms.sign_bundle(manifest_of(model, ignore), keys.private, ignore))
    done = their_cli(
        "verify", "key", model, "--signature", sig, "--public_key", keys.public_pem,
        "--no-ignore-git-paths",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


# --- theirs -> ours ------------------------------------------------------------------------


@pytest.mark.parametrize("curve", sorted(CURVES))
def test_we_accept_model_signing_bundles(model: Path, tmp_path: Path, curve: str) -> None:
    keys = Keys(tmp_path / "keys", CURVES[curve])
    sig = tmp_path / "model.sig"
    their_sign(model, keys.private_pem, sig)
    signed = oms.read_bundle(sig.read_bytes(), keys.public)
    actual = manifest_of(model, signed.ignored)
    oms.verify_against(signed, actual)
    assert signed.name == "tiny-model"
    assert signed.root == actual.root
    assert signed.ignored == (".git", ".gitattributes", ".github", ".gitignore")
    assert not signed.allow_symlinks
    assert {f.size for f in signed.files} == {0}  # OMS records no sizes


def test_we_accept_model_signing_single_file_bundles(
    single: Path, keys: Keys, tmp_path: Path
) -> None:
    sig = tmp_path / "model.sig"
    their_sign(single, keys.private_pem, sig)
    signed = oms.read_bundle(sig.read_bytes(), keys.public)
    assert [f.path for f in signed.files] == ["."]
    assert signed.name == "model.safetensors"
    oms.verify_against(signed, manifest_of(single))
    single.write_bytes(b"swapped")
    with pytest.raises(IntegrityError) as info:
        oms.verify_against(signed, manifest_of(single))
    assert info.value.differences == ("changed  .",)


def test_we_accept_model_signing_cli_bundles_with_the_signature_inside(
    model: Path, keys: Keys
) -> None:
    sig = model / "model.sig"
    done = their_cli("sign", "key", model, "--signature", sig, "--private_key", keys.private_pem)
    assert done.returncode == 0, done.stderr
    signed = oms.read_bundle(sig.read_bytes(), keys.public)
    assert "model.sig" in signed.ignored  # its CLI leaves its own output out
    oms.verify_against(signed, manifest_of(model, signed.ignored))
    with pytest.raises(IntegrityError) as info:
        oms.verify_against(signed, manifest_of(model))
    assert info.value.differences == ("unsigned model.sig",)


def test_a_tampered_file_is_named(model: Path, keys: Keys, tmp_path: Path) -> None:
    sig = tmp_path / "model.sig"
    their_sign(model, keys.private_pem, sig)
    signed = oms.read_bundle(sig.read_bytes(), keys.public)
    (model / "weights" / "shards" / "00001.bin").write_bytes(b"poisoned")
    (model / "config.json").unlink()
    (model / "extra.py").write_text("import os\n")
    with pytest.raises(IntegrityError) as info:
        oms.verify_against(signed, manifest_of(model, signed.ignored))
    assert info.value.differences == (
        "missing  config.json",
        "unsigned extra.py",
        "changed  weights/shards/00001.bin",
    )
    assert "weights/shards/00001.bin" in info.value.diagnostics()


def test_a_wrong_public_key_is_a_signature_error(model: Path, keys: Keys, tmp_path: Path) -> None:
    sig = tmp_path / "model.sig"
    their_sign(model, keys.private_pem, sig)
    other = Keys(tmp_path / "other")
    with pytest.raises(SignatureError, match="another key"):
        oms.read_bundle(sig.read_bytes(), other.public)
    # Without the hint (older bundles) the signature check itself catches it.
    obj = json.loads(sig.read_bytes())
    del obj["verificationMaterial"]["publicKey"]["hint"]
    with pytest.raises(SignatureError, match="does not verify"):
        oms.read_bundle(json.dumps(obj).encode(), other.public)
    oms.read_bundle(json.dumps(obj).encode(), keys.public)


@pytest.mark.parametrize("where", [0, 8, -1])
def test_a_flipped_signature_byte_is_a_signature_error(
    model: Path, keys: Keys, tmp_path: Path, where: int
) -> None:
    sig = tmp_path / "model.sig"
    their_sign(model, keys.private_pem, sig)
    obj = json.loads(sig.read_bytes())
    raw = bytearray(base64.b64decode(obj["dsseEnvelope"]["signatures"][0]["sig"]))
    raw[where] ^= 0x01
    obj["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(raw).decode()
    with pytest.raises(SignatureError):
        oms.read_bundle(json.dumps(obj).encode(), keys.public)


def test_a_changed_payload_is_a_signature_error(model: Path, keys: Keys, tmp_path: Path) -> None:
    sig = tmp_path / "model.sig"
    their_sign(model, keys.private_pem, sig)
    obj = json.loads(sig.read_bytes())
    statement = statement_of(sig.read_bytes())
    statement["predicate"]["resources"].pop()
    obj["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    with pytest.raises(SignatureError):
        oms.read_bundle(json.dumps(obj).encode(), keys.public)


def test_round_trip_through_our_own_reader(model: Path, keys: Keys) -> None:
    manifest = manifest_of(model)
    signed = oms.read_bundle(oms.sign_bundle(manifest, keys.private), keys.public)
    assert [(f.path, f.digest) for f in signed.files] == [
        (f.path, f.digest) for f in manifest.files
    ]
    assert signed.digest == manifest.digest
    assert signed.ignored == ()


# --- what read_bundle refuses --------------------------------------------------------------


def _set(path: Sequence[str | int], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(statement: dict[str, Any]) -> None:
        target: Any = statement
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


SER = ("predicate", "serialization")
BAD_STATEMENTS = {
    "statement type": _set(("_type",), "https://in-toto.io/Statement/v0.1"),
    "predicate type": _set(("predicateType",), "https://model_signing/Digests/v0.1"),
    "shards": _set((*SER, "method"), "shards"),
    "blake3": _set((*SER, "hash_type"), "blake3"),
    "shard size": _set((*SER, "shard_size"), 1000),
    "symlinks as text": _set((*SER, "allow_symlinks"), "false"),
    "ignore paths": _set((*SER, "ignore_paths"), "x"),
    "escaping ignore path": _set((*SER, "ignore_paths"), ["../up"]),
    "two subjects": lambda s: s["subject"].append(s["subject"][0]),
    "no resources": _set(("predicate", "resources"), None),
    "resource algorithm": _set(("predicate", "resources", 0, "algorithm"), "blake2"),
    "resource name": _set(("predicate", "resources", 0, "name"), "../../etc/passwd"),
    "resource digest": _set(("predicate", "resources", 0, "digest"), "zz"),
    "unsorted": lambda s: s["predicate"]["resources"].reverse(),
}


@pytest.mark.parametrize("case", sorted(BAD_STATEMENTS))
def test_unexpected_statements_are_malformed(
    model: Path, keys: Keys, tmp_path: Path, case: str
) -> None:
    sig = tmp_path / "model.sig"
    their_sign(model, keys.private_pem, sig)
    bundle = resign(sig.read_bytes(), keys.private, BAD_STATEMENTS[case])
    if case == "unsorted":  # keep the root consistent with the listed order
        statement = statement_of(bundle)
        raw = b"".join(bytes.fromhex(r["digest"]) for r in statement["predicate"]["resources"])
        root = hashlib.sha256(raw).hexdigest()
        bundle = resign(bundle, keys.private, _set(("subject", 0, "digest", "sha256"), root))
    with pytest.raises(MalformedError):
        oms.read_bundle(bundle, keys.public)


def test_a_subject_digest_that_is_not_the_root_is_an_integrity_error(
    model: Path, keys: Keys, tmp_path: Path
) -> None:
    sig = tmp_path / "model.sig"
    their_sign(model, keys.private_pem, sig)
    bundle = resign(
        sig.read_bytes(), keys.private, _set(("subject", 0, "digest", "sha256"), "ab" * 32)
    )
    with pytest.raises(IntegrityError, match="subject digest"):
        oms.read_bundle(bundle, keys.public)


def test_unknown_predicate_fields_are_ignored_as_v1_requires(
    model: Path, keys: Keys, tmp_path: Path
) -> None:
    sig = tmp_path / "model.sig"
    their_sign(model, keys.private_pem, sig)
    bundle = resign(sig.read_bytes(), keys.private, _set(("predicate", "model_card"), "x"))
    oms.read_bundle(bundle, keys.public)


def test_bad_envelopes_are_malformed(model: Path, keys: Keys, tmp_path: Path) -> None:
    sig = tmp_path / "model.sig"
    their_sign(model, keys.private_pem, sig)
    good = sig.read_bytes()
    with pytest.raises(MalformedError, match="payloadType"):
        oms.read_bundle(resign(good, keys.private, payload_type="text/plain"), keys.public)

    def edited(change: Callable[[dict[str, Any]], None]) -> bytes:
        obj = json.loads(good)
        change(obj)
        return json.dumps(obj).encode()

    cases: list[bytes] = [
        b"not json",
        b"[]",
        edited(
            lambda o: o.update(mediaType="application/vnd.dev.sigstore.bundle+json;version=0.2")
        ),
        edited(lambda o: o.pop("dsseEnvelope")),
        edited(lambda o: o["dsseEnvelope"].update(payload="***")),
        edited(lambda o: o["dsseEnvelope"]["signatures"].append({"sig": "", "keyid": ""})),
        edited(lambda o: o["dsseEnvelope"].update(signatures=[])),
        resign(good, keys.private, lambda s: s.clear()),
    ]
    for bundle in cases:
        with pytest.raises(MalformedError):
            oms.read_bundle(bundle, keys.public)


def test_verify_against_needs_sha256(model: Path, keys: Keys) -> None:
    manifest = manifest_of(model)
    signed = oms.read_bundle(oms.sign_bundle(manifest, keys.private), keys.public)
    with pytest.raises(MalformedError, match="sha256"):
        oms.verify_against(signed, Manifest(manifest.name, BLAKE3, manifest.files))


# --- with our own hasher -------------------------------------------------------------------


def test_hash_path_manifests_interoperate(model: Path, keys: Keys, tmp_path: Path) -> None:
    # hash_path skips __pycache__ wherever it is and lists it; the bundle carries that.
    (model / "weights" / "__pycache__").mkdir()
    (model / "weights" / "__pycache__" / "x.pyc").write_bytes(b"bytecode")
    ignore = (*DEFAULT_IGNORES, *oms.GIT_IGNORE_PATHS)
    manifest = hash_path(model, ignore=ignore)
    assert "weights/__pycache__" in manifest.ignored
    assert manifest.root == manifest_of(model, (*oms.GIT_IGNORE_PATHS, "weights/__pycache__")).root
    ours = tmp_path / "ours.sig"
    ours.write_bytes(oms.sign_bundle(manifest, keys.private, oms.GIT_IGNORE_PATHS))
    done = their_cli(
        "verify", "key", model, "--signature", ours, "--public_key", keys.public_pem,
        "--no-ignore-git-paths",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr

    theirs = tmp_path / "theirs.sig"
    their_sign(model, keys.private_pem, theirs)
    signed = oms.read_bundle(theirs.read_bytes(), keys.public)
    # model-signing signed the __pycache__ file; hash as its ignore_paths say.
    oms.verify_against(signed, hash_path(model, ignore=signed.ignored))
    (model / "a" / "b").write_bytes(b"changed")
    with pytest.raises(IntegrityError) as info:
        oms.verify_against(signed, hash_path(model, ignore=signed.ignored))
    assert info.value.differences == ("changed  a/b",)


def test_hash_path_defaults_keep_files_model_signing_would_skip(model: Path, keys: Keys) -> None:
    # .gitignore is not in hash_path's defaults but is in model-signing's.
    with pytest.raises(MalformedError, match=r"\.gitignore"):
        oms.sign_bundle(hash_path(model), keys.private)


def test_hash_path_single_file(single: Path, keys: Keys, tmp_path: Path) -> None:
    sig = tmp_path / "model.sig"
    sig.write_bytes(oms.sign_bundle(hash_path(single), keys.private))
    their_verify(single, keys.public_pem, sig)
    oms.verify_against(oms.read_bundle(sig.read_bytes(), keys.public), hash_path(single))
