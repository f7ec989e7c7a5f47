"""What every registry facade shares: signing and submitting through the port,
reading versions and manifests back, hashing artifacts where they lie."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..contracts.registry import INLINE_MANIFEST_MAX
from ..contracts.state import deployment_key, entity_key, version_key
from ..core import canonical
from ..core.identity import Signer
from ..core.manifest import Manifest
from ..core.names import is_name
from ..errors import IntegrityError, NotFoundError
from ..node.node import Ack
from ._refusals import refused
from .port import LedgerPort, signer_of

if TYPE_CHECKING:
    from ..artifacts.cache import DigestCache
    from ..artifacts.hashing import Tee

Progress = Callable[[int, int], None]


class Facade:
    def __init__(self, port: LedgerPort) -> None:
        self._led = port

    def _signer(self, signer: Signer | None) -> Signer:
        return signer_of(self._led, signer)

    def _submit(self, type_: str, body: dict[str, Any], signer: Signer | None) -> Ack:
        s = self._signer(signer)
        envelope = self._led.transaction(type_, body, s.name).sign(s)
        ack = self._led.submit(envelope)
        if not ack.outcome.accepted:
            raise refused(self._led, envelope, ack, f"{type_} was rejected")
        return ack

    def _state(self, key: str) -> Any:
        return self._led.store.get_state(key)

    def _hash(
        self,
        path: str | os.PathLike[str],
        algorithm: str,
        progress: Progress | None,
        allow_symlinks: bool,
        use_cache: bool,
        tee: Tee | None = None,
    ) -> Manifest:
        from ..artifacts.hashing import hash_path

        return hash_path(
            path,
            algorithm=algorithm,
            allow_symlinks=allow_symlinks,
            cache=self._cache() if use_cache else None,
            progress=progress,
            tee=tee,
        )

    def _cache(self) -> DigestCache:
        from ..artifacts.cache import default_cache

        return default_cache(self._led.home)

    def _artifact(self, manifest: Manifest) -> dict[str, Any]:
        art: dict[str, Any] = {
            "digest": manifest.digest,
            "size": manifest.size,
            "files": len(manifest.files),
            "format": manifest.format,
        }
        data = canonical.dumps(manifest.to_json())
        if len(data) <= INLINE_MANIFEST_MAX:
            art["manifest"] = manifest.to_json()
        else:
            art["manifest_ref"] = self._led.blobs.put(data)
        return art

    def manifest_of(self, record: dict[str, Any]) -> Manifest:
        """The full manifest of a registered version (inline, or from the blob store)."""
        art = record["artifact"]
        if "manifest" in art:
            manifest = Manifest.from_json(art["manifest"])
        else:
            manifest = Manifest.from_json(canonical.loads(self._led.blobs.get(art["manifest_ref"])))
        if manifest.digest != art["digest"]:
            raise IntegrityError(
                f"the stored manifest of {record['name']} is not the registered one"
            )
        return manifest

    def _entity(self, kind: str, name: str) -> dict[str, Any] | None:
        """The record of dataset or model ``name``, or None if there is none.

        A string that is not a name names nothing: entities and their
        versions share one key space, so ``iris@1`` would read version 1."""
        if not is_name(name):
            return None
        found = self._state(entity_key(kind, name))
        return found if isinstance(found, dict) else None

    def _version(self, kind: str, name: str, version: int | None) -> dict[str, Any]:
        entity = self._entity(kind, name)
        if entity is None:
            raise NotFoundError(f"no {kind} named {name!r}")
        v = entity["latest"] if version is None else version
        found = self._state(version_key(kind, name, v))
        if not isinstance(found, dict):
            raise NotFoundError(f"{kind} {name} has no version {v} (latest is {entity['latest']})")
        return found

    def _deployed(self, name: str, env: str) -> int:
        """The version of model ``name`` deployed to environment ``env``."""
        found = self._state(deployment_key(name, env))
        if not isinstance(found, dict) or not isinstance(found.get("version"), int):
            raise NotFoundError(f"{name} is not deployed to {env!r}")
        return int(found["version"])

    def _list(self, kind: str) -> list[dict[str, Any]]:
        out = []
        for key, value in self._led.store.state_prefix(entity_key(kind, "")):
            rest = key[len(kind) + 1 :]
            if "@" not in rest and "#" not in rest:
                out.append(canonical.loads(value))
        return out
