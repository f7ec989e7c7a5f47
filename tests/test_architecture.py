"""The layering in DESIGN.md holds, and the public surface is explicit."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import modelchain

SRC = Path(modelchain.__file__).parent

# Each layer may import itself and the layers listed after it, nothing above:
# cli -> server, reports -> ledger, receipts, guard -> node
#     -> contracts, storage, artifacts, checks, keys -> core -> errors.
LAYERS = ["cli", "interfaces", "api", "node", "components", "core", "errors"]
PACKAGE_LAYER = {
    "errors": "errors",
    "core": "core",
    "contracts": "components",
    "storage": "components",
    "artifacts": "components",
    "checks": "components",
    "keys": "components",
    "node": "node",
    "ledger": "api",
    "receipts": "api",
    "guard": "api",
    "server": "interfaces",
    "reports": "interfaces",
}


def _layer(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "modelchain" or len(parts) == 1:
        return "api"
    return PACKAGE_LAYER.get(parts[1], "cli")


def _imports(path: Path, module: str) -> list[str]:
    tree = ast.parse(path.read_text())
    found = []
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append(target)
        elif isinstance(node, ast.Import):
            found.extend(a.name for a in node.names)
    return [f for f in found if f.startswith("modelchain")]


def test_lower_layers_never_import_higher_ones() -> None:
    bad = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC.parent).with_suffix("")
        module = ".".join(rel.parts).removesuffix(".__init__")
        mine = LAYERS.index(_layer(module))
        for target in _imports(path, module):
            if LAYERS.index(_layer(target)) < mine:
                bad.append(f"{module} imports {target}")
    assert not bad, "\n".join(bad)


def test_core_does_no_io() -> None:
    forbidden = {"os", "sqlite3", "socket", "subprocess", "time", "pathlib", "random", "secrets"}
    for path in (SRC / "core").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module.split(".")[0]]
            assert not forbidden & set(names), f"{path.name} imports {names}"


def test_public_modules_declare_all() -> None:
    for name in [
        "modelchain",
        "modelchain.errors",
        "modelchain.keys",
        "modelchain.contracts",
        "modelchain.node",
        "modelchain.artifacts",
        "modelchain.guard",
    ]:
        mod = importlib.import_module(name)
        exported = mod.__all__
        assert len(set(exported)) == len(exported)
        for attr in exported:
            assert hasattr(mod, attr), f"{name}.__all__ names missing {attr}"


def test_every_error_has_a_code_and_exit_code() -> None:
    from modelchain import errors

    classes = [getattr(errors, n) for n in errors.__all__]
    for cls in classes:
        assert issubclass(cls, errors.Error)
        assert cls.code and isinstance(cls.exit_code, int)
    leaf_codes = [c.code for c in classes if c is not errors.Error]
    assert len(leaf_codes) == len(set(leaf_codes)), "error codes must be unique"
