"""Checkpoint policies (c2sp.org/tlog-policy): which signatures make a checkpoint count.

Owns the policy text (``log``, ``witness``, ``group``, ``quorum`` lines), its
strict parser and formatter, and the one verification every reader of a
checkpoint goes through: the log's signature, then the quorum of cosignatures.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..errors import MalformedError, SignatureError
from .checkpoint import Checkpoint, verify_cosignature
from .identity import COSIGNATURE_V1, ED25519, ML_DSA_44_COSIGNATURE, VerifierKey
from .note import Note, NoteSignature, parse_note, verify_note

__all__ = [
    "MAX_ITEMS",
    "NONE",
    "CheckpointPolicy",
    "PolicyGroup",
    "PolicyLog",
    "PolicyResult",
    "PolicyWitness",
    "as_policy",
    "verify_checkpoint",
]

NONE = "none"  # the predefined quorum that asks for no cosignature
_WITNESS_TYPES = (COSIGNATURE_V1, ML_DSA_44_COSIGNATURE)
_SPACE = re.compile(r"[ \t]+")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
# tlog-policy asks implementations to support at least 32 of each.
MAX_ITEMS = 256


def _check_token(value: str, what: str) -> None:
    if not value or any(c in " \t\n" for c in value):
        raise MalformedError(f"policy {what} {value!r} must be one word")
    for c in value:
        if ord(c) < 0x20 or ord(c) == 0x7F:
            raise MalformedError(f"policy {what} {value!r} has a control character")
        if 0xD800 <= ord(c) <= 0xDFFF:
            raise MalformedError(f"policy {what} {value!r} is not valid UTF-8")


@dataclass(frozen=True)
class PolicyLog:
    """``log <vkey> [url]``: a log whose Ed25519 signature a checkpoint needs."""

    key: VerifierKey
    url: str | None = None

    def __post_init__(self) -> None:
        if self.key.type_byte != ED25519:
            raise MalformedError(
                f"log key {self.key.name!r} must be an Ed25519 (0x01) note key, "
                f"not type 0x{self.key.type_byte:02x}"
            )
        if self.url is not None:
            _check_token(self.url, "log URL")

    def line(self) -> str:
        return " ".join(("log", self.key.to_string(), *([self.url] if self.url else [])))


@dataclass(frozen=True)
class PolicyWitness:
    """``witness <name> <vkey> [url]``: a cosigner (Ed25519 0x04 or ML-DSA-44 0x06)."""

    name: str
    key: VerifierKey
    url: str | None = None

    def __post_init__(self) -> None:
        _check_token(self.name, "witness name")
        if self.key.type_byte not in _WITNESS_TYPES:
            raise MalformedError(
                f"witness {self.name!r}: key type 0x{self.key.type_byte:02x} is not a "
                "cosignature key (0x04 Ed25519 or 0x06 ML-DSA-44)"
            )
        if self.url is not None:
            _check_token(self.url, "witness URL")

    def line(self) -> str:
        parts = ("witness", self.name, self.key.to_string(), *([self.url] if self.url else []))
        return " ".join(parts)


@dataclass(frozen=True)
class PolicyGroup:
    """``group <name> <k|all|any> <members...>``: met when ``threshold`` members are.

    ``spelled`` keeps a threshold written as ``all`` or ``any`` (empty for a
    number) so that a policy formats back to the same text.
    """

    name: str
    threshold: int
    members: tuple[str, ...]
    spelled: str = ""

    def __post_init__(self) -> None:
        _check_token(self.name, "group name")
        if not self.members:
            raise MalformedError(f"group {self.name!r} needs at least one member")
        for m in self.members:
            _check_token(m, f"group {self.name!r} member")
        n = len(self.members)
        if not 1 <= self.threshold <= n:
            raise MalformedError(
                f"group {self.name!r}: threshold {self.threshold} is not between 1 and {n}"
            )
        implied = {"all": n, "any": 1, "": self.threshold}.get(self.spelled)
        if implied is None:
            raise MalformedError(f"group {self.name!r}: threshold spelled {self.spelled!r}")
        if implied != self.threshold:
            raise MalformedError(f"group {self.name!r}: {self.spelled!r} means {implied}")

    def line(self) -> str:
        k = self.spelled or str(self.threshold)
        return " ".join(("group", self.name, k, *self.members))


@dataclass(frozen=True)
class PolicyResult:
    """What a policy found on one checkpoint note; ``satisfied`` says if it counts.

    ``note`` is the note as given; ``verified`` the same note with only the
    signatures that verified (the log's and the known witnesses' valid
    cosignatures), which is what a verifier may keep and pass on. ``cosigned``
    maps each witness name whose cosignature verified to its timestamp;
    ``failed`` describes each cosignature by a known witness that did not;
    ``unmet`` names the groups (the quorum first) that are not met.
    """

    checkpoint: Checkpoint
    note: Note
    verified: Note
    log: VerifierKey
    cosigned: Mapping[str, int]
    failed: tuple[str, ...]
    unmet: tuple[str, ...]

    @property
    def satisfied(self) -> bool:
        return not self.unmet

    def require(self, *, quorum: bool = True) -> PolicyResult:
        """This result, if the checkpoint counts; else raise SignatureError saying
        which groups are unmet and which cosignatures failed. With
        ``quorum=False`` (see ``CheckpointPolicy.verify``) every known
        cosignature must verify but none is required."""
        if not quorum:
            if self.failed:
                raise SignatureError("checkpoint cosignature fails: " + "; ".join(self.failed))
        elif self.unmet:
            detail = "; ".join(self.unmet)
            if self.failed:
                detail += "; failed cosignatures: " + "; ".join(self.failed)
            raise SignatureError(f"checkpoint does not meet the policy: {detail}")
        return self


@dataclass(frozen=True)
class CheckpointPolicy:
    """A tlog-policy: known logs, known witnesses, groups and the quorum.

    A checkpoint counts when one of the logs named by its origin signed it and
    the quorum (a witness, a group, or ``none``) is met by valid cosignatures.
    Build one with ``parse``, ``of_log`` (the single-node policy) or directly;
    every way is checked the same.
    """

    logs: tuple[PolicyLog, ...]
    witnesses: tuple[PolicyWitness, ...] = ()
    groups: tuple[PolicyGroup, ...] = ()
    quorum: str = NONE
    _names: dict[str, PolicyWitness | PolicyGroup] = field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        if len(self.logs) + len(self.witnesses) + len(self.groups) > MAX_ITEMS:
            raise MalformedError(f"policy has more than {MAX_ITEMS} logs, witnesses and groups")
        seen_logs: set[bytes] = set()
        for log in self.logs:
            if log.key.public_key in seen_logs:
                raise MalformedError(f"log {log.key.name!r} is listed twice (same public key)")
            seen_logs.add(log.key.public_key)
        names: dict[str, PolicyWitness | PolicyGroup] = {}
        seen_keys: dict[bytes, str] = {}
        for w in self.witnesses:
            self._define(names, w.name)
            if w.key.public_key in seen_keys:
                raise MalformedError(
                    f"witnesses {seen_keys[w.key.public_key]!r} and {w.name!r} have the same key"
                )
            seen_keys[w.key.public_key] = w.name
            names[w.name] = w
        used: dict[str, str] = {}
        for g in self.groups:
            self._define(names, g.name)
            for m in g.members:
                if m == NONE:
                    raise MalformedError(f"group {g.name!r}: 'none' cannot be a member")
                if m not in names:
                    raise MalformedError(
                        f"group {g.name!r}: member {m!r} is not a witness or group defined "
                        "before it (groups may only name earlier ones, so cycles are impossible)"
                    )
                if m in used:
                    raise MalformedError(
                        f"group {g.name!r}: {m!r} is already a member of group {used[m]!r} "
                        "(a name counts in one place only)"
                    )
                used[m] = g.name
            names[g.name] = g
        _check_token(self.quorum, "quorum")
        if self.quorum != NONE and self.quorum not in names:
            raise MalformedError(f"quorum {self.quorum!r} is not a defined witness or group")
        object.__setattr__(self, "_names", names)

    @staticmethod
    def _define(names: Mapping[str, object], name: str) -> None:
        if name == NONE:
            raise MalformedError("'none' is predefined and cannot name a witness or group")
        if name in names:
            raise MalformedError(f"{name!r} is defined twice (witnesses and groups share names)")

    # -- text ----------------------------------------------------------------

    @classmethod
    def parse(cls, text: str | bytes) -> CheckpointPolicy:
        """Parse a tlog-policy strictly: every error names its line."""
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise MalformedError("checkpoint policy is not valid UTF-8") from exc
        logs: list[PolicyLog] = []
        witnesses: list[PolicyWitness] = []
        groups: list[PolicyGroup] = []
        quorum: str | None = None
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        for number, line in enumerate(lines, 1):
            try:
                for c in line:
                    if (ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F:
                        raise MalformedError(f"control character U+{ord(c):04X}")
                words = [w for w in _SPACE.split(line) if w]
                if not words or words[0].startswith("#"):
                    continue
                keyword, args = words[0], words[1:]
                if keyword == "log":
                    _arity(keyword, args, 1, 2, "log <vkey> [url]")
                    logs.append(PolicyLog(_vkey(args[0]), _opt(args, 1)))
                elif keyword == "witness":
                    _arity(keyword, args, 2, 3, "witness <name> <vkey> [url]")
                    witnesses.append(PolicyWitness(args[0], _vkey(args[1]), _opt(args, 2)))
                elif keyword == "group":
                    if len(args) < 3:
                        raise MalformedError("want 'group <name> <k|all|any> <members...>'")
                    groups.append(_group(args[0], args[1], tuple(args[2:])))
                elif keyword == "quorum":
                    _arity(keyword, args, 1, 1, "quorum <name|none>")
                    if quorum is not None:
                        raise MalformedError("a policy has exactly one quorum line")
                    quorum = args[0]
                else:
                    raise MalformedError(f"unknown keyword {keyword!r}")
                # Names must be defined before use: check the policy so far.
                cls(tuple(logs), tuple(witnesses), tuple(groups), quorum or NONE)
            except MalformedError as exc:
                raise MalformedError(f"checkpoint policy line {number}: {exc.message}") from exc
        if quorum is None:
            raise MalformedError("checkpoint policy has no quorum line")
        return cls(tuple(logs), tuple(witnesses), tuple(groups), quorum)

    def to_text(self) -> str:
        """The policy as tlog-policy text (logs, witnesses, groups, quorum)."""
        lines = [
            *(log.line() for log in self.logs),
            *(w.line() for w in self.witnesses),
            *(g.line() for g in self.groups),
        ]
        return "".join(line + "\n" for line in lines) + f"quorum {self.quorum}\n"

    # -- building ------------------------------------------------------------

    @classmethod
    def of_log(cls, log_key: VerifierKey) -> CheckpointPolicy:
        """The single-node policy: the log's own signature, no cosignature."""
        return cls((PolicyLog(log_key),))

    @classmethod
    def of_cluster(
        cls,
        origin: str,
        nodes: Mapping[str, tuple[bytes, str | None]],
        threshold: int,
        *,
        group: str = "nodes",
    ) -> CheckpointPolicy:
        """A cluster's policy: each node (name -> Ed25519 public key and URL)
        signs as the log under ``origin`` and cosigns under its name; a
        checkpoint counts when ``threshold`` of them cosigned it."""
        logs = tuple(PolicyLog(VerifierKey(origin, key), url) for key, url in nodes.values())
        witnesses = tuple(
            PolicyWitness(name, VerifierKey(name, key, COSIGNATURE_V1), url)
            for name, (key, url) in nodes.items()
        )
        spelled = "all" if threshold == len(nodes) else ""
        members = tuple(nodes)
        return cls(logs, witnesses, (PolicyGroup(group, threshold, members, spelled),), group)

    @property
    def nodes(self) -> tuple[PolicyWitness, ...]:
        """The cosigners whose log key is also one of the policy's logs: a
        cluster's nodes."""
        logs = {log.key.public_key for log in self.logs}
        return tuple(w for w in self.witnesses if w.key.public_key in logs)

    @property
    def log_key(self) -> VerifierKey:
        """The policy's one log key (a ledger's policy names exactly one)."""
        if len(self.logs) != 1:
            raise MalformedError(f"the policy names {len(self.logs)} logs, not one")
        return self.logs[0].key

    def with_log(self, log_key: VerifierKey) -> CheckpointPolicy:
        """This policy for the log ``log_key``: added if it names no log, else it
        must name that one (a cluster's policy names each node's log key)."""
        if not self.logs:
            return CheckpointPolicy((PolicyLog(log_key),), self.witnesses, self.groups, self.quorum)
        if log_key not in [log.key for log in self.logs]:
            names = ", ".join(str(log.key) for log in self.logs)
            raise MalformedError(
                f"the policy's logs ({names}) do not include the log key {log_key}"
            )
        return self

    @property
    def witness_keys(self) -> tuple[VerifierKey, ...]:
        return tuple(w.key for w in self.witnesses)

    # -- evaluation ----------------------------------------------------------

    def evaluate(self, data: bytes | str | Note, *, now: int | None = None) -> PolicyResult:
        """Check the log's signature and every known cosignature on a checkpoint note.

        Raises if the log's signature is missing or fails; cosignatures are
        counted, not required, here (see ``PolicyResult.satisfied``). A
        cosignature by an unknown key is ignored; one by a known witness that
        fails, or (with ``now``, POSIX seconds) is dated after ``now``, is not
        counted and is listed in ``failed``.
        """
        note = data if isinstance(data, Note) else parse_note(data)
        cp = Checkpoint.from_text(note.text)
        candidates = [log.key for log in self.logs if log.key.name == cp.origin]
        if not candidates:
            trusted = ", ".join(log.key.name for log in self.logs) or "none"
            raise SignatureError(
                f"checkpoint origin {cp.origin!r} is not a log the policy trusts ({trusted})"
            )
        _, signed = verify_note(note, candidates)
        logs = {(k.name, k.key_id) for k in signed}
        by_id = {(w.key.name, w.key.key_id): w for w in self.witnesses}
        cosigned: dict[str, int] = {}
        failed: list[str] = []
        kept: list[NoteSignature] = []
        for sig in note.signatures:
            if (sig.name, sig.key_id) in logs:
                kept.append(sig)
                continue
            witness = by_id.get((sig.name, sig.key_id))
            if witness is None:
                continue
            try:
                timestamp = verify_cosignature(cp, sig, witness.key)
            except SignatureError as exc:
                failed.append(f"{witness.name}: {exc.message}")
                continue
            if now is not None and timestamp > now:
                failed.append(f"{witness.name}: cosignature dated {timestamp}, after {now}")
                continue
            cosigned[witness.name] = max(timestamp, cosigned.get(witness.name, timestamp))
            kept.append(sig)
        unmet: list[str] = []
        if self.quorum != NONE:
            self._met(self.quorum, cosigned, unmet)
        verified = Note(note.text, tuple(kept))
        return PolicyResult(cp, note, verified, signed[0], cosigned, tuple(failed), tuple(unmet))

    def met_by(self, cosigners: Iterable[str]) -> bool:
        """Whether cosignatures by ``cosigners`` (already verified) meet the quorum."""
        if self.quorum == NONE:
            return True
        return self._met(self.quorum, dict.fromkeys(cosigners, 0), [])

    def check_cluster(self) -> None:
        """For a cluster's policy (one naming nodes): MalformedError unless the
        nodes' cosignatures alone can meet the quorum. Nodes make checkpoints
        final, then push them to witnesses; a quorum that needs a witness would
        never be met (readers who want one too verify with a policy of their own)."""
        nodes = {w.name: 0 for w in self.nodes}
        if nodes and self.quorum != NONE and not self._met(self.quorum, nodes, []):
            raise MalformedError(
                f"the quorum {self.quorum!r} cannot be met by the nodes "
                f"({', '.join(nodes)}) alone: a cluster's nodes make checkpoints final "
                "before any witness sees them; require witnesses in readers' policies instead"
            )

    def _met(self, name: str, cosigned: Mapping[str, int], unmet: list[str]) -> bool:
        item = self._names[name]
        if isinstance(item, PolicyWitness):
            if name not in cosigned:
                unmet.append(f"witness {name!r} has not cosigned")
                return False
            return True
        # Names are defined before use, so this recursion ends; collect the
        # unmet parent first, then what is missing below it.
        mark = len(unmet)
        met = [m for m in item.members if self._met(m, cosigned, [])]
        if len(met) >= item.threshold:
            return True
        have = ", ".join(met) or "none"
        unmet.insert(
            mark,
            f"group {name!r} needs {item.threshold} of {', '.join(item.members)}; met: {have}",
        )
        for m in item.members:
            if m not in met:
                self._met(m, cosigned, unmet)
        return False

    def verify(
        self,
        data: bytes | str | Note,
        *,
        now: int | None = None,
        require_quorum: bool = True,
    ) -> tuple[Checkpoint, Note]:
        """The checkpoint and its note, if it counts under this policy; else raise
        SignatureError saying which groups are unmet and which cosignatures failed.

        ``require_quorum=False`` is for the log's own copy of a checkpoint that may
        still be waiting for cosignatures (to serve it to witnesses, to audit
        it): the log's signature must verify and so must every cosignature by a
        known witness, but none is required. Readers never pass it.
        """
        result = self.evaluate(data, now=now).require(quorum=require_quorum)
        return result.checkpoint, result.note


def verify_checkpoint(
    data: bytes | str | Note,
    policy: CheckpointPolicy,
    *,
    now: int | None = None,
    require_quorum: bool = True,
) -> tuple[Checkpoint, Note]:
    """Verify a signed checkpoint under ``policy`` and parse it (``CheckpointPolicy.verify``)."""
    return policy.verify(data, now=now, require_quorum=require_quorum)


def as_policy(trust: CheckpointPolicy | VerifierKey | str) -> CheckpointPolicy:
    """A policy from what a caller trusts: a policy, a log key (the single-node
    policy), or text: one verifier-key string, or a tlog-policy."""
    if isinstance(trust, CheckpointPolicy):
        return trust
    if isinstance(trust, VerifierKey):
        return CheckpointPolicy.of_log(trust)
    text = trust.strip()
    if text and not _SPACE.search(text) and "\n" not in text:
        return CheckpointPolicy.of_log(VerifierKey.from_string(text))
    return CheckpointPolicy.parse(trust)


def _arity(keyword: str, args: list[str], low: int, high: int, usage: str) -> None:
    if not low <= len(args) <= high:
        raise MalformedError(f"want '{usage}'")


def _opt(args: list[str], i: int) -> str | None:
    return args[i] if len(args) > i else None


def _vkey(text: str) -> VerifierKey:
    try:
        return VerifierKey.from_string(text)
    except MalformedError as exc:
        raise MalformedError(f"bad vkey: {exc.message}") from exc


def _group(name: str, k: str, members: tuple[str, ...]) -> PolicyGroup:
    if k == "all":
        return PolicyGroup(name, len(members), members, "all")
    if k == "any":
        return PolicyGroup(name, 1, members, "any")
    if not _DECIMAL.fullmatch(k) or len(k) > 6:
        raise MalformedError(f"group {name!r}: threshold {k!r} is not all, any or a number")
    return PolicyGroup(name, int(k), members)
