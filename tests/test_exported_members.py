"""Every public module says what it exports (httpx's test_exported_members.py idea).

A module is public when no part of its dotted name starts with ``_``. Each one
that has public names declares ``__all__``; every name in ``__all__`` exists,
once; every public class or function the module itself defines is in
``__all__`` or is excluded below, deliberately and with the reason.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import modelchain

# Contract handlers (check_*, exec_*) are reached through each module's table of
# rules (``*_rules()``), never called by name from outside their module.
HANDLER_PREFIXES = ("check_", "exec_")
HANDLER_PACKAGE = "modelchain.contracts."

EXCLUDED: dict[str, set[str]] = {
    # Module helpers that carry no promise beyond their module and its tests.
    "modelchain.cli.server": {"JsonLogFormatter"},
    "modelchain.core.tx": {"signer_key_ids"},
}


def _public_modules() -> list[str]:
    names = ["modelchain"]
    for info in pkgutil.walk_packages(modelchain.__path__, "modelchain."):
        if not any(part.startswith("_") for part in info.name.split(".")[1:]):
            names.append(info.name)
    return sorted(names)


def _defined_here(module: ModuleType) -> set[str]:
    """Public classes and functions whose home is ``module`` itself."""
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", None) == module.__name__
    }


def _excluded(module: str, name: str) -> bool:
    if module.startswith(HANDLER_PACKAGE) and name.startswith(HANDLER_PREFIXES):
        return True
    return name in EXCLUDED.get(module, set())


PUBLIC = _public_modules()


def test_the_walk_finds_the_public_modules() -> None:
    for name in (
        "modelchain.cli",
        "modelchain.cli.log",
        "modelchain.ledger",
        "modelchain.core.note",
    ):
        assert name in PUBLIC
    assert not [name for name in PUBLIC if "._" in name]


@pytest.mark.parametrize("name", PUBLIC)
def test_public_module_exports(name: str) -> None:
    module = importlib.import_module(name)
    if not hasattr(module, "__all__"):
        assert not _defined_here(module), f"{name} defines public names but has no __all__"
        return
    exported = list(module.__all__)
    assert len(set(exported)) == len(exported), f"{name}.__all__ repeats a name"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what it lacks: {missing}"
    unlisted = sorted(
        n for n in _defined_here(module) if n not in exported and not _excluded(name, n)
    )
    assert not unlisted, f"{name} defines public names missing from __all__: {unlisted}"


def test_exclusions_name_what_exists() -> None:
    # A stale exclusion would hide the next name of that spelling.
    for name, excluded in EXCLUDED.items():
        module = importlib.import_module(name)
        for attr in excluded:
            assert attr in _defined_here(module), f"{name}.{attr} is excluded but gone"
            assert attr not in module.__all__, f"{name}.{attr} is both exported and excluded"
