"""Where each model version stands, as the model list and the model page show
it: the environments it serves now, its approvals and rejections, the
rollbacks that withdrew it and its revocation (pure: values in, values out)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Standing", "standings"]


@dataclass(frozen=True)
class Standing:
    """One model version's standing. ``rolled_back`` holds the rollback events
    (env, reason, by, time, index) that took it out of an environment."""

    version: int
    serving: tuple[str, ...]
    approvals: tuple[Mapping[str, Any], ...]
    rejections: tuple[Mapping[str, Any], ...]
    rolled_back: tuple[Mapping[str, Any], ...]
    revoked: Mapping[str, Any] | None

    @property
    def state(self) -> str:
        """One word for the version: revoked, serving, withdrawn (rolled back
        and serving nowhere), rejected (rejections and no approval), approved,
        or registered (no decision yet)."""
        if self.revoked:
            return "revoked"
        if self.serving:
            return "serving"
        if self.rolled_back:
            return "withdrawn"
        if self.rejections and not self.approvals:
            return "rejected"
        if self.approvals:
            return "approved"
        return "registered"

    @property
    def good(self) -> bool:
        return self.state in ("serving", "approved")


def standings(
    records: Sequence[Mapping[str, Any]],
    history: Sequence[Mapping[str, Any]],
    current: Mapping[str, Mapping[str, Any] | None],
) -> list[Standing]:
    """The standing of each version in ``records``, in their order, from the
    model's deployment ``history`` (every environment, oldest first) and what
    each environment runs ``current``ly."""
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
            )
        )
    return out
