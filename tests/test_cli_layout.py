"""The CLI's layout: every command is a module-level object of a module of
``modelchain.cli``, reachable by import and testable on its own."""

from __future__ import annotations

import importlib

import click
from click.testing import CliRunner

from modelchain.cli import cli
from modelchain.cli.governance import roles
from modelchain.contracts.genesis import BUILTIN_ROLES


def _walk(group: click.Group, path: str) -> list[tuple[str, click.Command]]:
    found = []
    for name, cmd in group.commands.items():
        found.append((f"{path} {name}", cmd))
        if isinstance(cmd, click.Group):
            found.extend(_walk(cmd, f"{path} {name}"))
    return found


def test_every_command_is_a_module_level_object() -> None:
    commands = _walk(cli, "modelchain")
    assert len(commands) > 70
    for path, cmd in commands:
        callback = cmd.callback
        assert callback is not None, path
        assert "<locals>" not in callback.__qualname__, f"{path} is a closure"
        module = importlib.import_module(callback.__module__)
        assert module.__name__.startswith("modelchain.cli."), path
        assert getattr(module, callback.__name__) is cmd, f"{path} is not {module.__name__}"


def test_the_root_joins_what_each_module_exports() -> None:
    for name in (
        "init",
        "identity",
        "event",
        "log",
        "registry",
        "governance",
        "lifecycle",
        "reports",
        "server",
        "witness",
    ):
        module = importlib.import_module(f"modelchain.cli.{name}")
        for attr in module.__all__:
            cmd = getattr(module, attr)
            assert cli.commands[cmd.name] is cmd


def test_a_command_runs_on_its_own() -> None:
    result = CliRunner().invoke(roles, [])
    assert result.exit_code == 0
    assert result.output.split() == list(BUILTIN_ROLES)
