"""What the training callbacks share: inputs checked on the ledger before any
compute is spent, parameters and metrics made JSON, and the end of a run
(record it, then register the saved model as its output)."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core import canonical
from ..core.names import NAME_SYNTAX, is_name, name_version
from ..core.tx import MAX_ENVELOPE_BYTES
from ..errors import Error, NotFoundError, UsageError
from ..ledger.port import signer_of

if TYPE_CHECKING:
    from ..core.identity import Signer
    from ..ledger.ledger import Ledger
    from ..ledger.models import ModelVersion

__all__ = [
    "FINAL_FOLDER",
    "RecordsRun",
    "TrainingRun",
    "VersionSpec",
    "json_safe",
    "version_spec",
]

# A registered version: "transactions@3" or ("transactions", 3).
VersionSpec = str | tuple[str, int]
StrPath = str | os.PathLike[str]

# Where a run's final model goes, under the framework's output folder.
FINAL_FOLDER = "modelchain"

# The run record's parameters, as canonical JSON. The statement travels base64 in
# an envelope of at most MAX_ENVELOPE_BYTES, beside the environment and digests.
_PARAMETERS_MAX = MAX_ENVELOPE_BYTES // 2
# Keys whose values are secrets, never recorded: hub_token, push_to_hub_token, ...
# ("include_num_input_tokens_seen" is a setting, not a token).
_SECRET = re.compile(r"(?:^|_)token$|secret|passw|api_?key|credential", re.IGNORECASE)
_REPR_MAX = 256
_MAX_SAFE_INT = 2**53 - 1


def version_spec(spec: object, what: str) -> tuple[str, int]:
    """A registered version as ``(name, version)``, from ``"name@3"`` or ``("name", 3)``."""
    if isinstance(spec, str):
        return name_version(spec)
    if (
        isinstance(spec, tuple)
        and len(spec) == 2
        and isinstance(spec[0], str)
        and isinstance(spec[1], int)
        and not isinstance(spec[1], bool)
    ):
        return name_version(f"{spec[0]}@{spec[1]}")
    raise UsageError(f"a {what} is 'NAME@VERSION' or (NAME, VERSION), not {spec!r}")


def _scalar(value: object) -> object:
    """A tensor or numpy scalar as its Python value; anything else as it is."""
    item = getattr(value, "item", None)
    if callable(item) and not isinstance(value, int | float):
        try:
            return item()
        except (ValueError, RuntimeError):  # a tensor of several values
            return value
    return value


def _json_number(value: float) -> float | None:
    """A number as a run records it: NaN and the infinities as None (as
    evaluation evidence records them), integers beyond JSON's safe range as floats."""
    if isinstance(value, int):
        return value if abs(value) <= _MAX_SAFE_INT else float(value)
    return value if math.isfinite(value) else None


def json_safe(value: object, depth: int = 0) -> Any:
    """``value`` as JSON that canonical encoding accepts, for the record of a
    run's parameters: secrets left out, enums, paths and dataclasses by value,
    anything else by a short repr."""
    value = _scalar(value)
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return _json_number(value)
    if isinstance(value, Enum):
        return json_safe(value.value, depth)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if depth < 8:
        if isinstance(value, Mapping):
            return {
                str(k): json_safe(v, depth + 1)
                for k, v in value.items()
                if not _SECRET.search(str(k))
            }
        if isinstance(value, list | tuple | set | frozenset):
            items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
            return [json_safe(v, depth + 1) for v in items]
    shown = repr(value)
    return shown if len(shown) <= _REPR_MAX else shown[: _REPR_MAX - 3] + "..."


def _with_note(exc: Error, note: str) -> None:
    # The error keeps its class (exit code, rejection index), and says where the model is.
    exc.message = f"{exc.message}; {note}"
    exc.args = (exc.message, *exc.args[1:])


class TrainingRun:
    """One training run on the ledger, from its start to its registered model.

    ``start`` checks the inputs (datasets, base models, the signer, the output
    folder) before the framework spends any compute; ``finish`` records the run
    and registers the saved folder as its output. The framework callbacks in
    ``integrations.transformers`` and ``integrations.lightning`` drive it."""

    def __init__(
        self,
        led: Ledger,
        *,
        model: str,
        datasets: Iterable[VersionSpec] = (),
        base_models: Iterable[VersionSpec] = (),
        register: bool = True,
        output_dir: StrPath | None = None,
        run_id: str | None = None,
        card: Mapping[str, Any] | None = None,
        signer: Signer | None = None,
        code_dir: StrPath | None = ".",
    ) -> None:
        if not is_name(model):
            raise UsageError(f"model {model!r} is not a name: {NAME_SYNTAX}")
        if run_id is not None and not is_name(run_id):
            raise UsageError(f"run id {run_id!r} is not a name: {NAME_SYNTAX}")
        self._led = led
        self.model = model
        self.datasets = [version_spec(d, "dataset") for d in datasets]
        self.base_models = [version_spec(m, "base model") for m in base_models]
        self.register = register
        self._output_dir = None if output_dir is None else Path(output_dir)
        self._run_id = run_id
        self.card = dict(card or {})
        self._signer = signer
        self.code_dir = code_dir
        self.run_id: str | None = run_id
        self.folder: Path | None = None
        self.started: int | None = None
        self.parameters: dict[str, Any] = {}
        self.metrics: dict[str, Any] = {}
        self.version: ModelVersion | None = None

    def start(self, default_root: StrPath, parameters: Mapping[str, Any]) -> None:
        """Check everything the end of the run needs and note the start time.

        Raises NotFoundError for a dataset or base model the ledger does not
        hold; UsageError without a signer, for a run id already recorded, for
        an output folder that already holds files, or for parameters too large
        to record."""
        for name, version in self.datasets:
            self._led.datasets.get(name, version)
        for name, version in self.base_models:
            self._led.models.get(name, version)
        signer_of(self._led, self._signer)
        self.parameters = json_safe(parameters)
        size = len(canonical.dumps(self.parameters))
        if size > _PARAMETERS_MAX:
            raise UsageError(
                f"the run's parameters are {size} bytes as JSON; a run record holds at most "
                f"{_PARAMETERS_MAX}: leave large values out of the hyperparameters"
            )
        self.started = self._led.clock()
        self.run_id = self._run_id or self._new_run_id(self.started)
        if self._run_id is not None and self._recorded(self._run_id):
            raise UsageError(f"run {self._run_id} is already recorded: give another run_id")
        folder = self._output_dir or Path(default_root) / FINAL_FOLDER / self.run_id
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise UsageError(
                f"{folder} already holds files: the model registered from it would "
                "include them; give an empty or new output_dir"
            )
        self.folder = folder
        self.metrics = {}
        self.version = None

    def _recorded(self, run_id: str) -> bool:
        try:
            self._led.runs.get(run_id)
        except NotFoundError:
            return False
        return True

    def _new_run_id(self, now: int) -> str:
        # Unique and readable: which model, when (UTC), and 24 random bits.
        stamp = datetime.fromtimestamp(now / 1000, UTC).strftime("%Y%m%d-%H%M%S")
        return f"{self.model[:100]}-{stamp}-{secrets.token_hex(3)}"

    def observe(self, logged: Mapping[str, object]) -> None:
        """Keep the last value of every numeric metric in ``logged``."""
        for key, value in logged.items():
            found = _scalar(value)
            if isinstance(found, int | float) and not isinstance(found, bool):
                self.metrics[str(key)] = _json_number(found)

    def finish(self) -> ModelVersion | None:
        """Record the run with the saved folder as its output, then register the
        folder as the next version of the model (unless ``register`` is False).

        A modelchain error keeps its class and says where the saved model is,
        and whether the run was recorded, so nothing trained is lost."""
        if self.folder is None or self.run_id is None or self.started is None:
            raise UsageError("the training run was never started")
        try:
            self._led.runs.record(
                self.run_id,
                outputs=[self.folder],
                datasets=self.datasets,
                base_models=self.base_models,
                parameters=self.parameters,
                metrics=self.metrics,
                started=self.started,
                finished=self._led.clock(),
                code_dir=self.code_dir,
                signer=self._signer,
            )
        except Error as exc:
            _with_note(
                exc, f"run {self.run_id} was not recorded; the model is saved at {self.folder}"
            )
            raise
        if not self.register:
            return None
        parent = self.base_models[0] if len(self.base_models) == 1 else None
        try:
            self.version = self._led.models.register(
                self.model,
                self.folder,
                run=self.run_id,
                parent=parent,
                metrics=self.metrics,
                card=self.card,
                signer=self._signer,
            )
        except Error as exc:
            _with_note(
                exc,
                f"run {self.run_id} is recorded and the model is saved at {self.folder}; "
                f"register it with `modelchain model register {self.model} {self.folder} "
                f"--run {self.run_id}`",
            )
            raise
        return self.version


class RecordsRun:
    """What both callbacks share: their options, held in a ``TrainingRun``, and
    what it recorded (``run_id``, ``folder``, ``metrics``, ``version``). Mixed in
    before the framework's callback class."""

    def __init__(
        self,
        led: Ledger,
        *,
        model: str,
        datasets: Iterable[VersionSpec] = (),
        base_models: Iterable[VersionSpec] = (),
        register: bool = True,
        output_dir: str | os.PathLike[str] | None = None,
        run_id: str | None = None,
        card: Mapping[str, Any] | None = None,
        signer: Signer | None = None,
        code_dir: str | os.PathLike[str] | None = ".",
    ) -> None:
        self._run = TrainingRun(
            led,
            model=model,
            datasets=datasets,
            base_models=base_models,
            register=register,
            output_dir=output_dir,
            run_id=run_id,
            card=card,
            signer=signer,
            code_dir=code_dir,
        )

    @property
    def run_id(self) -> str | None:
        return self._run.run_id

    @property
    def folder(self) -> Path | None:
        return self._run.folder

    @property
    def metrics(self) -> dict[str, Any]:
        return self._run.metrics

    @property
    def version(self) -> ModelVersion | None:
        return self._run.version
