"""Deployments from Python: ``led.deployments`` approves, deploys, rolls back,
revokes, reports monitoring metrics and reads deployment history.

A model or version that does not exist is a mistake, not evidence: approving,
rejecting, deploying, rolling back or revoking it raises NotFoundError here,
before anything is signed, so a typo never becomes a permanent refused entry.
What a contract or policy decides about a real version is still submitted and
logged, refusals included."""

from __future__ import annotations

from typing import Any

from ..contracts.state import deploy_envs_key, deploy_history_key, deployment_key
from ..contracts.types import (
    ACCESS_LOG,
    MODEL_APPROVE,
    MODEL_DEPLOY,
    MODEL_REJECT,
    MODEL_REVOKE,
    MODEL_ROLLBACK,
    MONITOR_REPORT,
)
from ..core.identity import Signer
from ..errors import NotFoundError
from ..node.node import Ack
from ._facade import Facade

__all__ = ["Deployments"]


class Deployments(Facade):
    """Approvals, deployments, rollbacks, revocations and monitoring: ``led.deployments``."""

    def _exists(self, model: str, version: int) -> None:
        # NotFoundError ("no model named ...", "... has no version ...") before signing.
        self._version("model", model, version)

    def require(
        self, model: str, version: int | None = None, *, deployed_to: str | None = None
    ) -> None:
        """NotFoundError unless ``model`` (its ``version``) is registered and,
        with ``deployed_to``, deployed there: the checks every call here makes
        before signing, for a caller that opens its key only after them."""
        if version is not None:
            self._exists(model, version)
        elif self._entity("model", model) is None:
            raise NotFoundError(f"no model named {model!r}")
        if deployed_to is not None and self.current(model, deployed_to) is None:
            raise NotFoundError(
                f"{model} is not deployed to {deployed_to!r}: there is nothing to roll back"
            )

    def approve(
        self,
        model: str,
        version: int,
        env: str,
        *,
        role: str,
        comment: str = "",
        signer: Signer | None = None,
    ) -> Ack:
        self._exists(model, version)
        body = {"model": model, "version": version, "env": env, "role": role, "comment": comment}
        return self._submit(MODEL_APPROVE, body, signer)

    def reject(
        self,
        model: str,
        version: int,
        env: str,
        *,
        role: str,
        comment: str = "",
        signer: Signer | None = None,
    ) -> Ack:
        self._exists(model, version)
        body = {"model": model, "version": version, "env": env, "role": role, "comment": comment}
        return self._submit(MODEL_REJECT, body, signer)

    def deploy(
        self,
        model: str,
        version: int,
        env: str,
        *,
        rollback_rule: str | None = None,
        signer: Signer | None = None,
    ) -> Ack:
        """Pin ``env`` to ``version``; ``rollback_rule`` (CEL over ``metrics`` and
        ``deployment``) makes a breaching monitor report roll it back."""
        self._exists(model, version)
        body = {"model": model, "version": version, "env": env, "rollback_rule": rollback_rule}
        return self._submit(MODEL_DEPLOY, body, signer)

    def rollback(
        self, model: str, env: str, *, reason: str = "", signer: Signer | None = None
    ) -> Ack:
        """Return ``env`` to its previous version; NotFoundError (nothing signed)
        if ``model`` is not registered or was never deployed to ``env``."""
        self.require(model, deployed_to=env)
        return self._submit(MODEL_ROLLBACK, {"model": model, "env": env, "reason": reason}, signer)

    def revoke(self, model: str, version: int, *, reason: str, signer: Signer | None = None) -> Ack:
        self._exists(model, version)
        body = {"model": model, "version": version, "reason": reason}
        return self._submit(MODEL_REVOKE, body, signer)

    def report(
        self, model: str, env: str, metrics: dict[str, Any], *, signer: Signer | None = None
    ) -> Ack:
        return self._submit(
            MONITOR_REPORT, {"model": model, "env": env, "metrics": metrics}, signer
        )

    def log_access(
        self, kind: str, name: str, version: int, purpose: str, *, signer: Signer | None = None
    ) -> Ack:
        body = {"artifact": {"kind": kind, "name": name, "version": version}, "purpose": purpose}
        return self._submit(ACCESS_LOG, body, signer)

    def current(self, model: str, env: str) -> dict[str, Any] | None:
        found = self._state(deployment_key(model, env))
        return found if isinstance(found, dict) else None

    def environments(self, model: str) -> list[str]:
        """The environments ``model`` has ever been deployed to."""
        return list(self._state(deploy_envs_key(model)) or [])

    def history(
        self, model: str, env: str | None = None, at: int | None = None
    ) -> list[dict[str, Any]]:
        """Every change of ``model``'s deployments (one environment, or all), oldest
        first, each with who, when and under which approvals; ``at`` (ms) keeps
        the changes up to that moment."""
        envs = [env] if env is not None else self.environments(model)
        events = []
        for e in envs:
            for event in self._state(deploy_history_key(model, e)) or []:
                if at is None or event["time"] <= at:
                    approvals = []
                    if event["to"] is not None:
                        record = self._version("model", model, event["to"])
                        approvals = [a for a in record.get("approvals", []) if a["env"] == e]
                    events.append({"env": e, **event, "approvals": approvals})
        return sorted(events, key=lambda ev: ev["index"])

    def serving(self, model: str, env: str, at: int) -> int | None:
        """The version ``env`` served at time ``at`` (ms), if any."""
        served = None
        for event in self.history(model, env, at):
            served = event["to"]
        return served
