"""Ed25519 signing with a key that lives in a PKCS#11 token (an HSM, SoftHSM).

Owns the one boundary to python-pkcs11: every error from it becomes a
KeyStoreError here. The private key is generated in the token, marked sensitive
and non-extractable, and only ever used through C_Sign.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, cast

from ..core.identity import check_key_name, key_id, verify_ed25519
from ..errors import KeyStoreError, SignatureError

if TYPE_CHECKING:
    from pkcs11 import Session
    from pkcs11.types import SignMixin

__all__ = ["ED25519_EC_PARAMS", "Pkcs11Signer"]

ED25519_EC_PARAMS = bytes.fromhex("06032b6570")
"""CKA_EC_PARAMS for Ed25519: the DER OBJECT IDENTIFIER 1.3.101.112 (id-Ed25519)."""

_SELF_TEST = b"modelchain pkcs11 key pairing check"

# PKCS#11 logins are per process, not per session: a second C_Login on a token
# this process is already logged in to fails. To let several signers share a
# token without skipping the PIN check, remember a keyed MAC of each PIN that
# logged in (never the PIN) and compare against it.
_login_lock = threading.Lock()
_login_mac_key = secrets.token_bytes(32)
_logged_in: dict[tuple[str, str], bytes] = {}


def _pin_mac(pin: str) -> bytes:
    return hmac.new(_login_mac_key, pin.encode(), hashlib.sha256).digest()


def _require_pkcs11() -> Any:
    # Imported on first use: python-pkcs11 and asn1crypto cost ~30 ms at start-up.
    try:
        import pkcs11
    except ImportError as exc:  # the optional "pkcs11" extra is not installed
        raise KeyStoreError(
            "PKCS#11 support is not installed: install modelchain[pkcs11] (python-pkcs11)"
        ) from exc
    return pkcs11


def _open_session(module: str, token_label: str, pin: str, rw: bool) -> Session:
    """Open a logged-in session on the token labelled ``token_label``."""
    p11 = _require_pkcs11()
    try:
        lib = p11.lib(module)
    except (p11.PKCS11Error, OSError) as exc:
        raise KeyStoreError(f"cannot load PKCS#11 module {module}") from exc
    try:
        token = lib.get_token(token_label=token_label)
    except p11.NoSuchToken as exc:
        raise KeyStoreError(f"no PKCS#11 token labelled {token_label!r} in {module}") from exc
    except p11.MultipleTokensReturned as exc:
        raise KeyStoreError(f"more than one PKCS#11 token is labelled {token_label!r}") from exc
    except p11.PKCS11Error as exc:
        raise KeyStoreError(f"cannot list PKCS#11 tokens in {module}: {_describe(exc)}") from exc
    where = (module, str(token.serial))
    with _login_lock:
        try:
            session: Session = token.open(rw=rw, user_pin=pin)
        except p11.PinIncorrect as exc:
            raise KeyStoreError(f"wrong PIN for PKCS#11 token {token_label!r}") from exc
        except p11.PinLocked as exc:
            raise KeyStoreError(f"the PIN of PKCS#11 token {token_label!r} is locked") from exc
        except p11.UserAlreadyLoggedIn as exc:
            known = _logged_in.get(where)
            if known is None or not hmac.compare_digest(known, _pin_mac(pin)):
                raise KeyStoreError(
                    f"PKCS#11 token {token_label!r} is already in use in this process "
                    "with another PIN"
                ) from exc
            try:
                session = token.open(rw=rw)
            except p11.PKCS11Error as exc2:
                raise KeyStoreError(
                    f"cannot open PKCS#11 token {token_label!r}: {_describe(exc2)}"
                ) from exc2
        except p11.PKCS11Error as exc:
            raise KeyStoreError(
                f"cannot log in to PKCS#11 token {token_label!r}: {_describe(exc)}"
            ) from exc
        _logged_in[where] = _pin_mac(pin)
    return session


def _describe(exc: BaseException) -> str:
    # python-pkcs11 messages carry return-code names and search templates, never PINs.
    return type(exc).__name__ + (f": {exc}" if str(exc) else "")


def _raw_public_key(ec_point: bytes) -> bytes:
    """The 32-byte key from CKA_EC_POINT, DER OCTET STRING-wrapped or raw."""
    if len(ec_point) == 34 and ec_point[:2] == b"\x04\x20":
        return ec_point[2:]
    if len(ec_point) == 32:
        return ec_point
    raise KeyStoreError(f"token public key is {len(ec_point)} bytes: not an Ed25519 key")


class Pkcs11Signer:
    """An Ed25519 identity whose private key never leaves a PKCS#11 token.

    Holds one logged-in session; ``sign`` calls are serialised because a
    PKCS#11 session runs one operation at a time. The PIN is not kept.
    """

    def __init__(self, name: str, module: str, token_label: str, pin: str, key_label: str) -> None:
        check_key_name(name)
        p11 = _require_pkcs11()
        self._name = name
        self._token_label = token_label
        self._key_label = key_label
        self._lock = threading.Lock()
        self._session: Session | None = None
        session = _open_session(module, token_label, pin, rw=False)
        try:
            self._private = cast(
                "SignMixin",
                session.get_key(
                    object_class=p11.ObjectClass.PRIVATE_KEY,
                    key_type=p11.KeyType.EC_EDWARDS,
                    label=key_label,
                ),
            )
            key_id_attr = self._private[p11.Attribute.ID]
            public = session.get_key(
                object_class=p11.ObjectClass.PUBLIC_KEY,
                key_type=p11.KeyType.EC_EDWARDS,
                label=key_label,
                id=key_id_attr or None,
            )
            self._public = _raw_public_key(bytes(public[p11.Attribute.EC_POINT]))
        except p11.NoSuchKey as exc:
            session.close()
            raise KeyStoreError(
                f"no Ed25519 key pair labelled {key_label!r} in PKCS#11 token {token_label!r}"
            ) from exc
        except p11.MultipleObjectsReturned as exc:
            session.close()
            raise KeyStoreError(
                f"more than one key labelled {key_label!r} in PKCS#11 token {token_label!r}"
            ) from exc
        except p11.PKCS11Error as exc:
            session.close()
            raise KeyStoreError(
                f"cannot read key {key_label!r} from PKCS#11 token: {_describe(exc)}"
            ) from exc
        except BaseException:
            session.close()
            raise
        self._session = session
        try:
            verify_ed25519(self._public, _SELF_TEST, self.sign(_SELF_TEST), who=name)
        except (SignatureError, KeyStoreError) as exc:
            self.close()
            raise KeyStoreError(
                f"key {key_label!r} in PKCS#11 token {token_label!r}: the private key "
                "does not match its public key object"
            ) from exc

    @classmethod
    def generate(
        cls, name: str, module: str, token_label: str, pin: str, key_label: str
    ) -> Pkcs11Signer:
        """Generate a sensitive, non-extractable Ed25519 key pair as token objects."""
        check_key_name(name)
        p11 = _require_pkcs11()
        A = p11.Attribute
        with _open_session(module, token_label, pin, rw=True) as session:
            try:
                if any(True for _ in session.get_objects({A.LABEL: key_label})):
                    raise KeyStoreError(
                        f"PKCS#11 token {token_label!r} already holds objects labelled "
                        f"{key_label!r}; choose another key label"
                    )
                session.generate_keypair(
                    p11.KeyType.EC_EDWARDS,
                    mechanism=p11.Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
                    store=True,
                    label=key_label,
                    id=secrets.token_bytes(16),
                    public_template={A.EC_PARAMS: ED25519_EC_PARAMS, A.VERIFY: True},
                    private_template={
                        A.SENSITIVE: True,
                        A.EXTRACTABLE: False,
                        A.PRIVATE: True,
                        A.SIGN: True,
                    },
                )
            except p11.PKCS11Error as exc:
                raise KeyStoreError(
                    f"cannot generate an Ed25519 key in PKCS#11 token {token_label!r}: "
                    f"{_describe(exc)}"
                ) from exc
        return cls(name, module, token_label, pin, key_label)

    @property
    def name(self) -> str:
        return self._name

    @property
    def public_key(self) -> bytes:
        return self._public

    def sign(self, message: bytes) -> bytes:
        p11 = _require_pkcs11()
        with self._lock:
            if self._session is None:
                raise KeyStoreError(f"PKCS#11 signer {self._name!r} is closed")
            try:
                signature = bytes(self._private.sign(message, mechanism=p11.Mechanism.EDDSA))
            except p11.PKCS11Error as exc:
                raise KeyStoreError(
                    f"PKCS#11 token {self._token_label!r} failed to sign: {_describe(exc)}"
                ) from exc
        if len(signature) != 64:
            raise KeyStoreError(f"PKCS#11 token returned a {len(signature)}-byte signature")
        return signature

    def close(self) -> None:
        """Close the session; later ``sign`` calls raise KeyStoreError."""
        p11 = _require_pkcs11()
        with self._lock:
            session, self._session = self._session, None
        if session is not None:
            try:
                session.close()
            except p11.PKCS11Error as exc:
                raise KeyStoreError(f"cannot close PKCS#11 session: {_describe(exc)}") from exc

    def __enter__(self) -> Pkcs11Signer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        kid = key_id(self._name, 1, self._public).hex() if hasattr(self, "_public") else "?"
        return (
            f"Pkcs11Signer(name={self._name!r}, key_id={kid}, "
            f"token={self._token_label!r}, key_label={self._key_label!r})"
        )

    def __reduce__(self) -> NoReturn:
        raise TypeError("a PKCS#11 signer cannot be pickled or copied")
