"""Encrypted artifacts on the ledger (contract-set version 7 on): how a version's files
are stored encrypted, who may obtain its data key, every key request, and erasure.

The ledger holds digests, a location, a scheme name and the opaque id of the key
entry, never a key: wrapped data keys live in key stores off the ledger (ADR 17).
A key request (``artifact.key.fetch``) from a member without a grant is rejected,
and so logged as evidence; the holder of the key-encryption key unwraps a data key
only for an accepted request. An erased version (``artifact.erase``) is stored,
granted and fetched no more.

From contract-set version 8 (ADR 19) ``artifact.replica`` records that the submitting
member's organisation holds a copy of every file of a version, verified by digest (the
plaintext objects, or the ciphertexts ``artifact.store`` recorded): the ledger knows
who holds copies, and a replication factor (``governance.replication``) can require
enough of them before a version is deployed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..errors import MalformedError
from .base import Call, Overlay, Rejected, StateReader, TypeRule, is_int, names
from .personal import commitments_in, erase_fields, shown
from .state import (
    entity_key,
    erased_key,
    grant_key,
    member_key,
    replicas_key,
    stored_key,
    version_key,
)
from .types import (
    ARTIFACT_ERASE,
    ARTIFACT_GRANT,
    ARTIFACT_KEY_FETCH,
    ARTIFACT_REPLICA,
    ARTIFACT_REVOKE,
    ARTIFACT_STORE,
)
from .versions import ARTIFACT_VERSION, PERSONAL_VERSION, REPLICATION_VERSION

__all__ = ["MAX_STORED_OBJECTS", "SCHEMES", "access_rules", "member_org", "replica_orgs"]

# The streaming AEADs a stored object may be encrypted with (the name says every
# parameter: Tink's AES256_GCM_HKDF_1MB key template).
SCHEMES = frozenset({"tink-streaming-aes256-gcm-hkdf-1mb"})
MAX_STORED_OBJECTS = 256  # files per artifact.store entry (it must fit in 64 KiB signed)
_KINDS = ("dataset", "model")
_REF = re.compile(r"[a-z0-9][a-z0-9-]{0,63}:[0-9a-f]{64}\Z")
_SHA256_REF = re.compile(r"sha256:[0-9a-f]{64}\Z")
_KEY_ID = re.compile(r"[0-9a-f]{32}\Z")


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise MalformedError(message)


def _text(body: Mapping[str, Any], key: str, limit: int, empty: bool = False) -> None:
    v = body.get(key)
    _require(
        isinstance(v, str) and len(v) <= limit and (empty or bool(v)),
        f"{key} is a string of {0 if empty else 1}-{limit} characters",
    )


def _artifact(body: Mapping[str, Any], versioned: bool) -> None:
    art = body.get("artifact")
    want = {"kind", "name", "version"} if versioned else {"kind", "name"}
    _require(
        isinstance(art, dict) and set(art) == want, f"artifact is {{{', '.join(sorted(want))}}}"
    )
    assert isinstance(art, dict)
    _require(art["kind"] in _KINDS, "artifact kind is dataset or model")
    _text(art, "name", 200)
    if versioned:
        _require(is_int(art["version"]) and art["version"] >= 1, "version is an integer >= 1")


def check_store(body: Mapping[str, Any]) -> None:
    _require(
        set(body) == {"artifact", "scheme", "key", "location", "objects"},
        "artifact.store body is {artifact, scheme, key, location, objects}",
    )
    _artifact(body, True)
    _require(body["scheme"] in SCHEMES, f"scheme is one of {', '.join(sorted(SCHEMES))}")
    _require(
        isinstance(body["key"], str) and bool(_KEY_ID.match(body["key"])),
        "key is the key entry's id: 32 hex digits (never a key)",
    )
    _text(body, "location", 1000)
    objects = body["objects"]
    _require(
        isinstance(objects, list) and 1 <= len(objects) <= MAX_STORED_OBJECTS,
        f"objects is a list of 1-{MAX_STORED_OBJECTS} objects",
    )
    seen = set()
    for o in objects:
        _require(
            isinstance(o, dict) and set(o) == {"digest", "ciphertext", "size"},
            "each object is {digest, ciphertext, size}",
        )
        _require(
            isinstance(o["digest"], str) and bool(_REF.match(o["digest"])),
            "digest is the plaintext's <algorithm>:<hex>",
        )
        _require(
            isinstance(o["ciphertext"], str) and bool(_SHA256_REF.match(o["ciphertext"])),
            "ciphertext is sha256:<hex> of the stored bytes",
        )
        _require(is_int(o["size"]) and o["size"] >= 0, "size is the ciphertext's size in bytes")
        _require(o["digest"] not in seen, f"{o['digest']} is listed twice")
        seen.add(o["digest"])


def check_grant(body: Mapping[str, Any]) -> None:
    _require(
        set(body) == {"artifact", "member", "version"},
        "artifact.grant body is {artifact, member, version}",
    )
    _artifact(body, False)
    _text(body, "member", 128)
    v = body["version"]
    _require(v is None or (is_int(v) and v >= 1), "version is an integer >= 1, or null for all")


def check_revoke(body: Mapping[str, Any]) -> None:
    _require(set(body) == {"artifact", "member"}, "artifact.revoke body is {artifact, member}")
    _artifact(body, False)
    _text(body, "member", 128)


def check_fetch(body: Mapping[str, Any]) -> None:
    _require(set(body) == {"artifact", "purpose"}, "artifact.key.fetch body is {artifact, purpose}")
    _artifact(body, True)
    _text(body, "purpose", 500)


def check_erase(body: Mapping[str, Any]) -> None:
    _require(set(body) == {"artifact", "reason"}, "artifact.erase body is {artifact, reason}")
    _artifact(body, True)
    _text(body, "reason", 2000)


def check_replica(body: Mapping[str, Any]) -> None:
    _require(set(body) == {"artifact", "location"}, "artifact.replica body is {artifact, location}")
    _artifact(body, True)
    _text(body, "location", 1000)


def _version(state: StateReader, art: Mapping[str, Any]) -> dict[str, Any]:
    found = state.get_state(version_key(art["kind"], art["name"], art["version"]))
    if not isinstance(found, dict):
        raise Rejected(
            f"no_{art['kind']}",
            f"{art['kind']} {art['name']} version {art['version']} is not registered",
        )
    return found


def _not_erased(state: StateReader, art: Mapping[str, Any]) -> None:
    erased = state.get_state(erased_key(art["kind"], art["name"], art["version"]))
    if isinstance(erased, dict):
        raise Rejected(
            "erased",
            f"{art['kind']} {art['name']} version {art['version']} was erased at entry "
            f"{erased['index']} by {erased['by']}: {shown(erased['reason'])}",
        )


def _roles(state: StateReader, name: str) -> list[str]:
    m = state.get_state(member_key(name))
    return list(m["roles"]) if isinstance(m, dict) else []


def exec_store(state: Overlay, call: Call) -> None:
    body = call.tx.body
    art = body["artifact"]
    record = _version(state, art)
    _not_erased(state, art)
    if call.tx.actor != record["by"] and "admin" not in _roles(state, call.tx.actor):
        raise Rejected(
            "not_permitted",
            f"only {record['by']}, who registered it, or an admin records how "
            f"{art['kind']} {art['name']} version {art['version']} is stored",
        )
    key = stored_key(art["kind"], art["name"], art["version"])
    if state.get_state(key) is not None:
        raise Rejected(
            "already_stored",
            f"{art['kind']} {art['name']} version "
            f"{art['version']} is already recorded as stored encrypted",
        )
    if len(body["objects"]) > int(record["artifact"]["files"]):
        raise Rejected("too_many_objects", "more objects than the version has files")
    state.put(
        key,
        {
            "artifact": dict(art),
            "scheme": body["scheme"],
            "key": body["key"],
            "location": body["location"],
            "objects": list(body["objects"]),
            "by": call.tx.actor,
            "index": call.index,
            "time": call.tx.time,
        },
    )


def exec_grant(state: Overlay, call: Call) -> None:
    body = call.tx.body
    art = body["artifact"]
    if not isinstance(state.get_state(entity_key(art["kind"], art["name"])), dict):
        raise Rejected(f"no_{art['kind']}", f"no {art['kind']} named {art['name']}")
    member = state.get_state(member_key(body["member"]))
    if not isinstance(member, dict) or member.get("status") != "active":
        raise Rejected("not_member", f"{body['member']} is not an active member")
    state.put(
        grant_key(art["kind"], art["name"], body["member"]),
        {
            "member": body["member"],
            "version": body["version"],
            "by": list(dict.fromkeys(call.signers)),
            "index": call.index,
            "time": call.tx.time,
        },
    )


def exec_revoke(state: Overlay, call: Call) -> None:
    body = call.tx.body
    art = body["artifact"]
    key = grant_key(art["kind"], art["name"], body["member"])
    if state.get_state(key) is None:
        raise Rejected("no_grant", f"{body['member']} holds no grant for {art['name']}")
    state.delete(key)


def exec_fetch(state: Overlay, call: Call) -> None:
    art = call.tx.body["artifact"]
    _version(state, art)
    _not_erased(state, art)
    stored = state.get_state(stored_key(art["kind"], art["name"], art["version"]))
    if not isinstance(stored, dict):
        raise Rejected(
            "not_encrypted",
            f"{art['kind']} {art['name']} version {art['version']} is not stored encrypted",
        )
    actor = call.tx.actor
    if actor == stored["by"]:
        return
    grant = state.get_state(grant_key(art["kind"], art["name"], actor))
    if isinstance(grant, dict) and grant["version"] in (None, art["version"]):
        return
    raise Rejected(
        "no_grant",
        f"{actor} holds no grant for the key of {art['kind']} {art['name']} "
        f"version {art['version']} ({ARTIFACT_GRANT})",
    )


def exec_erase(state: Overlay, call: Call) -> None:
    body = call.tx.body
    art = body["artifact"]
    record = _version(state, art)
    _not_erased(state, art)
    if call.version >= PERSONAL_VERSION:
        # A dataset version's ingest fields (source, batch, collector: who gave the
        # data) are erased with it.
        ingest = record.get("ingest")
        erase_fields(state, call, record["index"], commitments_in(ingest), body["reason"])
    state.put(
        erased_key(art["kind"], art["name"], art["version"]),
        {
            "artifact": dict(art),
            "reason": body["reason"],
            "by": call.tx.actor,
            "signers": list(dict.fromkeys(call.signers)),
            "index": call.index,
            "time": call.tx.time,
        },
    )


def member_org(state: StateReader, name: str) -> str:
    """The organisation a member's copies count for: its ``org``, else its name."""
    m = state.get_state(member_key(name))
    org = m.get("org") if isinstance(m, dict) else None
    return org if isinstance(org, str) and org else name


def replica_orgs(state: StateReader, kind: str, name: str, version: int) -> list[str]:
    """The organisations recorded as holding a verified copy of a version, sorted."""
    found = state.get_state(replicas_key(kind, name, version))
    return sorted(found) if isinstance(found, dict) else []


def exec_replica(state: Overlay, call: Call) -> None:
    """The member's organisation holds a verified copy of the version at ``location``
    (recorded again, the location and time are replaced)."""
    art = call.tx.body["artifact"]
    _version(state, art)
    _not_erased(state, art)
    key = replicas_key(art["kind"], art["name"], art["version"])
    found = state.get_state(key)
    copies = dict(found) if isinstance(found, dict) else {}
    copies[member_org(state, call.tx.actor)] = {
        "location": call.tx.body["location"],
        "by": call.tx.actor,
        "index": call.index,
        "time": call.tx.time,
    }
    state.put(key, copies)


def _context(state: StateReader, call: Call) -> dict[str, Any]:
    """What a policy on these types sees beyond the common context: ``artifact``
    {kind, name, version, by, encrypted} (version and by: null for grants) and,
    for grants, ``member`` {name, org, roles, status}."""
    body = call.tx.body
    art = body["artifact"]
    version = art.get("version")
    by = None
    if is_int(version):
        record = state.get_state(version_key(art["kind"], art["name"], version))
        by = record["by"] if isinstance(record, dict) else None
    encrypted = is_int(version) and isinstance(
        state.get_state(stored_key(art["kind"], art["name"], version)), dict
    )
    context: dict[str, Any] = {
        "artifact": {
            "kind": art["kind"],
            "name": art["name"],
            "version": version,
            "by": by,
            "encrypted": encrypted,
        }
    }
    if "member" in body:
        m = state.get_state(member_key(body["member"]))
        context["member"] = (
            {
                "name": body["member"],
                "org": m["org"],
                "roles": list(m["roles"]),
                "status": m["status"],
            }
            if isinstance(m, dict)
            else {"name": body["member"], "org": "", "roles": [], "status": "unknown"}
        )
    return context


def access_rules() -> dict[str, TypeRule]:
    admit = names("artifact.name")
    v = ARTIFACT_VERSION
    return {
        ARTIFACT_STORE: TypeRule(check_store, exec_store, _context, admit, since=v),
        ARTIFACT_GRANT: TypeRule(check_grant, exec_grant, _context, admit, since=v),
        ARTIFACT_REVOKE: TypeRule(check_revoke, exec_revoke, _context, admit, since=v),
        ARTIFACT_KEY_FETCH: TypeRule(check_fetch, exec_fetch, _context, admit, since=v),
        ARTIFACT_ERASE: TypeRule(check_erase, exec_erase, _context, admit, since=v),
        ARTIFACT_REPLICA: TypeRule(
            check_replica, exec_replica, _context, admit, since=REPLICATION_VERSION
        ),
    }
