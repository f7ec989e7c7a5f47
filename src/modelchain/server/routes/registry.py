"""Registry and governance state under ``/v1``: models, datasets, runs,
federated tasks and their credit, members, policies, the audit trail and denied
attempts, digest lookups; each answer carries the checkpoint it was read at."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request, Response

from ...ledger.trail import TrailFilter, exclusions
from ..config import MAX_INT
from ..context import ServerContext
from ..queries import find_digest
from .common import JSONText

__all__ = ["registry_router"]


# A list query parameter needs Query() to be read from the query string.
_EXCLUDE = Query(None, description="a type to leave out, or a prefix ending in a dot; repeatable")


def registry_router(ctx: ServerContext) -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["registry and governance"], default_response_class=JSONText)
    led = ctx.ledger

    def checkpoint_fields() -> dict[str, Any]:
        cp, note = ctx.checkpoint()
        return {"size": cp.size, "root": cp.root.hex(), "note": note.decode()}

    def answer(value: Any, **more: Any) -> Response:
        # Ledger values can nest as deep as entries logged before the nesting
        # limit: written by JSONText, which any depth fits, not by FastAPI's
        # serializer, which gives up near 254 levels.
        return JSONText({"result": value, "checkpoint": checkpoint_fields(), **more})

    @r.get("/ledger", summary="Origin, size, log key and the latest checkpoint")
    def info(request: Request) -> Response:
        ctx.reader(request)
        return JSONText(
            {
                "origin": led.origin,
                "size": led.size,
                "log_key": led.log_key.to_string(),
                "checkpoint": checkpoint_fields(),
            }
        )

    @r.get("/models", summary="Registered models")
    def models(request: Request) -> Response:
        ctx.reader(request)
        return answer(led.models.list())

    @r.get("/models/{name}", summary="A model version (the latest unless ?version=)")
    def model(
        request: Request, name: str, version: int | None = Query(None, ge=1, le=MAX_INT)
    ) -> Response:
        ctx.reader(request)
        return answer(led.models.get(name, version).record)

    @r.get("/models/{name}/lineage", summary="Datasets, runs and parents behind a version")
    def lineage(
        request: Request, name: str, version: int | None = Query(None, ge=1, le=MAX_INT)
    ) -> Response:
        ctx.reader(request)
        return answer(led.models.lineage(name, version).to_json())

    @r.get(
        "/models/{name}/deployments/{env}",
        summary="Deployment history of an environment (up to ?at= ms), and what it serves",
    )
    def history(
        request: Request, name: str, env: str, at: int | None = Query(None, ge=0, le=MAX_INT)
    ) -> Response:
        ctx.reader(request)
        return answer(
            {
                "current": led.deployments.current(name, env),
                "serving": None if at is None else led.deployments.serving(name, env, at),
                "history": led.deployments.history(name, env, at),
            }
        )

    @r.get("/models/{name}/diff", summary="Files and tensors that differ between two versions")
    def diff(
        request: Request,
        name: str,
        old: int = Query(ge=1, le=MAX_INT),
        new: int = Query(ge=1, le=MAX_INT),
    ) -> Response:
        ctx.reader(request)
        return answer(led.models.diff(name, old, new).to_json())

    @r.get("/datasets", summary="Registered datasets")
    def datasets(request: Request) -> Response:
        ctx.reader(request)
        return answer(led.datasets.list())

    @r.get("/datasets/{name}", summary="A dataset and its versions")
    def dataset(
        request: Request, name: str, version: int | None = Query(None, ge=1, le=MAX_INT)
    ) -> Response:
        ctx.reader(request)
        if version is None:
            return answer(led.datasets.info(name))
        return answer(led.datasets.get(name, version).record)

    @r.get("/runs/{run_id}", summary="A training run")
    def run(request: Request, run_id: str) -> Response:
        ctx.reader(request)
        return answer(led.runs.get(run_id))

    @r.get("/members", summary="Members, their organisations, roles and keys")
    def members(request: Request) -> Response:
        ctx.reader(request)
        return answer({"quorum": led.members.quorum, "members": led.members.list()})

    @r.get("/policies", summary="The CEL policies in force")
    def policies(request: Request) -> Response:
        ctx.reader(request)
        return answer(led.policies.list())

    @r.get(
        "/denied",
        summary="Rejected entries, newest first (the audit trail with outcome=rejected)",
    )
    def denied(
        request: Request,
        before: int | None = Query(None, ge=0, le=MAX_INT),
        limit: int = Query(100, ge=1, le=1000),
    ) -> Response:
        ctx.reader(request)
        page = ctx.denied(before, limit)
        return answer(page.entries, next_before=page.next_before)

    @r.get(
        "/audit",
        summary="The audit trail, newest first, with filters; at most max_scan entries are "
        "examined per call: continue from next_before while it is not null",
    )
    def audit_trail(
        request: Request,
        actor: str | None = None,
        org: str | None = None,
        type: str | None = None,
        outcome: str | None = Query(None, pattern="^(accepted|rejected)$"),
        since: int | None = Query(None, ge=0, le=MAX_INT),
        until: int | None = Query(None, ge=0, le=MAX_INT),
        before: int | None = Query(None, ge=0, le=MAX_INT),
        limit: int = Query(100, ge=1, le=1000),
        exclude: list[str] | None = _EXCLUDE,
    ) -> Response:
        ctx.reader(request)
        f = TrailFilter(
            actor, org, type, outcome, since, until, before, limit, exclusions(exclude or [])
        )
        page = ctx.scan(f)
        return answer(page.entries, next_before=page.next_before)

    @r.get("/fl/tasks", summary="Federated tasks: where each stands")
    def fl_tasks(request: Request) -> Response:
        ctx.reader(request)
        return answer([led.fl.status(t["task"]) for t in led.fl.tasks()])

    @r.get("/fl/tasks/{task}", summary="A federated task: rules, participants, final model")
    def fl_task(request: Request, task: str) -> Response:
        ctx.reader(request)
        return answer(led.fl.status(task))

    @r.get("/fl/tasks/{task}/rounds", summary="A task's rounds: updates, aggregate, credit")
    def fl_rounds(request: Request, task: str) -> Response:
        ctx.reader(request)
        return answer(led.fl.rounds(task))

    @r.get(
        "/fl/tasks/{task}/attribution",
        summary="Each participant's share of credit by a method, per round and cumulative",
    )
    def fl_attribution(
        request: Request,
        task: str,
        method: str = Query("examples", pattern="^(examples|leave-one-out|shapley-mc)$"),
    ) -> Response:
        ctx.reader(request)
        return answer(led.fl.attribution(task, method).to_json())

    @r.get("/verify", summary="Which registered version has this digest")
    def verify(request: Request, digest: str = Query(min_length=1, max_length=200)) -> Response:
        ctx.reader(request)
        return answer(find_digest(led, digest))

    return r
