"""Private keys at rest: PKCS#8 key files and the per-user key store.

Owns where keys live (``$MODELCHAIN_HOME/keys``), how key files are written
(encrypted PKCS#8, mode 0600, atomically) and how a named identity becomes a
``Signer`` (Ed25519) or, for a witness, a ``Cosigner`` (Ed25519 or ML-DSA-44).
Passphrases and PINs are used, never stored, logged or echoed.
"""

from __future__ import annotations

import contextlib
import errno
import getpass
import json
import os
import re
import secrets
import stat
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NoReturn

from ..core.identity import (
    ML_DSA_44_COSIGNATURE,
    Cosigner,
    Ed25519Signer,
    MlDsa44Signer,
    Signer,
    VerifierKey,
    check_key_name,
    cosigner_of,
    verifier_of,
)
from ..errors import KeyStoreError, MalformedError, NotFoundError
from ..storage.files import fsync_dir
from .pkcs11 import Pkcs11Signer
from .sources import PASSPHRASE_ENV

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "FileSigner",
    "KeyStore",
    "PassphraseSource",
    "env_or_prompt_passphrase",
    "generate_seed",
    "modelchain_home",
    "write_private_key",
]

HOME_ENV = "MODELCHAIN_HOME"
PIN_ENV = "MODELCHAIN_PKCS11_PIN"

PassphraseSource = Callable[[], bytes]
"""Returns the passphrase; called only when a key actually needs one."""

Backend = Literal["file", "pkcs11"]
Algorithm = Literal["ed25519", "ml-dsa-44"]
"""A key file identity's algorithm. ML-DSA-44 keys only cosign, as a witness."""
ALGORITHMS: tuple[Algorithm, ...] = ("ed25519", "ml-dsa-44")

_MAX_KEY_FILE = 64 * 1024
_SAFE_NAME = re.compile(r"[A-Za-z0-9._@-]+")
_ENCRYPTED_PEM = b"-----BEGIN ENCRYPTED PRIVATE KEY-----"


def modelchain_home(environ: Mapping[str, str] = os.environ) -> Path:
    """``$MODELCHAIN_HOME``, or ``~/.modelchain`` when it is unset or empty."""
    value = environ.get(HOME_ENV, "")
    if value:
        return Path(value).expanduser()
    try:
        return Path.home() / ".modelchain"
    except (KeyError, RuntimeError) as exc:
        raise KeyStoreError(f"cannot find the home directory: set {HOME_ENV}") from exc


def env_or_prompt_passphrase(
    confirm: bool = False, prompt: str = "Key passphrase: "
) -> PassphraseSource:
    """A source reading ``$MODELCHAIN_KEY_PASSPHRASE``, else prompting on the terminal.

    ``confirm`` asks twice (for a new key). Without the variable and without a
    terminal the source raises KeyStoreError instead of blocking.
    """

    def source() -> bytes:
        value = os.environ.get(PASSPHRASE_ENV)
        if value is not None:
            if not value:
                raise KeyStoreError(f"{PASSPHRASE_ENV} is set but empty")
            return value.encode()
        if sys.stdin is None or not sys.stdin.isatty():
            raise KeyStoreError(
                f"a key passphrase is needed: set {PASSPHRASE_ENV} or run in a terminal"
            )
        first = getpass.getpass(prompt)
        if not first:
            raise KeyStoreError("empty passphrase")
        if confirm and getpass.getpass("Repeat passphrase: ") != first:
            raise KeyStoreError("the passphrases do not match")
        return first.encode()

    return source


def generate_seed() -> bytes:
    """32 random bytes: a new Ed25519 or ML-DSA-44 private key seed."""
    return secrets.token_bytes(32)


def write_private_key(
    path: Path, signer_seed: bytes, passphrase: bytes | None, algorithm: Algorithm = "ed25519"
) -> None:
    """Write ``signer_seed`` as a PKCS#8 PEM key file with mode 0600.

    Encrypted with ``passphrase``; unencrypted only when it is None. The file
    appears complete or not at all, and an existing file is never replaced.
    An ML-DSA-44 key is written in its 32-byte seed form.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA44PrivateKey

    _check_algorithm(algorithm)
    if len(signer_seed) != 32:
        raise MalformedError(f"an {algorithm} private key seed is 32 bytes")
    encryption: serialization.KeySerializationEncryption
    if passphrase is None:
        encryption = serialization.NoEncryption()
    elif not passphrase:
        raise KeyStoreError("empty passphrase: pass None to store the key unencrypted")
    else:
        encryption = serialization.BestAvailableEncryption(passphrase)
    key = (
        MLDSA44PrivateKey.from_seed_bytes(signer_seed)
        if algorithm == "ml-dsa-44"
        else Ed25519PrivateKey.from_private_bytes(signer_seed)
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    _write_new_file(path, pem, 0o600)


def _check_algorithm(algorithm: str) -> None:
    if algorithm not in ALGORITHMS:
        raise MalformedError(f"unknown key algorithm {algorithm!r}: use {' or '.join(ALGORITHMS)}")


def _write_new_file(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` holding ``data``: temp file, fsync, then a no-clobber link."""
    if path.exists():
        raise KeyStoreError(f"{path} already exists; refusing to overwrite it")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
        try:
            os.fchmod(fd, mode)  # the umask may have taken bits we asked for
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        _link_no_clobber(tmp, path)
        fsync_dir(path.parent)
    except FileExistsError as exc:
        raise KeyStoreError(f"{path} already exists; refusing to overwrite it") from exc
    except OSError as exc:
        raise KeyStoreError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _link_no_clobber(src: Path, dst: Path) -> None:
    # rename() would silently replace a file created since the exists() check;
    # link() fails instead. Fall back to rename only where links are unsupported.
    try:
        os.link(src, dst)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        if dst.exists():
            raise FileExistsError(errno.EEXIST, "exists", str(dst)) from exc
        os.rename(src, dst)


def _read_private_file(path: Path) -> bytes:
    """Read a key file, refusing one that group or others can access."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError as exc:
        raise NotFoundError(f"no key file {path}") from exc
    except OSError as exc:
        raise KeyStoreError(f"cannot read key file {path}: {exc.strerror or exc}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyStoreError(f"key file {path} is not a regular file")
        if st.st_mode & 0o077:
            raise KeyStoreError(
                f"key file {path} is accessible to other users "
                f"(mode {stat.S_IMODE(st.st_mode):04o}); run: chmod 600 {path}"
            )
        if st.st_size > _MAX_KEY_FILE:
            raise KeyStoreError(f"key file {path} is too large to be a key")
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(_MAX_KEY_FILE + 1)
    except OSError as exc:
        raise KeyStoreError(f"cannot read key file {path}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)


def _load_private_key(
    name: str, path: Path, passphrase: PassphraseSource | None
) -> PrivateKeyTypes:
    """The private key in PKCS#8 file ``path``; ``passphrase`` is asked only if encrypted."""
    # cryptography is imported where a key file is read or written: read-only
    # commands never pay for it.
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    check_key_name(name)
    pem = _read_private_file(path)
    password: bytes | None = None
    if _ENCRYPTED_PEM in pem:
        if passphrase is None:
            raise KeyStoreError(f"key {name!r} in {path} is encrypted and no passphrase was given")
        password = passphrase()
    try:
        return serialization.load_pem_private_key(pem, password)
    except ValueError as exc:
        if password is not None:
            raise KeyStoreError(
                f"wrong passphrase for key {name!r} (or {path} is damaged)"
            ) from exc
        raise KeyStoreError(f"{path} is not a readable PKCS#8 private key") from exc
    except (TypeError, UnsupportedAlgorithm) as exc:
        raise KeyStoreError(f"{path} is not a readable PKCS#8 private key") from exc


def _load_ml_dsa_44(name: str, path: Path, passphrase: PassphraseSource | None) -> MlDsa44Signer:
    from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA44PrivateKey

    key = _load_private_key(name, path, passphrase)
    if not isinstance(key, MLDSA44PrivateKey):
        raise KeyStoreError(f"key {name!r} in {path} is not an ML-DSA-44 key")
    return MlDsa44Signer(name, key.private_bytes_raw())


class FileSigner:
    """An Ed25519 identity loaded from a PKCS#8 key file; the key stays in memory."""

    __slots__ = ("_inner", "_path")

    def __init__(self, inner: Ed25519Signer, path: Path) -> None:
        self._inner = inner
        self._path = path

    @classmethod
    def load(cls, name: str, path: Path, passphrase: PassphraseSource | None) -> FileSigner:
        """Load identity ``name`` from ``path``; ``passphrase`` is asked only if encrypted."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        key = _load_private_key(name, path, passphrase)
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyStoreError(f"key {name!r} in {path} is not an Ed25519 key")
        return cls(Ed25519Signer(name, key.private_bytes_raw()), path)

    @property
    def name(self) -> str:
        return self._inner.name

    @property
    def public_key(self) -> bytes:
        return self._inner.public_key

    def sign(self, message: bytes) -> bytes:
        return self._inner.sign(message)

    def __repr__(self) -> str:
        vk = verifier_of(self._inner)
        return f"FileSigner(name={vk.name!r}, key_id={vk.key_id_hex}, path={str(self._path)!r})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a signer cannot be pickled or copied: its private key stays in it")


class KeyStore:
    """Named identities under ``<home>/keys``: ``<name>.key`` or ``<name>.pkcs11.json``,
    each beside ``<name>.pub`` (the verifier key, readable without secrets).
    """

    def __init__(self, home: Path) -> None:
        self._home = home
        self._dir = home / "keys"

    @property
    def directory(self) -> Path:
        return self._dir

    def __repr__(self) -> str:
        return f"KeyStore({str(self._home)!r})"

    def _paths(self, name: str) -> tuple[Path, Path, Path]:
        _check_identity_name(name)
        return (
            self._dir / f"{name}.key",
            self._dir / f"{name}.pkcs11.json",
            self._dir / f"{name}.pub",
        )

    def exists(self, name: str) -> bool:
        return any(p.exists() for p in self._paths(name))

    def create(
        self, name: str, passphrase: bytes | None, algorithm: Algorithm = "ed25519"
    ) -> VerifierKey:
        """Create a key-file identity; ``passphrase=None`` stores it unencrypted.

        An ``ml-dsa-44`` identity is a witness's post-quantum cosigning key: its
        ``.pub`` holds the type 0x06 cosigner key, and ``signer()`` refuses it.
        """
        key_path, _, pub_path = self._paths(name)
        _check_algorithm(algorithm)
        self._check_new(name)
        self._make_dir()
        seed = generate_seed()
        write_private_key(key_path, seed, passphrase, algorithm)
        verifier = (
            cosigner_of(MlDsa44Signer(name, seed))
            if algorithm == "ml-dsa-44"
            else verifier_of(Ed25519Signer(name, seed))
        )
        try:
            _write_new_file(pub_path, (verifier.to_string() + "\n").encode(), 0o644)
        except BaseException:
            key_path.unlink(missing_ok=True)
            raise
        return verifier

    def create_pkcs11(
        self, name: str, module: str, token_label: str, pin: str, key_label: str | None = None
    ) -> VerifierKey:
        """Generate a non-extractable key pair in a PKCS#11 token and record where it is.

        The PIN is not written anywhere; ``signer()`` asks for it again.
        """
        _, config_path, pub_path = self._paths(name)
        self._check_new(name)
        label = key_label if key_label is not None else f"modelchain-{name}"
        with Pkcs11Signer.generate(name, module, token_label, pin, label) as signer:
            verifier = verifier_of(signer)
        self._make_dir()
        config = {"module": module, "token_label": token_label, "key_label": label}
        _write_new_file(config_path, (json.dumps(config, indent=2) + "\n").encode(), 0o644)
        try:
            _write_new_file(pub_path, (verifier.to_string() + "\n").encode(), 0o644)
        except BaseException:
            config_path.unlink(missing_ok=True)
            raise
        return verifier

    def verifier(self, name: str) -> VerifierKey:
        """The public verifier key of ``name``; needs no passphrase or PIN."""
        _, _, pub_path = self._paths(name)
        try:
            text = pub_path.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise NotFoundError(f"no identity {name!r} in {self._dir}") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyStoreError(f"cannot read {pub_path}: {exc}") from exc
        try:
            key = VerifierKey.from_string(text)
        except MalformedError as exc:
            raise KeyStoreError(f"{pub_path} is not a verifier key: {exc.message}") from exc
        if key.name != name:
            raise KeyStoreError(f"{pub_path} holds the key of {key.name!r}, not {name!r}")
        return key

    def backend(self, name: str) -> Backend:
        key_path, config_path, _ = self._paths(name)
        if config_path.exists():
            return "pkcs11"
        if key_path.exists():
            return "file"
        raise NotFoundError(f"no private key for identity {name!r} in {self._dir}")

    def names(self) -> list[str]:
        """The names of the identities with a ``.pub`` here, sorted."""
        if not self._dir.is_dir():
            return []
        names = (pub.name.removesuffix(".pub") for pub in self._dir.glob("*.pub"))
        return sorted(n for n in names if _is_identity_name(n))

    def list(self) -> list[tuple[VerifierKey, Backend]]:
        """Every identity with a private key here, sorted by name."""
        if not self._dir.is_dir():
            return []
        found: list[tuple[VerifierKey, Backend]] = []
        names = sorted(pub.name.removesuffix(".pub") for pub in self._dir.glob("*.pub"))
        for name in names:
            if not _is_identity_name(name):
                continue
            try:
                backend = self.backend(name)
            except NotFoundError:
                continue
            found.append((self.verifier(name), backend))
        return found

    def signer(
        self, name: str, passphrase: PassphraseSource | None = None, pin: str | None = None
    ) -> Signer:
        """Open identity ``name``; the PIN defaults to ``$MODELCHAIN_PKCS11_PIN``.

        The private key must match the recorded ``.pub``, so a swapped key file
        or token object is caught before anything is signed with it.
        """
        key_path, config_path, pub_path = self._paths(name)
        expected = self.verifier(name)
        if expected.type_byte == ML_DSA_44_COSIGNATURE:
            raise KeyStoreError(
                f"identity {name!r} is an ML-DSA-44 key, which only cosigns checkpoints "
                f"as a witness (modelchain witness serve --identity {name}); "
                "signing transactions and checkpoints needs an Ed25519 identity"
            )
        signer: FileSigner | Pkcs11Signer
        if self.backend(name) == "pkcs11":
            module, token_label, key_label = _read_pkcs11_config(config_path)
            if pin is None:
                pin = os.environ.get(PIN_ENV)
            if not pin:
                raise KeyStoreError(f"identity {name!r} is in a PKCS#11 token: set {PIN_ENV}")
            signer = Pkcs11Signer(name, module, token_label, pin, key_label)
        else:
            signer = FileSigner.load(name, key_path, passphrase)
        if signer.public_key != expected.public_key:
            if isinstance(signer, Pkcs11Signer):
                signer.close()
            raise KeyStoreError(f"the private key of {name!r} does not match {pub_path}")
        return signer

    def cosigner(
        self, name: str, passphrase: PassphraseSource | None = None, pin: str | None = None
    ) -> Cosigner:
        """Open identity ``name`` to cosign checkpoints as a witness: an ML-DSA-44
        identity (type 0x06 cosignatures) or, as ``signer()`` opens it, an Ed25519 one."""
        key_path, _, pub_path = self._paths(name)
        expected = self.verifier(name)
        if expected.type_byte != ML_DSA_44_COSIGNATURE:
            return self.signer(name, passphrase, pin)
        if self.backend(name) != "file":
            raise KeyStoreError(f"identity {name!r}: ML-DSA-44 keys are kept in key files only")
        cosigner = _load_ml_dsa_44(name, key_path, passphrase)
        if cosigner.public_key != expected.public_key:
            raise KeyStoreError(f"the private key of {name!r} does not match {pub_path}")
        return cosigner

    def _check_new(self, name: str) -> None:
        if self.exists(name):
            raise KeyStoreError(f"identity {name!r} already exists in {self._dir}")

    def _make_dir(self) -> None:
        try:
            if not self._home.exists():
                self._home.mkdir(mode=0o700, parents=True)
            if not self._dir.exists():
                self._dir.mkdir(mode=0o700)
                os.chmod(self._dir, 0o700)  # mkdir's mode is filtered by the umask
        except OSError as exc:
            raise KeyStoreError(f"cannot create {self._dir}: {exc.strerror or exc}") from exc


def _is_identity_name(name: str) -> bool:
    return _SAFE_NAME.fullmatch(name) is not None and not name.startswith(".")


def _check_identity_name(name: str) -> None:
    """Identity names are key names that are also safe, visible file names."""
    check_key_name(name)
    if not _is_identity_name(name):
        raise MalformedError(
            f"invalid identity name {name!r}: use letters, digits and . _ @ - "
            "(not starting with '.')"
        )


def _read_pkcs11_config(path: Path) -> tuple[str, str, str]:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KeyStoreError(f"cannot read {path}: {exc}") from exc
    fields = ("module", "token_label", "key_label")
    if not isinstance(config, dict) or not all(isinstance(config.get(f), str) for f in fields):
        raise KeyStoreError(f"{path} must be a JSON object with string {', '.join(fields)}")
    return config["module"], config["token_label"], config["key_label"]
