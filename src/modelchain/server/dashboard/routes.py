"""The ``/ui/`` routes: each page's handler, run through ``Pages.guard`` so
that errors become pages."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from ..context import ServerContext
from .approvals import Approvals
from .pages import Handler, Pages
from .views import Views

__all__ = ["dashboard_router"]


def dashboard_router(ctx: ServerContext) -> APIRouter:
    """The ``/ui/`` routes; ``create_app`` includes them."""
    pages = Pages(ctx)
    approvals = Approvals(pages, ctx.config.custodial)
    ui = Views(pages, approvals)
    r = APIRouter(include_in_schema=False)

    def page(
        path: str,
        handler: Handler,
        method: str = "GET",
    ) -> None:
        async def endpoint(request: Request) -> Response:
            return await pages.guard(request, handler)

        endpoint.__name__ = f"ui_{getattr(handler, '__name__', 'page')}"
        r.add_api_route(path, endpoint, methods=[method], response_class=HTMLResponse)

    @r.get("/ui", include_in_schema=False)
    def _slash() -> RedirectResponse:
        return RedirectResponse("/ui/", 308)

    page("/ui/", ui.overview)
    page("/ui/login", ui.login_page)
    page("/ui/login", ui.login, "POST")
    page("/ui/logout", ui.logout_page)
    page("/ui/logout", ui.logout, "POST")
    page("/ui/static/{name}", ui.static)
    page("/ui/models", ui.models_page)
    page("/ui/models/{name}", ui.model_page)
    page("/ui/models/{name}/annex-iv.{fmt}", ui.annex_iv)
    page("/ui/models/{name}/entries/{index}", ui.report_entry)
    page("/ui/models/{name}/versions/{version}", ui.version_page)
    page("/ui/models/{name}/versions/{version}/draft", approvals.draft)
    page("/ui/models/{name}/versions/{version}/approve", approvals.upload_signed, "POST")
    page(
        "/ui/models/{name}/versions/{version}/approve/custodial",
        approvals.custodial_approve,
        "POST",
    )
    page("/ui/datasets", ui.datasets_page)
    page("/ui/datasets/{name}", ui.dataset_page)
    page("/ui/runs/{run_id}", ui.run_page)
    page("/ui/fl", ui.fl_page)
    page("/ui/fl/{task}", ui.fl_task_page)
    page("/ui/fl/{task}/attribution.csv", ui.fl_attribution_csv)
    page("/ui/audit", ui.audit_page)
    page("/ui/entries/{index}", ui.entry_page)
    page("/ui/members", ui.members_page)
    page("/ui/policies", ui.policies_page)
    page("/ui/nodes", ui.nodes_page)
    page("/ui/verify", ui.verify_page)
    page("/ui/verify", ui.verify, "POST")
    page("/ui/{rest:path}", ui.not_found)
    return r
