"""The layering in DESIGN.md holds, and the public surface is explicit."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import modelchain

SRC = Path(modelchain.__file__).parent

# Each layer may import itself and the layers listed after it, nothing above:
# cli -> server, reports, cluster -> ledger, receipts, guard, integrations -> node
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
    "fl": "components",
    "node": "node",
    "ledger": "api",
    "receipts": "api",
    "guard": "api",
    "integrations": "api",
    "server": "interfaces",
    "reports": "interfaces",
    "cluster": "interfaces",
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


def _module_graph() -> dict[str, set[str]]:
    """Every module's imports of other modelchain modules, at any depth in the
    file: under TYPE_CHECKING and inside functions count (a type-only circle is
    still a circle of knowledge). ``from pkg import name`` counts as importing
    ``pkg.name`` when that is a module, else ``pkg``."""
    modules = {}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC.parent).with_suffix("")
        modules[".".join(rel.parts).removesuffix(".__init__")] = path
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                subs = {f"{target}.{a.name}" for a in node.names} & modules.keys()
                found |= subs or ({target} & modules.keys())
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names} & modules.keys()
        graph[module] = found - {module}
    return graph


def test_no_import_cycles() -> None:
    graph = _module_graph()
    # Tarjan's strongly connected components, iteratively.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_no_module_over_900_lines() -> None:
    long = [
        f"{path.relative_to(SRC)}: {n} lines"
        for path in SRC.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > 900
    ]
    assert not long, "\n".join(long)
