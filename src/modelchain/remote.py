"""A ledger behind a server: ``modelchain.connect(url, identity=...)``.

The client trusts the server for nothing. It keeps a verified mirror of the
log beside the caller: every checkpoint must be signed by the log key the
client trusts and consistent with the last one it saw (checked with the
server's RFC 9162 consistency proof), and every entry it receives must, with
the ones it already holds, give that checkpoint's root before it is
re-executed and stored. Queries are then answered from the mirror, so the
interface is the embedded ``Ledger``'s. Writes go to the server as DSSE
envelopes; each acknowledgement is checked against the log at the next read.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import math
import os
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from .contracts import default_contracts
from .core.checkpoint import Checkpoint, open_checkpoint
from .core.dsse import Envelope
from .core.identity import Signer, VerifierKey
from .core.merkle import leaf_hash, verify_consistency
from .core.tiles import TILE_WIDTH, decode_entry_bundle, entries_path
from .core.tx import LogEntry, Outcome, decode_submission
from .errors import (
    Error,
    IntegrityError,
    MalformedError,
    NotFoundError,
    ProofError,
    PushbackError,
    RejectedError,
    UnavailableError,
    UnknownKeyError,
    UsageError,
    VerificationError,
    WrongLedgerError,
)
from .keys import modelchain_home
from .ledger import DB_NAME, Ledger
from .service.node import Ack, Node, system_clock_ms
from .service.replica import apply_checkpoint
from .storage.blobs import BlobStore
from .storage.sqlite import SqliteStore

__all__ = ["RemoteLedger", "connect"]

log = logging.getLogger("modelchain.remote")

TOKEN_ENV = "MODELCHAIN_TOKEN"


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

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            response = self.client.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise UnavailableError(f"cannot reach {self.url}: {exc}") from exc
        if response.status_code < 400:
            return response
        raise _error_of(response)

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.request("GET", path, params=params or None)

    def close(self) -> None:
        self.client.close()


def _error_classes() -> dict[str, type[Error]]:
    """Every error class by its stable code: how an HTTP error body becomes
    the exception the server raised."""
    found: dict[str, type[Error]] = {}
    todo: list[type[Error]] = [Error]
    while todo:
        cls = todo.pop()
        found.setdefault(cls.code, cls)
        todo.extend(cls.__subclasses__())
    return found


_CLASSES = _error_classes()


def _error_of(response: httpx.Response) -> Error:
    try:
        err = response.json()["error"]
        code, message = str(err["code"]), str(err["message"])
    except (ValueError, KeyError, TypeError):
        if response.status_code >= 500:
            return UnavailableError(f"the server answered {response.status_code}")
        return MalformedError(f"the server answered {response.status_code} without an error body")
    if response.status_code == 503:
        retry = response.headers.get("retry-after", "1")
        try:
            after = float(retry)
        except ValueError:
            after = 1.0
        if code == PushbackError.code:
            return PushbackError(message, after)
        return UnavailableError(message)
    cls = _CLASSES.get(code)
    if cls is None or cls is RejectedError:  # RejectedError never comes as an HTTP error
        if response.status_code >= 500:
            return UnavailableError(message)
        cls = NotFoundError if response.status_code == 404 else MalformedError
    return cls(message)


class _RemoteBlobs(BlobStore):
    """Blobs cached beside the mirror; fetched from the server (and checked
    against their name) on a miss, and uploaded when stored."""

    def __init__(self, root: Path, http: _Http) -> None:
        super().__init__(root)
        self._http = http

    def put(self, data: bytes) -> str:
        ref = super().put(data)
        got = self._http.request(
            "POST",
            "/v1/blobs",
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        if got.json().get("ref") != ref:
            raise IntegrityError(f"the server stored blob {ref} under another name")
        return ref

    def get(self, ref: str) -> bytes:
        try:
            return super().get(ref)
        except NotFoundError:
            pass
        data = self._http.get(f"/v1/blobs/{ref}").content
        if "sha256:" + hashlib.sha256(data).hexdigest() != ref:
            raise IntegrityError(f"the server's blob {ref} does not match its name")
        BlobStore.put(self, data)
        return data


class RemoteLedger(Ledger):
    """The embedded ``Ledger`` interface over a server (see the module doc)."""

    def __init__(
        self,
        url: str,
        *,
        identity: Signer | None = None,
        token: str | None = None,
        log_key: VerifierKey | str | None = None,
        cache: str | os.PathLike[str] | None = None,
        staleness: float = 1.0,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        tls_verify: bool | str = True,
    ) -> None:
        self.url = url.rstrip("/")
        self.identity = identity
        self.readonly = False
        self.contracts = default_contracts()
        self._clock = system_clock_ms
        self._node: Node | None = None
        self._staleness = staleness
        self._synced_at = -math.inf
        self._acked: dict[int, tuple[bytes, Envelope]] = {}
        self._sync_lock = threading.RLock()
        token = token if token is not None else os.environ.get(TOKEN_ENV)
        self._http = _Http(self.url, token, timeout, transport, tls_verify)
        try:
            info = self._http.get("/v1/ledger").json()
            origin = info["origin"]
            if not isinstance(origin, str) or not origin:
                raise MalformedError("the server's /v1/ledger has no origin")
            self.origin = origin
            self.path = Path(cache) if cache is not None else _default_cache(self.url, origin)
            self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._store = SqliteStore(self.path / DB_NAME, synchronous="NORMAL")
        except BaseException:
            self._http.close()
            raise
        try:
            self._trusted: VerifierKey = self._trusted_key(log_key, str(info.get("log_key", "")))
            self._log_key = self._trusted
            # Fail at once on a server whose checkpoints the trusted key did not sign.
            open_checkpoint(self._http.get("/checkpoint").content, self._trusted)
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
        if pinned is not None and pinned != key.to_string():
            raise VerificationError(
                f"the mirror at {self.path} trusted another log key ({pinned}); "
                "remove it to trust a new one"
            )
        if known_origin is None:
            store.set_meta("origin", self.origin)
        store.set_meta("url", self.url)
        if pinned is None:
            store.set_meta("log_key", key.to_string())
        return key

    # -- the mirror ---------------------------------------------------------------

    @property
    def store(self) -> SqliteStore:
        if time.monotonic() - self._synced_at > self._staleness:
            self.sync()
        return self._store

    @property
    def node(self) -> Node:
        raise UsageError(f"the ledger at {self.url} is remote; it has no local node")

    def sync(self) -> Checkpoint:
        """Bring the mirror up to the server's latest checkpoint, verifying it all;
        return that checkpoint."""
        with self._sync_lock:  # a receipt log's thread and the caller may both read
            return self._sync()

    def _sync(self) -> Checkpoint:
        note = self._http.get("/checkpoint").content
        cp, _ = open_checkpoint(note, self._trusted)
        store = self._store
        held = store.size
        last = store.checkpoint()
        if cp.size < held:
            raise ProofError(
                f"the server's checkpoint has {cp.size} entries but {held} were already "
                "verified: the log was rolled back or forked"
            )
        if last is not None:
            old, _ = open_checkpoint(last[1], self._trusted)
            self._check_consistent(old, cp)
        if cp.size > held:
            apply_checkpoint(
                store, self.contracts, self._trusted, cp, note, self._fetch(held, cp.size)
            )
        elif store.root() != cp.root:
            raise ProofError(
                f"the server's checkpoint of size {cp.size} signs another root than the "
                "entries already verified: the log forked"
            )
        elif last is None or last[0] != cp.size:
            store.put_checkpoint(cp.size, note)
        self._check_acks()
        self._synced_at = time.monotonic()
        return cp

    def _check_consistent(self, old: Checkpoint, new: Checkpoint) -> None:
        if old.size == new.size:
            if old.root != new.root:
                raise ProofError(
                    f"two checkpoints of size {new.size} with different roots: the log forked"
                )
            return
        got = self._http.get("/v1/proof/consistency", old=old.size, new=new.size).json()
        proof = [_unb64(h) for h in got.get("proof", [])]
        try:
            verify_consistency(old.size, new.size, old.root, new.root, proof)
        except Error as exc:
            raise ProofError(
                f"the server's checkpoint of size {new.size} is not consistent with the one "
                f"of size {old.size} seen before ({exc.message}): the log was rewritten"
            ) from exc

    def _fetch(self, start: int, end: int) -> list[bytes]:
        out: list[bytes] = []
        for n in range(start // TILE_WIDTH, (end - 1) // TILE_WIDTH + 1):
            width = min(TILE_WIDTH, end - n * TILE_WIDTH)
            data = self._http.get("/" + entries_path(n, width)).content
            bundle = decode_entry_bundle(data)
            if len(bundle) != width:
                raise ProofError(f"entry bundle {n} has {len(bundle)} entries, not {width}")
            skip = max(0, start - n * TILE_WIDTH)
            out.extend(bundle[skip:])
        return out

    def _check_acks(self) -> None:
        size = self._store.size
        for index in [i for i in self._acked if i < size]:
            want, sent = self._acked.pop(index)
            data = self._store.entry(index)
            if leaf_hash(data) != want or LogEntry.decode(data).envelope != sent:
                raise ProofError(
                    f"the server acknowledged entry {index} but the log holds another entry there"
                )

    # -- writing ----------------------------------------------------------------

    def _ack(self, got: dict[str, Any], sent: bytes) -> Ack:
        try:
            ack = Ack(
                int(got["index"]),
                bytes.fromhex(got["leaf_hash"]),
                Outcome.from_json(got["outcome"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedError(f"the server's acknowledgement is malformed: {exc}") from exc
        with self._sync_lock:
            self._acked[ack.index] = (ack.leaf_hash, decode_submission(sent)[0])
        self._synced_at = -math.inf  # the next read brings the mirror up to this entry
        return ack

    def submit(self, envelope: Envelope | bytes) -> Ack:
        data = envelope.to_bytes() if isinstance(envelope, Envelope) else envelope
        got = self._http.request(
            "POST", "/v1/entries", content=data, headers={"Content-Type": "application/json"}
        )
        return self._ack(got.json(), data)

    def submit_many(self, envelopes: Any) -> list[Ack]:
        datas = [e.to_bytes() if isinstance(e, Envelope) else e for e in envelopes]
        body = b"[" + b",".join(datas) + b"]"
        got = self._http.request(
            "POST", "/v1/entries:batch", content=body, headers={"Content-Type": "application/json"}
        ).json()
        acks: list[Ack] = []
        first_error: Error | None = None
        if not isinstance(got, list) or len(got) != len(datas):
            raise MalformedError("the server answered a batch with a different number of results")
        for item, data in zip(got, datas, strict=True):
            if "error" in item:
                cls = _CLASSES.get(item["error"].get("code"), MalformedError)
                if cls is RejectedError:
                    cls = MalformedError
                first_error = first_error or cls(item["error"].get("message", ""))
            else:
                acks.append(self._ack(item, data))
        if first_error is not None:
            raise first_error
        return acks

    def precheck(self, data: bytes) -> None:
        """What can be checked here before submitting: shape, type, ledger, signer keys."""
        env, tx = decode_submission(data)
        if tx.ledger != self.origin:
            raise WrongLedgerError(f"transaction is for ledger {tx.ledger!r}, not {self.origin!r}")
        self.contracts.check(tx)
        for sig in env.signatures:
            if self.contracts.signer(self.store, sig.keyid, tx) is None:
                raise UnknownKeyError(f"key {sig.keyid} is not the key of any member")

    @property
    def max_batch(self) -> int:
        return 1000

    def checkpoint(self) -> bytes:
        self.sync()
        latest = self._store.checkpoint()
        if latest is None:
            raise NotFoundError("the ledger has no checkpoint yet")
        return latest[1]

    @functools.cached_property
    def blobs(self) -> BlobStore:
        return _RemoteBlobs(self.path / "blobs", self._http)

    def close(self) -> None:
        self._http.close()
        self._store.close()


def _unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise ProofError("a proof hash is not base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise ProofError("a proof hash is not base64") from exc


def _default_cache(url: str, origin: str) -> Path:
    digest = hashlib.sha256(f"{url}\n{origin}".encode()).hexdigest()[:16]
    return modelchain_home() / "mirrors" / digest


def connect(url: str, identity: Signer | None = None, **kwargs: Any) -> RemoteLedger:
    """A ledger served at ``url`` (see ``RemoteLedger`` for options: ``token``,
    ``log_key`` to pin, ``cache`` for the mirror, ``staleness`` in seconds)."""
    return RemoteLedger(url, identity=identity, **kwargs)
