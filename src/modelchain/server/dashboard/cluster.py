"""A cluster node's pages: this node's view of the cluster (the nodes its
checkpoint policy names, the threshold, the latest final checkpoints it stored
and who cosigned each) and the divergence alarm every page carries. Only what
this node holds is read: the server never calls the other nodes."""

from __future__ import annotations

from typing import Any

from ...core.checkpoint import Checkpoint
from ...core.note import parse_note
from ...core.policy import NONE, CheckpointPolicy
from ...errors import Error
from ...node.node import Node

__all__ = ["CHECKPOINTS_SHOWN", "alarm", "nodes_view", "quorum_text"]

CHECKPOINTS_SHOWN = 20  # latest final checkpoints the nodes page lists


def quorum_text(policy: CheckpointPolicy) -> str:
    """What makes a checkpoint final, in a few words: ``2 of 3 (group nodes)``."""
    if policy.quorum == NONE:
        return "no cosignature (quorum none)"
    group = next((g for g in policy.groups if g.name == policy.quorum), None)
    if group is None:
        return f"1 of 1 (witness {policy.quorum})"
    return f"{group.threshold} of {len(group.members)} (group {group.name})"


def nodes_view(node: Node, policy: CheckpointPolicy) -> dict[str, Any] | None:
    """What the nodes page shows of ``node`` (None when it is not a cluster
    node): the policy's nodes, the threshold, where this node stands, and its
    latest final checkpoints with each node's cosignature time (seconds)."""
    status = node.cluster_status()
    if status is None:
        return None
    nodes = policy.nodes
    names = [w.name for w in nodes]
    by_key = {w.key.public_key: w.name for w in nodes}
    # A node signs twice with one key: as the log (under the origin) and as a cosigner.
    log_ids = {log.key.public_key: log.key.key_id_hex for log in policy.logs}
    rows = []
    for size, note in node.store.latest_checkpoints(CHECKPOINTS_SHOWN):
        row: dict[str, Any] = {"size": size, "cosigned": {}, "error": None}
        try:
            result = policy.evaluate(note)
        except Error as exc:
            # A stored checkpoint that no longer verifies is itself news: shown, not hidden.
            row["root"] = _root_of(note)
            row["error"] = exc.message
        else:
            row["root"] = result.checkpoint.root.hex()
            row["log"] = by_key.get(result.log.public_key, result.log.name)
            row["cosigned"] = {n: t for n, t in result.cosigned.items() if n in names}
            row["final"] = result.satisfied
        rows.append(row)
    return {
        "this": status["node"],
        "status": status,
        "nodes": [
            {
                "name": w.name,
                "key_id": w.key.key_id_hex,
                "log_key_id": log_ids.get(w.key.public_key, ""),
                "url": w.url,
                # Linked only when it is a web address: a policy is signed
                # text, but a link is what a reader clicks.
                "href": w.url if w.url and w.url.startswith(("https://", "http://")) else None,
                "this": w.name == status["node"],
            }
            for w in nodes
        ],
        "quorum": quorum_text(policy),
        "checkpoints": rows,
        "shown": CHECKPOINTS_SHOWN,
    }


def _root_of(note: bytes) -> str:
    try:
        return Checkpoint.from_text(parse_note(note).text).root.hex()
    except Error:
        return ""


def alarm(node: Node) -> dict[str, Any] | None:
    """The banner of a node that stopped (None when it did not): for a
    divergence, the size and the nodes that signed the other root; for any
    other fault only that it stopped (its message may name server paths: the
    log has it)."""
    if node.fault is None:
        return None
    d = node.divergence
    if d is None:
        return {"diverged": False}
    return {
        "diverged": True,
        "size": d.size,
        "mine": d.mine.hex(),
        "theirs": d.theirs.hex(),
        "nodes": list(d.nodes),
        "first_entry": d.first_entry,
    }
