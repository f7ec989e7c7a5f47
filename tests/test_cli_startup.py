"""Simple commands start without the heavy dependencies: behaviour, not timing
(bench/startup.py gives the figures). A command that imports cel, rich, numpy
or the server stack pays for it on every run, before any work."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = [
    "asn1crypto",
    "blake3",
    "botocore",
    "cel",
    "cryptography",
    "fastapi",
    "fsspec",
    "httpx",
    "jinja2",
    "numpy",
    "pkcs11",
    "prompt_toolkit",
    "pyarrow",
    "pydantic",
    "rich",
    "s3fs",
    "safetensors",
    "sklearn",
    "starlette",
    "tink",
    "torch",
    "typer",
    "uvicorn",
]

# Runs the CLI in-process and writes the top-level packages it imported to a file,
# whatever the command's exit status.
PROBE = """
import json, sys
from modelchain.cli import main
try:
    main(sys.argv[2:])
finally:
    with open(sys.argv[1], "w") as fh:
        json.dump(sorted({name.split(".")[0] for name in sys.modules}), fh)
"""

SIMPLE = [
    ["--help"],
    ["log", "checkpoint"],
    ["log", "show", "0"],
    ["log", "vkey"],
    ["log", "proof", "0"],
    ["member", "list"],
    ["identity", "list"],
    ["token", "list"],
    ["store", "--help"],
]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("startup")
    e = dict(os.environ)
    e.update(
        MODELCHAIN_HOME=str(tmp / "home"),
        MODELCHAIN_LEDGER=str(tmp / "ledger"),
        MODELCHAIN_KEY_PASSPHRASE="correct horse",
    )
    for name in ("MODELCHAIN_IDENTITY", "MODELCHAIN_SERVER"):
        e.pop(name, None)
    subprocess.run(
        [sys.executable, "-m", "modelchain", "init", "--origin", "ledger.example.org/startup"],
        env=e,
        check=True,
        capture_output=True,
        timeout=60,
    )
    return e


def imported_by(env: dict[str, str], args: list[str], out: Path) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(out), *args], env=env, capture_output=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return set(json.loads(out.read_text()))


def installed(names: list[str]) -> list[str]:
    return [n for n in names if importlib.util.find_spec(n) is not None]


def test_the_probe_sees_heavy_imports(env: dict[str, str], tmp_path: Path) -> None:
    # cel is a dependency, and `policy test` evaluates a rule: the probe must see it.
    assert "cel" in installed(HEAVY)
    draft = tmp_path / "tx.json"
    run = [sys.executable, "-m", "modelchain"]
    body = '{"event": "x", "data": {}}'
    subprocess.run(
        [*run, "tx", "draft", "event.record", "--body", body, "--actor", "admin", "-o", str(draft)],
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    policy = ["policy", "set", "event.record", "true"]
    subprocess.run([*run, *policy], env=env, check=True, capture_output=True, timeout=60)
    assert "cel" in imported_by(env, ["policy", "test", str(draft)], tmp_path / "mods.json")


@pytest.mark.parametrize("args", SIMPLE, ids=" ".join)
def test_simple_commands_import_nothing_heavy(
    env: dict[str, str], tmp_path: Path, args: list[str]
) -> None:
    heavy = set(installed(HEAVY)) & imported_by(env, args, tmp_path / "mods.json")
    assert not heavy, f"modelchain {' '.join(args)} imports {sorted(heavy)}"


def test_importing_the_cli_imports_nothing_heavy(env: dict[str, str]) -> None:
    code = "import json, sys, modelchain.cli; print(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, check=True, timeout=60
    )
    top = {name.split(".")[0] for name in json.loads(proc.stdout)}
    assert not set(installed(HEAVY)) & top
