"""Runtime guard: loaders that verify a model against the ledger before loading it.

Each loader re-hashes the registered artifact (never trusting the hash cache),
compares it with the version pinned for an environment, a given version, or
the latest one, and raises :class:`~modelchain.errors.IntegrityError` naming the
differing files *before* any byte is deserialised. A successful check is
recorded as an ``access.log`` event, and only then is the model loaded::

    from modelchain import guard
    weights = guard.load_safetensors(led, "model.safetensors", model="fraud", env="production")

``path`` is the file to load; ``root`` (default: ``path``) is the registered
artifact, e.g. the folder of a multi-file model that holds ``path``.
Every loader can also go without a path: it pulls the version from an artifact
store (``stores``, default the ledger's own) into a folder under the ledger's
``home``, verified, and loads it from there::

    weights = guard.load_safetensors(led, model="fraud", env="production")

A version stored encrypted (ADR 17) needs the organisation's key service
(``keys=KeyService(...)``): its data key is requested on the ledger
(``artifact.key.fetch``, refused and logged without a grant), every object is
decrypted and checked against the registered manifest, the access is recorded,
and the plaintext, in a private folder under ``home/pulled``, is removed once
the model is loaded (``cache=True`` keeps it for the next load, which then
verifies it again like any file on disk). An erased version is refused
(ErasedError, naming who erased it, when and why), from a path or a store.

Pickle
formats (joblib, and torch without ``weights_only``) run code when loaded,
which is why the check comes first.

:func:`watch` re-verifies on an interval and files a ``monitor.report`` when the
files on disk drift from the pinned version (and when they come back), so
rollback rules and policies can react.

The check and the load read the file separately: a writer racing between the
two is out of scope (protect the files with permissions; the guard detects
changes made at rest).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from .errors import ArtifactError, ErasedError, IntegrityError, UsageError
from .ledger.artifacts import KeyService, StoreSpec, as_store
from .ledger.models import ModelVersion

if TYPE_CHECKING:
    import onnx
    import torch

    from .core.identity import Signer
    from .core.manifest import Manifest
    from .ledger.ledger import Ledger

__all__ = [
    "guarded",
    "load_onnx",
    "load_safetensors",
    "load_sklearn",
    "load_torch",
    "pulled",
    "watch",
]

StrPath = str | os.PathLike[str]


def _signer_of(led: Ledger, signer: Signer | None) -> Signer:
    found = signer or led.identity
    if found is None:
        raise UsageError(
            "a guarded load is recorded on the ledger and needs a signer: "
            "pass signer=... or open the ledger with identity=..."
        )
    return found


def _refuse_erased(led: Ledger, model: str, version: int) -> None:
    erased = led.artifacts.erasure("model", model, version)
    if erased is not None:
        signers = ", ".join(erased.get("signers") or [erased["by"]])
        raise ErasedError(
            f"model {model} version {version} was erased at entry {erased['index']} "
            f"by {signers}: {erased['reason']}; it can no longer be loaded"
        )


def guarded(
    led: Ledger,
    path: StrPath,
    *,
    model: str,
    version: int | None = None,
    env: str | None = None,
    purpose: str = "inference",
    signer: Signer | None = None,
    root: StrPath | None = None,
) -> ModelVersion:
    """Verify ``root`` (default ``path``) as ``model`` and record the access.

    Returns the verified version; raises UsageError for bad arguments or a
    missing signer, IntegrityError if the files differ, ErasedError if the
    version they match was erased, and records nothing in any of these cases.
    Callers load ``path`` only after this returns."""
    if version is not None and env is not None:
        raise UsageError("give a version or an environment, not both")
    who = _signer_of(led, signer)
    target = Path(path)
    base = Path(root) if root is not None else target
    if root is not None:
        inside = target.resolve()
        top = base.resolve()
        if inside != top and not inside.is_relative_to(top):
            raise UsageError(f"{path} is not inside the registered artifact {root}")
    if not target.is_file():
        raise ArtifactError(f"{path}: not a file")
    verified = led.models.verify(base, model, version, env=env, trust_cache=False)
    _refuse_erased(led, model, verified.version)
    led.deployments.log_access("model", model, verified.version, purpose, signer=who)
    return verified


def _need(module: str, what: str) -> NoReturn:
    raise ArtifactError(f"loading {what} needs {module}: pip install {module}")


def pulled(
    led: Ledger,
    *,
    model: str,
    version: int | None = None,
    env: str | None = None,
    stores: Sequence[StoreSpec] | None = None,
    suffix: str | tuple[str, ...] = "",
) -> tuple[Path, Path, int]:
    """Fetch ``model`` (the version given, the one deployed to ``env``, or the latest)
    from ``stores`` (default: the ledger's own) into ``home/pulled/<model>@<version>``,
    verified, unless it is there already. Returns the file to load (the artifact itself
    when it is one file, else its only file ending in ``suffix``), the registered
    artifact (that file, or the folder) and the version. Records nothing: the guarded
    load that follows does, after verifying the copy again (one damaged since it was
    pulled is refused; remove the folder to pull it afresh). A version stored encrypted
    is not pulled here (UsageError): the loaders decrypt it with ``keys``."""
    from .storage.artifacts import pull_manifest

    number, manifest = led.artifacts.resolve("model", model, version, env)
    _refuse_erased(led, model, number)
    folder = _cache_folder(led, model, number)
    inside = _member(manifest, model, number, suffix)
    if not folder.is_dir():
        if led.artifacts.stored("model", model, number) is not None:
            raise UsageError(
                f"{model} version {number} is stored encrypted: load it with the "
                "organisation's key service (`guard.load_...(led, model=..., keys=...)`), or "
                "pull it with its key (`led.models.pull(..., keys=...)`, `modelchain pull`) "
                "and pass the path"
            )
        pull_manifest(_stores(led, stores), manifest, folder)
    found = folder / manifest.name if inside is None else folder.joinpath(*inside)
    return found, (found if inside is None else folder), number


def _cache_folder(led: Ledger, model: str, version: int) -> Path:
    return led.home / "pulled" / f"{model}@{version}"


def _stores(led: Ledger, stores: Sequence[StoreSpec] | None) -> list[Any]:
    return [led.artifact_store()] if stores is None else [as_store(s) for s in stores]


def _member(
    manifest: Manifest, model: str, version: int, suffix: str | tuple[str, ...]
) -> list[str] | None:
    """The path (as parts) of the file to load inside a version's folder, or None when
    the version was registered as one file (verified as one file)."""
    names = [f.path for f in manifest.files]
    if names == ["."]:
        return None
    matching = [n for n in names if n.endswith(suffix)]
    if len(matching) != 1:
        raise UsageError(
            f"{model} version {version} has {len(matching)} files ending in {suffix}: "
            "pull it (`led.models.pull`) and pass the path of the one to load"
        )
    return matching[0].split("/")


@contextmanager
def _decrypted(
    led: Ledger,
    *,
    model: str,
    version: int,
    manifest: Manifest,
    purpose: str,
    signer: Signer,
    stores: Sequence[StoreSpec] | None,
    keys: KeyService | None,
    cache: bool,
    suffix: str | tuple[str, ...],
) -> Iterator[Path]:
    """An encrypted version, pulled with its data key (``led.artifacts.pull``: the key
    request and, once every byte is decrypted and verified, the access are recorded)
    into a private temporary folder that is removed on leaving (with ``cache``, the
    verified copy is first moved to ``home/pulled/<model>@<version>``)."""
    if keys is None:
        raise UsageError(
            f"{model} version {version} is stored encrypted: loading it needs the "
            "organisation's key service (keys=KeyService(kek, key_stores))"
        )
    inside = _member(manifest, model, version, suffix)
    top = led.home / "pulled"
    top.mkdir(parents=True, exist_ok=True)
    # decrypted into a private folder (0700), staging included, so that a failed or
    # refused load leaves no plaintext behind; a cache is moved into place once verified
    scratch = Path(tempfile.mkdtemp(prefix=f".{model}@{version}.", dir=top))
    folder = scratch / f"{model}@{version}"
    try:
        led.artifacts.pull(
            "model",
            model,
            folder,
            stores=_stores(led, stores),
            version=version,
            purpose=purpose,
            signer=signer,
            keys=keys,
        )
        if cache:
            cached = _cache_folder(led, model, version)
            folder.replace(cached)
            folder = cached
        yield folder / manifest.name if inside is None else folder.joinpath(*inside)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@contextmanager
def _loadable(
    led: Ledger,
    path: StrPath | None,
    root: StrPath | None,
    *,
    model: str,
    version: int | None,
    env: str | None,
    purpose: str,
    signer: Signer | None,
    stores: Sequence[StoreSpec] | None,
    keys: KeyService | None,
    cache: bool,
    suffix: str | tuple[str, ...],
) -> Iterator[Path]:
    """The file a loader loads, verified and its access recorded: ``path`` as given;
    else the version pulled from a store (pinned to the version pulled even if ``env``
    moves meanwhile), decrypted for the load only when it is stored encrypted."""
    if path is None:
        who = _signer_of(led, signer)  # refuse before any transfer, as guarded() would
        number, manifest = led.artifacts.resolve("model", model, version, env)
        _refuse_erased(led, model, number)
        encrypted = led.artifacts.stored("model", model, number) is not None
        if encrypted and not (cache and _cache_folder(led, model, number).is_dir()):
            with _decrypted(
                led,
                model=model,
                version=number,
                manifest=manifest,
                purpose=purpose,
                signer=who,
                stores=stores,
                keys=keys,
                cache=cache,
                suffix=suffix,
            ) as found:
                yield found
            return
        found, folder, number = pulled(
            led, model=model, version=number, stores=stores, suffix=suffix
        )
        path, root, version, env = found, folder, number, None
    guarded(
        led, path, model=model, version=version, env=env, purpose=purpose, signer=signer, root=root
    )
    yield Path(path)


def load_safetensors(
    led: Ledger,
    path: StrPath | None = None,
    *,
    model: str,
    version: int | None = None,
    env: str | None = None,
    purpose: str = "inference",
    signer: Signer | None = None,
    root: StrPath | None = None,
    device: str = "cpu",
    stores: Sequence[StoreSpec] | None = None,
    keys: KeyService | None = None,
    cache: bool = False,
) -> dict[str, torch.Tensor]:
    """Verify, record, then ``safetensors.torch.load_file(path, device)``. Without
    ``path``, the version is first pulled from ``stores`` (see :func:`pulled`)."""
    try:
        from safetensors.torch import load_file
    except ImportError:
        _need("safetensors", "a safetensors file")
    with _loadable(
        led,
        path,
        root,
        model=model,
        version=version,
        env=env,
        purpose=purpose,
        signer=signer,
        stores=stores,
        keys=keys,
        cache=cache,
        suffix=".safetensors",
    ) as found:
        return load_file(os.fspath(found), device=device)


def load_torch(
    led: Ledger,
    path: StrPath | None = None,
    *,
    model: str,
    version: int | None = None,
    env: str | None = None,
    purpose: str = "inference",
    signer: Signer | None = None,
    root: StrPath | None = None,
    map_location: str = "cpu",
    stores: Sequence[StoreSpec] | None = None,
    keys: KeyService | None = None,
    cache: bool = False,
) -> Any:
    """Verify, record, then ``torch.load(path, weights_only=True)``."""
    try:
        import torch
    except ImportError:
        _need("torch", "a torch checkpoint")
    with _loadable(
        led,
        path,
        root,
        model=model,
        version=version,
        env=env,
        purpose=purpose,
        signer=signer,
        stores=stores,
        keys=keys,
        cache=cache,
        suffix=(".pt", ".pth", ".bin"),
    ) as found:
        return torch.load(os.fspath(found), map_location=map_location, weights_only=True)


def load_onnx(
    led: Ledger,
    path: StrPath | None = None,
    *,
    model: str,
    version: int | None = None,
    env: str | None = None,
    purpose: str = "inference",
    signer: Signer | None = None,
    root: StrPath | None = None,
    stores: Sequence[StoreSpec] | None = None,
    keys: KeyService | None = None,
    cache: bool = False,
) -> onnx.ModelProto:
    """Verify, record, then ``onnx.load(path)`` (external data next to it is
    covered when ``root`` is the registered folder)."""
    try:
        import onnx
    except ImportError:
        _need("onnx", "an ONNX model")
    with _loadable(
        led,
        path,
        root,
        model=model,
        version=version,
        env=env,
        purpose=purpose,
        signer=signer,
        stores=stores,
        keys=keys,
        cache=cache,
        suffix=".onnx",
    ) as found:
        return onnx.load(os.fspath(found))


def load_sklearn(
    led: Ledger,
    path: StrPath | None = None,
    *,
    model: str,
    version: int | None = None,
    env: str | None = None,
    purpose: str = "inference",
    signer: Signer | None = None,
    root: StrPath | None = None,
    stores: Sequence[StoreSpec] | None = None,
    keys: KeyService | None = None,
    cache: bool = False,
) -> Any:
    """Verify, record, then ``joblib.load(path)``. Unpickling runs code, so
    nothing is unpickled unless the bytes are the registered ones."""
    try:
        import joblib  # type: ignore[import-untyped]
    except ImportError:
        _need("joblib", "a scikit-learn model")
    with _loadable(
        led,
        path,
        root,
        model=model,
        version=version,
        env=env,
        purpose=purpose,
        signer=signer,
        stores=stores,
        keys=keys,
        cache=cache,
        suffix=(".joblib", ".pkl"),
    ) as found:
        return joblib.load(os.fspath(found))


def watch(
    led: Ledger,
    path: StrPath,
    model: str,
    env: str,
    interval: float,
    rounds: int | None = None,
    signer: Signer | None = None,
    *,
    sleep: Callable[[float], None] = time.sleep,
    on_round: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Re-verify ``path`` against the version deployed to ``env`` every
    ``interval`` seconds, ``rounds`` times (forever if None).

    When the files drift (or the set of differences changes) it files
    ``monitor.report`` with ``{"drift": 1.0, "files_changed": n}``; when they
    match again, ``{"drift": 0.0, "files_changed": 0}``. Returns the metrics
    of every report filed. ``on_round`` sees each round's result."""
    if interval < 0:
        raise UsageError("interval must be >= 0")
    if rounds is not None and rounds < 1:
        raise UsageError("rounds must be >= 1")
    who = _signer_of(led, signer)
    reports: list[dict[str, Any]] = []
    last: tuple[str, ...] = ()
    n = 0
    while rounds is None or n < rounds:
        if n:
            sleep(interval)
        n += 1
        result: dict[str, Any] = {"round": n}
        try:
            verified = led.models.verify(path, model, env=env, trust_cache=False)
            result.update(version=verified.version, ok=True, differences=[])
            differences: tuple[str, ...] = ()
        except IntegrityError as exc:
            differences = exc.differences
            result.update(ok=False, differences=list(differences))
        if differences != last:
            metrics: dict[str, Any] = {
                "drift": 1.0 if differences else 0.0,
                "files_changed": len({d.partition(" ")[2].split(":", 1)[0] for d in differences}),
            }
            led.deployments.report(model, env, metrics, signer=who)
            reports.append(metrics)
            result["reported"] = metrics
            last = differences
        if on_round is not None:
            on_round(result)
    return reports
