"""Approvals from the dashboard: a draft to sign offline with the CLI, the
signed draft uploaded back, or a signature by a key the server holds where the
ledger's ``custodial:model.approve`` policy allows it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from starlette.concurrency import run_in_threadpool

from ...contracts import types as tx_types
from ...core import canonical
from ...core.dsse import Envelope
from ...core.identity import Signer
from ...core.tx import MAX_ENVELOPE_BYTES, PAYLOAD_TYPE, Transaction
from ...errors import AuthError, ForbiddenError, MalformedError, OversizeError, UsageError
from ..access import Principal
from .forms import int_field, read_multipart
from .pages import HEADERS, Pages

__all__ = ["CUSTODIAL_ACTION", "DECISIONS", "Approvals"]

CUSTODIAL_ACTION = "custodial:model.approve"
DECISIONS = (tx_types.MODEL_APPROVE, tx_types.MODEL_REJECT)


class Approvals:
    """The approval forms of a version page."""

    def __init__(self, pages: Pages, signers: Mapping[str, Signer]) -> None:
        self.pages = pages
        self.ctx = pages.ctx
        self.led = pages.led
        # Loaded by ``modelchain serve`` at start, so that a missing key or
        # passphrase stops the server rather than surfacing at an approver's click.
        self.held = frozenset(signers)
        self._signers = dict(signers)

    def custodial_state(self, who: Principal | None) -> dict[str, Any] | None:
        """What the version page says about custodial approval; None: nothing
        to say (the viewer could never use it)."""
        if who is None or who.scope != "approve" or who.member not in self.held:
            return None
        policy = self.led.policies.get(CUSTODIAL_ACTION)
        return {"member": who.member, "action": CUSTODIAL_ACTION, "policy": policy}

    def _approval_body(self, request: Request, values: Mapping[str, Any]) -> dict[str, Any]:
        name = request.path_params["name"]
        version = int_field(request.path_params["version"], "version", 1)
        self.led.models.get(name, version)  # NotFoundError for a version that is not there
        env = str(values.get("env", "")).strip()
        role = str(values.get("role", "")).strip()
        if not env or not role:
            raise UsageError("say which environment and which approval role")
        return {
            "model": name,
            "version": version,
            "env": env,
            "role": role,
            "comment": str(values.get("comment", "")),
        }

    def draft(self, request: Request) -> Response:
        who = self.ctx.reader(request)
        q = request.query_params
        body = self._approval_body(request, q)
        verb = q.get("decision", tx_types.MODEL_APPROVE)
        if verb not in DECISIONS:
            raise UsageError(f"decision is one of {', '.join(DECISIONS)}")
        actor = (q.get("actor") or (who.member if who else "")).strip()
        if not actor:
            raise UsageError("say which member approves (log in, or give the actor)")
        self.led.members.get(actor)
        env = self.led.members.draft(verb, body, actor)
        filename = f"{verb.split('.')[1]}-{body['model']}-{body['version']}-{body['env']}.json"
        # The same bytes `modelchain tx draft` writes, so `tx sign` takes it as is.
        return Response(
            canonical.dumps(env.to_json()) + b"\n",
            media_type="application/json",
            headers={
                **HEADERS,
                "Content-Disposition": f'attachment; filename="{quote(filename)}"',
            },
        )

    async def upload_signed(self, request: Request) -> Response:
        who = self.ctx.reader(request)
        form = await read_multipart(request, keep=MAX_ENVELOPE_BYTES)
        self.pages.csrf.check(request, form.fields.get("csrf"))
        upload = form.files.get("envelope")
        if upload is None or not upload.filename or upload.size == 0:
            raise UsageError("choose the signed draft to upload")
        if upload.size > MAX_ENVELOPE_BYTES:
            raise OversizeError(f"a signed transaction is at most {MAX_ENVELOPE_BYTES} bytes")
        env = Envelope.from_json(canonical.loads(bytes(upload.head)), allow_unsigned=True)
        if env.payload_type != PAYLOAD_TYPE:
            raise MalformedError("the file is not a modelchain transaction")
        if not env.signatures:
            raise UsageError(
                "the draft has no signatures yet: sign it with `modelchain tx sign FILE`"
            )
        tx = Transaction.from_json(canonical.loads_canonical(env.payload))
        name = request.path_params["name"]
        version = int_field(request.path_params["version"], "version", 1)
        # This form submits decisions on this version only; anything else goes
        # through the API, where it is plain that it is a raw submission.
        if (
            tx.type not in DECISIONS
            or tx.body.get("model") != name
            or tx.body.get("version") != version
        ):
            raise UsageError(
                f"the file is a {tx.type} about {tx.body.get('model')!r}, not a decision "
                f"on {name} version {version}"
            )
        return await self._submit(request, who, env, tx, custodial=False)

    async def custodial_approve(self, request: Request) -> Response:
        who = self.ctx.reader(request)
        form = await request.form()
        self.pages.csrf.check(request, str(form.get("csrf", "")))
        if who is None:
            raise AuthError("custodial approval needs you to log in with an approve token")
        who.require("approve")
        if who.member not in self.held:
            raise ForbiddenError(f"this server holds no key for {who.member}")
        values = {k: str(v) for k, v in form.items() if isinstance(v, str)}

        def decide() -> tuple[Envelope, Transaction]:
            body = self._approval_body(request, values)
            # Auditors must be able to tell a server-made signature from a
            # member's own: the comment says so, and names the token used.
            mark = f"[custodial signature by the dashboard, token {who.token_id}]"
            body["comment"] = (body["comment"][: 2000 - len(mark) - 1] + " " + mark).strip()
            draft = self.led.members.draft(tx_types.MODEL_APPROVE, body, who.member)
            decision = self.led.policies.test_custodial(draft)
            if not decision.allowed:
                raise ForbiddenError(f"custodial approval refused: {decision.reason}")
            signed = draft.with_signature(self._signers[who.member])
            tx = Transaction.from_json(canonical.loads_canonical(signed.payload))
            return signed, tx

        env, tx = await run_in_threadpool(decide)
        return await self._submit(request, who, env, tx, custodial=True)

    async def _submit(
        self,
        request: Request,
        who: Principal | None,
        env: Envelope,
        tx: Transaction,
        custodial: bool,
    ) -> Response:
        started = time.perf_counter()
        ack = await asyncio.wrap_future(self.led.node.submit_async(env.to_bytes()))
        self.ctx.metrics.appended([ack], time.perf_counter() - started)
        signers = await run_in_threadpool(
            self.pages.signer_names, [s.keyid for s in env.signatures]
        )
        shown = await run_in_threadpool(self.led.disclosures.reveal, tx.to_json())
        return self.pages.render(
            request,
            "submitted.html",
            200 if ack.outcome.accepted else 409,
            who=who,
            index=ack.index,
            outcome=ack.outcome.to_json(),
            tx=shown,  # the comment as this server reads it, not its commitment
            signers=signers,
            custodial=custodial,
        )
