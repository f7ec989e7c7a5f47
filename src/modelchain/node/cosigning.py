"""Cosigned checkpoints: a cluster node's publisher.

In a cluster every node signs the checkpoints it reaches and posts its
cosignature (C2SP tlog-cosignature/v1, type 0x04, under the node's name) on a
board the nodes share (etcd, ``EtcdCosignatures``). Each node gathers what the
others posted: a cosignature on a size it has reached is checked against its
own root there, and the node cosigns that size too. A checkpoint becomes
*final* when the ledger's checkpoint policy holds (k of n node cosignatures on
the same root); only final checkpoints are stored, so the store's latest
checkpoint, served to clients, is always final. Each node adds its own log
signature (its key under the origin), so any node's copy verifies.

A node that finds a quorum of the others on another root at a size it has
reached has diverged: it stops cosigning, stops taking writes and says where
(see ``divergence``).
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..core.checkpoint import Checkpoint, cosign, sign_checkpoint, verify_cosignature
from ..core.identity import Signer, VerifierKey
from ..core.merkle import tree_root
from ..core.note import Note, NoteSignature, add_signatures, parse_note
from ..core.policy import CheckpointPolicy, PolicyWitness
from ..errors import Error, NodeStoppedError, RollbackError, SignatureError
from ..storage.protocols import LedgerStore
from .publisher import CheckpointPublisher

__all__ = ["ClusterPublisher", "CosignatureBoard", "Divergence", "MemoryBoard", "NamedSigner"]

_log = logging.getLogger("modelchain.node")


class NamedSigner:
    """``signer``'s key under another name (a node's key, as its cosigner)."""

    def __init__(self, signer: Signer, name: str) -> None:
        self._signer = signer
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    @property
    def public_key(self) -> bytes:
        return self._signer.public_key

    def sign(self, message: bytes) -> bytes:
        return self._signer.sign(message)


class CosignatureBoard(Protocol):
    """Where the nodes of a cluster post their cosignatures and read the others'."""

    def post(self, node: str, size: int, note: bytes) -> None:
        """Post ``node``'s cosigned checkpoint ``note`` of ``size`` entries."""
        ...

    def follow(self, seen: Callable[[str, bytes], None]) -> None:
        """Call ``seen(node, note)`` for each note posted, from now on and
        those still on the board."""
        ...

    def forget(self, node: str, below: int) -> None:
        """Remove ``node``'s notes of fewer than ``below`` entries."""
        ...

    def close(self) -> None: ...


class MemoryBoard:
    """A board in memory for nodes in one process; notes reach followers in
    the order posted, from a thread of its own (as etcd's watch does)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._notes: dict[tuple[str, int], bytes] = {}
        self._followers: list[Callable[[str, bytes], None]] = []
        self._queue: queue.Queue[tuple[list[Callable[[str, bytes], None]], str, bytes] | None]
        self._queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="modelchain-board", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            followers, node, note = item
            for f in followers:
                f(node, note)

    def post(self, node: str, size: int, note: bytes) -> None:
        with self._lock:
            self._notes[(node, size)] = note
            self._queue.put((list(self._followers), node, note))

    def follow(self, seen: Callable[[str, bytes], None]) -> None:
        with self._lock:
            self._followers.append(seen)
            for (node, _), note in self._notes.items():
                self._queue.put(([seen], node, note))

    def forget(self, node: str, below: int) -> None:
        with self._lock:
            for key in [k for k in self._notes if k[0] == node and k[1] < below]:
                del self._notes[key]

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()


@dataclass(frozen=True)
class Divergence:
    """This node's root at ``size`` is not the one a quorum of others signed."""

    size: int
    mine: bytes
    theirs: bytes
    nodes: tuple[str, ...]
    agreed: int = 0  # the last size this node's root was final at
    first_entry: int | None = None  # the first entry that differs, once found

    def message(self) -> str:
        where = (
            f"; entry {self.first_entry} is the first that differs"
            if self.first_entry is not None
            else ""
        )
        return (
            f"this node diverged: at size {self.size} its root is {self.mine.hex()[:16]}…, "
            f"while {', '.join(self.nodes)} signed {self.theirs.hex()[:16]}…{where}; it "
            "stopped cosigning and taking writes (see the README, 'When a node diverges')"
        )


class ClusterPublisher(CheckpointPublisher):
    """Publishes checkpoints of ``store`` for the cluster: proposes this node's
    head (``every`` entries or ``interval_ms`` after the first unpublished
    one), cosigns what the others propose, and stores a checkpoint once
    ``policy`` holds for it. ``signer`` is this node's key: it signs as the log
    (under the origin) and cosigns as ``node``. ``policy`` gives the ledger's
    checkpoint policy (None before genesis)."""

    def __init__(
        self,
        store: LedgerStore,
        signer: Signer,
        *,
        node: str,
        policy: Callable[[], CheckpointPolicy | None],
        board: CosignatureBoard,
        every: int,
        interval_ms: int,
        on_fault: Callable[[str], None],
    ) -> None:
        self._node = node
        self._policy_of = policy
        self._policy: CheckpointPolicy | None = None
        self._witnesses: dict[str, PolicyWitness] = {}
        self._least = 0
        self._board = board
        self._cosigner = NamedSigner(signer, node)
        self._state = threading.Condition(threading.Lock())
        # Valid cosignatures on this node's root, by size and node.
        self._cosigs: dict[int, dict[str, NoteSignature]] = {}
        # Cosignatures on roots other than this node's, by size: root -> node -> sig.
        self._others: dict[int, dict[bytes, dict[str, NoteSignature]]] = {}
        # Notes for sizes this node has not reached yet, by size.
        self._ahead: dict[int, list[tuple[str, Note]]] = {}
        self._signed: set[int] = set()  # sizes this node cosigned
        self._roots: dict[int, bytes] = {}  # this node's root at sizes in play
        self.divergence: Divergence | None = None
        # Given (agreed, size), the first index below ``size`` where this node's
        # log differs from a peer's (a cluster node compares over HTTP).
        self.locate: Callable[[int, int], int | None] | None = None
        # Told (size, note) of each new final checkpoint, under the publisher's
        # lock: they must hand slow work (pushing to witnesses) to a thread.
        self.listeners: list[Callable[[int, bytes], None]] = []
        latest = store.checkpoint()
        self.final_size = latest[0] if latest else 0
        self._queued = self.final_size  # the largest final checkpoint queued for storing
        self._queued_sigs: set[NoteSignature] = set()
        self._finals: queue.Queue[tuple[int, bytes, Note] | None] = queue.Queue()
        self._storer = threading.Thread(
            target=self._store_finals, name="modelchain-finals", daemon=True
        )
        self._storer.start()
        super().__init__(store, signer, every=every, interval_ms=interval_ms, on_fault=on_fault)
        self.final_time = time.time()
        board.follow(self._seen)

    @property
    def node(self) -> str:
        return self._node

    def _current(self) -> CheckpointPolicy | None:
        """The ledger's checkpoint policy (None before genesis), checked to name
        this node with its key (state lock held)."""
        policy = self._policy_of()
        if policy is None or policy is self._policy:
            return policy
        witnesses = {w.name: w for w in policy.nodes}
        mine = witnesses.get(self._node)
        if mine is None or mine.key.public_key != self._signer.public_key:
            message = (
                f"the ledger's checkpoint policy does not name node {self._node!r} with this "
                "node's key; it cannot cosign (check the node's name and key against genesis)"
            )
            if self.fault is None:
                _log.critical(message)
                self.fault = message
                self._on_fault(message)
            return None
        self._policy, self._witnesses = policy, witnesses
        # The fewest node cosignatures that can meet the quorum: below it a
        # checkpoint is not evaluated (witnesses' cosignatures come later).
        self._least = min((g.threshold for g in policy.groups), default=0)
        return policy

    # -- proposing -----------------------------------------------------------

    def publish(self) -> bytes | None:
        """Cosign and post this node's head if it is new; return the latest
        final checkpoint (None before the first)."""
        if self.fault is not None:
            raise NodeStoppedError(f"this node stopped taking writes: {self.fault}")
        with self._lock:
            size, root = self._store.head()
            if size > self.size:
                with self._state:
                    # Not when this node already cosigned another's proposal
                    # at least as large.
                    if size > max(self._signed, default=0):
                        self._cosign(size, root)
                self.size = size
                self.time = time.time()
            with self._cond:
                more = self._written > self.size
                self._due = time.monotonic() + self._interval if more else None
                self._retry_at = None
        latest = self._store.checkpoint()
        return None if latest is None else latest[1]

    def wait_final(self, size: int, timeout: float) -> bool:
        """Wait until a checkpoint of at least ``size`` entries is final."""
        deadline = time.monotonic() + timeout
        with self._state:
            while self.final_size < size and self.fault is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._state.wait(left)
            return self.final_size >= size

    def wrote(self, size: int) -> None:
        super().wrote(size)
        with self._state:
            ready = sorted(s for s in self._ahead if s <= size)
            for s in ready:
                for node, note in self._ahead.pop(s):
                    self._take(node, note)

    # -- gathering -----------------------------------------------------------

    def _seen(self, node: str, data: bytes) -> None:
        """A note on the board (called from the board's thread)."""
        try:
            note = parse_note(data)
            Checkpoint.from_text(note.text)
        except Error as exc:
            _log.warning(f"a cosignature note posted by {node!r} is malformed: {exc.message}")
            return
        with self._state:
            self._take(node, note)

    def _take(self, node: str, note: Note) -> None:
        """Count ``note`` now, or keep it until this node reaches its size
        (state lock held)."""
        cp = Checkpoint.from_text(note.text)
        if self._current() is None or cp.size > self._written:
            self._ahead.setdefault(cp.size, []).append((node, note))
            return
        if cp.origin != self._signer.name or node not in self._witnesses:
            _log.warning(f"a note posted as {node!r} is not by a node of this ledger; ignored")
            return
        if cp.size < self.final_size:
            return  # settled already
        self._consider(node, note)

    def _consider(self, node: str, note: Note) -> None:
        """Count ``node``'s cosignature in ``note`` (state lock held)."""
        cp = Checkpoint.from_text(note.text)
        key = self._witnesses[node].key
        sig = self._signature_by(note, key)
        if sig is None:
            _log.warning(f"node {node!r} posted a checkpoint of {cp.size} without its cosignature")
            return
        try:
            verify_cosignature(cp, sig, key)
        except SignatureError as exc:
            _log.warning(f"node {node!r}'s cosignature at size {cp.size} fails: {exc.message}")
            return
        mine = self._roots.get(cp.size)
        if mine is None:
            mine = self._roots[cp.size] = tree_root(self._store.node_reader(), cp.size)
        if cp.root != mine:
            self._others.setdefault(cp.size, {}).setdefault(cp.root, {})[node] = sig
            self._check_divergence(cp.size, mine, cp.root)
            return
        self._cosigs.setdefault(cp.size, {})[node] = sig
        # A proposal beyond what this node cosigned gets its cosignature; one
        # below it needs none (the larger one, cosigned by every node that
        # reaches it, makes it final anyway).
        if cp.size > max(self._signed, default=self.final_size):
            self._cosign(cp.size, mine)
        self._finalize(cp.size, mine)

    @staticmethod
    def _signature_by(note: Note, key: VerifierKey) -> NoteSignature | None:
        for sig in note.signatures:
            if sig.name == key.name and sig.key_id == key.key_id:
                return sig
        return None

    def _cosign(self, size: int, root: bytes) -> None:
        """Cosign this node's checkpoint at ``size`` and post it (lock held)."""
        if self.divergence is not None or size in self._signed or self._current() is None:
            return
        self._roots.setdefault(size, root)
        cp = Checkpoint(self._signer.name, size, root)
        sig = cosign(cp, self._cosigner, int(time.time()))
        self._signed.add(size)
        self._cosigs.setdefault(size, {})[self._node] = sig
        note = Note(cp.text(), (sig,))
        try:
            self._board.post(self._node, size, note.to_bytes())
        except Exception as exc:  # the board is down: the next proposal tries again
            _log.warning(f"posting the cosignature at size {size} failed ({exc!r})")
        self._finalize(size, root)

    def _finalize(self, size: int, root: bytes) -> None:
        """Queue the checkpoint at ``size`` for storing if the policy now holds
        (lock held). Stored by a thread of its own, in order: the board's
        thread and the writer never wait for the disk here."""
        if size < self._queued:
            return
        cosigs = self._cosigs.get(size, {})
        if self._policy is None or len(cosigs) < self._least:
            return  # too few to meet any group: not worth a signature yet
        if size == self._queued:
            # Final already: a late node cosignature joins what is kept there.
            if all(sig in self._queued_sigs for sig in cosigs.values()):
                return
            note = Note(Checkpoint(self._signer.name, size, root).text(), tuple(cosigs.values()))
        else:
            # Each cosignature was verified as it came: count them, sign once met.
            if not self._policy.met_by(cosigs):
                return
            cp = Checkpoint(self._signer.name, size, root)
            note = add_signatures(sign_checkpoint(cp, self._signer), *cosigs.values())
        self._queued = size
        self._queued_sigs = set(cosigs.values())
        self._finals.put((size, root, note))

    def _store_finals(self) -> None:
        """Store each final checkpoint queued, merged with what is stored at
        its size (a witness's cosignature stays), then tell the listeners."""
        while (item := self._finals.get()) is not None:
            size, root, note = item
            stored = self._store.checkpoint(size)
            if stored is not None and stored[0] == size:
                note = add_signatures(parse_note(stored[1]), *note.signatures)
            elif not any(sig.name == self._signer.name for sig in note.signatures):
                # Late cosignatures for a size whose first storing failed.
                cp = Checkpoint(self._signer.name, size, root)
                note = add_signatures(sign_checkpoint(cp, self._signer), *note.signatures)
            try:
                self._store.put_checkpoint(size, root, note.to_bytes())
            except RollbackError as exc:
                with self._state:
                    self.fault = exc.message
                self._on_fault(exc.message)
                return
            except Error as exc:
                _log.error(f"storing the final checkpoint at size {size} failed: {exc.message}")
                continue
            with self._state:
                if size <= self.final_size:
                    continue
                self.final_size = size
                self.final_time = time.time()
                self._state.notify_all()
                for listener in self.listeners:
                    try:
                        listener(size, note.to_bytes())
                    except Exception as exc:  # a listener's fault is its own
                        _log.error("a final-checkpoint listener failed", exc_info=exc)
                # Settled: what is below it is no longer needed here or on the board.
                for table in (self._cosigs, self._others, self._roots):
                    for s in [s for s in table if s < size]:
                        del table[s]
                self._signed = {s for s in self._signed if s >= size}
            try:
                self._board.forget(self._node, size)
            except Exception as exc:
                _log.warning(f"clearing old cosignatures failed ({exc!r})")

    def stop(self) -> None:
        super().stop()
        self._finals.put(None)
        self._storer.join()

    def _check_divergence(self, size: int, mine: bytes, theirs: bytes) -> None:
        """Stop if the others' cosignatures on ``theirs`` meet the policy."""
        if self.divergence is not None:
            return
        cosigs = self._others[size][theirs]
        if self._policy is None or not self._policy.met_by(cosigs):
            return
        found = Divergence(size, mine, theirs, tuple(sorted(cosigs)), self.final_size)
        self.divergence = found
        message = found.message()
        _log.critical(message)
        self.fault = message
        self._on_fault(message)
        self._state.notify_all()
        if self.locate is not None:
            threading.Thread(
                target=self._locate, args=(found,), name="modelchain-divergence", daemon=True
            ).start()

    def _locate(self, found: Divergence) -> None:
        """Name the first entry that differs from the others' (``locate``
        compares with a peer's entries from the last agreed size on)."""
        assert self.locate is not None
        try:
            first = self.locate(found.agreed, found.size)
        except Exception as exc:  # the alarm stands without it
            _log.error(f"could not find the first differing entry ({exc!r})")
            return
        if first is None:
            return
        with self._state:
            self.divergence = dataclasses.replace(found, first_entry=first)
            message = self.divergence.message()
            self.fault = message
        _log.critical(message)
        self._on_fault(message)
