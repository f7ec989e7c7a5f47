"""Where a key's passphrase comes from: a variable of its own, the shared one,
the OS keyring, then the terminal. The edge hands the environment in; nothing
here reads ``os.environ``, and no passphrase is ever stored or logged.
"""

from __future__ import annotations

import getpass
import importlib
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..errors import KeyStoreError

__all__ = [
    "KEYRING_SERVICE",
    "PASSPHRASE_ENV",
    "KeyringLookup",
    "identity_passphrase_env",
    "os_keyring",
    "passphrase_source",
]

PASSPHRASE_ENV = "MODELCHAIN_KEY_PASSPHRASE"
KEYRING_SERVICE = "modelchain"

KeyringLookup = Callable[[str], "str | None"]
"""Returns the passphrase stored for a key name, or None when there is none."""

_NOT_ALNUM = re.compile(r"[^A-Z0-9]")


def identity_passphrase_env(name: str) -> str:
    """The variable holding identity ``name``'s own passphrase:
    ``MODELCHAIN_KEY_PASSPHRASE_`` then the name upper-cased, with every
    character other than A-Z and 0-9 written as ``_`` (``ci-bot@acme`` ->
    ``MODELCHAIN_KEY_PASSPHRASE_CI_BOT_ACME``)."""
    return f"{PASSPHRASE_ENV}_{_NOT_ALNUM.sub('_', name.upper())}"


def os_keyring() -> KeyringLookup:
    """A lookup in the OS keyring (service ``modelchain``, user the key name).
    ``keyring`` is optional and imported at the first lookup; where it or a
    usable backend is absent, the lookup finds nothing."""

    def lookup(name: str) -> str | None:
        try:
            # By name: keyring is an optional dependency, without type stubs here.
            keyring: Any = importlib.import_module("keyring")
            fail: Any = importlib.import_module("keyring.backends.fail")
            errors: Any = importlib.import_module("keyring.errors")
        except ImportError:
            return None
        backend: Any = keyring.get_keyring()
        if isinstance(backend, fail.Keyring) or getattr(backend, "priority", 1) <= 0:
            return None
        try:
            value = backend.get_password(KEYRING_SERVICE, name)
        except errors.KeyringError as exc:
            # A locked or unreachable keyring is a missing source, not a stop:
            # the prompt may still supply the passphrase.
            raise _KeyringUnavailable(str(exc) or type(exc).__name__) from exc
        return value if isinstance(value, str) else None

    return lookup


class _KeyringUnavailable(Exception):
    pass


def passphrase_source(
    name: str,
    environ: Mapping[str, str],
    *,
    label: str | None = None,
    own_env: str | None = None,
    shared_env: str | None = PASSPHRASE_ENV,
    keyring: KeyringLookup | None = None,
    others: Callable[[], Iterable[str]] | None = None,
    interactive: bool | None = None,
    confirm: bool = False,
) -> Callable[[], bytes]:
    """The passphrase of key ``name``, looked for when called, in this order:
    ``own_env`` (default ``identity_passphrase_env(name)``), ``shared_env``,
    the ``keyring`` under ``name``, and a terminal prompt (``confirm`` asks twice).

    ``others`` lists the names of the other keys beside it: if one of them maps
    to the same variable, that variable is ambiguous and is refused rather
    than silently unlocking the wrong key. ``interactive`` None means "if
    stdin is a terminal". Without any source the call raises KeyStoreError.
    """
    own = own_env if own_env is not None else identity_passphrase_env(name)
    what = label or f"key {name!r}"

    def source() -> bytes:
        value = environ.get(own)
        if value is not None:
            near = set(others()) if others is not None else set()
            clashing = sorted(o for o in near if o != name and identity_passphrase_env(o) == own)
            if clashing:
                raise KeyStoreError(
                    f"{own} is ambiguous: it names the passphrase of {name!r} and of "
                    f"{', '.join(repr(c) for c in clashing)} (names differ only in case or "
                    f"punctuation); unset it and use {shared_env or 'the keyring'} "
                    "or the prompt, or rename one identity"
                )
            return _non_empty(own, value)
        if shared_env is not None and (value := environ.get(shared_env)) is not None:
            return _non_empty(shared_env, value)
        keyring_note = ""
        if keyring is not None:
            try:
                stored = keyring(name)
            except _KeyringUnavailable as exc:
                stored, keyring_note = None, f" (the OS keyring could not be read: {exc})"
            if stored:
                return stored.encode()
        tty = interactive if interactive is not None else _stdin_is_terminal()
        if not tty:
            where = f"{own} or {shared_env}" if shared_env else own
            stored_in = f", store it in the OS keyring (service {KEYRING_SERVICE}, user {name})"
            raise KeyStoreError(
                f"{what} needs a passphrase: set {where}"
                f"{stored_in if keyring is not None else ''} or run in a terminal{keyring_note}"
            )
        first = getpass.getpass(f"Passphrase for {what}: ")
        if not first:
            raise KeyStoreError("empty passphrase")
        if confirm and getpass.getpass("Repeat passphrase: ") != first:
            raise KeyStoreError("the passphrases do not match")
        return first.encode()

    return source


def _non_empty(variable: str, value: str) -> bytes:
    if not value:
        raise KeyStoreError(f"{variable} is set but empty")
    return value.encode()


def _stdin_is_terminal() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()
