"""A ledger behind a server: ``modelchain.connect(url, identity=...)``.

The client trusts the server for nothing. It keeps a verified mirror of the
log beside the caller: every checkpoint must meet the checkpoint policy (the
trusted log key's signature and the cosignatures genesis asks for; for a
cluster, any node's log signature and a quorum of node cosignatures, so only
final checkpoints) and be consistent with the last one it saw (checked with the
server's RFC 9162 consistency proof), and every entry it receives must, with
the ones it already holds, give that checkpoint's root before it is
re-executed and stored. Queries are then answered from the mirror, so the
interface is the embedded ``Ledger``'s. Writes go to the server as DSSE
envelopes; each acknowledgement is checked against the log at the next read.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import ssl
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from ..contracts import default_contracts
from ..contracts.genesis import checkpoint_policy
from ..core.b64 import unb64
from ..core.checkpoint import Checkpoint
from ..core.dsse import Envelope
from ..core.identity import Signer, VerifierKey
from ..core.merkle import leaf_hash, tree_root, verify_consistency
from ..core.policy import CheckpointPolicy, as_policy, verify_checkpoint
from ..core.tiles import decode_entry_bundle
from ..core.tx import MAX_ENTRY_BYTES, LogEntry, decode_submission
from ..errors import (
    AccessError,
    Error,
    InputError,
    IntegrityError,
    MalformedError,
    NotFoundError,
    ProofError,
    PushbackError,
    RefusedError,
    SignatureError,
    UnavailableError,
    UsageError,
    VerificationError,
    WrongLedgerError,
)
from ..node.node import Ack, Node, check_submission, system_clock_ms
from ..node.replica import apply_checkpoint
from ..storage.blobs import FileBlobStore
from ..storage.protocols import BlobStore
from ..storage.sqlite import SqliteStore
from .ledger import Ledger, default_home
from .local import DB_NAME

__all__ = ["RemoteBackend", "RemoteLedger", "connect", "mirror_path"]

log = logging.getLogger("modelchain.ledger.remote")

TOKEN_ENV = "MODELCHAIN_TOKEN"  # read by the entry points, never here


_JSON_LIMIT = 8 << 20  # a JSON answer: proofs, acknowledgements, ledger info
_NOTE_LIMIT = 64 << 10  # a checkpoint note
_RANGE = 256  # entries per range request ...
_RANGE_LIMIT = _RANGE * (MAX_ENTRY_BYTES + 2)  # ... and their most bytes
_BLOB_LIMIT = 256 << 20  # a manifest blob


class _Http:
    """The one place the client talks HTTP: errors come back as modelchain errors."""

    def __init__(
        self,
        url: str,
        token: str | None,
        timeout: float,
        transport: httpx.BaseTransport | None,
        verify: bool | str | ssl.SSLContext,
    ) -> None:
        headers = {"User-Agent": "modelchain-client"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.url = url.rstrip("/")
        if isinstance(verify, str):  # a CA bundle (e.g. the server's self-signed certificate)
            verify = ssl.create_default_context(cafile=verify)
        self.client = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=timeout,
            transport=transport,
            verify=verify,
        )

    def request(
        self, method: str, path: str, *, limit: int = _JSON_LIMIT, **kw: Any
    ) -> httpx.Response:
        """The answer, read up to ``limit`` bytes (a server cannot exhaust memory)."""
        try:
            with self.client.stream(method, path, **kw) as response:
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > limit:
                        raise MalformedError(f"the server's answer to {path} is over {limit} bytes")
        except httpx.TransportError as exc:
            raise UnavailableError(f"cannot reach {self.url}: {exc}") from exc
        answer = httpx.Response(response.status_code, headers=response.headers, content=bytes(body))
        if answer.status_code < 400:
            return answer
        raise _error_of(answer)

    def get(self, path: str, *, limit: int = _JSON_LIMIT, **params: Any) -> httpx.Response:
        return self.request("GET", path, limit=limit, params=params or None)

    def json(self, method: str, path: str, **kw: Any) -> Any:
        response = self.request(method, path, **kw)
        try:
            return response.json()
        except ValueError as exc:
            raise MalformedError(f"the server's answer to {path} is not JSON") from exc

    def close(self) -> None:
        self.client.close()


# The codes a server sends for refusals; anything else (the verification family
# in particular, which only the client's own checks may raise) becomes MalformedError.
def _family(cls: type[Error]) -> list[type[Error]]:
    return [cls, *(sub for child in cls.__subclasses__() for sub in _family(child))]


_SERVER_CODES: dict[str, type[Error]] = {
    cls.code: cls for root in (InputError, RefusedError, AccessError) for cls in _family(root)
} | {c.code: c for c in (NotFoundError, UsageError, SignatureError)}


def _error_of(response: httpx.Response) -> Error:
    try:
        err = response.json()["error"]
        code, message = str(err["code"]), str(err["message"])
    except (ValueError, KeyError, TypeError):
        if response.status_code >= 500:
            return UnavailableError(f"the server answered {response.status_code}")
        return MalformedError(f"the server answered {response.status_code} without an error body")
    return _server_error(code, message, response.status_code, response.headers)


def _server_error(
    code: str, message: str, status: int, headers: Mapping[str, str] | None = None
) -> Error:
    if status == 503 or code == PushbackError.code:
        try:
            after = float((headers or {}).get("retry-after", "1"))
        except ValueError:
            after = 1.0
        if code == PushbackError.code:
            return PushbackError(message, after)
        return UnavailableError(message)
    cls = _SERVER_CODES.get(code)
    if cls is None:
        if status >= 500:
            return UnavailableError(f"the server failed ({code}): {message}")
        return MalformedError(f"the server answered {status} ({code}): {message}")
    return cls(message)


class _RemoteBlobs(FileBlobStore):
    """Blobs cached beside the mirror; fetched from the server (and checked
    against their name) on a miss, and uploaded when stored."""

    def __init__(self, root: Path, http: _Http) -> None:
        super().__init__(root)
        self._http = http

    def put(self, data: bytes) -> str:
        ref = super().put(data)
        got = self._http.json(
            "POST",
            "/v1/blobs",
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        if not isinstance(got, dict) or got.get("ref") != ref:
            raise IntegrityError(f"the server stored blob {ref} under another name")
        return ref

    def get(self, ref: str) -> bytes:
        try:
            return super().get(ref)
        except NotFoundError:
            pass
        data = self._http.get(f"/v1/blobs/{ref}", limit=_BLOB_LIMIT).content
        if "sha256:" + hashlib.sha256(data).hexdigest() != ref:
            raise IntegrityError(f"the server's blob {ref} does not match its name")
        FileBlobStore.put(self, data)
        return data


class RemoteBackend:
    """A server behind HTTP and the verified mirror of its log (see the module doc)."""

    def __init__(
        self,
        url: str,
        *,
        cache: str | os.PathLike[str],
        token: str | None = None,
        log_key: VerifierKey | str | None = None,
        policy: CheckpointPolicy | str | None = None,
        staleness: float = 1.0,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        tls_verify: bool | str = True,
        confirm_wait: float = 10.0,
    ) -> None:
        self.url = url.rstrip("/")
        self._confirm_wait = confirm_wait
        self.readonly = False
        self.contracts = default_contracts()
        self._staleness = staleness
        self._synced_at = -math.inf
        self._sync_lock = threading.RLock()
        self._last_opened: tuple[bytes, Checkpoint] | None = None
        # A policy the caller pins wins; else the one genesis names (verified
        # with the entries), the trusted log key alone until genesis is known.
        # A cluster's policy names each node's log key: the one trusted is then
        # the one the mirror pinned, or the one this node announces, if listed.
        self._pinned_policy = None if policy is None else as_policy(policy)
        self._policy: CheckpointPolicy | None = None
        pinned = self._pinned_policy
        if log_key is None and pinned is not None and len(pinned.logs) == 1:
            log_key = pinned.log_key
        self._http = _Http(self.url, token, timeout, transport, tls_verify)
        try:
            info = self._http.json("GET", "/v1/ledger")
            origin = info.get("origin") if isinstance(info, dict) else None
            if not isinstance(origin, str) or not origin:
                raise MalformedError("the server's /v1/ledger names no origin")
            self.origin = origin
            # Keyed by the URL alone: a server announcing another origin meets the
            # mirror (and the key) pinned for this URL, not a fresh first use.
            self.path = Path(cache)
            self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._store = SqliteStore(self.path / DB_NAME, synchronous="NORMAL")
        except BaseException:
            self._http.close()
            raise
        try:
            self._trusted: VerifierKey = self._trusted_key(log_key, str(info.get("log_key", "")))
            if self._pinned_policy is not None:
                self._pinned_policy = self._pinned_policy.with_log(self._trusted)
            # Fail at once on a server whose checkpoints the trusted key did not sign,
            # and pin a key only once it has been seen to sign one.
            try:
                self._fetch_checkpoint()
            except SignatureError as exc:
                raise self._explained(exc, str(info.get("log_key", ""))) from exc
            if self._store.meta("log_key") is None:
                self._store.set_meta("log_key", self._trusted.to_string())
        except BaseException:
            self.close()
            raise

    def _trusted_key(self, given: VerifierKey | str | None, announced: str) -> VerifierKey:
        store = self._store
        known_origin = store.meta("origin")
        if known_origin is not None and known_origin != self.origin:
            raise WrongLedgerError(
                f"{self.url} now serves {self.origin}; the mirror at {self.path} is of "
                f"{known_origin}"
            )
        pinned = store.meta("log_key")
        key = VerifierKey.from_string(given) if isinstance(given, str) else given
        if key is None and pinned is not None:
            key = VerifierKey.from_string(pinned)
        if key is None:
            try:
                key = VerifierKey.from_string(announced)
            except Error as exc:
                raise MalformedError(f"the server announces no valid log key: {exc}") from exc
            if self._pinned_policy is None:
                log.warning(
                    "trusting the log key %s that %s announced (first use); pin it with "
                    "log_key= or --log-key to be safe",
                    key.to_string(),
                    self.url,
                )
        if key.name != self.origin:
            raise VerificationError(
                f"the trusted log key is for {key.name}, but {self.url} serves {self.origin}"
            )
        if self._pinned_policy is not None and self._pinned_policy.logs and not self._lists(key):
            logs = ", ".join(str(entry.key) for entry in self._pinned_policy.logs)
            raise VerificationError(
                f"the log key {key} ({self.url}) is not one of the pinned checkpoint "
                f"policy's logs ({logs})"
            )
        # Another node of a cluster is fine where the pinned policy names both keys.
        if (
            pinned is not None
            and pinned != key.to_string()
            and not (self._lists(key) and self._lists(VerifierKey.from_string(pinned)))
        ):
            raise VerificationError(
                f"the mirror at {self.path} trusted another log key ({pinned}); "
                "remove it to trust a new one"
            )
        if known_origin is None:
            store.set_meta("origin", self.origin)
        store.set_meta("url", self.url)
        return key

    def _explained(self, exc: SignatureError, announced: str) -> SignatureError:
        """``exc``, saying what to pin where a mirror not yet holding genesis
        trusts one log key and the server signs with another: a cluster node
        other than the one genesis names (each node has its own key)."""
        if (
            self._pinned_policy is not None
            or self._store.size
            or announced in ("", self._trusted.to_string())
        ):
            return exc
        return SignatureError(
            f"{exc.message}: {self.url} signs with another key ({announced}); if it is a "
            "node of a cluster, pin the cluster's checkpoint policy (`modelchain log "
            "policy`, policy= or --log-key POLICY_FILE), which names every node's key"
        )

    def _lists(self, key: VerifierKey) -> bool:
        """Whether the pinned policy names ``key`` as one of its logs."""
        pinned = self._pinned_policy
        return pinned is not None and key in [entry.key for entry in pinned.logs]

    # -- the mirror ---------------------------------------------------------------

    @property
    def store(self) -> SqliteStore:
        if time.monotonic() - self._synced_at > self._staleness:
            self.sync()
        return self._store

    @property
    def held(self) -> SqliteStore:
        return self._store

    @property
    def log_key(self) -> VerifierKey:
        return self._trusted

    @property
    def audit_key(self) -> VerifierKey | None:
        return self._trusted

    @property
    def policy(self) -> CheckpointPolicy:
        if self._pinned_policy is not None:
            return self._pinned_policy
        if self._policy is None:
            if self._store.size == 0:
                return CheckpointPolicy.of_log(self._trusted)
            self._policy = self._genesis_policy(self._store.entry(0))
        return self._policy

    def _genesis_policy(self, entry: bytes) -> CheckpointPolicy:
        try:
            return checkpoint_policy(LogEntry.decode(entry).transaction.body).with_log(
                self._trusted
            )
        except (Error, KeyError, TypeError) as exc:
            raise ProofError(f"the genesis entry names no valid checkpoint policy: {exc}") from exc

    @property
    def node(self) -> Node:
        raise UsageError(f"the ledger at {self.url} is remote; it has no local node")

    def clock(self) -> int:
        return system_clock_ms()

    def sync(self, covering: int = 0) -> Checkpoint:
        """Bring the mirror up to the server's latest checkpoint (asking for one
        that covers ``covering`` entries), verifying it all; return it."""
        with self._sync_lock:  # a receipt log's thread and the caller may both read
            return self._sync(covering)

    def _fetch_checkpoint(self, covering: int = 0) -> tuple[Checkpoint, bytes, bytes]:
        """The server's latest checkpoint (one covering at least ``covering``
        entries, if the log has them), verified under the policy, with every
        signature line that verified: the log's and the known witnesses'
        cosignatures travel on in receipts; lines nobody here can check do not.
        Also returns the note as served."""
        params = {"covering": covering} if covering else {}
        raw = self._http.get("/checkpoint", limit=_NOTE_LIMIT, **params).content
        result = self.policy.evaluate(raw).require()
        return result.checkpoint, result.verified.to_bytes(), raw

    def _sync(self, covering: int) -> Checkpoint:
        cp, note, raw = self._fetch_checkpoint(covering)
        store = self._store
        held = store.size
        last = store.checkpoint()
        if cp.size < held:
            if last is not None and self._behind(cp):
                self._synced_at = time.monotonic()
                return self._opened(last[1])
            raise ProofError(
                f"the server's checkpoint has {cp.size} entries but {held} were already "
                "verified: the log was rolled back or forked"
            )
        if last is not None:
            self._check_consistent(self._opened(last[1]), cp)
        if cp.size > held:
            entries = self._fetch(held, cp.size)
            if held == 0 and self._pinned_policy is None:
                # Genesis names the policy: the checkpoint must meet it before
                # anything is stored (apply_checkpoint then checks genesis is in it).
                result = self._genesis_policy(entries[0]).evaluate(raw).require()
                note = result.verified.to_bytes()
            apply_checkpoint(store, self.contracts, self._trusted, cp, note, entries)
        elif store.root() != cp.root:
            raise ProofError(
                f"the server's checkpoint of size {cp.size} signs another root than the "
                "entries already verified: the log forked"
            )
        elif last is None or last[1] != note:  # new, or other cosignatures
            store.put_checkpoint(cp.size, cp.root, note)
        self._synced_at = time.monotonic()
        return cp

    def _behind(self, cp: Checkpoint) -> bool:
        """Whether ``cp``, smaller than the mirror, is a cluster node's final
        checkpoint from before the mirror's: a node that has not yet seen the
        latest quorum (behind a load balancer, or after switching nodes), not a
        rollback. Its root must be the mirror's at that size. A single log
        never goes back."""
        if not self.policy.nodes:
            return False
        return tree_root(self._store.node_reader(), cp.size) == cp.root

    def _opened(self, note: bytes) -> Checkpoint:
        """A stored (already verified) checkpoint note, parsed and checked once."""
        if self._last_opened is None or self._last_opened[0] != note:
            self._last_opened = (note, verify_checkpoint(note, self.policy)[0])
        return self._last_opened[1]

    def _check_consistent(self, old: Checkpoint, new: Checkpoint) -> None:
        if old.size == new.size:
            if old.root != new.root:
                raise ProofError(
                    f"two checkpoints of size {new.size} with different roots: the log forked"
                )
            return
        got = self._http.json(
            "GET", "/v1/proof/consistency", params={"old": old.size, "new": new.size}
        )
        hashes = got.get("proof") if isinstance(got, dict) else None
        if not isinstance(hashes, list) or len(hashes) > 128:
            raise ProofError("the server's consistency proof is not a list of hashes")
        proof = [unb64(h, "a proof hash", ProofError) for h in hashes]
        try:
            verify_consistency(old.size, new.size, old.root, new.root, proof)
        except Error as exc:
            raise ProofError(
                f"the server's checkpoint of size {new.size} is not consistent with the one "
                f"of size {old.size} seen before ({exc.message}): the log was rewritten"
            ) from exc

    def _fetch(self, start: int, end: int) -> list[bytes]:
        """Entries ``start`` to ``end - 1``, as the server claims them (the caller
        checks them against the checkpoint's root)."""
        out: list[bytes] = []
        for lo in range(start, end, _RANGE):
            hi = min(end, lo + _RANGE)
            data = self._http.get("/v1/entries:range", limit=_RANGE_LIMIT, start=lo, end=hi).content
            got = decode_entry_bundle(data)
            if len(got) != hi - lo:
                raise ProofError(f"the server sent {len(got)} entries for {lo} to {hi - 1}")
            out.extend(got)
        return out

    # -- writing ----------------------------------------------------------------

    def _confirm(self, claimed: list[tuple[int, Envelope]]) -> list[Ack]:
        """The acks of entries the server says it logged, read from the verified
        mirror: each index must hold the envelope that was sent, and the outcome
        returned is the one the client re-executed, not the server's word."""
        if not claimed:
            return []
        deadline = time.monotonic() + self._confirm_wait
        want = max(index for index, _ in claimed) + 1
        with self._sync_lock:
            while True:
                cp = self.sync(covering=want)
                if cp.size >= want:
                    break
                if time.monotonic() > deadline:
                    raise ProofError(
                        f"the server acknowledged entry {want - 1}, but after "
                        f"{self._confirm_wait:g} s its signed checkpoints cover only {cp.size} "
                        "entries: the acknowledgement is not in the log"
                    )
                time.sleep(0.05)
            acks = []
            for index, sent in claimed:
                data = self._store.entry(index)
                entry = LogEntry.decode(data)
                if entry.envelope != sent:
                    raise ProofError(
                        f"the server acknowledged entry {index}, but the log holds another "
                        "transaction there: this one was not logged"
                    )
                acks.append(Ack(index, leaf_hash(data), entry.outcome))
        return acks

    def submit(self, data: bytes) -> Ack:
        sent, _ = decode_submission(data)
        got = self._http.json(
            "POST", "/v1/entries", content=data, headers={"Content-Type": "application/json"}
        )
        return self._confirm([(_claimed_index(got), sent)])[0]

    def submit_many(self, datas: Sequence[bytes]) -> list[Ack]:
        sent = [decode_submission(d)[0] for d in datas]
        got = self._http.json(
            "POST",
            "/v1/entries:batch",
            content=b"[" + b",".join(datas) + b"]",
            headers={"Content-Type": "application/json"},
        )
        if not isinstance(got, list) or len(got) != len(datas):
            raise MalformedError("the server answered a batch with a different number of results")
        claimed: list[tuple[int, Envelope]] = []
        first_error: Error | None = None
        for item, env in zip(got, sent, strict=True):
            err = item.get("error") if isinstance(item, dict) else None
            if isinstance(err, dict):
                refusal = _server_error(str(err.get("code")), str(err.get("message")), 400)
                first_error = first_error or refusal
            else:
                claimed.append((_claimed_index(item), env))
        acks = self._confirm(claimed)
        if first_error is not None:
            raise first_error
        return acks

    def disclose(self, index: int, disclosures: Sequence[str]) -> None:
        """Hand the server the disclosures of the committed fields of our logged entry
        ``index``: its vault keeps them, and its dashboard and reports reveal them."""
        self._http.json(
            "POST", f"/v1/entries/{index}/disclosures", json={"disclosures": list(disclosures)}
        )

    def precheck(self, data: bytes) -> None:
        """The node's admission checks that need only the (mirrored) state."""
        check_submission(data, self.origin, self.contracts, self.store)

    @property
    def max_batch(self) -> int:
        return 1000

    def checkpoint(self) -> bytes:
        """The latest checkpoint the mirror verified (brought up to date if stale)."""
        latest = self.store.checkpoint()
        if latest is None:
            raise NotFoundError("the ledger has no checkpoint yet")
        return latest[1]

    def cover(self, index: int) -> None:
        if index >= self._store.size:
            self.sync(covering=index + 1)  # an entry just written elsewhere

    @functools.cached_property
    def blobs(self) -> BlobStore:
        return _RemoteBlobs(self.path / "blobs", self._http)

    def close(self) -> None:
        self._http.close()
        self._store.close()


class RemoteLedger(Ledger):
    """A ``Ledger`` over a ``RemoteBackend``: the embedded interface, every
    answer verified (see the module doc)."""

    backend: RemoteBackend

    def __init__(
        self,
        url: str,
        *,
        identity: Signer | None = None,
        home: str | os.PathLike[str] | None = None,
        cache: str | os.PathLike[str] | None = None,
        token: str | None = None,
        log_key: VerifierKey | str | None = None,
        policy: CheckpointPolicy | str | None = None,
        staleness: float = 1.0,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        tls_verify: bool | str = True,
        confirm_wait: float = 10.0,
    ) -> None:
        """The mirror is ``cache``, by default one per URL under ``home``; the
        other options are ``RemoteBackend``'s. Nothing is read from the
        environment here (``connect`` does that)."""
        home_dir = Path(home) if home is not None else default_home()
        backend = RemoteBackend(
            url,
            cache=Path(cache) if cache is not None else mirror_path(home_dir, url),
            token=token,
            log_key=log_key,
            policy=policy,
            staleness=staleness,
            timeout=timeout,
            transport=transport,
            tls_verify=tls_verify,
            confirm_wait=confirm_wait,
        )
        super().__init__(backend=backend, identity=identity, home=home_dir)

    @property
    def url(self) -> str:
        return self.backend.url

    def sync(self, covering: int = 0) -> Checkpoint:
        """Bring the mirror up to the server's latest checkpoint (see ``RemoteBackend.sync``)."""
        return self.backend.sync(covering)


def mirror_path(home: Path, url: str) -> Path:
    """The default mirror of the ledger at ``url``: one folder per URL under ``home``."""
    digest = hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16]
    return home / "mirrors" / digest


def _claimed_index(got: object) -> int:
    index = got.get("index") if isinstance(got, dict) else None
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise MalformedError("the server's acknowledgement has no entry index")
    return index


def connect(url: str, identity: Signer | None = None, **kwargs: Any) -> RemoteLedger:
    """A ledger served at ``url`` (see ``RemoteLedger`` for options: ``token``,
    ``log_key`` or ``policy`` to pin, ``cache`` for the mirror, ``staleness`` in seconds).
    Reads no environment: ``modelchain.connect`` is the entry point that does."""
    return RemoteLedger(url, identity=identity, **kwargs)
