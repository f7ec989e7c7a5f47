"""Bootstrapping a node from a peer: for a node whose next part of the order
etcd no longer holds (it was down past a compaction, or it is new).

A peer tells where it stands in the order (the next position and the size of
its log then, read together); the node waits for a final checkpoint of the
peer covering that size, verifies it under the ledger's checkpoint policy
(the quorum of node cosignatures), fetches the entries it lacks as tlog-tiles
entry bundles, checks that they give the checkpoint's root, re-derives each
with the executor (signatures, rules, outcomes) and stores those up to the
peer's size with the peer's position, from where it follows etcd. A peer that
serves anything else (a tampered bundle, a checkpoint short of the quorum) is
reported and the next peer is tried; nothing unverified is stored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import httpx

from ..contracts import ContractSet
from ..core.policy import CheckpointPolicy
from ..core.tiles import TILE_WIDTH, decode_entry_bundle
from ..errors import Error, ProofError, UnavailableError
from ..node.node import POSITION_KEY
from ..node.replica import apply_verified
from ..storage.protocols import LedgerStore

__all__ = ["bootstrap_from_peers", "first_difference"]

_log = logging.getLogger("modelchain.cluster")


def bootstrap_from_peers(
    store: LedgerStore,
    contracts: ContractSet,
    policy: CheckpointPolicy,
    peers: Sequence[str],
    *,
    wait_s: float = 30.0,
    client: httpx.Client | None = None,
) -> tuple[int, int]:
    """Bring ``store`` up to a peer's log, verified; return the position in
    the order to follow from and the size reached. Raises UnavailableError,
    naming each peer and why, when none could be used."""
    if not peers:
        raise UnavailableError(
            "this node must bootstrap from a peer (etcd no longer holds the order it needs) "
            "but its node file names no [peers] and the checkpoint policy no node URLs"
        )
    http = client or httpx.Client(timeout=10.0)
    reasons: list[str] = []
    try:
        for url in peers:
            try:
                return _from_peer(store, contracts, policy, url.rstrip("/"), http, wait_s)
            except (Error, httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                reason = exc.message if isinstance(exc, Error) else repr(exc)
                _log.warning(f"bootstrapping from {url} failed: {reason}; trying the next peer")
                reasons.append(f"{url}: {reason}")
    finally:
        if client is None:
            http.close()
    raise UnavailableError("no peer could bootstrap this node: " + "; ".join(reasons))


def _from_peer(
    store: LedgerStore,
    contracts: ContractSet,
    policy: CheckpointPolicy,
    url: str,
    http: httpx.Client,
    wait_s: float,
) -> tuple[int, int]:
    status: dict[str, Any] = _json(http.get(url + "/cluster/status"))
    position, size = int(status["position"]["position"]), int(status["position"]["size"])
    if size < store.size:
        raise ProofError(f"the peer holds {size} entries, fewer than this node's {store.size}")
    # A final checkpoint of the peer that covers its position's size.
    deadline = time.monotonic() + wait_s
    while True:
        answer = http.get(url + "/checkpoint")
        answer.raise_for_status()
        note = answer.content
        cp, _ = policy.verify(note)
        if cp.size >= size:
            break
        if time.monotonic() > deadline:
            raise UnavailableError(f"no final checkpoint of {size} entries within {wait_s:.0f}s")
        time.sleep(0.05)
    entries = _entries(http, url, store.size, cp.size)
    _log.info(
        f"bootstrapping from {url}: entries {store.size} to {size - 1}, verified against its "
        f"final checkpoint of {cp.size}"
    )
    if size == store.size:
        store.set_meta(POSITION_KEY, f"{position} {size}")
    else:
        meta = {POSITION_KEY: f"{position} {size}"}
        # log_key None: a node may have joined after genesis (a policy set since
        # names it); the caller checks the ledger's policy names it.
        apply_verified(store, contracts, None, cp, entries, size, meta=meta)
    return position, size


def _entries(http: httpx.Client, url: str, start: int, end: int) -> list[bytes]:
    """Entries ``start`` to ``end - 1`` of the peer, in entry bundles."""
    out: list[bytes] = []
    at = start
    while at < end:
        stop = min(end, (at // TILE_WIDTH + 1) * TILE_WIDTH)
        answer = http.get(url + "/v1/entries:range", params={"start": at, "end": stop})
        answer.raise_for_status()
        got = decode_entry_bundle(answer.content)
        if len(got) != stop - at:
            raise ProofError(f"the peer sent {len(got)} entries for {at} to {stop - 1}")
        out += got
        at = stop
    return out


def _json(answer: httpx.Response) -> dict[str, Any]:
    answer.raise_for_status()
    data = answer.json()
    if not isinstance(data, dict):
        raise ValueError("the peer's answer is not a JSON object")
    return data


def first_difference(store: LedgerStore, peers: Sequence[str], start: int, end: int) -> int | None:
    """The first index in ``start``..``end - 1`` where ``store``'s entry is not
    the one a peer serves (the first peer that answers is asked); None when
    none answers or they agree."""
    with httpx.Client(timeout=10.0) as http:
        for url in peers:
            try:
                theirs = _entries(http, url.rstrip("/"), start, end)
            except (Error, httpx.HTTPError, ValueError) as exc:
                _log.warning(f"reading entries from {url} to compare failed ({exc!r})")
                continue
            for offset, entry in enumerate(theirs):
                if store.entry(start + offset) != entry:
                    return start + offset
            return None
    return None
