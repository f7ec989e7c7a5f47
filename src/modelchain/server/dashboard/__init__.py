"""The auditors' dashboard at ``/ui/``: server-rendered pages over the ledger.

Jinja2 templates with autoescape and no JavaScript. A bearer token pasted at
``/ui/login`` becomes an HttpOnly cookie (``session``); forms that change state
carry a CSRF token bound to that cookie (``csrf``). Approvals are drafted here,
signed offline with the CLI and uploaded back, or signed by a key the server
holds where the ledger's ``custodial:model.approve`` policy allows it
(``approvals``). Pages are in ``views``, their plumbing in ``pages``, form
parsing in ``forms``, a cluster node's view and divergence alarm in
``cluster``, where each model version stands in ``standing``, the route
table in ``routes``.
"""

from .routes import dashboard_router
from .session import FORM_KEY_FILE

__all__ = ["FORM_KEY_FILE", "dashboard_router"]
