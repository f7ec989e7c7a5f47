"""The etcd sequencer: the global order of a ledger shared by several nodes.

Admitted envelopes are written to etcd in batches, one value per batch under
``<prefix>b/``; etcd's Raft log decides their order and the revision of each
batch is its place in it. Every node watches that prefix from the revision it
applied last and executes what it reads through the shared executor, so every
node makes the same log. A position in the order is ``revision << 16 |
offset`` (the offset of an envelope in its batch).

Writes are idempotent: each batch is put under a key of its own, only if that
key does not exist yet (one etcd transaction), and retried with the same key
after a timeout. A put that committed although its answer was lost is thus
never ordered twice; a client's retry of the same envelope, ordered again, is
answered from the log by the executor (its nonce).

Each node records under ``<prefix>applied/<node>`` the revision it applied;
``compact`` keeps etcd's history above the lowest of them.

aetcd (asyncio) runs on a loop of its own thread; the node's threads call it
through ``EtcdClient.call``. aetcd takes one address: several members are
reached with gRPC's round-robin target (``ipv4:h1:p1,h2:p2``), and TLS with
client certificates through a small subclass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ..core.tx import decode_submission
from ..errors import Error, InputError, StorageError, UnavailableError, UsageError
from .sequencer import Admitted, Ordered

__all__ = [
    "OFFSET_BITS",
    "EtcdClient",
    "EtcdCompactedError",
    "EtcdCosignatures",
    "EtcdSequencer",
    "EtcdTLS",
    "decode_batch",
    "encode_batch",
]

_log = logging.getLogger("modelchain.etcd")

OFFSET_BITS = 16  # a position is revision << 16 | offset in its batch
_MAX_OFFSET = (1 << OFFSET_BITS) - 1
# etcd takes 1.5 MiB per request and gRPC 2 MiB per message: a batch value
# stays well under both, with room for its key and the transaction around it.
MAX_VALUE = 1 << 20
_MAGIC = b"modelchain-batch/1\n"
_LEN = struct.Struct(">I")

T = TypeVar("T")


class EtcdCompactedError(UnavailableError):
    """The order this node needs next was compacted away: it must bootstrap
    from a peer's log before it follows etcd again."""


# -- batch values -------------------------------------------------------------


def encode_batch(envelopes: Sequence[bytes]) -> bytes:
    """One etcd value holding ``envelopes``: a magic line, then each envelope
    as a 4-byte big-endian length and its bytes."""
    parts = [_MAGIC]
    for env in envelopes:
        parts.append(_LEN.pack(len(env)))
        parts.append(env)
    return b"".join(parts)


def decode_batch(value: bytes) -> list[bytes]:
    """The envelopes of a batch value; InputError for anything else."""
    if not value.startswith(_MAGIC):
        raise InputError("an etcd value under the ledger's prefix is not a modelchain batch")
    out: list[bytes] = []
    at, end = len(_MAGIC), len(value)
    while at < end:
        if at + 4 > end:
            raise InputError("a modelchain batch in etcd is truncated")
        (n,) = _LEN.unpack_from(value, at)
        at += 4
        if at + n > end:
            raise InputError("a modelchain batch in etcd is truncated")
        out.append(value[at : at + n])
        at += n
    if len(out) > _MAX_OFFSET + 1:
        raise InputError("a modelchain batch in etcd holds too many envelopes")
    return out


def _chunks(batch: Sequence[Admitted]) -> list[tuple[list[Admitted], list[bytes]]]:
    """``batch`` cut into batch values no bigger than MAX_VALUE: each chunk's
    items and their envelopes' bytes."""
    chunks: list[tuple[list[Admitted], list[bytes]]] = [([], [])]
    size = len(_MAGIC)
    for item in batch:
        env = item.envelope.to_bytes()
        if len(env) + 4 + len(_MAGIC) > MAX_VALUE:
            raise InputError(f"an envelope of {len(env)} bytes is more than one etcd value takes")
        items, datas = chunks[-1]
        if datas and (size + 4 + len(env) > MAX_VALUE or len(datas) > _MAX_OFFSET):
            chunks.append(([], []))
            items, datas = chunks[-1]
            size = len(_MAGIC)
        items.append(item)
        datas.append(env)
        size += 4 + len(env)
    return chunks


# -- the client ---------------------------------------------------------------


@dataclass(frozen=True)
class EtcdTLS:
    """TLS to the etcd members: the CA that signed their certificates, this
    node's client certificate and key (PEM files), and the name every
    member's certificate carries (default: the first endpoint's host)."""

    ca: Path
    cert: Path
    key: Path
    server_name: str | None = None


def _target(endpoints: Sequence[str]) -> tuple[str, int]:
    """aetcd's (host, port) for gRPC's target over ``endpoints`` (host:port
    each): one address, or IPv4 addresses balanced round-robin."""
    if not endpoints:
        raise UsageError("no etcd endpoints given")
    parsed: list[tuple[str, int]] = []
    for ep in endpoints:
        host, sep, port = ep.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise UsageError(f"etcd endpoint {ep!r} is not HOST:PORT")
        parsed.append((host, int(port)))
    if len(parsed) == 1:
        return parsed[0]
    if not all(h.replace(".", "").isdigit() for h, _ in parsed):
        raise UsageError("several etcd endpoints must be IPv4 addresses (gRPC's ipv4: target)")
    head = ",".join(f"{h}:{p}" for h, p in parsed[:-1])
    return f"ipv4:{head},{parsed[-1][0]}", parsed[-1][1]


class EtcdClient:
    """An aetcd client on an event loop in its own thread."""

    def __init__(
        self, endpoints: Sequence[str], *, timeout: float = 2.0, tls: EtcdTLS | None = None
    ) -> None:
        import aetcd  # the extra 'cluster'; imported where a cluster is used

        self.endpoints = tuple(endpoints)
        self.timeout = timeout
        host, port = _target(endpoints)
        options: dict[str, Any] = {
            "grpc.lb_policy_name": "round_robin",
            "grpc.max_receive_message_length": 8 << 20,
            # A member cut off by the network drops packets without a reset:
            # without keepalive pings a watch on it waits silently for ever.
            # etcd refuses pings more often than every 5s (its keepalive
            # min-time) and, by default, pings without an open stream.
            "grpc.keepalive_time_ms": 10_000,
            "grpc.keepalive_timeout_ms": 5_000,
            "grpc.keepalive_permit_without_calls": 0,
            "grpc.http2.max_pings_without_data": 0,
        }
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="modelchain-etcd", daemon=True
        )
        self._thread.start()
        client_class: type[Any] = aetcd.Client
        if tls is not None:
            client_class = _tls_client(tls)
            # Over a round-robin target gRPC checks every member's certificate
            # against one name, by default the whole target (no certificate
            # names that): the first endpoint's host, which each member's
            # certificate must therefore name.
            options["grpc.ssl_target_name_override"] = (
                tls.server_name or endpoints[0].rpartition(":")[0]
            )
        self.raw: Any = self.call(_make(client_class, host, port, timeout, options))
        self.aetcd = aetcd

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Run ``coro`` on the client's loop."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the client's loop and wait for its result."""
        return self.submit(coro).result(timeout)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def close(self) -> None:
        """Cancel what still runs on the loop, close the channel, stop the loop."""
        if not self._loop.is_running():
            return
        with contextlib.suppress(Exception):  # closing: nothing left to tell
            self.call(self._shutdown(), timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()

    async def _shutdown(self) -> None:
        me = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not me]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.raw.close()


async def _make(
    client_class: type[Any], host: str, port: int, timeout: float, options: dict[str, Any]
) -> Any:
    client = client_class(host, port, timeout=timeout, options=options)
    await client.connect()
    return client


def _tls_client(tls: EtcdTLS) -> type[Any]:
    """aetcd's Client over a TLS channel with a client certificate."""
    import aetcd
    import grpc
    from aetcd import rpc

    creds = grpc.ssl_channel_credentials(
        root_certificates=tls.ca.read_bytes(),
        private_key=tls.key.read_bytes(),
        certificate_chain=tls.cert.read_bytes(),
    )

    class TLSClient(aetcd.Client):  # type: ignore[misc]
        async def connect(self) -> None:
            if self._connected.is_set():
                return
            target = f"{self._host}:{self._port}"
            self.channel = grpc.aio.secure_channel(target, creds, options=self._options.items())
            self.kvstub = rpc.KVStub(self.channel)
            self.clusterstub = rpc.ClusterStub(self.channel)
            self.leasestub = rpc.LeaseStub(self.channel)
            self.maintenancestub = rpc.MaintenanceStub(self.channel)
            self._watcher = aetcd.watcher.Watcher(
                rpc.WatchStub(self.channel), timeout=self._timeout, metadata=self.metadata
            )
            self._connected.set()

    return TLSClient


# -- the sequencer ------------------------------------------------------------


class EtcdSequencer:
    """The order of the ledger whose etcd keys start with ``prefix``, as seen
    by the node ``node``. ``retry_s`` bounds how long a batch is retried
    (with the same key) while etcd does not answer, e.g. during an election."""

    durable = True

    def __init__(
        self,
        client: EtcdClient,
        prefix: str,
        node: str,
        *,
        retry_s: float = 30.0,
        buffer: int = 20_000,
    ) -> None:
        if not prefix.endswith("/"):
            prefix += "/"
        self._client = client
        self._etcd = client.raw
        self.prefix = prefix.encode()
        self.node = node
        self._batches = self.prefix + b"b/"
        self._retry_s = retry_s
        self._cond = threading.Condition(threading.Lock())
        self._items: deque[Ordered] = deque()
        self._buffer = buffer
        self._expected: int | None = None  # the position the reader asks for next
        self._generation = 0  # of the watch feeding the buffer; older ones stop
        self._watching: Future[None] | None = None
        self._error: Error | None = None
        self._room = asyncio.Event()  # set on the loop when the buffer has room
        self._closed = False
        self._reported = 0  # the applied revision last put in etcd
        self._applied = 0
        self._reporting: Future[None] | None = None
        self._mine: dict[bytes, list[Admitted]] = {}  # this node's batches, by key

    # -- writing -------------------------------------------------------------

    def submit(self, batch: Sequence[Admitted]) -> Future[range]:
        """Put ``batch`` in etcd; the future resolves to the span of positions
        its values took (several values for a big batch) once etcd committed
        them, or fails after ``retry_s`` without an answer."""
        puts = []
        for items, datas in _chunks(batch):
            key = self._batches + f"{self.node}/{uuid.uuid4().hex}".encode()
            # What this node admitted comes back out of the order as it went
            # in: decoded and checked already.
            self._mine[key] = items
            puts.append((key, encode_batch(datas), len(items)))
        return self._client.submit(self._put_all(puts))

    async def _put_all(self, puts: list[tuple[bytes, bytes, int]]) -> range:
        try:
            revisions = await asyncio.gather(*(self._put(key, value) for key, value, _ in puts))
        except BaseException:
            for key, _, _ in puts:
                self._mine.pop(key, None)
            raise
        first, last = min(revisions), max(revisions)
        return range(first << OFFSET_BITS, (last << OFFSET_BITS) + puts[-1][2])

    async def _put(self, key: bytes, value: bytes) -> int:
        """Put ``value`` under ``key``, once: retried with the same key, a put
        that committed unanswered is found, not repeated."""
        etcd = self._etcd
        t = etcd.transactions
        request = self._client.aetcd.rpc.TxnRequest(
            compare=[(t.version(key) == 0).build_message()],
            success=etcd._ops_to_requests([t.put(key, value)]),
            failure=[],
        )
        deadline = self._client.loop.time() + self._retry_s
        delay = 0.05
        while True:
            try:
                answer = await etcd.kvstub.Txn(request, timeout=self._client.timeout)
                if answer.succeeded:
                    return int(answer.header.revision)
                got = await etcd.get(key)  # an earlier try committed
                if got is None:
                    raise StorageError(f"etcd refused batch {key.decode()} and does not hold it")
                return int(got.mod_revision)
            except Error:
                raise
            except Exception as exc:
                if self._closed or self._client.loop.time() + delay > deadline:
                    raise UnavailableError(
                        f"etcd did not take a batch within {self._retry_s:.0f}s ({exc!r}); "
                        "it may still be ordered: retry the same transactions"
                    ) from exc
                _log.warning(f"etcd put failed ({type(exc).__name__}); retrying the same batch")
                await asyncio.sleep(delay)
                delay = min(1.0, delay * 2)

    # -- reading -------------------------------------------------------------

    def read(self, start: int, limit: int, stop: threading.Event) -> list[Ordered]:
        with self._cond:
            if start != self._expected:  # a new reader, or one going back: watch again
                self._restart(start)
            while not self._items and self._error is None and not stop.is_set():
                self._cond.wait(0.5)
            if self._error is not None and not self._items:
                raise self._error
            got: list[Ordered] = []
            while self._items and len(got) < limit:
                got.append(self._items.popleft())
            if got:
                self._expected = got[-1][0] + 1
                if len(self._items) < self._buffer // 2:
                    self._client.loop.call_soon_threadsafe(self._room.set)
            return got

    def _restart(self, start: int) -> None:
        """(Re)start the watch at ``start`` (called with the lock held)."""
        if self._watching is not None:
            self._watching.cancel()
        self._items.clear()
        self._error = None
        self._expected = start
        self._generation += 1
        self._watching = self._client.submit(self._watch(start, self._generation))

    async def _watch(self, start: int, generation: int) -> None:
        """Feed the buffer with the order from position ``start`` on, watching
        again (on another member) from the last revision + 1 when a watch
        fails."""
        revision = max(1, start >> OFFSET_BITS)
        skip = start & _MAX_OFFSET if start >> OFFSET_BITS == revision else 0
        delay = 0.05
        while not self._closed:
            try:
                watch = await self._etcd.watch_prefix(
                    self._batches, start_revision=revision, kind=self._client.aetcd.EventKind.PUT
                )
                try:
                    async for event in watch:
                        rev = int(event.kv.mod_revision)
                        await self._deliver(
                            generation,
                            rev,
                            event.kv.key,
                            event.kv.value,
                            skip if rev == revision else 0,
                        )
                        revision, skip, delay = rev + 1, 0, 0.05
                finally:
                    await watch.cancel()
            except asyncio.CancelledError:
                raise
            except self._client.aetcd.exceptions.RevisionCompactedError:
                try:
                    revision = await self._catch_up(generation, revision, skip)
                    skip = 0
                except EtcdCompactedError as exc:
                    self._fail(generation, exc)
                    return
                except Exception as exc:
                    _log.warning(f"reading etcd's batches failed ({exc!r}); again")
                continue
            except Exception as exc:
                _log.warning(f"etcd watch failed ({exc!r}); watching again from {revision}")
            await asyncio.sleep(delay)
            delay = min(2.0, delay * 2)

    async def _deliver(
        self, generation: int, revision: int, key: bytes, value: bytes, skip: int
    ) -> None:
        items: list[Ordered] = []
        mine = self._mine.pop(key, None)
        if mine is not None:
            items = [
                ((revision << OFFSET_BITS) | offset, item)
                for offset, item in enumerate(mine)
                if offset >= skip
            ]
            envelopes = []
        else:
            try:
                envelopes = decode_batch(value)
            except InputError as exc:
                # Skipped by every node alike: the order holds nothing there.
                _log.error(f"etcd revision {revision}: {exc.message}; skipped")
                envelopes = []
        for offset, data in enumerate(envelopes):
            if offset < skip:
                continue
            try:
                env, tx = decode_submission(data)
            except Error as exc:
                _log.error(f"etcd revision {revision} item {offset}: {exc.message}; skipped")
                continue
            items.append(((revision << OFFSET_BITS) | offset, Admitted(env, tx, checked=False)))
        while True:
            with self._cond:
                if generation != self._generation:
                    raise asyncio.CancelledError  # a newer watch feeds the buffer
                if len(self._items) < self._buffer or not items:
                    self._items.extend(items)
                    self._cond.notify_all()
                    return
                self._room.clear()
            await self._room.wait()

    def _fail(self, generation: int, error: Error) -> None:
        with self._cond:
            if generation != self._generation:
                return
            self._error = error
            self._cond.notify_all()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    # -- progress and compaction ---------------------------------------------

    def applied(self, position: int) -> None:
        """Record (at most once a second, in the background) the revision this
        node applied, which bounds compaction."""
        # The revision before the last one read: that batch may have been
        # applied in part (a group commit takes at most max_batch items).
        revision = ((position - 1) >> OFFSET_BITS) - 1
        if revision <= self._applied:
            return
        self._applied = revision
        if self._reporting is None or self._reporting.done():
            self._reporting = self._client.submit(self._report())

    async def _report(self) -> None:
        while self._reported < self._applied and not self._closed:
            revision = self._applied
            try:
                key = self.prefix + b"applied/" + self.node.encode()
                await self._etcd.put(key, f"{revision} {int(time.time())}".encode())
                self._reported = revision
            except Exception as exc:
                _log.warning(f"recording the applied revision in etcd failed ({exc!r})")
            await asyncio.sleep(1.0)

    def available(self, position: int) -> bool:
        """Whether etcd still holds the order from ``position`` on. Compaction
        alone loses nothing (a batch key has one version, which compaction
        keeps); batches deleted once applied are gone, and a node that needs
        one must bootstrap from a peer."""
        return max(1, position >> OFFSET_BITS) > self._client.call(self._deleted_through())

    async def _deleted_through(self) -> int:
        got = await self._etcd.get(self._deleted_key)
        return 0 if got is None else int(got.value)

    @property
    def _deleted_key(self) -> bytes:
        return self.prefix + b"deleted"

    def applied_revisions(self) -> dict[str, tuple[int, int]]:
        """Each node's applied revision and when it said so (Unix seconds), as
        recorded in etcd."""
        got = self._client.call(self._etcd.get_prefix(self.prefix + b"applied/"))
        out: dict[str, tuple[int, int]] = {}
        for kv in got:
            name = kv.key[len(self.prefix) + len(b"applied/") :].decode()
            revision, _, when = kv.value.decode().partition(" ")
            out[name] = (int(revision), int(when or 0))
        return out

    def compact(self, nodes: Sequence[str], *, grace_s: float | None = None) -> int | None:
        """Delete the batches that ``nodes`` all applied, mark them deleted and
        compact etcd's history there; return that revision. With ``grace_s``,
        a node silent for longer no longer holds batches back (it bootstraps
        from a peer when it comes back); without, every node must have
        recorded its progress (else None: nothing done)."""
        applied = self.applied_revisions()
        now = time.time()
        keep = [
            n for n in nodes if n in applied and (grace_s is None or now - applied[n][1] <= grace_s)
        ]
        if not keep or (grace_s is None and len(keep) < len(nodes)):
            return None
        low = min(applied[n][0] for n in keep)
        if low < 1:
            return None
        self._client.call(self._compact(low))
        return low

    async def _compact(self, low: int) -> None:
        etcd = self._etcd
        t = etcd.transactions
        old = await etcd.get_prefix(self._batches, keys_only=True)
        doomed = [kv.key for kv in old if kv.mod_revision <= low]
        for at in range(0, len(doomed), 100):  # etcd takes 128 operations per transaction
            ops = [t.delete(key) for key in doomed[at : at + 100]]
            await etcd.transaction(compare=[], success=ops, failure=[])
        if low > await self._deleted_through():
            await etcd.put(self._deleted_key, b"%d" % low)
        try:
            await etcd.compact(low)
        except self._client.aetcd.exceptions.ClientError as exc:
            if "compacted" not in str(exc):
                raise

    async def _catch_up(self, generation: int, revision: int, skip: int) -> int:
        """Deliver the live batches from ``revision`` on, read by range (the
        watch history before them was compacted); return the revision to
        watch from. EtcdCompactedError if batches it needs were deleted."""
        deleted = await self._deleted_through()
        if deleted >= revision:
            raise EtcdCompactedError(
                f"etcd no longer holds the order from revision {revision} (batches through "
                f"{deleted} were deleted once applied); this node must bootstrap from a peer"
            )
        rpc = self._client.aetcd.rpc
        end = self._client.aetcd.utils.prefix_range_end(self._batches)
        pinned = 0  # the revision all pages are read at
        while True:
            request = rpc.RangeRequest(
                key=self._batches,
                range_end=end,
                limit=64,
                sort_order=rpc.RangeRequest.ASCEND,
                sort_target=rpc.RangeRequest.MOD,
                min_mod_revision=revision,
                revision=pinned,
            )
            answer = await self._etcd.kvstub.Range(request, timeout=self._client.timeout)
            pinned = pinned or int(answer.header.revision)
            for kv in answer.kvs:
                rev = int(kv.mod_revision)
                await self._deliver(
                    generation, rev, kv.key, kv.value, skip if rev == revision else 0
                )
                revision, skip = rev + 1, 0
            if not answer.more:
                return max(revision, pinned + 1)

    def close(self) -> None:
        self._closed = True
        with self._cond:
            if self._watching is not None:
                self._watching.cancel()
            self._cond.notify_all()


# -- the cosignature board ----------------------------------------------------


_COSIGNATURE_RETRY_S = 30.0


class EtcdCosignatures:
    """The nodes' cosignatures in etcd, one key per node and size under
    ``<prefix>c/<node>/<size>``; each node removes its own once a later
    checkpoint is final."""

    def __init__(self, client: EtcdClient, prefix: str) -> None:
        if not prefix.endswith("/"):
            prefix += "/"
        self._client = client
        self._etcd = client.raw
        self._root = prefix.encode() + b"c/"
        self._closed = False
        self._following: list[Future[None]] = []
        self._inboxes: list[tuple[queue.Queue[tuple[str, bytes] | None], threading.Thread]] = []

    def _key(self, node: str, size: int) -> bytes:
        return self._root + f"{node}/{size:020d}".encode()

    def post(self, node: str, size: int, note: bytes) -> None:
        self._client.submit(self._put(self._key(node, size), note))

    async def _put(self, key: bytes, value: bytes) -> None:
        # Retried (the same key and value: idempotent) for a while: a later
        # checkpoint's cosignature replaces a lost one only if more is
        # written, and without one the last writes would never be final.
        delay = 0.05
        deadline = self._client.loop.time() + _COSIGNATURE_RETRY_S
        while not self._closed:
            try:
                await self._etcd.put(key, value)
                return
            except Exception as exc:
                _log.warning(f"posting a cosignature to etcd failed ({exc!r})")
                if self._client.loop.time() + delay > deadline:
                    return
            await asyncio.sleep(delay)
            delay = min(1.0, delay * 2)

    def follow(self, seen: Callable[[str, bytes], None]) -> None:
        """``seen`` runs on a thread of its own: what it does (reading the
        store, signing) never holds up the loop that also feeds the order."""
        inbox: queue.Queue[tuple[str, bytes] | None] = queue.Queue()

        def deliver() -> None:
            while (item := inbox.get()) is not None:
                seen(*item)

        thread = threading.Thread(target=deliver, name="modelchain-cosignatures", daemon=True)
        thread.start()
        self._inboxes.append((inbox, thread))
        self._following.append(
            self._client.submit(self._follow(lambda node, note: inbox.put((node, note))))
        )

    def _node_of(self, key: bytes) -> str:
        return key[len(self._root) :].rsplit(b"/", 1)[0].decode()

    async def _follow(self, seen: Callable[[str, bytes], None]) -> None:
        revision: int | None = None
        delay = 0.05
        while not self._closed:
            try:
                if revision is None:  # what is on the board now, then what comes
                    now = await self._etcd.get_prefix(self._root)
                    for kv in now:
                        seen(self._node_of(kv.key), kv.value)
                    revision = int(now.header.revision) + 1
                watch = await self._etcd.watch_prefix(
                    self._root, start_revision=revision, kind=self._client.aetcd.EventKind.PUT
                )
                try:
                    async for event in watch:
                        revision = int(event.kv.mod_revision) + 1
                        seen(self._node_of(event.kv.key), event.kv.value)
                        delay = 0.05
                finally:
                    await watch.cancel()
            except asyncio.CancelledError:
                raise
            except self._client.aetcd.exceptions.RevisionCompactedError:
                revision = None  # read the board afresh
            except Exception as exc:
                _log.warning(f"following cosignatures in etcd failed ({exc!r}); again")
            await asyncio.sleep(delay)
            delay = min(2.0, delay * 2)

    def forget(self, node: str, below: int) -> None:
        start = self._root + f"{node}/".encode()
        self._client.submit(self._forget(start, self._key(node, below)))

    async def _forget(self, start: bytes, end: bytes) -> None:
        try:
            await self._etcd.delete_range(start, end)
        except Exception as exc:
            _log.warning(f"removing old cosignatures from etcd failed ({exc!r})")

    def close(self) -> None:
        self._closed = True
        for f in self._following:
            f.cancel()
        for inbox, thread in self._inboxes:
            inbox.put(None)
            thread.join(5)
