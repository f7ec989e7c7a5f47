"""OpenSSF Model Signing (OMS v1.0) bundles signed with an ECDSA key, files mode.

Writes bundles that ``model_signing verify key`` (PyPI ``model-signing``) accepts,
and reads and verifies bundles it writes, turning them into a :class:`Manifest`.
The format follows model-signing 1.1.1 (``_signing/sign_ec_key.py``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ..core import canonical
from ..core.b64 import b64, unb64
from ..core.dsse import pae
from ..core.manifest import SHA256, FileDigest, Manifest, oms_sort_key
from ..errors import IntegrityError, KeyStoreError, MalformedError, SignatureError

__all__ = [
    "BUNDLE_MEDIA_TYPE",
    "GIT_IGNORE_PATHS",
    "PAYLOAD_TYPE",
    "PREDICATE_TYPE",
    "STATEMENT_TYPE",
    "key_hint",
    "load_private_key",
    "load_public_key",
    "read_bundle",
    "sign_bundle",
    "statement_for",
    "verify_against",
]

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
# What model-signing leaves out of every model by default (hashing.Config's
# ignore_git_paths) and writes into ignore_paths, even for a single file.
GIT_IGNORE_PATHS = (".git", ".gitattributes", ".github", ".gitignore")

# model-signing's key signing takes only the curves of Sigstore's protobuf specs,
# each signed with the hash of matching size (sign_ec_key.get_ec_key_hash).
_CURVE_HASH: dict[str, type[hashes.HashAlgorithm]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}
_SERIALIZATION_KEYS = {"method", "hash_type", "allow_symlinks", "ignore_paths"}


def _check_curve(curve: ec.EllipticCurve) -> None:
    if curve.name not in _CURVE_HASH:
        raise KeyStoreError(
            f"OMS key signing needs an ECDSA P-256, P-384 or P-521 key, not {curve.name}"
        )


def _ecdsa(curve: ec.EllipticCurve) -> ec.ECDSA:
    _check_curve(curve)
    return ec.ECDSA(_CURVE_HASH[curve.name]())


def load_private_key(pem: bytes, password: bytes | None = None) -> ec.EllipticCurvePrivateKey:
    """An ECDSA P-256/384/521 private key from PEM; KeyStoreError for anything else.

    OMS key signing accepts only these curves (not Ed25519)."""
    try:
        key = serialization.load_pem_private_key(pem, password)
    except TypeError as exc:  # a password for a plain key, or none for an encrypted one
        raise KeyStoreError(
            "the private key is encrypted: give its password"
            if password is None
            else "the private key is not encrypted: give no password"
        ) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        # cryptography's messages never quote the key, but say nothing of it anyway.
        raise KeyStoreError(
            "cannot read the private key: not a PEM private key, or wrong password"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise KeyStoreError(
            f"OMS key signing needs an ECDSA P-256, P-384 or P-521 key, "
            f"not {type(key).__name__.lstrip('_')}"
        )
    _check_curve(key.curve)
    return key


def load_public_key(pem: bytes) -> ec.EllipticCurvePublicKey:
    """An ECDSA P-256/384/521 public key from PEM; KeyStoreError for anything else."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyStoreError("cannot read the public key: not a PEM public key") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise KeyStoreError(
            f"OMS key signing needs an ECDSA P-256, P-384 or P-521 key, "
            f"not {type(key).__name__.lstrip('_')}"
        )
    _check_curve(key.curve)
    return key


def key_hint(public_key: ec.EllipticCurvePublicKey) -> str:
    """``verificationMaterial.publicKey.hint``: hex SHA-256 of the key re-encoded as
    SubjectPublicKeyInfo PEM (not of the file it was read from)."""
    pem = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(pem).hexdigest()


def _ignore_path(path: str) -> str:
    """A literal path relative to the model, as model-signing compares them."""
    clean = path.rstrip("/")
    parts = clean.split("/")
    if clean.startswith("/") or "\\" in clean or any(p in ("", ".", "..") for p in parts):
        raise MalformedError(f"ignore path {path!r} must be relative POSIX inside the model")
    return clean


def _under(path: str, ignored: str) -> bool:
    return path == ignored or path.startswith(ignored + "/")


def _ignore_list(manifest: Manifest, ignore_paths: Iterable[str]) -> list[str]:
    paths = sorted({_ignore_path(p) for p in (*ignore_paths, *manifest.ignored)}, key=oms_sort_key)
    if manifest.file(".") is not None:
        return paths  # a single file: model-signing ignores nothing
    for f in manifest.files:
        # model-signing skips these when it rehashes the model (its git paths unless told
        # otherwise), so a file signed under one would always be reported missing.
        for p in (*paths, *GIT_IGNORE_PATHS):
            if _under(f.path, p):
                raise MalformedError(
                    f"{f.path} is in the manifest, but model_signing leaves out {p} when it "
                    f"verifies: hash the model without {p}"
                )
    return paths


def statement_for(manifest: Manifest, ignore_paths: Sequence[str] = ()) -> dict[str, Any]:
    """The in-toto Statement v1 model-signing 1.1.1 writes for files mode.

    ``ignore_paths`` (with the manifest's own ``ignored``) are written sorted in OMS
    order and left out when empty, as model-signing does; a verifier skips them when
    it rehashes the model. Pass :data:`GIT_IGNORE_PATHS` to match its defaults. A file
    under an ignore path or under :data:`GIT_IGNORE_PATHS` (which model-signing skips
    by default) is refused with MalformedError, since no verifier would find it."""
    if manifest.algorithm != SHA256:
        raise MalformedError(
            f"OMS files mode signs sha256 digests; this manifest uses {manifest.algorithm}"
        )
    serialization_args: dict[str, Any] = {
        "method": "files",
        "hash_type": SHA256,
        "allow_symlinks": manifest.allow_symlinks,
    }
    ignored = _ignore_list(manifest, ignore_paths)
    if ignored:
        serialization_args["ignore_paths"] = ignored
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": manifest.name, "digest": {SHA256: manifest.root.hex()}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "serialization": serialization_args,
            "resources": [
                {"name": f.path, "algorithm": SHA256, "digest": f.digest} for f in manifest.files
            ],
        },
    }


def sign_bundle(
    manifest: Manifest,
    private_key: ec.EllipticCurvePrivateKey,
    ignore_paths: Sequence[str] = (),
) -> bytes:
    """A Sigstore bundle v0.3 (JSON bytes) with a DSSE envelope over the statement,
    signed with ``private_key`` as ``model_signing sign key`` does. Only sha256
    manifests can be signed (MalformedError otherwise)."""
    algorithm = _ecdsa(private_key.curve)
    payload = canonical.dumps(statement_for(manifest, ignore_paths))
    sig = private_key.sign(pae(PAYLOAD_TYPE, payload), algorithm)
    bundle = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {
            "publicKey": {"hint": key_hint(private_key.public_key())},
            "tlogEntries": [],
        },
        "dsseEnvelope": {
            "payload": b64(payload),
            "payloadType": PAYLOAD_TYPE,
            # model-signing writes an empty keyid; the hint above names the key.
            "signatures": [{"sig": b64(sig), "keyid": ""}],
        },
    }
    return canonical.dumps(bundle)


def _field(obj: object, key: str, kind: type, what: str) -> Any:
    if not isinstance(obj, Mapping) or key not in obj:
        raise MalformedError(f"OMS bundle: {what} is missing")
    value = obj[key]
    if not isinstance(value, kind):
        raise MalformedError(f"OMS bundle: {what} must be a {kind.__name__}")
    return value


def _b64(text: str, what: str) -> bytes:
    return unb64(text, f"OMS bundle: {what}")


def _expect(value: object, wanted: str, what: str) -> None:
    if value != wanted:
        raise MalformedError(f"OMS bundle: {what} is {value!r}, expected {wanted!r}")


def _verified_payload(bundle: bytes, public_key: ec.EllipticCurvePublicKey) -> bytes:
    try:
        obj = json.loads(bundle)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedError(f"OMS bundle is not JSON: {exc}") from exc
    _expect(_field(obj, "mediaType", str, "mediaType"), BUNDLE_MEDIA_TYPE, "mediaType")
    material = _field(obj, "verificationMaterial", dict, "verificationMaterial")
    public = material.get("publicKey")
    # Bundles from before model-signing 1.0 carry no hint; it accepts them, so do we.
    hint = public.get("hint") if isinstance(public, dict) else None
    if hint and hint != key_hint(public_key):
        raise SignatureError("the OMS bundle was signed by another key (publicKey.hint differs)")
    envelope = _field(obj, "dsseEnvelope", dict, "dsseEnvelope")
    payload_type = _field(envelope, "payloadType", str, "dsseEnvelope.payloadType")
    _expect(payload_type, PAYLOAD_TYPE, "dsseEnvelope.payloadType")
    payload = _b64(_field(envelope, "payload", str, "dsseEnvelope.payload"), "payload")
    signatures = _field(envelope, "signatures", list, "dsseEnvelope.signatures")
    if len(signatures) != 1:
        raise MalformedError(
            f"OMS bundle: a Sigstore bundle holds one DSSE signature, found {len(signatures)}"
        )
    sig = _b64(_field(signatures[0], "sig", str, "signature"), "signature")
    try:
        public_key.verify(sig, pae(PAYLOAD_TYPE, payload), _ecdsa(public_key.curve))
    except InvalidSignature as exc:
        raise SignatureError("the OMS bundle's signature does not verify with this key") from exc
    return payload


def _statement_manifest(statement: object) -> Manifest:
    _expect(_field(statement, "_type", str, "_type"), STATEMENT_TYPE, "_type")
    _expect(
        _field(statement, "predicateType", str, "predicateType"), PREDICATE_TYPE, "predicateType"
    )
    subjects = _field(statement, "subject", list, "subject")
    if len(subjects) != 1:
        raise MalformedError(f"OMS bundle: expected one subject, found {len(subjects)}")
    name = _field(subjects[0], "name", str, "subject name")
    root = _field(_field(subjects[0], "digest", dict, "subject digest"), SHA256, str, "sha256")
    # Other predicate fields are extensions a v1.0 verifier must ignore.
    predicate = _field(statement, "predicate", dict, "predicate")
    args = _field(predicate, "serialization", dict, "serialization")
    unknown = set(args) - _SERIALIZATION_KEYS
    if unknown:
        raise MalformedError(f"OMS bundle: unknown serialization parameters {sorted(unknown)}")
    _expect(_field(args, "method", str, "serialization method"), "files", "serialization method")
    _expect(_field(args, "hash_type", str, "hash_type"), SHA256, "hash_type")
    allow_symlinks = _field(args, "allow_symlinks", bool, "allow_symlinks")
    ignore_paths = args.get("ignore_paths", [])
    if not isinstance(ignore_paths, list) or not all(isinstance(p, str) for p in ignore_paths):
        raise MalformedError("OMS bundle: ignore_paths must be a list of strings")
    files = []
    hasher = hashlib.sha256()
    for resource in _field(predicate, "resources", list, "resources"):
        _expect(_field(resource, "algorithm", str, "resource algorithm"), SHA256, "algorithm")
        digest = _field(resource, "digest", str, "resource digest")
        files.append(FileDigest(_field(resource, "name", str, "resource name"), 0, digest))
        hasher.update(bytes.fromhex(digest))  # FileDigest checked it is hex
    # The root is over the resources as listed (as model-signing computes it) ...
    if hasher.hexdigest() != root:
        raise IntegrityError(
            "OMS bundle is inconsistent: its resources do not hash to the subject digest"
        )
    manifest = Manifest(
        name=name,
        algorithm=SHA256,
        files=tuple(files),
        ignored=tuple(sorted({_ignore_path(p) for p in ignore_paths}, key=oms_sort_key)),
        allow_symlinks=allow_symlinks,
    )
    # ... and the manifest re-sorts them: any writer that sorts lists them this way.
    if manifest.root.hex() != root:
        raise MalformedError("OMS bundle: resources are not in OMS (path component) order")
    return manifest


def read_bundle(bundle: bytes, public_key: ec.EllipticCurvePublicKey) -> Manifest:
    """Verify an OMS bundle's signature with ``public_key`` and return what it signs.

    SignatureError when the signature (or key hint) does not match the key;
    MalformedError for anything but a files-mode sha256 OMS v1.0 statement;
    IntegrityError when the resources do not hash to the subject digest. OMS records
    no file sizes, so every FileDigest has ``size=0``; the statement's ignore_paths
    become ``Manifest.ignored``."""
    payload = _verified_payload(bundle, public_key)
    try:
        statement = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedError(f"OMS bundle: the payload is not JSON: {exc}") from exc
    return _statement_manifest(statement)


def verify_against(bundle_manifest: Manifest, actual: Manifest) -> None:
    """Raise IntegrityError unless ``actual`` has exactly the signed files and digests.

    Files compare by path and digest only (OMS has no sizes). Like model-signing,
    a file on disk that was not signed is an error; hash ``actual`` leaving out
    ``bundle_manifest.ignored``."""
    if bundle_manifest.algorithm != actual.algorithm:
        raise MalformedError(
            f"cannot check {actual.algorithm} digests against a {bundle_manifest.algorithm} "
            "signature: hash the model with sha256"
        )
    signed = {f.path: f.digest for f in bundle_manifest.files}
    found = {f.path: f.digest for f in actual.files}
    kinds = {p: "changed " for p in signed.keys() & found.keys() if signed[p] != found[p]}
    kinds |= {p: "missing " for p in signed.keys() - found.keys()}
    kinds |= {p: "unsigned" for p in found.keys() - signed.keys()}
    if kinds:
        raise IntegrityError(
            f"{len(kinds)} file(s) of {actual.name} differ from the signed OMS manifest",
            tuple(f"{kinds[p]} {p}" for p in sorted(kinds, key=oms_sort_key)),
        )
