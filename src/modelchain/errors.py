"""Every error modelchain raises, in one tree.

Each class carries a stable ``code`` (in the CLI's JSON output and the HTTP
API's error bodies) and an ``exit_code``; the CLI maps exit codes in one place
(cli.main) and the server HTTP statuses in one place (server.errors.status_of)::

    Error                         base; never raised directly
    ├── UsageError                bad arguments or configuration            exit 2
    ├── NotFoundError             no such ledger, entry, identity, ...      exit 3
    │   └── ErasedError           the artifact version was erased (who, when, why)
    ├── InputError                malformed input; nothing was written      exit 4
    │   ├── MalformedError        not JSON / wrong shape
    │   │   └── Base64Error       a field that must be base64 is not
    │   ├── PayloadTypeError      DSSE payloadType is not a modelchain tx
    │   ├── OversizeError         transaction or entry too large
    │   ├── NonCanonicalError     payload is not RFC 8785 canonical JSON
    │   ├── UnknownTypeError      no contract handles this transaction type
    │   ├── RequestTimeoutError   a request body did not arrive in time (HTTP 408)
    │   └── ArtifactError         a model/dataset path that cannot be hashed as asked
    ├── RefusedError              well-formed but refused before the log    exit 5
    │   ├── UnknownKeyError       signed by a key that is not a member's
    │   ├── ReplayError           (ledger, nonce) already used
    │   ├── ClockSkewError        time outside the skew window (or the tx's own window)
    │   ├── ValidityWindowError   a tx's validity window is longer than the ledger allows
    │   ├── WrongLedgerError      transaction names another ledger
    │   └── SizeConflictError     a witness holds another tree size (HTTP 409)
    ├── VerificationError         a signature, proof or audit failed        exit 1
    │   ├── SignatureError        a signature does not verify
    │   ├── ProofError            an inclusion or consistency proof fails
    │   ├── AuditError            `log verify` found a bad entry/hash/state
    │   └── IntegrityError        bytes on disk differ from what was registered
    ├── RejectedError             logged, but a contract rejected it         exit 8
    ├── KeyStoreError             key missing, unreadable, wrong passphrase exit 6
    ├── AccessError               a read the server refuses                 exit 9
    │   ├── AuthError             no or unknown bearer token (HTTP 401)
    │   └── ForbiddenError        the token's member or scope may not (403)
    ├── UnavailableError          the ledger server cannot be reached       exit 69
    │   └── NodeStoppedError      the node stopped taking writes after a fault
    ├── ContractVersionError      the ledger runs contracts this node lacks  exit 10
    ├── PushbackError             overloaded: retry later                   exit 75
    └── StorageError              the ledger store failed                   exit 7
        ├── StorageBusyError      locked by another process: retry (HTTP 503)
        ├── StorageFullError      the disk is full: free space, retry (HTTP 507)
        └── RollbackError         the store holds less than was acknowledged
"""

from __future__ import annotations


class Error(Exception):
    """Base of every modelchain error."""

    code = "error"
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def diagnostics(self) -> str:
        """A one-paragraph explanation a user can act on."""
        return self.message


class UsageError(Error):
    code = "usage"
    exit_code = 2


class NotFoundError(Error):
    code = "not_found"
    exit_code = 3


class ErasedError(NotFoundError):
    """The artifact version was erased: its content is gone for good."""

    code = "erased"


class InputError(Error):
    code = "bad_input"
    exit_code = 4


class MalformedError(InputError):
    code = "malformed"


class Base64Error(MalformedError):
    code = "bad_base64"


class PayloadTypeError(InputError):
    code = "wrong_payload_type"


class OversizeError(InputError):
    code = "oversize"


class NonCanonicalError(InputError):
    code = "non_canonical"


class UnknownTypeError(InputError):
    code = "unknown_type"


class RequestTimeoutError(InputError):
    code = "request_timeout"


class ArtifactError(InputError):
    code = "bad_artifact"


class RefusedError(Error):
    code = "refused"
    exit_code = 5


class UnknownKeyError(RefusedError):
    code = "unknown_key"


class ReplayError(RefusedError):
    code = "replayed_nonce"


class ClockSkewError(RefusedError):
    code = "clock_skew"


class ValidityWindowError(RefusedError):
    code = "validity_window"


class WrongLedgerError(RefusedError):
    code = "wrong_ledger"


class SizeConflictError(RefusedError):
    """A witness's latest cosigned tree size is not the old size a client gave."""

    code = "size_conflict"

    def __init__(self, size: int, message: str) -> None:
        super().__init__(message)
        self.size = size


class VerificationError(Error):
    code = "verification_failed"
    exit_code = 1


class SignatureError(VerificationError):
    code = "bad_signature"


class ProofError(VerificationError):
    code = "bad_proof"


class AuditError(VerificationError):
    code = "audit_failed"

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


class IntegrityError(VerificationError):
    """Files differ from a registered manifest; ``differences`` says how."""

    code = "integrity"

    def __init__(self, message: str, differences: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.differences = differences

    def diagnostics(self) -> str:
        if not self.differences:
            return self.message
        shown = "\n  ".join(self.differences[:50])
        more = len(self.differences) - 50
        return f"{self.message}\n  {shown}" + (f"\n  ... and {more} more" if more > 0 else "")


class RejectedError(Error):
    """A contract rejected the transaction; the rejection itself is in the log."""

    code = "rejected"
    exit_code = 8

    def __init__(self, message: str, index: int, reason_code: str) -> None:
        super().__init__(message)
        self.index = index
        self.reason_code = reason_code


class KeyStoreError(Error):
    code = "key_error"
    exit_code = 6


class ContractVersionError(Error):
    """The entry is to run under a contract-set version this software does not
    know: executing it anyway could give another outcome than the nodes that do."""

    code = "unknown_contract_version"
    exit_code = 10

    def __init__(self, message: str, version: int, index: int | None = None) -> None:
        super().__init__(message)
        self.version = version
        self.index = index


class PushbackError(Error):
    code = "overloaded"
    exit_code = 75

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StorageError(Error):
    code = "storage"
    exit_code = 7


class StorageBusyError(StorageError):
    code = "storage_busy"
    retry_after = 1.0


class StorageFullError(StorageError):
    code = "storage_full"
    retry_after = 30.0


class RollbackError(StorageError):
    """The store holds fewer entries than the ledger published or acknowledged,
    or other ones: it will not be written (see README, 'Recovering a store')."""

    code = "store_rolled_back"


class AccessError(Error):
    code = "access_denied"
    exit_code = 9


class AuthError(AccessError):
    code = "unauthorized"


class ForbiddenError(AccessError):
    code = "forbidden"


class UnavailableError(Error):
    """The server did not answer (connection refused, timeout, 5xx)."""

    code = "unavailable"
    exit_code = 69


class NodeStoppedError(UnavailableError):
    """The node's writer met a fault it cannot safely go on from; reads still work."""

    code = "node_stopped"


__all__ = [
    "AccessError",
    "ArtifactError",
    "AuditError",
    "AuthError",
    "Base64Error",
    "ClockSkewError",
    "ContractVersionError",
    "ErasedError",
    "Error",
    "ForbiddenError",
    "InputError",
    "IntegrityError",
    "KeyStoreError",
    "MalformedError",
    "NodeStoppedError",
    "NonCanonicalError",
    "NotFoundError",
    "OversizeError",
    "PayloadTypeError",
    "ProofError",
    "PushbackError",
    "RefusedError",
    "RejectedError",
    "ReplayError",
    "RequestTimeoutError",
    "RollbackError",
    "SignatureError",
    "SizeConflictError",
    "StorageBusyError",
    "StorageError",
    "StorageFullError",
    "UnavailableError",
    "UnknownKeyError",
    "UnknownTypeError",
    "UsageError",
    "ValidityWindowError",
    "VerificationError",
    "WrongLedgerError",
]
