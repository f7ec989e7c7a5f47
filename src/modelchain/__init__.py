"""modelchain: a verifiable provenance ledger for ML models and datasets.

``modelchain.open(path)`` returns an embedded ledger; ``modelchain.init`` makes
one; ``modelchain.connect(url)`` reaches one behind a server. Everything else
is reached through those objects or the CLI. These three are entry points:
they read ``$MODELCHAIN_HOME`` (and ``connect`` ``$MODELCHAIN_TOKEN``) when no
``home`` (or ``token``) is given; nothing below them reads the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .core.identity import Signer, VerifierKey
from .errors import Error
from .keys.files import modelchain_home
from .ledger import ledger as _ledger
from .ledger.ledger import Founder, Ledger
from .node.node import Ack

if TYPE_CHECKING:
    from .ledger.remote import RemoteLedger

__all__ = [
    "Ack",
    "Error",
    "Founder",
    "Ledger",
    "Signer",
    "VerifierKey",
    "connect",
    "init",
    "open",
]


def open(path: str | os.PathLike[str], **kwargs: Any) -> Ledger:
    """Open the embedded ledger in ``path`` (see ``Ledger`` for options)."""
    if kwargs.get("home") is None:
        kwargs["home"] = modelchain_home()
    return _ledger.open(path, **kwargs)


def init(
    path: str | os.PathLike[str],
    origin: str,
    admin: Signer,
    *,
    org: str = "",
    members: Sequence[Founder] = (),
    permissions: dict[str, list[str]] | None = None,
    policies: Mapping[str, Mapping[str, str]] | None = None,
    admin_roles: Sequence[str] = (),
    **kwargs: Any,
) -> Ledger:
    """Create a ledger: its log key, its store, and a genesis signed by ``admin``
    (see ``modelchain.ledger.ledger.init``; other options are ``Ledger``'s).
    Unlike `modelchain init` and `modelchain cluster genesis` it installs no
    policies unless given ``policies`` (``contracts.policy.DEFAULT_POLICIES`` is
    the set those install)."""
    if kwargs.get("home") is None:
        kwargs["home"] = modelchain_home()
    return _ledger.init(
        path,
        origin,
        admin,
        org=org,
        members=members,
        permissions=permissions,
        policies=policies,
        admin_roles=admin_roles,
        **kwargs,
    )


def connect(url: str, identity: Signer | None = None, **kwargs: Any) -> RemoteLedger:
    """The ledger served at ``url``, with the interface of ``open(path)``; every
    answer is verified against checkpoints signed by the log key (see
    ``modelchain.ledger.remote``)."""
    from .ledger.remote import TOKEN_ENV, RemoteLedger

    if kwargs.get("token") is None:
        kwargs["token"] = os.environ.get(TOKEN_ENV)
    if kwargs.get("home") is None:
        kwargs["home"] = modelchain_home()
    return RemoteLedger(url, identity=identity, **kwargs)


__version__ = "0.1.0"
