"""Integrations over HTTP: MLflow's registry webhooks, received, checked and
recorded in the background (MLflow waits only seconds for an answer)."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import OrderedDict

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ...errors import Error, OversizeError, PushbackError
from ...integrations.mlflow import MlflowBridge, parse_webhook, verify_webhook
from ..config import MlflowWebhook
from ..context import ServerContext

__all__ = ["MlflowReceiver", "mlflow_router"]

log = logging.getLogger("modelchain.server.mlflow")

_MAX_BODY = 64 * 1024  # MLflow's deliveries are a few hundred bytes
_BACKLOG = 256  # versions waiting to be recorded; beyond: 503, and MLflow retries
_WAIT_S = 300.0  # for a version MLflow is still copying (as long as its own client waits)
_REMEMBERED = 4096  # delivery ids kept to answer a redelivery without recording twice


class MlflowReceiver:
    """Records the model versions that deliveries announce, one at a time, on a
    thread of its own. The outcome of each is logged; recording is idempotent,
    so a delivery that comes twice (or a later ``modelchain mlflow sync``)
    writes nothing more."""

    def __init__(self, ctx: ServerContext, hook: MlflowWebhook) -> None:
        self._bridge = MlflowBridge(ctx.ledger, hook.tracking_uri, signer=hook.signer)
        self._queue: queue.Queue[tuple[str, str, int] | None] = queue.Queue(maxsize=_BACKLOG)
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._work, name="mlflow-webhook", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Take no more, let the version being recorded finish (for up to
        ``timeout`` seconds) before the ledger closes; say what was left."""
        self._stopping.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        self._thread.join(timeout)
        left = sum(1 for item in list(self._queue.queue) if item is not None)
        if left or self._thread.is_alive():
            log.warning(
                f"stopping with {left} MLflow model versions not recorded "
                "(modelchain mlflow sync records them)",
                extra={"fields": {"left": left}},
            )

    def accept(self, delivery: str, name: str, version: int) -> bool:
        """Queue a version; False if this delivery was already taken."""
        with self._lock:
            if self._stopping.is_set():
                raise PushbackError("this server is stopping", retry_after=10)
            if delivery in self._seen:
                return False
            try:
                self._queue.put_nowait((delivery, name, version))
            except queue.Full:
                raise PushbackError(
                    "too many MLflow model versions wait to be recorded", retry_after=10
                ) from None
            self._seen[delivery] = None
            while len(self._seen) > _REMEMBERED:
                self._seen.popitem(last=False)
        return True

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None or self._stopping.is_set():
                if item is not None:  # taken, not recorded: put back to be counted
                    with contextlib.suppress(queue.Full):
                        self._queue.put_nowait(item)
                return
            delivery, name, version = item
            fields = {"delivery": delivery, "mlflow_model": name, "mlflow_version": version}
            try:
                v = self._bridge.record(name, version, wait_s=_WAIT_S)
            except Error as exc:
                log.warning(
                    f"MLflow model {name!r} version {version} was not recorded: {exc.message}",
                    extra={"fields": {**fields, "code": exc.code}},
                )
            except Exception:  # a bug: logged with its traceback; the thread goes on
                log.exception(
                    f"recording MLflow model {name!r} version {version} failed",
                    extra={"fields": fields},
                )
            else:
                verb = "recorded as" if v.created else "already on the ledger as"
                log.info(
                    f"MLflow model {name!r} version {version} {verb} "
                    f"{v.name} version {v.version} (entry {v.index})",
                    extra={
                        "fields": {
                            **fields,
                            "model": v.name,
                            "version": v.version,
                            "digest": v.digest,
                            "entry": v.index,
                            "created": v.created,
                        }
                    },
                )


def mlflow_router(hook: MlflowWebhook, receiver: MlflowReceiver) -> APIRouter:
    r = APIRouter(tags=["integrations"])

    @r.post(
        "/v1/integrations/mlflow/webhook",
        status_code=202,
        summary="An MLflow registry webhook delivery: model_version.created is recorded "
        "in the background; other events are answered and ignored",
        responses={
            202: {"description": "Signature good; the version will be recorded"},
            401: {"description": "Unsigned, badly signed or stale delivery"},
        },
    )
    async def mlflow_webhook(request: Request) -> JSONResponse:
        body = await request.body()
        if len(body) > _MAX_BODY:
            raise OversizeError(f"an MLflow webhook delivery is at most {_MAX_BODY} bytes")
        delivery = verify_webhook(
            hook.secret, request.headers, body, int(time.time()), hook.max_age_s
        )
        event = parse_webhook(body)
        if event is None:
            return JSONResponse({"status": "ignored", "delivery": delivery}, 200)
        taken = receiver.accept(delivery, *event)
        status = "accepted" if taken else "duplicate"
        return JSONResponse({"status": status, "delivery": delivery}, 202)

    return r
