"""The MLflow bridge: an MLflow model version recorded on the ledger (the files
MLflow serves, hashed; its run as SLSA provenance), the entry written back as
model-version tags, and what MLflow serves verified against the ledger.

MLflow is imported only where it is used, so that importing this module (and
the CLI) costs nothing; ``pip install 'modelchain[mlflow]'`` brings it.
Nothing here reads the environment: the tracking URI and secrets are given.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..contracts.state import entity_key
from ..core import canonical
from ..core.identity import Signer
from ..core.manifest import SHA256, Manifest
from ..core.names import MAX_NAME_CHARS, is_name
from ..errors import (
    AuthError,
    Error,
    IntegrityError,
    MalformedError,
    NotFoundError,
    UnavailableError,
    UsageError,
)
from ..ledger.ledger import Ledger
from ..ledger.models import ModelVersion

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

__all__ = [
    "DATASET_TAG",
    "TAGS",
    "WEBHOOK_MAX_AGE_S",
    "MlflowBridge",
    "SyncOutcome",
    "create_webhook",
    "ledger_name",
    "parse_model_uri",
    "parse_webhook",
    "verify_webhook",
]

Progress = Callable[[int, int], None]

# On an input dataset of an MLflow run (``mlflow.log_input(..., tags={...})``):
# the registered ledger dataset version it is, as NAME@VERSION.
DATASET_TAG = "modelchain.dataset"
# What is written back to an MLflow model version once it is on the ledger.
# Information for people and tools only: verification never reads them.
TAGS = (
    "modelchain.ledger",
    "modelchain.model",
    "modelchain.version",
    "modelchain.digest",
    "modelchain.entry",
    "modelchain.run",
)
WEBHOOK_MAX_AGE_S = 300  # a delivery signed longer ago (or ahead) than this is refused

_URI = re.compile(r"(?:mlflow-models|models):/(?P<name>[^/]+)/(?P<version>[1-9][0-9]{0,17})\Z")
# Written by MLflow's client beside a registered model it downloads (name and
# version): not what the server serves, so not part of the artifact.
_CLIENT_META = "registered_model_meta"
_MLFLOW_DATASET_DIGEST = "mlflowDataset"  # MLflow's own dataset digest, not a hash of files
_CARD = "mlflow"


def parse_model_uri(uri: str) -> tuple[str, int] | None:
    """``models:/NAME/VERSION`` or ``mlflow-models:/NAME/VERSION`` as (name,
    version); None for anything else (a path, an alias, a stage)."""
    m = _URI.match(uri)
    return None if m is None else (m.group("name"), int(m.group("version")))


def ledger_name(mlflow_name: str) -> str:
    """The ledger model that versions of MLflow model ``mlflow_name`` become:
    lower case, every run of other characters than [a-z0-9._-] as one ``-``.
    Two MLflow names may meet in one ledger model; each version's card says
    which MLflow model and version it is."""
    name = re.sub(r"[^a-z0-9._-]+", "-", mlflow_name.lower()).lstrip("._-")
    name = name[:MAX_NAME_CHARS].rstrip("-") or name[:MAX_NAME_CHARS]
    if not is_name(name):
        raise UsageError(f"MLflow model name {mlflow_name!r} has nothing to make a ledger name of")
    return name


# -- webhooks (MLflow 3: Standard-Webhooks-style HMAC-SHA256) ------------------------


def verify_webhook(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    now_s: int,
    max_age_s: int = WEBHOOK_MAX_AGE_S,
) -> str:
    """Check an MLflow webhook delivery as MLflow 3 signs it: ``X-MLflow-Signature``
    is ``v1,<base64 HMAC-SHA256>`` over ``<delivery id>.<timestamp>.<body>``
    with the webhook's secret. Return the delivery id; raise AuthError unless
    the signature verifies and the timestamp is within ``max_age_s`` of
    ``now_s`` (a replayed old delivery)."""
    delivery = headers.get("x-mlflow-delivery-id", "")
    stamp = headers.get("x-mlflow-timestamp", "")
    signature = headers.get("x-mlflow-signature", "")
    if not (delivery and stamp and signature):
        raise AuthError(
            "an MLflow webhook delivery needs X-MLflow-Delivery-Id, X-MLflow-Timestamp and "
            "X-MLflow-Signature (create the webhook with the secret this server was given)"
        )
    if not (delivery.isascii() and len(delivery) <= 200 and signature.isascii()):
        raise AuthError("X-MLflow-Delivery-Id and X-MLflow-Signature are short ASCII strings")
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
        raise AuthError("X-MLflow-Timestamp must be seconds since the epoch")
    if abs(now_s - int(stamp)) > max_age_s:
        raise AuthError(f"the delivery was signed {now_s - int(stamp)} s from now: refused")
    signed = b".".join([delivery.encode(), stamp.encode(), body])
    mac = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    expected = b"v1," + base64.b64encode(mac)
    # Standard Webhooks allow several space-separated signatures (key rotation).
    if not any(hmac.compare_digest(part.encode(), expected) for part in signature.split()):
        raise AuthError("the MLflow webhook signature does not verify")
    return delivery


def parse_webhook(body: bytes) -> tuple[str, int] | None:
    """The (MLflow model name, version) of a ``model_version.created`` delivery;
    None for any other event; MalformedError if the body is not one."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        raise MalformedError("an MLflow webhook body is a JSON object") from None
    if not isinstance(payload, dict):
        raise MalformedError("an MLflow webhook body is a JSON object")
    if (payload.get("entity"), payload.get("action")) != ("model_version", "created"):
        return None
    data = payload.get("data")
    if not isinstance(data, dict):
        raise MalformedError("a model_version.created delivery has a data object")
    name, version = data.get("name"), data.get("version")
    if not isinstance(name, str) or not 0 < len(name) <= 1000 or "/" in name:
        raise MalformedError("data.name must be an MLflow model name")
    if not (
        isinstance(version, str)
        and version.isascii()
        and version.isdigit()
        and 0 < len(version) <= 18
        and int(version) > 0
    ):
        raise MalformedError("data.version must be a version number")
    return name, int(version)


# -- MLflow's client -----------------------------------------------------------------


def _connect(tracking_uri: str) -> MlflowClient:
    """A client of the MLflow server at ``tracking_uri``, which must answer."""
    if not tracking_uri:
        raise UsageError("say which MLflow server: a tracking URI (or $MLFLOW_TRACKING_URI)")
    _require_mlflow()
    from mlflow import MlflowClient

    _check_reachable(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _require_mlflow() -> None:
    import importlib.util

    if importlib.util.find_spec("mlflow") is None:
        raise UsageError(
            "the MLflow bridge needs the mlflow extra: pip install 'modelchain[mlflow]'"
        )


def _check_reachable(tracking_uri: str) -> None:
    """Fail at once, in one line, where MLflow's client would retry for minutes."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    url = tracking_uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=10):
            pass
    except urllib.error.HTTPError:
        return  # it answers; the calls themselves will say what is wrong
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UnavailableError(
            f"the MLflow server at {tracking_uri} cannot be reached: {reason}"
        ) from None


@contextmanager
def _mlflow_errors(what: str) -> Iterator[None]:
    """MLflow's and requests' exceptions, as ours."""
    _require_mlflow()
    from mlflow.exceptions import MlflowException
    from requests import RequestException

    try:
        yield
    except MlflowException as exc:
        code = getattr(exc, "error_code", "")
        message = f"{what}: {exc.message}"
        if code == "RESOURCE_DOES_NOT_EXIST":
            raise NotFoundError(message) from exc
        if code in ("INVALID_PARAMETER_VALUE", "BAD_REQUEST"):
            raise UsageError(message) from exc
        raise UnavailableError(message) from exc
    except RequestException as exc:
        raise UnavailableError(f"{what}: {exc}") from exc


def create_webhook(tracking_uri: str, url: str, secret: str, *, name: str = "modelchain") -> str:
    """Register a ``model_version.created`` webhook to ``url`` in MLflow, signed
    with ``secret``; return its id."""
    client = _connect(tracking_uri)
    with _mlflow_errors(f"creating webhook {name!r} in MLflow"):
        hook = client.create_webhook(
            name=name, url=url, events=["model_version.created"], secret=secret
        )
    return str(hook.webhook_id)


# -- the bridge ----------------------------------------------------------------------


@dataclass(frozen=True)
class SyncOutcome:
    """What ``sync`` did with one MLflow model version: ``recorded`` (new on
    the ledger), ``known`` (already there; nothing written to the ledger) or
    ``failed`` (``error`` says why)."""

    name: str
    version: int
    status: str
    ledger: ModelVersion | None = None
    error: Error | None = None


class MlflowBridge:
    """Records MLflow model versions on ``ledger`` and verifies them, against the
    MLflow tracking server (and model registry) at ``tracking_uri``. ``signer``
    signs what is recorded (default: the ledger's identity)."""

    def __init__(self, ledger: Ledger, tracking_uri: str, *, signer: Signer | None = None) -> None:
        if not tracking_uri:
            raise UsageError("say which MLflow server: a tracking URI (or $MLFLOW_TRACKING_URI)")
        self._led = ledger
        self.tracking_uri = tracking_uri
        self._signer = signer
        self._client: MlflowClient | None = None

    # -- MLflow access --------------------------------------------------------------

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = _connect(self.tracking_uri)
        return self._client

    # -- reading the ledger ---------------------------------------------------------

    def recorded(self, name: str) -> dict[int, tuple[str, int]]:
        """MLflow versions of ``name`` on the ledger: version -> (ledger model,
        ledger version), from the cards of the ledger's versions, never from
        MLflow's tags."""
        lname = ledger_name(name)
        found: dict[int, tuple[str, int]] = {}
        for _key, value in self._led.store.state_prefix(entity_key("model", lname + "@")):
            record = canonical.loads(value)
            card = record.get("card") if isinstance(record, dict) else None
            meta = card.get(_CARD) if isinstance(card, dict) else None
            if (
                isinstance(meta, dict)
                and meta.get("name") == name
                and isinstance(meta.get("version"), int)
            ):
                found.setdefault(meta["version"], (lname, int(record["version"])))
        return found

    def find(self, name: str, version: int) -> ModelVersion | None:
        """The ledger version recorded for MLflow model ``name`` version ``version``."""
        at = self.recorded(name).get(version)
        return None if at is None else self._led.models.get(*at)

    # -- recording ------------------------------------------------------------------

    def record(
        self,
        name: str,
        version: int | str,
        *,
        wait_s: float = 0.0,
        progress: Progress | None = None,
    ) -> ModelVersion:
        """Record MLflow model ``name`` version ``version`` on the ledger: its
        run first (SLSA provenance: parameters, metrics, input datasets, git
        commit; the files as its subject), then the model version, hashed from
        what MLflow serves; then write the entry back as model-version tags.
        Already recorded: nothing is written to the ledger (``created`` False).
        A version MLflow is still copying is waited for up to ``wait_s`` seconds."""
        number = int(version)
        known = self.find(name, number)
        if known is not None:
            self._write_tags(name, number, known)
            return known
        mv = self._ready(name, number, wait_s)
        with _mlflow_errors(f"the run of MLflow model {name!r} version {number}"):
            run = self.client.get_run(mv.run_id) if mv.run_id else None
        from ..artifacts.hashing import hash_path

        lname = ledger_name(name)
        with tempfile.TemporaryDirectory(prefix="modelchain-mlflow-") as tmp:
            path = self._download(name, number, Path(tmp) / lname)
            manifest = hash_path(path, algorithm=SHA256, progress=progress)
            run_id = None if run is None else self._record_run(run, manifest)
            metrics = {} if run is None else _finite(run.data.metrics)
            card = {
                _CARD: {
                    "name": name,
                    "version": number,
                    "run_id": mv.run_id or None,
                    "source": mv.source,
                    "tracking_uri": self.tracking_uri,
                }
            }
            v = self._led.models.register(
                lname,
                path,
                run=run_id,
                metrics=metrics,
                card=card,
                signer=self._signer,
                manifest=manifest,
            )
        self._write_tags(name, number, v)
        return v

    def _ready(self, name: str, number: int, wait_s: float) -> Any:
        """The MLflow model version, once MLflow has finished registering it."""
        deadline = time.monotonic() + wait_s
        while True:
            with _mlflow_errors(f"MLflow model {name!r} version {number}"):
                mv = self.client.get_model_version(name, str(number))
            if mv.status == "READY":
                return mv
            if mv.status != "PENDING_REGISTRATION" or time.monotonic() >= deadline:
                raise UnavailableError(
                    f"MLflow model {name!r} version {number} is {mv.status}, not READY"
                )
            time.sleep(1.0)  # MLflow has no notice for it: ask again

    def _download(self, name: str, version: int, dst: Path) -> Path:
        from mlflow.artifacts import download_artifacts

        _ = self.client  # the server answers, or a clear error now rather than retries
        dst.mkdir(parents=True)
        with _mlflow_errors(f"downloading MLflow model {name!r} version {version}"):
            got = Path(
                download_artifacts(
                    artifact_uri=f"models:/{name}/{version}",
                    dst_path=str(dst),
                    tracking_uri=self.tracking_uri,
                    registry_uri=self.tracking_uri,
                )
            )
        meta = got / _CLIENT_META
        if got.is_dir() and meta.is_file():
            meta.unlink()
        return got

    def _record_run(self, run: Run, manifest: Manifest) -> str:
        """The ledger run for this MLflow run and these output bytes: recorded now
        unless it already is. One MLflow run may log several models: a second
        one is recorded under an id that names its bytes."""
        base = f"mlflow-{run.info.run_id}"
        digest = manifest.digest
        for run_id in (base, f"{base}-{manifest.root.hex()[:16]}"):
            try:
                existing = self._led.runs.get(run_id)
            except NotFoundError:
                break
            if digest in existing.get("subjects", []):
                return run_id
        else:  # pragma: no cover - both ids taken by other bytes
            raise UsageError(f"run {base} is recorded twice for other models; record it by hand")
        datasets, dependencies = _inputs(run)
        tags = run.data.tags
        environment = {
            "mlflow": {
                "tracking_uri": self.tracking_uri,
                "experiment_id": run.info.experiment_id,
                "run_id": run.info.run_id,
                "run_name": run.info.run_name,
                # not MLflow's user name: it names a person, and the ledger cannot
                # forget (ADR 18); the signing member says who recorded the run
                "source_type": tags.get("mlflow.source.type", ""),
                "source_name": tags.get("mlflow.source.name", ""),
            }
        }
        return self._led.runs.record(
            run_id,
            outputs=[manifest],
            datasets=datasets,
            parameters=dict(run.data.params),
            metrics=_finite(run.data.metrics),
            started=run.info.start_time,
            finished=run.info.end_time,
            code_dir=None,
            dependencies=dependencies,
            training_environment=environment,
            signer=self._signer,
        )

    def _write_tags(self, name: str, version: int, v: ModelVersion) -> None:
        want = {
            "modelchain.ledger": self._led.origin,
            "modelchain.model": v.name,
            "modelchain.version": str(v.version),
            "modelchain.digest": v.digest,
            "modelchain.entry": str(v.index),
            "modelchain.run": str(v.record.get("run") or ""),
        }
        with _mlflow_errors(f"tagging MLflow model {name!r} version {version}"):
            have = self.client.get_model_version(name, str(version)).tags
            for key, value in want.items():
                if have.get(key) != value:
                    self.client.set_model_version_tag(name, str(version), key, value)

    # -- pull mode ------------------------------------------------------------------

    def versions(self, names: Iterable[str] = ()) -> list[tuple[str, int]]:
        """Every (model, version) in MLflow's registry, or of ``names`` only."""
        wanted = list(names)
        with _mlflow_errors("listing MLflow's registered models"):
            if not wanted:
                token = None
                while True:
                    page = self.client.search_registered_models(max_results=100, page_token=token)
                    wanted.extend(m.name for m in page)
                    token = page.token
                    if not token:
                        break
            out: list[tuple[str, int]] = []
            for name in wanted:
                quote = '"' if "'" in name else "'"
                token = None
                found: list[int] = []
                while True:
                    versions = self.client.search_model_versions(
                        f"name = {quote}{name}{quote}", max_results=1000, page_token=token
                    )
                    found.extend(int(mv.version) for mv in versions)
                    token = versions.token
                    if not token:
                        break
                if not found and names:
                    raise NotFoundError(f"MLflow has no versions of a model named {name!r}")
                out.extend((name, v) for v in sorted(set(found)))
        return out

    def sync(
        self,
        names: Iterable[str] = (),
        *,
        on_outcome: Callable[[SyncOutcome], None] | None = None,
    ) -> list[SyncOutcome]:
        """Record every MLflow model version (of ``names``, or all) that is not on
        the ledger yet. One that fails is reported and the others go on."""
        outcomes = []
        for name, version in self.versions(names):
            try:
                known = self.find(name, version)
                if known is not None:
                    self._write_tags(name, version, known)
                    outcome = SyncOutcome(name, version, "known", known)
                else:
                    v = self.record(name, version)
                    outcome = SyncOutcome(name, version, "recorded" if v.created else "known", v)
            except Error as exc:
                outcome = SyncOutcome(name, version, "failed", error=exc)
            outcomes.append(outcome)
            if on_outcome is not None:
                on_outcome(outcome)
        return outcomes

    # -- verifying ------------------------------------------------------------------

    def verify(
        self,
        name: str,
        version: int,
        *,
        against: tuple[str, int | None] | None = None,
        env: str | None = None,
        progress: Progress | None = None,
    ) -> ModelVersion:
        """Download what MLflow serves as ``name`` version ``version`` and re-hash it
        against the ledger version the bridge recorded for it (found on the
        ledger, not in MLflow's tags), or against ``against`` (a ledger model and
        version, or ``env``'s deployed one); IntegrityError names each differing file."""
        if against is None:
            if env is not None:
                raise UsageError("--env needs --model: which ledger model is deployed")
            found = self.find(name, version)
            if found is None:
                raise NotFoundError(
                    f"MLflow model {name!r} version {version} is not on the ledger "
                    "(modelchain mlflow sync records it)"
                )
            against = (found.name, found.version)
        elif env is None:
            self._led.models.get(*against)  # NotFoundError before anything is downloaded
        uri = f"models:/{name}/{version}"
        with tempfile.TemporaryDirectory(prefix="modelchain-mlflow-") as tmp:
            path = self._download(name, version, Path(tmp) / ledger_name(name))
            try:
                return self._led.models.verify(
                    path, against[0], against[1], env=env, progress=progress
                )
            except IntegrityError as exc:
                expected = self._led.models.get(against[0], against[1]) if env is None else None
                which = (
                    f"{expected.name} version {expected.version} ({expected.digest})"
                    if expected is not None
                    else f"{against[0]} as deployed to {env}"
                )
                raise IntegrityError(
                    f"{uri}, as MLflow serves it, is not {which}", exc.differences
                ) from None


def _finite(metrics: Mapping[str, float]) -> dict[str, float]:
    """Metrics the ledger's JSON can hold: NaN and infinities are left out."""
    return {k: float(v) for k, v in metrics.items() if math.isfinite(v)}


def _inputs(run: Run) -> tuple[list[tuple[str, int]], list[dict[str, Any]]]:
    """A run's input datasets and code as SLSA resolved dependencies.

    An input tagged ``modelchain.dataset: NAME@VERSION`` is that registered
    ledger dataset (the ledger checks it exists and adds its digest). Any other
    is recorded as MLflow knows it: its name, source and MLflow's own digest of
    it, which policies cannot see as a registered dataset. The git commit is
    the one MLflow tagged the run with, not this machine's."""
    ledger: list[tuple[str, int]] = []
    other: list[dict[str, Any]] = []
    for item in run.inputs.dataset_inputs if run.inputs is not None else []:
        tags = {t.key: t.value for t in item.tags}
        ds = item.dataset
        ref = tags.get(DATASET_TAG)
        if ref:
            name, sep, number = ref.rpartition("@")
            if not sep or not is_name(name) or not (number.isascii() and number.isdigit()):
                raise MalformedError(
                    f"input dataset {ds.name!r} of MLflow run {run.info.run_id} has "
                    f"{DATASET_TAG}={ref!r}: expected NAME@VERSION of a ledger dataset"
                )
            ledger.append((name, int(number)))
            continue
        dep: dict[str, Any] = {
            "name": ds.name,
            "digest": {_MLFLOW_DATASET_DIGEST: ds.digest},
            "annotations": {
                "sourceType": ds.source_type,
                "source": ds.source,
                "context": tags.get("mlflow.data.context", ""),
            },
        }
        uri = _source_uri(ds.source)
        if uri is not None:
            dep["uri"] = uri
        other.append(dep)
    tags = run.data.tags
    commit = tags.get("mlflow.source.git.commit")
    if commit:
        repo = tags.get("mlflow.source.git.repoURL") or tags.get("mlflow.gitRepoURL")
        code: dict[str, Any] = {
            "digest": {"gitCommit": commit},
            "annotations": {"entryPoint": tags.get("mlflow.source.name", "")},
        }
        if repo:
            code["uri"] = f"git+{repo}@{commit}"
        else:
            code["name"] = "git"
        other.append(code)
    return ledger, other


def _source_uri(source: str) -> str | None:
    """The URI in an MLflow dataset source (JSON such as ``{"uri": ...}``), if any."""
    try:
        parsed = json.loads(source)
    except (ValueError, RecursionError):
        return None
    if not isinstance(parsed, dict):
        return None
    for key in ("uri", "url", "path"):
        value = parsed.get(key)
        # a modelchain: URI is the ledger's to give, and would be checked as one
        if isinstance(value, str) and value and not value.startswith("modelchain:"):
            return value
    return None
