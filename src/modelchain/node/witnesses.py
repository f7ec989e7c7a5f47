"""Pushing a cluster node's final checkpoints to the witnesses its policy names.

Owns the client side of c2sp.org/tlog-witness: for each witness of the
ledger's checkpoint policy that has a URL and is not a cluster node, a thread
posts the latest final checkpoint (at most once per ``interval``) with a
consistency proof from the size the witness last cosigned, verifies the
cosignature it answers and keeps it with the stored checkpoint.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx

from ..core.b64 import b64
from ..core.checkpoint import Checkpoint, verify_cosignature
from ..core.merkle import consistency_proof
from ..core.note import NoteSignature, add_signatures, parse_note
from ..core.policy import CheckpointPolicy, PolicyWitness
from ..core.witness import MAX_PROOF_LINES
from ..errors import Error, RollbackError, SignatureError
from ..storage.protocols import LedgerStore

__all__ = ["WitnessPusher", "witnesses_to_push"]

_log = logging.getLogger("modelchain.node")

SIZE_CONTENT_TYPE = "text/x.tlog.size"  # a 409's body: the size the witness holds
_MAX_ANSWER = 64 << 10  # a few cosignature lines; anything longer is not a witness's answer
_REFUSALS = (400, 403, 404, 413, 422)  # the witness will not cosign this checkpoint


def witnesses_to_push(policy: CheckpointPolicy) -> tuple[PolicyWitness, ...]:
    """The witnesses of ``policy`` that nodes push to: those with a URL that
    are not cluster nodes (nodes cosign through the cosignature board)."""
    nodes = {w.name for w in policy.nodes}
    return tuple(w for w in policy.witnesses if w.url and w.name not in nodes)


def _printable(text: str, limit: int = 200) -> str:
    """A witness's answer as it may go in a log line and a status: one line,
    no control characters, bounded."""
    line = " ".join(text.split())
    line = "".join(c if c.isprintable() else "?" for c in line)
    return line[:limit] + ("…" if len(line) > limit else "")


@dataclass(frozen=True)
class _Cosigned:
    """A witness's verified cosignature on the checkpoint of ``size`` (``text``)."""

    size: int
    text: str
    signature: NoteSignature
    timestamp: int


class _Feed:
    """One witness: the latest checkpoint waiting for it, what it holds, and
    the thread that posts to it."""

    def __init__(self, pusher: WitnessPusher, witness: PolicyWitness) -> None:
        self.pusher = pusher
        self.witness = witness
        assert witness.url is not None
        self.endpoint = witness.url.rstrip("/") + "/add-checkpoint"
        self.cond = threading.Condition(threading.Lock())
        self.pending: tuple[int, bytes] | None = None  # only the latest is kept
        self.stopping = False
        self.old = 0  # the size the witness last cosigned, as far as this node knows
        self.next_post = 0.0  # monotonic: not before (the rate bound)
        self.retry_at = 0.0  # monotonic: not before (back-off after a failure)
        self.backoff = 0.0
        self.posts = 0
        self.cosigned: _Cosigned | None = None
        self.refusals = 0
        self.last_refusal: str | None = None
        self.last_error: str | None = None
        self.thread = threading.Thread(
            target=self._run, name=f"modelchain-witness-{witness.name}", daemon=True
        )

    # -- the queue -----------------------------------------------------------

    def offer(self, size: int, note: bytes) -> None:
        with self.cond:
            if self.pending is None or size > self.pending[0]:
                self.pending = (size, note)
                self.cond.notify()

    def _again(self, size: int, note: bytes) -> None:
        """Keep ``note`` to post later unless something newer came meanwhile."""
        with self.cond:
            if self.pending is None or self.pending[0] < size:
                self.pending = (size, note)

    def _next(self) -> tuple[int, bytes] | bool | None:
        """The checkpoint to post now; False when ``interval`` passed idle (a
        tick to check the stored checkpoint still carries the cosignatures);
        None once stopping."""
        idle_until = time.monotonic() + self.pusher.interval
        with self.cond:
            while not self.stopping:
                now = time.monotonic()
                due = max(self.next_post, self.retry_at)
                if self.pending is not None and now >= due:
                    job, self.pending = self.pending, None
                    return job
                if now >= idle_until:
                    return False
                until = due if self.pending is not None else idle_until
                self.cond.wait(max(0.0, min(until, idle_until) - now))
            return None

    def _run(self) -> None:
        while (job := self._next()) is not None:
            try:
                if job is False:
                    self.pusher.keep_attached()
                else:
                    assert isinstance(job, tuple)
                    self._push(*job)
            except Exception as exc:  # a bug of ours must not stop the pushes for good
                _log.error(f"pushing to witness {self.witness.name!r} failed", exc_info=exc)
                self._failed(f"unexpected {type(exc).__name__}")

    # -- one push ------------------------------------------------------------

    def _push(self, size: int, note: bytes) -> None:
        """Post the checkpoint of ``size``; a 409 corrects ``old`` and the
        same checkpoint goes again at once, once."""
        for _ in range(2):
            if self.old > size:
                return  # the witness holds a larger one already (another node's)
            proof: list[bytes] = []
            if 0 < self.old < size:
                proof = consistency_proof(self.pusher.store.node_reader(), self.old, size)
            if len(proof) > MAX_PROOF_LINES:
                self._failed(f"the proof from {self.old} to {size} is over {MAX_PROOF_LINES} lines")
                return
            body = f"old {self.old}\n".encode()
            body += b"".join(b64(h).encode() + b"\n" for h in proof) + b"\n" + note
            self.next_post = time.monotonic() + self.pusher.interval
            self.posts += 1
            try:
                status, kind, answer = self._post(body)
            except (httpx.HTTPError, Error) as exc:
                self._failed(f"{type(exc).__name__}: {_printable(str(exc))}")
                self._again(size, note)
                return
            if status == 200:
                self.backoff = 0.0
                self._cosigned(size, note, answer)
                return
            if status == 409 and kind == SIZE_CONTENT_TYPE:
                held = answer.decode("ascii", "replace").strip()
                if not held.isdigit() or len(held) > 20:
                    self._failed(f"409 with a size that is not a number: {_printable(held)}")
                    return
                self.backoff = 0.0
                self.old = int(held)
                continue
            text = _printable(answer.decode("utf-8", "replace"))
            if status in _REFUSALS:
                self.backoff = 0.0
                self._refused(size, f"{status} {text}".strip())
                return
            self._failed(f"answered {status} {text}".strip())
            self._again(size, note)
            return
        self._again(size, note)  # a second 409: the witness moved; try again in turn

    def _post(self, body: bytes) -> tuple[int, str, bytes]:
        headers = {"content-type": "text/plain; charset=utf-8"}
        with self.pusher.client.stream(
            "POST", self.endpoint, content=body, headers=headers
        ) as response:
            answer = bytearray()
            for chunk in response.iter_bytes():
                answer += chunk
                if len(answer) > _MAX_ANSWER:
                    return response.status_code, "", b""  # not an answer a witness gives
        kind = response.headers.get("content-type", "").split(";")[0].strip()
        return response.status_code, kind, bytes(answer)

    def _cosigned(self, size: int, note: bytes, answer: bytes) -> None:
        """Keep the witness's cosignature in ``answer`` once it verifies."""
        self.old = size
        stated = parse_note(note)
        cp = Checkpoint.from_text(stated.text)
        key = self.witness.key
        try:
            lines = parse_note(note + answer).signatures[len(stated.signatures) :]
        except Error as exc:
            self._failed(f"its answer is not cosignature lines: {exc.message}")
            return
        found = None
        for sig in lines:
            if (sig.name, sig.key_id) != (key.name, key.key_id):
                continue
            try:
                found = _Cosigned(size, stated.text, sig, verify_cosignature(cp, sig, key))
            except SignatureError as exc:
                self._failed(f"its cosignature at size {size} fails: {exc.message}")
                return
        if found is None:
            self._failed(f"it answered 200 without a cosignature by its key at size {size}")
            return
        self.last_error = None
        self.last_refusal = None  # it takes this log's checkpoints again
        self.cosigned = found
        self.pusher.keep_attached()

    def _failed(self, reason: str) -> None:
        """The witness could not be asked (or answered nonsense): back off."""
        interval = self.pusher.interval
        self.backoff = min(self.pusher.max_backoff, max(interval, self.backoff * 2))
        self.retry_at = time.monotonic() + self.backoff
        self.last_error = reason
        _log.warning(
            f"witness {self.witness.name!r}: {reason}; trying again in {self.backoff:.1f}s"
        )

    def _refused(self, size: int, reason: str) -> None:
        self.refusals += 1
        self.last_refusal = reason
        with self.pusher.lock:
            self.pusher.refusals_total += 1
        _log.error(
            f"witness {self.witness.name!r} refused the checkpoint of size {size} "
            f"(it holds {self.old}): {reason}"
        )

    def status(self) -> dict[str, object]:
        c = self.cosigned
        return {
            "held_size": self.old,
            "cosigned_size": None if c is None else c.size,
            "cosigned_time": None if c is None else c.timestamp,
            "posts": self.posts,
            "refusals": self.refusals,
            "last_refusal": self.last_refusal,
            "last_error": self.last_error,
        }


class WitnessPusher:
    """Pushes the final checkpoints of ``store`` to the witnesses ``policy``
    names (see ``witnesses_to_push``) and keeps their cosignatures with the
    stored checkpoint. ``policy`` gives the ledger's checkpoint policy (None
    before genesis): the witnesses are read from it once it has one.

    ``offer`` is the listener for ``Node.on_final``: it returns at once, the
    posting happens in a thread per witness, at most once per ``interval``
    seconds (``shared``: ``interval`` times the policy's nodes, as every node
    of the cluster pushes and a witness expects about one checkpoint per
    interval of a log). A refusal (400, 403, 404, 413,
    422: the log forked, or the witness does not know it) is logged, counted
    in ``refusals_total`` and shown by ``status``; network errors and other
    answers are retried with back-off. Nothing here stops the node.
    """

    def __init__(
        self,
        policy: Callable[[], CheckpointPolicy | None],
        store: LedgerStore,
        client: httpx.Client | None = None,
        *,
        interval: float = 1.0,
        shared: bool = False,
        max_backoff: float = 60.0,
        timeout: float = 10.0,
    ) -> None:
        self._policy_of = policy
        self.store = store
        self._client = client
        self._own_client = False
        self._timeout = timeout
        self.interval = interval
        self._shared = shared
        self.max_backoff = max(max_backoff, interval)
        self.lock = threading.Lock()
        self._feeds: list[_Feed] | None = None  # None until the policy is known
        self._closed = False
        self.refusals_total = 0  # refusals by any witness since start (a counter)

    def offer(self, size: int, note: bytes) -> None:
        """A new final checkpoint: hand it to each witness's thread."""
        feeds = self._feeds if self._feeds is not None else self._start()
        for feed in feeds:
            feed.offer(size, note)

    def _start(self) -> list[_Feed]:
        with self.lock:
            if self._feeds is not None:
                return self._feeds
            try:
                policy = self._policy_of()
            except Error as exc:  # the genesis cannot be read: say so, try again next time
                _log.error(f"the ledger's checkpoint policy cannot be read: {exc.message}")
                return []
            if policy is None or self._closed:
                return []
            if self._shared:
                # Every node pushes: together they post about once per interval.
                self.interval *= max(1, len(policy.nodes))
            self._feeds = [_Feed(self, w) for w in witnesses_to_push(policy)]
            if self._feeds and self._client is None:
                self._client, self._own_client = httpx.Client(timeout=self._timeout), True
            for feed in self._feeds:
                feed.thread.start()
            if self._feeds:
                names = ", ".join(f.witness.name for f in self._feeds)
                _log.info(f"pushing final checkpoints to the witnesses {names}")
            return self._feeds

    @property
    def client(self) -> httpx.Client:
        assert self._client is not None  # made before the first witness thread starts
        return self._client

    @property
    def witnesses(self) -> tuple[str, ...]:
        """The names of the witnesses pushed to (empty before genesis)."""
        return tuple(f.witness.name for f in self._feeds or ())

    def keep_attached(self) -> None:
        """Store the witnesses' cosignatures with the latest checkpoint if they
        are on it and it lacks them. The publisher rewrites a final checkpoint
        when a late node cosignature comes, so this runs at each push and
        at each idle ``interval``."""
        with self.lock:
            latest = self.store.checkpoint()
            if latest is None:
                return
            size, data = latest
            stored = parse_note(data)
            have = set(stored.signatures)
            sigs = [
                c.signature
                for f in self._feeds or ()
                if (c := f.cosigned) is not None and c.size == size and c.text == stored.text
            ]
            if not sigs or all(s in have for s in sigs):
                return
            cp = Checkpoint.from_text(stored.text)
            try:
                self.store.put_checkpoint(size, cp.root, add_signatures(stored, *sigs).to_bytes())
            except RollbackError:
                return  # a newer checkpoint became final meanwhile: its turn comes
            except Error as exc:
                _log.warning(f"keeping the witness cosignatures at size {size} failed: {exc}")

    def status(self) -> Mapping[str, object]:
        """For ``cluster_status``: each witness's state, and the reason each
        witness that refused since it last cosigned gave (``witness_refusals``)."""
        feeds = self._feeds or []
        return {
            "witnesses": {f.witness.name: f.status() for f in feeds},
            "witness_refusals": {
                f.witness.name: f.last_refusal for f in feeds if f.last_refusal is not None
            },
        }

    def close(self) -> None:
        """Stop the threads (a post in flight ends within the client's timeout)."""
        with self.lock:
            self._closed = True
            feeds = self._feeds or []
        for feed in feeds:
            with feed.cond:
                feed.stopping = True
                feed.cond.notify()
        for feed in feeds:
            feed.thread.join()
        if self._own_client and self._client is not None:
            self._client.close()
