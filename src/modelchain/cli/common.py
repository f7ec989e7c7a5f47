"""What every CLI module shares: the --ledger and --json options, opening the
ledger, and finding the identity that signs."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ..core.identity import ML_DSA_44_COSIGNATURE, Signer, VerifierKey
from ..core.policy import CheckpointPolicy, as_policy
from ..errors import KeyStoreError, UsageError
from ..keys import (
    KeyStore,
    LogKeySecrets,
    PassphraseSource,
    Pkcs11Key,
    modelchain_home,
    os_keyring,
    passphrase_source,
)
from ..ledger import ledger as ledger_mod
from ..ledger.ledger import Ledger

if TYPE_CHECKING:
    from ..keys.wrap import DataKeyStore
    from ..ledger.artifacts import KeyService
    from ..storage.protocols import ArtifactStore

__all__ = [
    "IDENTITY_ENV",
    "KEK_ENV",
    "KEK_PASSPHRASE_ENV",
    "KEYSTORE_ENV",
    "LEDGER_ENV",
    "LOG_KEY_ENV",
    "LOG_KEY_PASSPHRASE_ENV",
    "LOG_KEY_PIN_ENV",
    "MLFLOW_TRACKING_URI_ENV",
    "MLFLOW_WEBHOOK_SECRET_ENV",
    "SERVER_ENV",
    "STORE_ENV",
    "VKEY_HELP",
    "NewLogKey",
    "configured_stores",
    "emit_json",
    "encrypt_option",
    "encrypt_version",
    "follow_root_options",
    "json_option",
    "key_stores_for",
    "keys_for",
    "keystore",
    "ledger_option",
    "log_key_options",
    "log_key_secrets",
    "member_key",
    "mlflow_webhook_secret",
    "name_and_version",
    "new_log_key",
    "offline_signer",
    "open_ledger",
    "passphrase_for",
    "plain_target",
    "quiet_mlflow",
    "record_copy",
    "show_storage",
    "signer_for",
    "store_for",
    "store_option",
    "stores_for",
    "trust_from",
]

F = TypeVar("F", bound=Callable[..., Any])

LEDGER_ENV = "MODELCHAIN_LEDGER"
SERVER_ENV = "MODELCHAIN_SERVER"
LOG_KEY_ENV = "MODELCHAIN_LOG_KEY"
IDENTITY_ENV = "MODELCHAIN_IDENTITY"
LOG_KEY_PASSPHRASE_ENV = "MODELCHAIN_LOG_KEY_PASSPHRASE"
LOG_KEY_PIN_ENV = "MODELCHAIN_LOG_KEY_PIN"
PKCS11_PIN_ENV = "MODELCHAIN_PKCS11_PIN"
MLFLOW_TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"  # MLflow's own variable
MLFLOW_WEBHOOK_SECRET_ENV = "MODELCHAIN_MLFLOW_WEBHOOK_SECRET"
STORE_ENV = "MODELCHAIN_STORE"  # artifact stores, read here only (pull falls back in order)
# The organisation's key-encryption key: a file, or pkcs11:token=..;object=..;module=..
KEK_ENV = "MODELCHAIN_KEK"
KEK_PASSPHRASE_ENV = "MODELCHAIN_KEK_PASSPHRASE"  # protects a KEK file (made with it, if new)
KEYSTORE_ENV = "MODELCHAIN_KEYSTORE"  # folders of wrapped data keys (new keys go to the first)


def store_option(f: F) -> F:
    """``--store`` on a register command: upload while hashing, to URL or the default."""
    return click.option(
        "--store",
        "store_url",
        is_flag=False,
        flag_value="",
        default=None,
        metavar="[URL]",
        help="Also upload the files to the artifact store while hashing them (one read): "
        f"URL, else ${STORE_ENV}, else artifacts/ in the ledger directory.",
    )(f)


def encrypt_option(f: F) -> F:
    """``--encrypt`` on a register command (with ``--store``)."""
    return click.option(
        "--encrypt",
        is_flag=True,
        help="With --store: store the files encrypted (Tink streaming AEAD, a fresh data key "
        f"wrapped by the organisation's key-encryption key: ${KEK_ENV}, else created on first "
        f"use under $MODELCHAIN_HOME/kek/) instead of in plaintext; the wrapped key goes to "
        f"${KEYSTORE_ENV}, else $MODELCHAIN_HOME/datakeys/. Pulling it then needs a grant "
        "(`modelchain store grant`).",
    )(f)


def key_stores_for(led: Ledger) -> list[DataKeyStore]:
    """The key stores ``$MODELCHAIN_KEYSTORE`` names (folders, separated by spaces), else
    ``datakeys/ORIGIN`` in the home."""
    from ..keys.wrap import DataKeyStore

    origin = led.origin.replace("/", "_")
    folders = os.environ.get(KEYSTORE_ENV, "").split() or [str(led.home / "datakeys" / origin)]
    return [DataKeyStore(f) for f in folders]


def keys_for(led: Ledger, *, create: bool = False) -> KeyService:
    """The organisation's key service: the KEK ``$MODELCHAIN_KEK`` names (a file, or
    ``pkcs11:token=LABEL;object=KEY;module=PATH`` with ``$MODELCHAIN_PKCS11_PIN``), else
    ``kek/ORIGIN.kek`` in the home (made on first use when ``create``; protected by
    ``$MODELCHAIN_KEK_PASSPHRASE`` when set); the key stores
    ``$MODELCHAIN_KEYSTORE`` names (folders, separated by spaces), else
    ``datakeys/ORIGIN`` in the home."""
    from ..keys.wrap import open_kek
    from ..ledger.artifacts import KeyService

    origin = led.origin.replace("/", "_")
    spec = os.environ.get(KEK_ENV) or str(led.home / "kek" / f"{origin}.kek")
    secret = os.environ.get(KEK_PASSPHRASE_ENV)
    kek = open_kek(spec, create=create, passphrase=secret.encode() if secret else None)
    return KeyService(kek, tuple(key_stores_for(led)))


def plain_target(target: ArtifactStore | None, encrypt: bool) -> ArtifactStore | None:
    """Where a register uploads while hashing: nowhere when the files go encrypted."""
    if encrypt and target is None:
        raise UsageError("--encrypt goes with --store: it says how the files are stored")
    return None if encrypt else target


def record_copy(
    led: Ledger, kind: str, name: str, version: int, target: ArtifactStore, signer: Signer
) -> None:
    """On a ledger that records replicas (contract-set version 8 on), record that the
    signer's organisation holds the copy a register just wrote into ``target``: each
    object was hashed from the bytes written, so it is not read again. Nothing when
    that copy is recorded already. A refusal (a role map that does not list
    artifact.replica) is a warning: the version is registered either way."""
    from ..contracts.versions import REPLICATION_VERSION
    from ..errors import RejectedError

    if led.members.contract_version < REPLICATION_VERSION:
        return
    stored = led.artifacts.stored(kind, name, version)
    # stored encrypted elsewhere before (this register encrypted nothing): check the copy
    written = stored is None or stored["location"] == target.url
    try:
        led.artifacts.record_replica(
            kind, name, version, target, signer=signer, verify=not written, again=False
        )
    except RejectedError as exc:
        click.echo(f"warning: the copy in {target.url} was not recorded: {exc.message}", err=True)


def encrypt_version(
    led: Ledger,
    kind: str,
    name: str,
    version: int,
    path: Path,
    target: ArtifactStore,
    signer: Signer,
) -> None:
    """Store a just-registered version encrypted (unless the ledger says it already is)."""
    if led.artifacts.stored(kind, name, version) is not None:
        return
    keys = keys_for(led, create=True)
    from .progress import ProgressLine

    line = ProgressLine("encrypting", "bytes")
    done = 0

    def moved(n: int) -> None:
        nonlocal done
        done += n
        line(done, manifest.size)

    try:
        _, manifest = led.artifacts.resolve(kind, name, version)
        led.artifacts.encrypt(
            kind,
            name,
            version,
            path,
            target,
            keys,
            signer=signer,
            progress=moved,
        )
    finally:
        line.close()


def show_storage(stored: dict[str, Any] | None, erased: dict[str, Any] | None) -> None:
    """The lines of ``show`` that say how a version is stored, and its erasure."""
    if stored is not None:
        click.echo(
            f"stored:   encrypted ({stored['scheme']}) in {stored['location']}, "
            f"{len(stored['objects'])} objects, key entry {stored['key']} "
            f"(entry {stored['index']}, by {stored['by']})"
        )
    if erased is not None:
        from ..core.times import human_time

        click.echo(
            f"ERASED:   at entry {erased['index']} ({human_time(erased['time'])}) by "
            f"{', '.join(erased['signers'])}: {erased['reason']}"
        )


def configured_stores() -> list[str]:
    """The stores ``$MODELCHAIN_STORE`` names, in order (separated by spaces)."""
    return os.environ.get(STORE_ENV, "").split()


def stores_for(led: Ledger, urls: tuple[str, ...] | list[str]) -> list[ArtifactStore]:
    """The stores named on the command line, else configured, else the ledger's own."""
    named = [u for u in urls if u] or configured_stores()
    if not named:
        return [led.artifact_store()]
    return [led.artifact_store(u) for u in named]


def store_for(led: Ledger, url: str | None) -> ArtifactStore | None:
    """What ``--store`` on a register command names: None without it."""
    if url is None:
        return None
    from ..storage.artifacts import FsspecArtifactStore
    from .progress import size_text

    store = stores_for(led, [url])[0]
    if isinstance(store, FsspecArtifactStore):

        def resumed(kept: int) -> None:
            click.echo(
                f"resuming an interrupted upload to {store.url}: {size_text(kept)} already "
                "there, checked against the file",
                err=True,
            )

        store.on_resume = resumed
    return store


def ledger_option(f: F) -> F:
    return click.option(
        "--ledger",
        "ledger_dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar=LEDGER_ENV,
        default=Path(".modelchain"),
        show_default="$MODELCHAIN_LEDGER or ./.modelchain",
        help="Ledger directory.",
    )(f)


def _root(ctx: click.Context) -> dict[str, Any]:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, dict) else {}


def _json_anywhere(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    # `modelchain --json CMD` as well as `modelchain CMD --json`.
    return bool(value or _root(ctx).get("json"))


def json_option(f: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, callback=_json_anywhere, help="Print JSON for scripts."
    )(f)


def _to_root(key: str) -> Callable[[click.Context, click.Parameter, str | None], None]:
    def store(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
        if value is not None:
            root = ctx.find_root()
            root.obj = {**_root(ctx), key: value}

    return store


def _flag_to_root(key: str) -> Callable[[click.Context, click.Parameter, bool], None]:
    def store(ctx: click.Context, param: click.Parameter, value: bool) -> None:
        if value:
            ctx.find_root().obj = {**_root(ctx), key: True}

    return store


def _no_json(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value or _root(ctx).get("json"):
        raise UsageError(f"`{ctx.command_path}` has no JSON output: leave out --json")


def follow_root_options(command: click.Command) -> None:
    """Let ``--server``, ``--log-key`` and ``--progress`` come after the command
    as well as before it (the root group's own options, given here they override it),
    and make ``--json`` before the command mean the command's own ``--json``;
    a command with no JSON output refuses it instead of ignoring it."""
    names = {opt for p in command.params for opt in p.opts}
    if "--server" not in names:
        command.params.append(
            click.Option(
                ["--server"],
                metavar="URL",
                expose_value=False,
                callback=_to_root("server"),
                help=f"Work against the ledger served at URL (${SERVER_ENV}).",
            )
        )
    if "--log-key" not in names:
        command.params.append(
            click.Option(
                ["--log-key"],
                metavar="VKEY",
                expose_value=False,
                callback=_to_root("log_key"),
                help="With --server: the log's key or checkpoint policy to trust.",
            )
        )
    if "--progress" not in names:
        command.params.append(
            click.Option(
                ["--progress"],
                is_flag=True,
                expose_value=False,
                callback=_flag_to_root("progress"),
                help="Draw progress on stderr even when it is not a terminal.",
            )
        )
    if "--json" not in names:
        # On a group, --json passes to its command; on a command without JSON
        # output, it is refused.
        group = isinstance(command, click.Group)
        command.params.append(
            click.Option(
                ["--json"],
                is_flag=True,
                hidden=True,
                expose_value=False,
                callback=_flag_to_root("json") if group else _no_json,
            )
        )


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


def keystore(ledger_dir: Path | None = None) -> KeyStore:
    home = modelchain_home()
    if ledger_dir is not None and home.resolve().is_relative_to(ledger_dir.resolve()):
        raise UsageError(
            f"MODELCHAIN_HOME ({home}) is inside the ledger directory {ledger_dir}: "
            "member keys must never live with the ledger"
        )
    return KeyStore(home)


def member_key(key: str, keys: KeyStore) -> VerifierKey:
    """A member's key: a verifier-key string, or the name of a local identity.

    An ML-DSA-44 identity is refused here, before anything is submitted: it
    only cosigns as a witness, and member keys are Ed25519."""
    vk = VerifierKey.from_string(key) if "+" in key else keys.verifier(key)
    if vk.type_byte == ML_DSA_44_COSIGNATURE:
        raise UsageError(
            f"{vk.name!r} is an ML-DSA-44 witness key, which only cosigns checkpoints: "
            "a member's key must be Ed25519"
        )
    return vk


def open_ledger(ledger_dir: Path, readonly: bool = False) -> Ledger:
    """The ledger a command works on: the server given by --server, else the
    embedded one in ``ledger_dir``."""
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root().obj if ctx is not None else None
    if isinstance(root, dict) and root.get("server"):
        from .. import connect

        trust = root.get("log_key")
        if trust and Path(trust).is_file():  # a checkpoint-policy file (a cluster's)
            return connect(root["server"], policy=trust_from(trust))
        return connect(root["server"], log_key=trust)
    led = ledger_mod.open(
        ledger_dir,
        readonly=readonly,
        home=modelchain_home(),
        log_key_secrets=None if readonly else log_key_secrets(),
    )
    # The organisation's KEK and key stores as the environment names them: for
    # encrypted artifacts and the vault of personal fields alike.
    led.keys = lambda: keys_for(led, create=True)
    return led


def log_key_options(f: F) -> F:
    """Where a new log key (or node key) lives: ``log.key``, encrypted on
    request or when ``$MODELCHAIN_LOG_KEY_PASSPHRASE`` is set, or a PKCS#11 token."""
    f = click.option(
        "--log-key-label",
        metavar="LABEL",
        help="The key's label in the token (default: modelchain-log-ORIGIN).",
    )(f)
    f = click.option("--log-key-token", metavar="LABEL", help="The PKCS#11 token's label.")(f)
    f = click.option(
        "--log-key-pkcs11",
        metavar="MODULE",
        help="Generate the log key in a PKCS#11 token (path to the module); the PIN comes "
        f"from ${LOG_KEY_PIN_ENV}, ${PKCS11_PIN_ENV} or a prompt.",
    )(f)
    return click.option(
        "--encrypt-log-key",
        is_flag=True,
        help=f"Encrypt log.key with a passphrase from ${LOG_KEY_PASSPHRASE_ENV} or a prompt "
        "(the default when that variable is set); every writer then needs it.",
    )(f)


@dataclass(frozen=True)
class NewLogKey:
    """A new log key as ``log_key_options`` asked for it: the passphrase to
    encrypt ``log.key`` with, or the token and PIN to generate it in, and the
    secrets that open it once made (so nothing is asked twice)."""

    passphrase: bytes | None
    pkcs11: Pkcs11Key | None
    pin: str | None
    secrets: LogKeySecrets


def new_log_key(
    origin: str, encrypt: bool, module: str | None, token: str | None, label: str | None
) -> NewLogKey:
    """Read the options of ``log_key_options`` and ask for what they need."""
    if module is None:
        if token or label:
            raise UsageError("--log-key-token and --log-key-label need --log-key-pkcs11 MODULE")
        if not (encrypt or os.environ.get(LOG_KEY_PASSPHRASE_ENV) is not None):
            return NewLogKey(None, None, None, LogKeySecrets())
        given = _log_key_passphrase(confirm=True)()
        return NewLogKey(given, None, None, LogKeySecrets(passphrase=lambda: given))
    if encrypt:
        raise UsageError("--encrypt-log-key is for a key file; a PKCS#11 key is guarded by its PIN")
    if not token:
        raise UsageError("--log-key-pkcs11 needs --log-key-token LABEL")
    pin = _log_key_pin()
    location = Pkcs11Key(module, token, label or f"modelchain-log-{origin}")
    return NewLogKey(None, location, pin.decode(), LogKeySecrets(pin=lambda: pin))


def passphrase_for(name: str, keys: KeyStore, confirm: bool = False) -> PassphraseSource:
    """Identity ``name``'s passphrase: ``$MODELCHAIN_KEY_PASSPHRASE_<NAME>``, then
    ``$MODELCHAIN_KEY_PASSPHRASE``, the OS keyring, the terminal (README, "Identities")."""
    return passphrase_source(
        name, os.environ, keyring=os_keyring(), others=keys.names, confirm=confirm
    )


def log_key_secrets() -> LogKeySecrets:
    """What unlocks a ledger's log key (or a node's key): the passphrase of an
    encrypted ``log.key`` from ``$MODELCHAIN_LOG_KEY_PASSPHRASE`` or the
    terminal; a PKCS#11 token's PIN from ``$MODELCHAIN_LOG_KEY_PIN``, else
    ``$MODELCHAIN_PKCS11_PIN``, else the terminal. Each is asked for only if
    the key needs it."""
    return LogKeySecrets(passphrase=_log_key_passphrase(), pin=_log_key_pin)


def _log_key_passphrase(confirm: bool = False) -> PassphraseSource:
    return passphrase_source(
        "log key",
        os.environ,
        label="the encrypted log key",
        own_env=LOG_KEY_PASSPHRASE_ENV,
        shared_env=None,
        confirm=confirm,
    )


def _log_key_pin() -> bytes:
    for variable in (LOG_KEY_PIN_ENV, PKCS11_PIN_ENV):
        if value := os.environ.get(variable):
            return value.encode()
    if not (sys.stdin is not None and sys.stdin.isatty()):
        raise KeyStoreError(
            f"the log key is in a PKCS#11 token: set {LOG_KEY_PIN_ENV} (or "
            f"{PKCS11_PIN_ENV}) or run in a terminal"
        )
    return str(click.prompt("Token PIN for the log key", hide_input=True)).encode()


def name_and_version(spec: str, version: int | None) -> tuple[str, int | None]:
    """A NAME argument that may carry its version (``iris@1``) beside the
    command's ``--version``: either one, or both when they agree.

    A name that is not spelled as one is passed on, so that the ledger
    answers that there is no such name (exit 3) as for any unknown name."""
    name, sep, at = spec.rpartition("@")
    if not sep:
        return spec, version
    if not (at.isascii() and at.isdigit()) or not name:
        raise UsageError(f"{spec!r}: expected NAME or NAME@VERSION, e.g. fraud@2")
    if version is not None and version != int(at):
        raise UsageError(f"{spec!r} says version {at} but --version says {version}: give one")
    return name, int(at)


def signer_for(name: str | None, led: Ledger) -> Signer:
    """The identity to sign as: --as, else $MODELCHAIN_IDENTITY, else the ledger's admin."""
    name = name or os.environ.get(IDENTITY_ENV) or led.meta("admin")
    if not name:
        raise UsageError(f"say which identity signs: --as NAME or ${IDENTITY_ENV}")
    keys = keystore(led.path)
    return keys.signer(name, passphrase_for(name, keys))


def offline_signer(name: str | None) -> Signer:
    """The identity to sign as without any ledger: --as, else $MODELCHAIN_IDENTITY.
    Only that identity's key (and passphrase) is opened."""
    name = name or os.environ.get(IDENTITY_ENV)
    if not name:
        raise UsageError(f"say which identity signs: --as NAME or ${IDENTITY_ENV}")
    keys = keystore()
    return keys.signer(name, passphrase_for(name, keys))


VKEY_HELP = (
    "The log's verifier key (`modelchain log vkey`), or a file with its checkpoint "
    "policy (`modelchain log policy`)."
)


def trust_from(vkey: str) -> CheckpointPolicy:
    """What ``--vkey`` names: a checkpoint-policy file (``modelchain log policy``),
    or the log's verifier key alone (its single-node policy)."""
    path = Path(vkey)
    if path.is_file():
        return CheckpointPolicy.parse(path.read_bytes())
    return as_policy(vkey)


def quiet_mlflow() -> None:
    """MLflow's own download bars would interleave with ours on stderr: off,
    unless the user set them. Only the CLI touches the environment."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def mlflow_webhook_secret() -> str:
    """The secret MLflow signs webhook deliveries with: from the environment
    only (an option would show it in the process list)."""
    secret = os.environ.get(MLFLOW_WEBHOOK_SECRET_ENV, "")
    if not secret:
        raise UsageError(f"set ${MLFLOW_WEBHOOK_SECRET_ENV} to the MLflow webhook's secret")
    return secret
