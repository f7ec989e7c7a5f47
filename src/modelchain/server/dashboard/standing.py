"""Where each model version stands, as the model list and the model page show
it: the environments it serves now, its approvals (and which went stale) and
rejections, the rollbacks that withdrew it and its revocation (pure: values in,
values out)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Standing", "stale_approvals", "standings"]


@dataclass(frozen=True)
class Standing:
    """One model version's standing. ``approvals`` holds every recorded
    approval; ``stale`` says, by the approval's entry index, why one would not
    count for a deployment now. ``rolled_back`` holds the rollback events (env,
    reason, by, time, index) that took it out of an environment."""

    version: int
    serving: tuple[str, ...]
    approvals: tuple[Mapping[str, Any], ...]
    rejections: tuple[Mapping[str, Any], ...]
    rolled_back: tuple[Mapping[str, Any], ...]
    revoked: Mapping[str, Any] | None
    stale: Mapping[int, str] = field(default_factory=dict)

    @property
    def counting(self) -> tuple[Mapping[str, Any], ...]:
        """The approvals that would count for a deployment now."""
        return tuple(a for a in self.approvals if a["index"] not in self.stale)

    @property
    def state(self) -> str:
        """One word for the version: revoked, serving, withdrawn (rolled back
        and serving nowhere), rejected (rejections and no approval that counts),
        approved, stale (approvals, none of which counts any more) or registered
        (no decision yet)."""
        if self.revoked:
            return "revoked"
        if self.serving:
            return "serving"
        if self.rolled_back:
            return "withdrawn"
        if self.rejections and not self.counting:
            return "rejected"
        if self.counting:
            return "approved"
        if self.approvals:
            return "stale"
        return "registered"

    @property
    def good(self) -> bool:
        return self.state in ("serving", "approved")


def stale_approvals(
    record: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    now: int,
    approval_ttl: int | None,
) -> dict[int, str]:
    """Why each of ``record``'s approvals that would not count for a deployment
    at ``now`` (ms) would not, by the approval's entry index: recorded before
    the version's last rollback from its environment in ``history``, or older
    than ``approval_ttl`` (ms). The deployment contract's rule (contract-set
    version 5); ``approval_ttl`` None (before 5): every approval counts."""
    if approval_ttl is None:
        return {}
    version = record["version"]
    last_rollback: dict[str, int] = {}
    for e in history:
        if e.get("action") == "rollback" and e.get("from") == version:
            last_rollback[e["env"]] = max(int(e["index"]), last_rollback.get(e["env"], -1))
    oldest = now - approval_ttl
    out: dict[int, str] = {}
    for a in record.get("approvals", []):
        since = last_rollback.get(a["env"])
        if since is not None and a["index"] <= since:
            out[a["index"]] = f"before rollback at entry {since}"
        elif a["time"] < oldest:
            out[a["index"]] = "expired"
    return out


def standings(
    records: Sequence[Mapping[str, Any]],
    history: Sequence[Mapping[str, Any]],
    current: Mapping[str, Mapping[str, Any] | None],
    now: int = 0,
    approval_ttl: int | None = None,
) -> list[Standing]:
    """The standing of each version in ``records``, in their order, from the
    model's deployment ``history`` (every environment, oldest first) and what
    each environment runs ``current``ly; approvals go stale at ``now`` (ms) as
    ``stale_approvals`` says (never where ``approval_ttl`` is None)."""
    out = []
    for record in records:
        v = record["version"]
        serving = tuple(
            sorted(env for env, d in current.items() if d is not None and d.get("version") == v)
        )
        rolled = tuple(e for e in history if e.get("action") == "rollback" and e.get("from") == v)
        revoked = record.get("revoked")
        out.append(
            Standing(
                version=v,
                serving=serving,
                approvals=tuple(record.get("approvals", [])),
                rejections=tuple(record.get("rejections", [])),
                rolled_back=rolled,
                revoked=revoked if isinstance(revoked, Mapping) else None,
                stale=stale_approvals(record, history, now, approval_ttl),
            )
        )
    return out
