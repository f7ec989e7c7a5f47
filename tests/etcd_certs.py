"""Throwaway X.509 certificates for etcd over TLS in tests, made with
``cryptography``: a CA, a certificate per etcd member (server and, towards
its peers, client) naming its IP address, and a client certificate per node."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from modelchain.cluster.etcd import MemberTLS
from modelchain.node.etcd import EtcdTLS

MEMBERS_NAME = "etcd.cluster.test"  # the name every member's certificate carries
_DAY = datetime.timedelta(days=1)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


@dataclass
class TestCA:
    """A CA in ``directory`` (``<name>-ca.pem``) that issues certificates there."""

    __test__ = False  # not a pytest test class

    directory: Path
    name: str = "etcd"

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        usage = x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True,
            crl_sign=True, encipher_only=False, decipher_only=False,
        )  # fmt: skip
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(_name(f"{self.name} test CA"))
            .issuer_name(_name(f"{self.name} test CA"))
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _DAY)
            .not_valid_after(now + _DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(usage, critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.ca = self.directory / f"{self.name}-ca.pem"
        self.ca.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))

    def _issue(
        self,
        common: str,
        ips: list[str],
        usages: list[x509.ObjectIdentifier],
        dns: list[str] | None = None,
    ) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _DAY)
            .not_valid_after(now + _DAY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        )
        if ips or dns:
            san: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
            san += [x509.DNSName(name) for name in dns or []]
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        cert_path = self.directory / f"{common}.pem"
        key_path = self.directory / f"{common}-key.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key_path, key)
        return cert_path, key_path

    def member(self, name: str, ip: str = "127.0.0.1") -> MemberTLS:
        """An etcd member's files: serves clients and peers, and is a client
        of its peers, at ``ip`` and under the name all members share."""
        usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        cert, key = self._issue(name, [ip], usages, [MEMBERS_NAME])
        return MemberTLS(self.ca, cert, key)

    def client(self, name: str) -> EtcdTLS:
        """A node's client certificate (no address: it is a client only)."""
        cert, key = self._issue(name, [], [ExtendedKeyUsageOID.CLIENT_AUTH])
        return EtcdTLS(self.ca, cert, key)
