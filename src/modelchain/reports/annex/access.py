"""The statements about the artifacts' keys and erasures: how a version was stored
encrypted, who was granted its key, every key request (accepted or refused, with its
reason code), and its erasure (who, when, why, what it destroys)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ...contracts import types as tx_types
from .._evidence import rfc3339
from .model import Statement
from .source import Source
from .wording import capped, capped_note, fmt, with_org

__all__ = ["erasure", "key_events"]


def erasure(
    src: Source, kind: str, name: str, version: int, statement_kind: str
) -> Statement | None:
    """The erasure of ``kind name@version`` if the checkpoint covers it: who signed it,
    when, why, and what it destroys (the ledger records the decision; each organisation
    runs the destruction against its own key stores and artifact stores)."""
    erased = src.led.artifacts.erasure(kind, name, version)
    if erased is None or not src.ev.covers(erased["index"]):
        return None
    signers = list(erased.get("signers") or [erased["by"]])
    stored = src.led.artifacts.stored(kind, name, version)
    entries = [erased["index"]]
    stored_at: int | None = None
    if stored is not None and src.ev.covers(stored.get("index")):
        entries.append(stored["index"])
        stored_at = int(stored["index"])
        objects = [str(o["ciphertext"]) for o in stored["objects"]]
        destroyed = (
            f"its data key (key entry {stored['key']}, wrapped by the organisation's KEK, "
            f"in every key store) and its {len(objects)} encrypted object(s) "
            f"{fmt(objects)}, stored encrypted ({stored['scheme']}) in {stored['location']} "
            f"at entry {stored['index']}; a saved copy of the ciphertext cannot be "
            "decrypted once no copy of the key survives"
        )
        key: str | None = str(stored["key"])
    else:
        versions = src.led.datasets if kind == "dataset" else src.led.models
        files = versions.get(name, version).record["artifact"].get("files")
        objects = []
        destroyed = (
            f"its {files} stored file(s) that no other version holds and its manifest, "
            "from every artifact store"
        )
        key = None
    if kind == "dataset":
        destroyed += "; and its record-proof key (no new record proofs; old ones still verify)"
    label = "Dataset" if kind == "dataset" else "Model"
    return Statement(
        statement_kind,
        f"{label} {name} version {version} was erased at {rfc3339(erased['time'])} by "
        f"{', '.join(with_org(n, src.org(n)) for n in signers)}: {erased['reason']}. "
        f"The erasure destroys {destroyed}. Its digests stay on the ledger, which still "
        "verifies; it can no longer be pulled, decrypted or loaded.",
        tuple(entries),
        {
            "kind": kind,
            kind: name,
            "version": version,
            "by": signers,
            "reason": erased["reason"],
            "time": rfc3339(erased["time"]),
            "destroyed": {
                "data_key": key,
                "objects": objects,
                "record_key": kind == "dataset",
            },
            "stored": stored_at,
        },
    )


def _what(art: Mapping[str, Any], version: Any) -> str:
    if isinstance(version, int):
        return f"{art.get('kind')} {art.get('name')} version {version}"
    return f"every version of {art.get('kind')} {art.get('name')}"


def _refused_attempt(tx_type: str, art: Mapping[str, Any], body: Mapping[str, Any]) -> str:
    version = art.get("version")
    member = body.get("member")
    if tx_type == tx_types.ARTIFACT_KEY_FETCH:
        return f"requested the data key of {_what(art, version)}"
    if tx_type == tx_types.ARTIFACT_GRANT:
        return f"attempted to grant {member} the data key of {_what(art, body.get('version'))}"
    if tx_type == tx_types.ARTIFACT_REVOKE:
        return f"attempted to revoke {member}'s grant for {art.get('kind')} {art.get('name')}"
    if tx_type == tx_types.ARTIFACT_STORE:
        return f"attempted to record {_what(art, version)} as stored encrypted"
    return f"attempted to erase {_what(art, version)}"


def key_events(src: Source, items: Sequence[Mapping[str, Any]]) -> list[Statement]:
    """Grants, revocations and refusals one statement each; accepted key requests
    summed up per version and member, citing each request (up to the cap)."""
    st: list[Statement] = []
    fetched: dict[tuple[str, str, int, str], list[Mapping[str, Any]]] = {}
    for item in items:
        body, actor, index = item["body"], item["actor"], item["index"]
        art = body["artifact"]
        who = with_org(actor, src.org(actor))
        when = rfc3339(item["time"])
        common = {
            "type": item["type"],
            "kind": art.get("kind"),
            "name": art.get("name"),
            "by": actor,
            "time": when,
        }
        if item["outcome"].get("result") != "accepted":
            code = item["outcome"].get("code", "")
            reason = item["outcome"].get("reason", "")
            doing = _refused_attempt(item["type"], art, body)
            st.append(
                Statement(
                    "key_refused",
                    f"{who} {doing} at {when}: refused, {code}: {reason}.",
                    (index,),
                    {
                        **common,
                        "version": art.get("version", body.get("version")),
                        "member": body.get("member"),
                        "purpose": body.get("purpose"),
                        "accepted": False,
                        "code": code,
                        "reason": reason,
                    },
                )
            )
        elif item["type"] == tx_types.ARTIFACT_GRANT:
            member = str(body["member"])
            st.append(
                Statement(
                    "key_grant",
                    f"{who} granted {with_org(member, src.org(member))} the data key of "
                    f"{_what(art, body.get('version'))} at {when}.",
                    (index,),
                    {**common, "version": body.get("version"), "member": member, "accepted": True},
                )
            )
        elif item["type"] == tx_types.ARTIFACT_REVOKE:
            member = str(body["member"])
            st.append(
                Statement(
                    "key_revoke",
                    f"{who} revoked {with_org(member, src.org(member))}'s grant for "
                    f"{art.get('kind')} {art.get('name')} at {when} (a key obtained before "
                    "stays with its holder).",
                    (index,),
                    {**common, "version": None, "member": member, "accepted": True},
                )
            )
        else:
            group = (str(art["kind"]), str(art["name"]), int(art["version"]), actor)
            fetched.setdefault(group, []).append(item)
    for (kind, name, version, actor), requests in sorted(fetched.items()):
        indexes = [r["index"] for r in requests]
        purposes = sorted({str(r["body"].get("purpose", "")) for r in requests})
        first, last = min(r["time"] for r in requests), max(r["time"] for r in requests)
        st.append(
            Statement(
                "key_request",
                f"{with_org(actor, src.org(actor))} requested and obtained the data key of "
                f"{kind} {name} version {version} {len(requests)} time(s) between "
                f"{rfc3339(first)} and {rfc3339(last)} (accepted); purposes: {fmt(purposes)}."
                f"{capped_note(indexes)}",
                capped(indexes),
                {
                    "type": tx_types.ARTIFACT_KEY_FETCH,
                    "kind": kind,
                    "name": name,
                    "version": version,
                    "by": actor,
                    "accepted": True,
                    "count": len(requests),
                    "purposes": purposes,
                    "indexes": indexes,
                },
            )
        )
    return st
