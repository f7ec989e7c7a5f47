"""The dashboard's pages over the ledger: login, overview, models and their
versions, datasets, runs, federated tasks and their credit (CSV too), the audit
trail, entries, members, policies, a cluster's nodes, verify by upload, Annex IV
exports and the static style sheet."""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Mapping
from importlib import resources
from typing import Any
from urllib.parse import urlencode

from fastapi import Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from ...contracts import types as tx_types
from ...contracts.members import holds_role
from ...core.identity import VerifierKey
from ...core.merkle import leaf_hash
from ...core.tx import LogEntry
from ...errors import AuthError, Error, ForbiddenError, NotFoundError, UsageError
from ...ledger.erasures import erasure_of_entry
from ...ledger.trail import TrailFilter, exclusions, trail
from ..access import Principal
from ..lineage import lineage_svg
from ..queries import find_digest
from .approvals import DECISIONS, Approvals
from .cluster import nodes_view
from .forms import int_field, local_next, read_multipart, time_field
from .pages import HEADERS, REPORT_HEADERS, Pages
from .session import TOKEN_COOKIE
from .standing import Standing, stale_approvals, standings

__all__ = ["Views"]

TRAIL_PAGE = 50
LIST_VERSIONS = 5  # versions per model the model list shows (the model page shows all)
SEARCH_MAX = 200  # characters of a model-list search
FL_CREDIT_METHODS = ("examples", "leave-one-out", "shapley-mc")
PRODUCTION = "production"  # the environment the overview leads with
DENIED_SHOWN = 50  # denied attempts a version page lists
DENIED_SCANNED = 1000  # rejected entries, newest first, it looks through for them
KEY_EVENTS_SHOWN = 50  # grants, revocations and key requests a model or dataset page lists
KEY_EVENTS_PAGES = 20  # pages of artifact.* entries, newest first, it looks through for them


class Views:
    """The pages of one server's dashboard."""

    def __init__(self, pages: Pages, approvals: Approvals) -> None:
        self.pages = pages
        self.approvals = approvals
        self.ctx = pages.ctx
        self.led = pages.led

    def denied_about(self, name: str) -> tuple[list[dict[str, Any]], bool]:
        """The latest denied attempts on model ``name`` (at most ``DENIED_SHOWN``),
        from the newest ``DENIED_SCANNED`` rejected entries of the log, read page
        by page from the audit-trail index and not kept; and whether older
        rejected entries were left unexamined."""
        found: list[dict[str, Any]] = []
        before: int | None = None
        examined = 0
        while len(found) < DENIED_SHOWN and examined < DENIED_SCANNED:
            page = self.ctx.denied(before, limit=TRAIL_PAGE)
            examined += len(page.entries)
            found += [e for e in page.entries if _about_model(e, name)]
            before = page.next_before
            if before is None:
                return found[:DENIED_SHOWN], False
        return found[:DENIED_SHOWN], True

    def key_events_about(self, kind: str, name: str) -> tuple[list[dict[str, Any]], bool]:
        """The latest grants, revocations, key requests (accepted or refused) and refused
        stores and erasures of ``kind name`` (at most ``KEY_EVENTS_SHOWN``), read from the
        audit trail's ``artifact.*`` entries, newest first, a bounded number of pages;
        and whether older entries were left unexamined."""
        found: list[dict[str, Any]] = []
        before: int | None = None
        for _ in range(KEY_EVENTS_PAGES):
            page = self.ctx.scan(TrailFilter(type="artifact.", before=before, limit=TRAIL_PAGE))
            for e in page.entries:
                event = _key_event(e, kind, name)
                if event is not None:
                    # a key request's purpose is a committed field (version 8 on)
                    event["purpose"] = str(self.led.disclosures.field(event["purpose"]))
                    found.append(event)
            before = page.next_before
            if before is None:
                return found[:KEY_EVENTS_SHOWN], False
            if len(found) >= KEY_EVENTS_SHOWN:
                break
        return found[:KEY_EVENTS_SHOWN], True

    def _artifact_facts(self, kind: str, name: str, versions: list[int]) -> dict[str, Any]:
        """What the model and dataset pages show of how versions are stored, who may
        obtain their keys, who asked, and which versions were erased."""
        erasures = {}
        stored = {}
        for v in versions:
            erased = self.led.artifacts.erasure(kind, name, v)
            if erased is not None:
                erasures[v] = {**erased, "signers": list(erased.get("signers") or [erased["by"]])}
            how = self.led.artifacts.stored(kind, name, v)
            if how is not None:
                stored[v] = how
        events, events_more = self.key_events_about(kind, name)
        return {
            "erasures": erasures,
            "stored": stored,
            "grants": self.led.artifacts.grants(kind, name),
            "key_events": events,
            "key_events_more": events_more,
        }

    # -- login ------------------------------------------------------------------

    def login_page(self, request: Request) -> Response:
        return self.pages.render(
            request,
            "login.html",
            next=local_next(request.query_params.get("next")),
            error=None,
        )

    async def login(self, request: Request) -> Response:
        form = await request.form()
        self.pages.csrf.check(request, str(form.get("csrf", "")))
        token = str(form.get("token", "")).strip()
        target = local_next(str(form.get("next", "")))
        try:
            info = self.ctx.access.lookup(token)
            member = self.led.members.get(info.member)
            if member.get("status") != "active":
                raise ForbiddenError(f"{info.member} was revoked")
        except (AuthError, ForbiddenError, NotFoundError) as exc:
            return self.pages.render(
                request, "login.html", 401, next=target, error=f"Not signed in: {exc.message}"
            )
        response = RedirectResponse(target, 303)
        response.set_cookie(
            TOKEN_COOKIE,
            token,
            httponly=True,
            samesite="strict",
            secure=self.pages.https(request),
            path="/",
        )
        return response

    def logout_page(self, request: Request) -> Response:
        return self.pages.render(request, "logout.html", who=self.pages.signed_in(request))

    async def logout(self, request: Request) -> Response:
        form = await request.form()
        self.pages.csrf.check(request, str(form.get("csrf", "")))
        response = RedirectResponse("/ui/login", 303)
        response.delete_cookie(TOKEN_COOKIE, path="/")
        return response

    # -- overview, models, datasets, runs -----------------------------------------

    def overview(self, request: Request) -> Response:
        who = self.ctx.reader(request)
        serving = self.serving_now()
        return self.pages.render(
            request,
            "overview.html",
            who=who,
            size=self.led.size,
            checkpoint=self.pages.checkpoint_view(),
            recent=self._rows(trail(self.led, TrailFilter(limit=20)).entries),
            production=[s for s in serving if s["env"] == PRODUCTION],
            elsewhere=[s for s in serving if s["env"] != PRODUCTION],
            counts={
                "models": len(self.led.models.list()),
                "datasets": len(self.led.datasets.list()),
                "members": len(self.led.members.list()),
                "policies": len(self.led.policies.list()),
            },
        )

    def serving_now(self) -> list[dict[str, Any]]:
        """What every environment of every model runs now, by model and environment."""
        out = []
        for m in sorted(self.led.models.list(), key=lambda m: m["name"]):
            name = m["name"]
            for env in sorted(self.led.deployments.environments(name)):
                d = self.led.deployments.current(name, env)
                if d is not None:
                    out.append({"model": name, "env": env, **d})
        return out

    def _standings(self, name: str, versions: list[int]) -> list[tuple[Any, Standing]]:
        """Each of ``versions`` of model ``name`` with its record and standing."""
        records = [self.led.models.get(name, v).record for v in versions]
        current = {
            e: self.led.deployments.current(name, e)
            for e in self.led.deployments.environments(name)
        }
        history = self.led.deployments.history(name)
        ttl = self.led.members.approval_ttl
        found = standings(records, history, current, self.led.clock(), ttl)
        return list(zip(records, found, strict=True))

    def _rows(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for e in entries:
            e["signer_names"] = self.pages.signer_names(e["signers"])
            e["about"] = _about(e)
        return entries

    def models_page(self, request: Request) -> Response:
        who = self.ctx.reader(request)
        search = (request.query_params.get("q") or "").strip()
        if len(search) > SEARCH_MAX:
            raise UsageError(f"a search is at most {SEARCH_MAX} characters")
        listed = sorted(self.led.models.list(), key=lambda m: m["name"])
        matching = [m for m in listed if search.casefold() in str(m["name"]).casefold()]
        models = []
        for m in matching:
            latest = int(m["latest"])
            shown = range(latest, max(0, latest - LIST_VERSIONS), -1)
            models.append(
                {
                    **m,
                    "versions": self._standings(m["name"], list(shown)),
                    "older": max(0, latest - LIST_VERSIONS),
                    "erased": [
                        v for v in shown if self.led.artifacts.erasure("model", m["name"], v)
                    ],
                }
            )
        return self.pages.render(
            request, "models.html", who=who, models=models, search=search, total=len(listed)
        )

    def model_page(self, request: Request) -> Response:
        who = self.ctx.reader(request)
        name = request.path_params["name"]
        entity = self.led.models.info(name)
        versions = self._standings(name, list(range(int(entity["latest"]), 0, -1)))
        current = {
            e: self.led.deployments.current(name, e)
            for e in self.led.deployments.environments(name)
        }
        return self.pages.render(
            request,
            "model.html",
            who=who,
            model=entity,
            versions=versions,
            current=current,
            **self._artifact_facts("model", name, [int(r["version"]) for r, _ in versions]),
        )

    def version_page(self, request: Request) -> Response:
        who = self.ctx.reader(request)
        name = request.path_params["name"]
        version = int_field(request.path_params["version"], "version", 1)
        record = self.led.models.get(name, version).record
        entity = self.led.models.info(name)
        try:
            files = list(self.led.models.manifest_of(record).files)
            files_error = None
        except Error as exc:
            files, files_error = [], exc.message
        history = self.led.deployments.history(name)
        timeline: dict[str, list[dict[str, Any]]] = {}
        for event in history:
            timeline.setdefault(event["env"], []).append(event)
        deployed = []
        for env, events in timeline.items():
            if any(e["to"] == version for e in events):
                now = self.led.deployments.current(name, env)
                deployed.append({"env": env, "current": bool(now and now["version"] == version)})
        lineage = self.led.models.lineage(name, version)
        svg = lineage_svg(lineage, deployed)
        quality = []
        for ds in lineage.datasets():
            rec = self.led.datasets.get(ds[0], ds[1]).record
            for a in rec.get("attestations", []):
                quality.append({"dataset": f"{ds[0]}@{ds[1]}", **a})
        denied, denied_more = self.denied_about(name)
        erased = self.led.artifacts.erasure("model", name, version)
        if erased is not None:
            erased = {**erased, "signers": list(erased.get("signers") or [erased["by"]])}
        approver_roles = self.decider_roles(who)
        custodial = self.approvals.custodial_state(who) if approver_roles else None
        return self.pages.render(
            request,
            "version.html",
            who=who,
            model=entity,
            record=record,
            files=files,
            files_error=files_error,
            lineage_svg=_markup(svg),
            evaluations=record.get("evaluations", []),
            quality=quality,
            approvals=record.get("approvals", []),
            stale=stale_approvals(record, history, self.led.clock(), self.led.members.approval_ttl),
            rejections=record.get("rejections", []),
            timeline=timeline,
            denied=self._rows(denied),
            denied_more=denied_more,
            erased=erased,
            stored=self.led.artifacts.stored("model", name, version),
            custodial=custodial,
            approver_roles=approver_roles,
            replicas=self.led.artifacts.replicas("model", name, version),
            replication=self.led.members.replication,
        )

    def decider_roles(self, who: Principal | None) -> list[str]:
        """The approval roles (``approver:NAME``) in which the signed-in member may
        approve or reject: none for an anonymous reader, a revoked member, or a
        member the role map does not let decide, so that such viewers get no
        approval forms they could not use."""
        if who is None:
            return []
        try:
            member = self.led.members.get(who.member)
        except NotFoundError:
            return []
        if member.get("status") != "active":
            return []
        roles = [str(r) for r in member.get("roles", [])]
        perms = self.led.members.permissions
        version = self.led.members.contract_version
        if not any(holds_role(roles, perms.get(t, []), version) for t in DECISIONS):
            return []
        return [r.split(":", 1)[1] for r in roles if r.startswith("approver:")]

    def datasets_page(self, request: Request) -> Response:
        who = self.ctx.reader(request)
        datasets = sorted(self.led.datasets.list(), key=lambda d: d["name"])
        return self.pages.render(request, "datasets.html", who=who, datasets=datasets)

    def dataset_page(self, request: Request) -> Response:
        who = self.ctx.reader(request)
        name = request.path_params["name"]
        info = self.led.datasets.info(name)
        versions = [
            self.led.datasets.get(name, v).record for v in range(int(info["latest"]), 0, -1)
        ]
        return self.pages.render(
            request,
            "dataset.html",
            who=who,
            dataset=info,
            versions=versions,
            uses=self.led.datasets.used_by(name),
            **self._artifact_facts("dataset", name, [int(v["version"]) for v in versions]),
            replicas={
                int(v["version"]): self.led.artifacts.replicas("dataset", name, int(v["version"]))
                for v in versions
            },
            replication=self.led.members.replication,
        )

    def run_page(self, request: Request) -> Response:
        who = self.ctx.reader(request)
        run = self.led.runs.get(request.path_params["run_id"])
        pred = run["statement"]["predicate"]
        build = pred.get("buildDefinition", {})
        details = pred.get("runDetails", {})
        produced = self.led.models.produced_by(run["id"])
        return self.pages.render(
            request,
            "run.html",
            who=who,
            run=run,
            dependencies=build.get("resolvedDependencies", []),
            parameters=build.get("externalParameters", {}),
            metadata=details.get("metadata", {}),
            byproducts=details.get("byproducts", []),
            produced=produced,
        )

    # -- federated tasks ------------------------------------------------------------

    def fl_page(self, request: Request) -> Response:
        who = self.ctx.reader(request)
        tasks = [self.led.fl.status(t["task"]) for t in self.led.fl.tasks()]
        tasks.sort(key=lambda t: t["task"])
        return self.pages.render(request, "fl.html", who=who, tasks=tasks)

    def fl_task_page(self, request: Request) -> Response:
        who = self.ctx.reader(request)
        name = request.path_params["task"]
        status = self.led.fl.status(name)
        credit = []
        for method in FL_CREDIT_METHODS:
            found = self.led.fl.attribution(name, method)
            if found.rounds:
                credit.append(found)
        return self.pages.render(
            request,
            "fl_task.html",
            who=who,
            task=status,
            rounds=self.led.fl.rounds(name),
            credit=credit,
        )

    def fl_attribution_csv(self, request: Request) -> Response:
        self.ctx.reader(request)
        name = request.path_params["task"]
        method = request.query_params.get("method", "examples")
        if method not in FL_CREDIT_METHODS:
            raise UsageError(f"method is one of {', '.join(FL_CREDIT_METHODS)}")
        found = self.led.fl.attribution(name, method)
        out = io.StringIO()
        writer = csv.DictWriter(
            out, ["task", "method", "round", "participant", "share"], lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(found.rows())
        stem = f"attribution-{name}-{method}".replace('"', "")
        return Response(
            out.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={**HEADERS, "Content-Disposition": f'attachment; filename="{stem}.csv"'},
        )

    # -- audit trail and entries ----------------------------------------------------

    def audit_page(self, request: Request) -> Response:
        who = self.ctx.reader(request)
        q = request.query_params
        values = {k: (q.get(k) or "").strip() for k in ("actor", "org", "type", "outcome")}
        values["since"] = (q.get("since") or "").strip()
        values["until"] = (q.get("until") or "").strip()
        exclude = exclusions(q.getlist("exclude"))
        values["exclude"] = ", ".join(exclude)
        if values["outcome"] not in ("", "accepted", "rejected"):
            raise UsageError("outcome is accepted or rejected")
        before = int_field(q.get("before"), "before") if q.get("before") else None
        f = TrailFilter(
            actor=values["actor"] or None,
            org=values["org"] or None,
            type=values["type"] or None,
            outcome=values["outcome"] or None,
            since=time_field(values["since"], "since") if values["since"] else None,
            until=time_field(values["until"], "until", end=True) if values["until"] else None,
            before=before,
            limit=TRAIL_PAGE,
            exclude=exclude,
        )
        page = self.ctx.scan(f)
        rows = self._rows(page.entries)
        kept = {k: v for k, v in values.items() if v}
        older = None
        if page.next_before is not None:
            older = "/ui/audit?" + urlencode({**kept, "before": page.next_before})
        hide = ", ".join([*exclude, tx_types.INFERENCE_BATCH])
        hide_batches = urlencode({**kept, "exclude": hide})
        orgs = sorted({m.get("org", "") for m in self.led.members.list()} - {""})
        members = sorted(m["name"] for m in self.led.members.list())
        return self.pages.render(
            request,
            "audit.html",
            who=who,
            rows=rows,
            filters=values,
            hide_batches=hide_batches,
            before=before,
            older=older,
            orgs=orgs,
            members=members,
        )

    def entry_page(self, request: Request) -> Response:
        who = self.ctx.reader(request)
        index = int_field(request.path_params["index"], "entry index")
        data = self.led.entry_bytes(index)
        entry = LogEntry.decode(data)
        erased = erasure_of_entry(self.led, entry)
        signers = [
            {"keyid": s.keyid, "member": self.pages.member_name(s.keyid)}
            for s in entry.envelope.signatures
        ]
        return self.pages.render(
            request,
            "entry.html",
            who=who,
            index=index,
            tx=entry.transaction.to_json(),
            outcome=entry.outcome.to_json(),
            signers=signers,
            leaf_hash=leaf_hash(data).hex(),
            erased=erased,
            proof=self.pages.receipt_text(index),
            checkpoint=self.pages.checkpoint_view(),
        )

    # -- governance ---------------------------------------------------------------

    def members_page(self, request: Request) -> Response:
        who = self.ctx.reader(request)
        members = []
        for m in self.led.members.list():
            keys = []
            for k in m.get("keys", []):
                try:
                    keys.append(VerifierKey.from_string(k).key_id_hex)
                except Error:
                    keys.append("?")
            members.append({**m, "key_ids": keys})
        return self.pages.render(
            request, "members.html", who=who, members=members, quorum=self.led.members.quorum
        )

    def policies_page(self, request: Request) -> Response:
        who = self.ctx.reader(request)
        policies = sorted(self.led.policies.list(), key=lambda p: p["action"])
        return self.pages.render(request, "policies.html", who=who, policies=policies)

    # -- the cluster -------------------------------------------------------------------

    def nodes_page(self, request: Request) -> Response:
        who = self.ctx.reader(request)
        view = nodes_view(self.led.node, self.led.policy)
        return self.pages.render(request, "nodes.html", who=who, cluster=view)

    # -- verify ---------------------------------------------------------------------

    def verify_page(self, request: Request) -> Response:
        who = self.ctx.reader(request)
        return self.pages.render(request, "verify.html", who=who, result=None)

    async def verify(self, request: Request) -> Response:
        who = self.ctx.reader(request)
        form = await read_multipart(request, keep=0)
        upload = form.files.get("file")
        given = form.fields.get("digest", "").strip()
        if upload is not None and upload.filename:
            digest = "sha256:" + upload.sha256.hexdigest()
            source = {"filename": upload.filename, "size": upload.size}
        elif given:
            digest = given
            source = None
        else:
            raise UsageError("choose a file to upload or paste a digest")
        if len(digest) > 200:
            raise UsageError("a digest is at most 200 characters")

        def lookup() -> list[dict[str, Any]]:
            found = find_digest(self.led, digest)
            for f in found:
                f["proof"] = self.pages.receipt_text(f.get("index"))
            return found

        matches = await run_in_threadpool(lookup)
        return self.pages.render(
            request,
            "verify.html",
            who=who,
            result={"digest": digest, "source": source, "matches": matches},
        )

    # -- compliance exports -----------------------------------------------------------

    def annex_iv(self, request: Request) -> Response:
        self.ctx.reader(request)
        name = request.path_params["name"]
        fmt = request.path_params["fmt"]
        if fmt not in ("html", "pdf", "json"):
            raise NotFoundError(f"no Annex IV export as {fmt!r} (html, pdf or json)")
        q = request.query_params.get("version")
        version = int_field(q, "version", 1) if q else None
        self.led.models.get(name, version)
        from ... import reports

        doc = reports.annex_iv(self.led, name, version=version)
        stem = f"annex-iv-{name}" + (f"-v{version}" if version else "")
        if fmt == "json":
            return Response(
                reports.render_json(doc),
                media_type="application/json",
                headers={**HEADERS, "Content-Disposition": f'inline; filename="{stem}.json"'},
            )
        if fmt == "pdf":
            return Response(
                reports.render_pdf(doc),
                media_type="application/pdf",
                headers={
                    **HEADERS,
                    "Content-Disposition": f'attachment; filename="{stem}.pdf"',
                },
            )
        return HTMLResponse(reports.render_html(doc), headers=REPORT_HEADERS)

    def report_entry(self, request: Request) -> Response:
        # The Annex IV HTML cites entries by relative links (entries/N), so
        # that whoever serves it decides where entries live: here, /ui/entries/N.
        index = int_field(request.path_params["index"], "entry index")
        return RedirectResponse(f"/ui/entries/{index}", 303)

    # -- static files ------------------------------------------------------------------

    def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _STATIC:
            raise NotFoundError(f"no static file {name!r}")
        data = _static_bytes(name)
        return Response(
            data,
            media_type=_STATIC[name],
            headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
        )

    def not_found(self, request: Request) -> Response:
        raise NotFoundError(f"there is no dashboard page at {request.url.path}")


_STATIC = {"style.css": "text/css; charset=utf-8"}


@functools.cache
def _static_bytes(name: str) -> bytes:
    """A packaged static file, read once (``name`` is one of ``_STATIC``)."""
    return (resources.files("modelchain.server") / "static" / name).read_bytes()


def _markup(svg: str) -> Markup:
    # lineage.py escapes every text it draws; this marks its output as safe.
    return Markup(svg)


def _about_model(entry: Mapping[str, Any], name: str) -> bool:
    body = entry.get("body")
    if not isinstance(body, Mapping):
        return False
    target = body.get("model")
    if isinstance(target, Mapping):
        target = target.get("name")
    if entry.get("type") == tx_types.MODEL_REGISTER:
        target = body.get("name")
    return target == name


_KEY_EVENT_WORDS = {
    tx_types.ARTIFACT_GRANT: "grant",
    tx_types.ARTIFACT_REVOKE: "grant revoked",
    tx_types.ARTIFACT_KEY_FETCH: "key request",
    tx_types.ARTIFACT_STORE: "stored encrypted",
    tx_types.ARTIFACT_ERASE: "erasure",
}


def _key_event(entry: Mapping[str, Any], kind: str, name: str) -> dict[str, Any] | None:
    """An ``artifact.*`` trail entry about ``kind name`` as the key-events table shows
    it: every grant, revocation and key request, and stores and erasures only when
    refused (the accepted ones are shown with their version). Any body a member could
    have sent (a rejected entry's included) is read defensively."""
    body = entry.get("body")
    outcome = entry.get("outcome")
    if not isinstance(body, Mapping) or not isinstance(outcome, Mapping):
        return None
    art = body.get("artifact")
    if not isinstance(art, Mapping) or art.get("kind") != kind or art.get("name") != name:
        return None
    t = str(entry.get("type", ""))
    accepted = outcome.get("result") == "accepted"
    if t not in _KEY_EVENT_WORDS or (
        accepted and t in (tx_types.ARTIFACT_STORE, tx_types.ARTIFACT_ERASE)
    ):
        return None
    version = art.get("version", body.get("version"))
    member = body.get("member")
    return {
        "index": entry.get("index"),
        "time": entry.get("time"),
        "type": t,
        "what": _KEY_EVENT_WORDS[t],
        "actor": str(entry.get("actor", "")),
        "org": str(entry.get("org", "")),
        "member": str(member) if isinstance(member, str) else "",
        "version": str(version) if isinstance(version, int) else "every" if member else "",
        "purpose": body.get("purpose", "") if t == tx_types.ARTIFACT_KEY_FETCH else "",
        "accepted": accepted,
        "code": str(outcome.get("code", "")),
        "reason": str(outcome.get("reason", "")),
    }


def _about(entry: Mapping[str, Any]) -> str:
    """A few words on what an entry is about, for lists."""
    body = entry.get("body")
    if not isinstance(body, Mapping):
        return ""
    t = str(entry.get("type", ""))
    model = body.get("model")
    if isinstance(model, Mapping):
        return f"{model.get('name')}@{model.get('version')}"
    if isinstance(model, str):
        parts = [model]
        if "version" in body:
            parts[0] += f"@{body['version']}"
        if body.get("env"):
            parts.append(f"→ {body['env']}")
        return " ".join(parts)
    if t in (tx_types.MODEL_REGISTER, tx_types.DATASET_REGISTER):
        return str(body.get("name", ""))
    if t == tx_types.DATASET_INGEST:
        return str(body.get("dataset", ""))
    dataset = body.get("dataset")
    if isinstance(dataset, Mapping):
        return f"{dataset.get('name')}@{dataset.get('version')}"
    if t == tx_types.RUN_RECORD:
        return str(body.get("id", ""))
    if t == tx_types.POLICY_SET:
        return str(body.get("action", ""))
    if t.startswith("member."):
        member = body.get("member")
        return str(member.get("name") if isinstance(member, Mapping) else body.get("name", ""))
    if t == tx_types.EVENT:
        return str(body.get("event", ""))
    return ""
