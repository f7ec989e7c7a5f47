"""The one syntax of the names people choose: models, datasets, runs,
environments and members.

A name is 1-128 characters of lower-case ASCII letters, digits, ``.``, ``_`` and
``-``, starting with a letter or digit. One spelling per name: no case, space,
control, zero-width or look-alike character can make ``production`` twice.
"""

from __future__ import annotations

import re

from ..errors import MalformedError, UsageError

__all__ = ["MAX_NAME_CHARS", "NAME_SYNTAX", "check_name", "is_name", "name_version"]

MAX_NAME_CHARS = 128
NAME_SYNTAX = f"1-{MAX_NAME_CHARS} of [a-z0-9._-], starting with a letter or digit"

_NAME = re.compile(rf"[a-z0-9][a-z0-9._-]{{0,{MAX_NAME_CHARS - 1}}}\Z")


def is_name(value: object) -> bool:
    """Whether ``value`` is a string spelled as a name."""
    # re's \Z, not $: "production\n" must not pass.
    return isinstance(value, str) and _NAME.match(value) is not None


def check_name(value: object, what: str) -> None:
    """Raise MalformedError unless ``value`` is a name; ``what`` says which
    (``model name``, ``environment``...)."""
    if not is_name(value):
        shown = repr(value)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        raise MalformedError(f"{what} {shown} is not a name: {NAME_SYNTAX}")


def name_version(spec: str) -> tuple[str, int]:
    """``NAME@VERSION`` (e.g. ``fraud@2``) as a name and a version number;
    UsageError, naming the expected form, for anything else."""
    name, sep, version = spec.rpartition("@")
    if not sep or not (version.isascii() and version.isdigit()) or not name:
        raise UsageError(f"{spec!r}: expected NAME@VERSION, e.g. fraud@2")
    if not is_name(name):  # the ledger would refuse it: say so before any work
        raise UsageError(f"{spec!r}: {name!r} is not a name: {NAME_SYNTAX}")
    return name, int(version)
