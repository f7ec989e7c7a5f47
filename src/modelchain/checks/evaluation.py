"""Evaluating a scikit-learn or PyTorch model on a CSV or Parquet dataset, or any model through
a user-supplied entry point, as a deterministic JSON object that an evaluator signs and submits,
and deciding whether several evaluators agree.

Metrics are computed here with numpy, the same way for both frameworks and whatever
scikit-learn version is installed; they equal scikit-learn's ``sklearn.metrics`` functions.
"""

from __future__ import annotations

import importlib
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..artifacts.tables import StrPath
from ..errors import ArtifactError, UsageError
from .quality import json_number, read_table, require_numpy, tool_info, type_name

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import torch

__all__ = [
    "METRICS",
    "evaluate_entry",
    "evaluate_sklearn",
    "evaluate_torch",
    "load_entry_point",
    "metrics_agree",
    "model_file_in",
]

_PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")
_WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
_ENTRY_HINT = "pass --entry MODULE:FUNCTION, a function that loads and runs it"

_LABEL_METRICS = ("accuracy", "f1_macro", "precision_macro", "recall_macro")
_SCORE_METRICS = ("roc_auc",)
_REGRESSION_METRICS = ("mse", "mae", "r2")
METRICS = _LABEL_METRICS + _SCORE_METRICS + _REGRESSION_METRICS
"""Every metric name the evaluators know.

accuracy, and precision, recall and F1 averaged over labels (the union of target and
predicted labels, as scikit-learn does; a 0/0 precision or recall counts as 0); roc_auc:
binary, or one-vs-rest averaged over classes, None where undefined (a class with no
positive or no negative row, or a target label the model does not know); mse, mae, r2
(r2 is 1.0 for a constant target predicted exactly, 0.0 for one predicted inexactly, None
for fewer than two rows)."""


def evaluate_sklearn(
    model_path: StrPath, data_path: StrPath, *, target: str, metrics: Sequence[str] = ("accuracy",)
) -> dict[str, Any]:
    """Evaluate a scikit-learn estimator saved with joblib (or pickle) on a CSV or Parquet file.

    Loading the model unpickles it, and unpickling runs whatever code the file names:
    evaluate only a model whose bytes you have verified against the ledger, registered by
    someone you trust. The features are every column but ``target``, in file order (a float
    matrix when all are numeric, else an object matrix); label metrics use ``predict``,
    roc_auc uses ``predict_proba`` (or ``decision_function``) against ``classes_``,
    regression metrics use ``predict``.

    Returns ``{"metrics": {name: value}, "rows", "target", "tool"}``. UsageError for unknown
    metrics; ArtifactError for a model that cannot be loaded or fails to predict, or data
    without the target column.
    """
    wanted = _metric_names(metrics)
    require_numpy()
    import numpy as np

    model = _load_sklearn(Path(model_path))
    table = read_table(data_path)
    features, truth = _split(table, target, data_path)
    X = _feature_matrix(table, features, data_path, numeric_only=False)
    try:
        predicted = np.asarray(model.predict(X))
        classes = scores = None
        if "roc_auc" in wanted:
            classes, scores = _sklearn_scores(model, X)
    except ArtifactError:
        raise
    except Exception as exc:
        raise ArtifactError(
            f"{model_path}: the model failed to predict on {data_path}: {exc}"
        ) from exc
    values = _compute(wanted, truth, predicted, predicted, classes, scores, data_path)
    return _result(values, len(truth), target)


def evaluate_torch(
    model: torch.nn.Module,
    data_path: StrPath,
    *,
    target: str,
    metrics: Sequence[str] = ("accuracy",),
    batch_size: int = 1024,
) -> dict[str, Any]:
    """Evaluate a PyTorch module, already built and with its weights loaded, on a CSV or
    Parquet file.

    Runs on the CPU, in eval mode (the module's training flag is restored after) and under
    ``torch.no_grad()``, ``batch_size`` rows at a time, feeding every column but ``target``
    in file order as a float tensor of the module's parameter dtype. Label metrics take the
    argmax of a ``(rows, classes)`` output as the class index, so the target must hold
    class indices 0, 1, ...; roc_auc uses its softmax; regression metrics use a ``(rows,)``
    or ``(rows, 1)`` output as it is.

    Returns ``{"metrics", "rows", "target", "tool"}`` like ``evaluate_sklearn``.
    """
    wanted = _metric_names(metrics)
    require_numpy()
    import numpy as np
    import torch

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"batch_size must be a positive whole number, not {batch_size!r}")
    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"model must be a torch.nn.Module, not {type(model).__name__}")
    tensors = [*model.parameters(), *model.buffers()]
    off_cpu = sorted({str(t.device) for t in tensors if t.device.type != "cpu"})
    if off_cpu:
        raise UsageError(
            f"evaluation runs on the CPU, but the model has tensors on {', '.join(off_cpu)}: "
            "call model.cpu() first"
        )
    dtype = next((t.dtype for t in tensors if t.is_floating_point()), torch.float32)

    table = read_table(data_path)
    features, truth = _split(table, target, data_path)
    X = _feature_matrix(table, features, data_path, numeric_only=True)
    output = _run_torch(model, X, dtype, batch_size, data_path)
    labels = scores = values = classes = None
    if any(m in wanted for m in _LABEL_METRICS + _SCORE_METRICS):
        if output.ndim != 2 or output.shape[1] < 2:
            raise ArtifactError(
                f"label metrics need one output per class, shape (rows, classes); "
                f"the model gives {tuple(output.shape)}"
            )
        if truth.dtype == object:
            raise ArtifactError(
                f"{data_path}: target column {target!r} holds "
                f"{type_name(table.column(target).type)} values; label metrics on a torch "
                "model need class indices 0, 1, ..."
            )
        labels = np.argmax(output, axis=1)
        classes = np.arange(output.shape[1])
        shifted = np.exp(output - output.max(axis=1, keepdims=True))
        scores = shifted / shifted.sum(axis=1, keepdims=True)
    if any(m in wanted for m in _REGRESSION_METRICS):
        if not (output.ndim == 1 or (output.ndim == 2 and output.shape[1] == 1)):
            raise ArtifactError(
                f"regression metrics need one output per row; the model gives {tuple(output.shape)}"
            )
        values = output.reshape(-1)
    metric_values = _compute(wanted, truth, labels, values, classes, scores, data_path)
    return _result(metric_values, len(truth), target)


def metrics_agree(results: Sequence[Mapping[str, float | None]], tolerance: float) -> bool:
    """Whether independent evaluations agree: every metric is present in every result, and
    for each, the largest and smallest values differ by at most ``tolerance``. A metric that
    is None (undefined) agrees only with None. Pass each result's ``"metrics"`` mapping."""
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float):
        raise UsageError(f"tolerance must be a number, not {tolerance!r}")
    if not tolerance >= 0:  # also refuses NaN
        raise UsageError(f"tolerance must be 0 or more, not {tolerance!r}")
    if isinstance(results, Mapping) or not results:
        raise UsageError("metrics_agree needs a non-empty sequence of metric mappings")
    names: set[str] = set()
    for result in results:
        if not isinstance(result, Mapping):
            raise UsageError(
                f"each result must be a mapping of metric names to values, not {result!r}"
            )
        names.update(result)
    for name in sorted(names):
        if any(name not in result for result in results):
            return False
        values = [result[name] for result in results]
        for value in values:
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                raise UsageError(f"metric {name!r} has a value that is not a number: {value!r}")
        if all(v is None for v in values):
            continue
        if any(v is None or not math.isfinite(v) for v in values):
            return False
        numbers = [float(v) for v in values if v is not None]
        if max(numbers) - min(numbers) > tolerance:
            return False
    return True


def model_file_in(model_path: StrPath, files: Sequence[str]) -> Path:
    """The file the built-in (scikit-learn) evaluator loads from a registered model: the
    model itself when it is one file, else the one ``.joblib``/``.pkl``/``.pickle`` file
    among ``files`` (the folder's registered paths, relative POSIX).

    UsageError, naming what it found, for torch or safetensors weights (weights alone do
    not say how to run them), and for a folder with no pickled model or several.
    """
    root = Path(model_path)
    if not root.is_dir():
        if root.suffix.lower() in _WEIGHT_SUFFIXES:
            raise UsageError(
                f"{root} holds {root.suffix} weights, which alone do not say how to run the "
                f"model: {_ENTRY_HINT}"
            )
        return root
    weights = sorted(f for f in files if Path(f).suffix.lower() in _WEIGHT_SUFFIXES)
    if weights:
        raise UsageError(
            f"{root} holds weights ({_listed(weights)}), which alone do not say how to run "
            f"the model: {_ENTRY_HINT}"
        )
    pickles = sorted(f for f in files if Path(f).suffix.lower() in _PICKLE_SUFFIXES)
    if len(pickles) != 1:
        found = f"several model files ({_listed(pickles)})" if pickles else "no model file"
        raise UsageError(
            f"cannot tell what to evaluate in the folder {root}: it has {found}; the built-in "
            f"evaluator loads exactly one {'/'.join(_PICKLE_SUFFIXES)} file, else {_ENTRY_HINT}"
        )
    return root / pickles[0]


def load_entry_point(spec: str) -> Callable[..., Any]:
    """The function ``spec`` names, ``"package.module:function"``, imported from sys.path
    (set PYTHONPATH to reach a module that is not installed). Importing runs the module's
    code: name only code you trust. UsageError for a malformed string, a module that
    cannot be imported, or a name that is missing or not callable."""
    module_name, sep, attr = spec.partition(":")
    dotted = (module_name.split("."), attr.split("."))
    if not sep or not all(part.isidentifier() for parts in dotted for part in parts):
        raise UsageError(
            f"entry point {spec!r}: expected MODULE:FUNCTION, e.g. mypackage.evaluation:evaluate"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise UsageError(
                f"entry point {spec!r}: no module named {exc.name!r} on the Python path "
                "(install it, or add its folder to PYTHONPATH)"
            ) from exc
        raise UsageError(f"entry point {spec!r}: importing {module_name} failed: {exc}") from exc
    except Exception as exc:  # the module's own code can raise anything
        raise UsageError(
            f"entry point {spec!r}: importing {module_name} failed: {type(exc).__name__}: {exc}"
        ) from exc
    found: Any = module
    for part in attr.split("."):
        if not hasattr(found, part):
            raise UsageError(f"entry point {spec!r}: module {module_name} has no {attr!r}")
        found = getattr(found, part)
    if not callable(found):
        raise UsageError(
            f"entry point {spec!r}: {attr} is a {type(found).__name__}, not a function"
        )
    return found  # type: ignore[no-any-return]


def evaluate_entry(
    spec: str, model_path: StrPath, data_path: StrPath, *, target: str
) -> dict[str, Any]:
    """Evaluate any model with the user's function ``spec`` (see ``load_entry_point``).

    The function is called as ``function(model_path, data_path, target=target)`` with
    ``pathlib.Path`` arguments (the model path as registered: a file or a folder) and must
    return a non-empty mapping of metric names to finite numbers; a bool, None, NaN, a
    tensor or anything else is refused. Numbers are recorded as ``json_number`` rounds them.

    Returns ``{"metrics", "target", "tool"}``, ``tool`` naming the entry point. UsageError
    for an entry point that cannot be loaded; ArtifactError when the function raises or
    returns anything but numbers.
    """
    function = load_entry_point(spec)
    try:
        returned = function(Path(model_path), Path(data_path), target=target)
    except Exception as exc:  # the caller's own evaluation code
        raise ArtifactError(
            f"entry point {spec} failed on {model_path} and {data_path}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(returned, Mapping) or not returned:
        raise ArtifactError(
            f"entry point {spec} returned {_shown(returned)}; it must return a non-empty "
            'mapping of metric names to numbers, e.g. {"accuracy": 0.93}'
        )
    metrics: dict[str, float | None] = {}
    for name, value in returned.items():
        if not isinstance(name, str) or not name:
            raise ArtifactError(
                f"entry point {spec} returned a metric named {name!r}; names are text"
            )
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Real)
            or not math.isfinite(float(value))
        ):
            raise ArtifactError(
                f"entry point {spec} returned {_shown(value)} for metric {name!r}; "
                "every metric must be a finite number"
            )
        metrics[name] = json_number(float(value) if not isinstance(value, int) else value)
    return {
        "metrics": dict(sorted(metrics.items())),
        "target": target,
        "tool": {**tool_info(), "entry": spec},
    }


def _listed(paths: Sequence[str], most: int = 5) -> str:
    shown = ", ".join(paths[:most])
    return shown + (f" and {len(paths) - most} more" if len(paths) > most else "")


def _shown(value: object) -> str:
    text = repr(value)
    return f"a {type(value).__name__} ({text[:60]}{'...' if len(text) > 60 else ''})"


# --- loading and running --------------------------------------------------------------


def _metric_names(metrics: Sequence[str]) -> list[str]:
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    if not names:
        raise UsageError(f"name at least one metric; known metrics: {', '.join(METRICS)}")
    unknown = [m for m in names if m not in METRICS]
    if unknown:
        raise UsageError(
            f"unknown metric{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"known metrics: {', '.join(METRICS)}"
        )
    return list(dict.fromkeys(names))


def _load_sklearn(path: Path) -> Any:
    if not path.is_file():
        raise ArtifactError(f"{path}: not a file")
    try:
        import joblib  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ArtifactError(
            "evaluating a scikit-learn model needs joblib: pip install joblib"
        ) from exc
    try:
        model = joblib.load(path)
    except Exception as exc:  # unpickling can raise anything the pickled code raises
        raise ArtifactError(f"{path}: cannot load a model with joblib: {exc}") from exc
    if not callable(getattr(model, "predict", None)):
        raise ArtifactError(
            f"{path}: holds a {type(model).__name__}, not an estimator (it has no predict method)"
        )
    return model


def _sklearn_scores(model: Any, X: Any) -> tuple[Any, Any]:
    import numpy as np

    classes = getattr(model, "classes_", None)
    if classes is None:
        raise ArtifactError(
            f"roc_auc needs a classifier; this {type(model).__name__} has no classes_"
        )
    if hasattr(model, "predict_proba"):
        scores = np.asarray(model.predict_proba(X), dtype=np.float64)
    elif hasattr(model, "decision_function"):
        scores = np.asarray(model.decision_function(X), dtype=np.float64)
    else:
        raise ArtifactError(
            f"roc_auc needs class scores; this {type(model).__name__} has neither "
            "predict_proba nor decision_function"
        )
    return np.asarray(classes), scores


def _run_torch(
    model: torch.nn.Module,
    X: npt.NDArray[np.float64],
    dtype: torch.dtype,
    batch: int,
    where: StrPath,
) -> npt.NDArray[np.float64]:
    import numpy as np
    import torch

    was_training = model.training
    outputs = []
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(X), batch):
                out = model(torch.from_numpy(X[start : start + batch]).to(dtype))
                if not isinstance(out, torch.Tensor):
                    raise ArtifactError(
                        f"the model returned a {type(out).__name__}; evaluation needs a tensor"
                    )
                outputs.append(out.detach().to(torch.float64).cpu().numpy())
    except ArtifactError:
        raise
    except Exception as exc:  # any failure inside the caller's forward()
        raise ArtifactError(f"the model failed to run on {where}: {exc}") from exc
    finally:
        model.train(was_training)
    result: npt.NDArray[np.float64] = np.concatenate(outputs)
    return result


def _split(table: Any, target: str, where: StrPath) -> tuple[list[str], Any]:
    names: list[str] = list(table.column_names)
    if target not in names:
        raise ArtifactError(
            f"{where}: no target column {target!r}; columns: {', '.join(map(repr, names))}"
        )
    if table.num_rows == 0:
        raise ArtifactError(f"{where}: has no rows to evaluate on")
    column = table.column(target)
    if column.null_count:
        raise ArtifactError(
            f"{where}: target column {target!r} has {column.null_count} nulls; every row needs one"
        )
    features = [n for n in names if n != target]
    if not features:
        raise ArtifactError(f"{where}: has no feature columns besides the target {target!r}")
    return features, _column_array(column)


def _column_array(column: Any) -> Any:
    import numpy as np

    if type_name(column.type) in ("int", "float", "bool"):
        return np.asarray(column.to_numpy())
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=object)


def _feature_matrix(table: Any, features: list[str], where: StrPath, *, numeric_only: bool) -> Any:
    import numpy as np

    kinds = {n: type_name(table.column(n).type) for n in features}
    other = {n: k for n, k in kinds.items() if k not in ("int", "float", "bool")}
    if not other:
        import pyarrow as pa

        # nulls become NaN; integers beyond 2**53 round, as they would in any float matrix
        cols = [table.column(n).cast(pa.float64(), safe=False).to_numpy() for n in features]
        matrix = np.ascontiguousarray(np.column_stack(cols))
        if numeric_only:
            gaps = [n for n, col in zip(features, cols, strict=True) if np.isnan(col).any()]
            if gaps:
                raise ArtifactError(
                    f"{where}: feature columns with nulls or NaN cannot feed a torch model: "
                    f"{', '.join(map(repr, gaps))}"
                )
        return matrix
    if numeric_only:
        shown = ", ".join(f"{n!r} ({k})" for n, k in other.items())
        raise ArtifactError(
            f"{where}: feature columns must be numeric to feed a torch model: {shown}"
        )
    cols = [
        np.asarray(table.column(n).to_numpy(zero_copy_only=False), dtype=object) for n in features
    ]
    return np.column_stack(cols)


# --- metrics --------------------------------------------------------------------------


def _result(values: dict[str, float | None], rows: int, target: str) -> dict[str, Any]:
    return {
        "metrics": {name: json_number(v) for name, v in values.items()},
        "rows": rows,
        "target": target,
        "tool": tool_info(),
    }


def _compute(
    wanted: list[str],
    truth: Any,
    labels: Any,
    values: Any,
    classes: Any,
    scores: Any,
    where: StrPath,
) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    if any(m in wanted for m in _LABEL_METRICS):
        out.update(_label_metrics(truth, labels, where))
    if "roc_auc" in wanted:
        out["roc_auc"] = _roc_auc(truth, classes, scores)
    if any(m in wanted for m in _REGRESSION_METRICS):
        out.update(_regression_metrics(truth, values, where))
    return {name: out[name] for name in wanted}


def _label_metrics(truth: Any, predicted: Any, where: StrPath) -> dict[str, float]:
    import numpy as np

    n = len(truth)
    predicted = np.asarray(predicted).reshape(-1)
    if len(predicted) != n:
        raise ArtifactError(f"the model gave {len(predicted)} predictions for {n} rows of {where}")
    try:
        _, codes = np.unique(np.concatenate((truth, predicted)), return_inverse=True)
    except TypeError as exc:
        raise ArtifactError(
            f"the target labels of {where} and the model's predicted labels "
            f"cannot be compared: {exc}"
        ) from exc
    codes = codes.reshape(-1)
    t, p = codes[:n], codes[n:]
    size = int(codes.max()) + 1
    hits = np.bincount(t[t == p], minlength=size).astype(np.float64)
    true_count = np.bincount(t, minlength=size)
    pred_count = np.bincount(p, minlength=size)
    precision = np.divide(hits, pred_count, out=np.zeros(size), where=pred_count > 0)
    recall = np.divide(hits, true_count, out=np.zeros(size), where=true_count > 0)
    # every label occurs somewhere, so the F1 denominator is never 0
    f1 = 2 * hits / (true_count + pred_count)
    return {
        "accuracy": float(hits.sum() / n),
        "f1_macro": float(np.mean(f1)),
        "precision_macro": float(np.mean(precision)),
        "recall_macro": float(np.mean(recall)),
    }


def _roc_auc(truth: Any, classes: Any, scores: Any) -> float | None:
    import numpy as np

    if classes is None or len(classes) < 2:
        return None
    try:
        known = np.isin(truth, classes)
    except TypeError:
        return None
    if not known.all():
        return None
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim == 2 and scores.shape[1] == 1:
        scores = scores[:, 0]
    if len(classes) == 2:
        positive = scores[:, 1] if scores.ndim == 2 else scores
        return _binary_auc(truth == classes[1], positive)
    if scores.ndim != 2 or scores.shape[1] != len(classes):
        return None
    per_class = []
    for k, c in enumerate(classes):
        auc = _binary_auc(truth == c, scores[:, k])
        if auc is None:
            return None
        per_class.append(auc)
    return float(np.mean(per_class))


def _binary_auc(positive: Any, score: Any) -> float | None:
    """The Mann-Whitney statistic with average ranks for ties: the area under the ROC curve."""
    import numpy as np

    positive = np.asarray(positive, dtype=bool)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    average_rank = ends - (counts - 1) / 2.0  # 1-based ranks, ties share their mean
    rank_sum = float(average_rank[inverse.reshape(-1)][positive].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def _regression_metrics(truth: Any, predicted: Any, where: StrPath) -> dict[str, float | None]:
    import numpy as np

    if truth.dtype == object:
        raise ArtifactError(f"{where}: regression metrics need a numeric target column")
    y = truth.astype(np.float64)
    try:
        p = np.asarray(predicted, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"regression metrics need numeric predictions: {exc}") from exc
    if len(p) != len(y):
        raise ArtifactError(f"the model gave {len(p)} predictions for {len(y)} rows of {where}")
    error = y - p
    residual = float(np.sum(error**2))
    total = float(np.sum((y - np.mean(y)) ** 2))
    r2: float | None
    if len(y) < 2:
        r2 = None
    elif total == 0:
        r2 = 1.0 if residual == 0 else 0.0
    else:
        r2 = 1.0 - residual / total
    return {"mse": float(np.mean(error**2)), "mae": float(np.mean(np.abs(error))), "r2": r2}
