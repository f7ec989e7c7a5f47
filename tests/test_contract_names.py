"""Transaction-type names and state keys have one home, ``contracts.types`` and
``contracts.state``: code outside the contracts uses them by name."""

from __future__ import annotations

import ast
from pathlib import Path

import modelchain
from modelchain.contracts import types

SRC = Path(modelchain.__file__).parent
TYPE_NAMES = {v for k, v in vars(types).items() if k.isupper() and isinstance(v, str)}
STATE_READS = {"get_state", "state_prefix", "_state"}


def _outside_contracts() -> list[tuple[Path, ast.AST]]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if path.parent.name != "contracts":
            found.append((path, ast.parse(path.read_text())))
    return found


def test_type_names_are_not_spelled_out() -> None:
    bad = [
        f"{path.relative_to(SRC)}:{node.lineno} {node.value!r}"
        for path, tree in _outside_contracts()
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and node.value in TYPE_NAMES
    ]
    assert not bad, "use contracts.types:\n" + "\n".join(bad)


def test_state_keys_are_not_built_by_hand() -> None:
    bad = []
    for path, tree in _outside_contracts():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in STATE_READS and isinstance(node.args[0], ast.Constant | ast.JoinedStr):
                bad.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert not bad, "use contracts.state:\n" + "\n".join(bad)
