"""What a server is given at start: its limits, how reads are guarded, and the
keys it holds for custodial approval. ``modelchain serve`` (the edge) builds it
from its options and environment; nothing below reads the environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..core.identity import Signer

__all__ = ["MAX_INT", "MlflowWebhook", "ServerConfig"]

# The largest number any route takes (SQLite's INTEGER): indexes, sizes,
# versions and times beyond it are a 400, never an overflow deep in the store.
MAX_INT = 2**63 - 1


@dataclass(frozen=True)
class MlflowWebhook:
    """Where MLflow model versions announced by webhook are read from, the secret
    their deliveries are signed with, and the member that records them."""

    tracking_uri: str
    secret: str = field(repr=False)
    signer: Signer = field(repr=False, compare=False)
    max_age_s: int = 300  # a delivery signed further from now than this is refused


@dataclass(frozen=True)
class ServerConfig:
    max_body: int = 8 << 20  # bytes of any request body (a batch of envelopes, a blob)
    max_batch: int = 1000  # envelopes per batch submission
    max_in_flight: int = 512  # requests being served at once; beyond: 503
    max_in_flight_per_client: int = 64  # the same, from one client address
    body_timeout: float = 30.0  # seconds a request body may take to arrive; beyond: 408
    max_scan: int = 20_000  # entries one audit-trail query may scan before it pages
    max_scans: int = 2  # audit-trail scans at once; beyond: 503
    reads: str | None = None  # "open" or "token"; None: the ledger's access.json decides

    # Members whose keys this server holds (name -> signer), for the dashboard's
    # policy-gated custodial approval; empty: it signs nothing.
    custodial: Mapping[str, Signer] = field(default_factory=dict, compare=False)

    # MLflow's registry webhooks (POST /v1/integrations/mlflow/webhook); None: off.
    mlflow: MlflowWebhook | None = field(default=None, compare=False)
