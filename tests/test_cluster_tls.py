"""etcd over TLS with client certificates, as members of different
organisations run it: three members that speak only TLS to clients and to
each other and require a certificate from the cluster's CA; three nodes with
a client certificate each agree through them; a client without a
certificate, or with one from another CA, is refused at once with an error;
a node file names its TLS files relative to itself."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aetcd
import pytest
from conftest import make_signer
from etcd_certs import MEMBERS_NAME, TestCA
from test_cluster import ORIGIN, WAIT_S, Cluster

from modelchain.cluster.etcd import EtcdMember, start_members
from modelchain.cluster.node import NodeSettings
from modelchain.contracts.types import EVENT
from modelchain.core.tx import Transaction, decode_submission
from modelchain.errors import UnavailableError, UsageError
from modelchain.ledger.ledger import new_nonce
from modelchain.node.etcd import EtcdClient, EtcdSequencer, EtcdTLS
from modelchain.node.sequencer import Admitted

pytestmark = pytest.mark.skipif(
    shutil.which("etcd") is None or shutil.which("etcdctl") is None,
    reason="needs etcd and etcdctl (Debian: etcd-server, etcd-client; .ci/run installs them)",
)

CLIENT_TIMEOUT = 2.0  # the etcd client's per-call timeout in these tests


class TLSEtcd:
    """Three TLS members and the CA that issued their certificates."""

    def __init__(self, base: Path) -> None:
        self.ca = TestCA(base / "pki")
        member_tls = [self.ca.member(f"etcd{i + 1}") for i in range(3)]
        self.members = start_members(
            base / "etcd", 3, tls=member_tls, client_tls=self.ca.client("health")
        )
        self.endpoints = [m.endpoint for m in self.members]


@pytest.fixture(scope="module")
def tls_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSEtcd]:
    etcd = TLSEtcd(tmp_path_factory.mktemp("tls"))
    yield etcd
    for m in etcd.members:
        m.stop()


def test_members_take_tls_flags_only_when_given_tls(tmp_path: Path) -> None:
    plain = EtcdMember("e1", tmp_path / "e1", 2379, 2380)
    argv = plain.command("e1=http://127.0.0.1:2380", "t")
    assert not any(a.startswith("--cert-file") or "https" in a for a in argv)
    ca = TestCA(tmp_path / "pki")
    secure = EtcdMember("e1", tmp_path / "e1", 2379, 2380, tls=ca.member("e1"))
    argv = secure.command("e1=https://127.0.0.1:2380", "t")
    assert argv[argv.index("--listen-client-urls") + 1] == "https://127.0.0.1:2379"
    assert argv[argv.index("--listen-peer-urls") + 1] == "https://127.0.0.1:2380"
    for flag in ("--client-cert-auth", "--peer-client-cert-auth"):
        assert flag in argv
    for flag in ("--trusted-ca-file", "--peer-trusted-ca-file"):
        assert argv[argv.index(flag) + 1] == str(ca.ca)


def test_three_nodes_agree_through_a_tls_etcd(tls_etcd: TLSEtcd, tmp_path: Path) -> None:
    certs = {n: tls_etcd.ca.client(n) for n in ("n1", "n2", "n3")}
    cluster = Cluster(tmp_path, tls_etcd.endpoints, f"/tls/{tmp_path.name}/", tls=certs)
    try:
        futures = []
        for i in range(60):
            node = cluster.led(cluster.names[i % 3]).backend.node
            futures.append(node.submit_async(cluster.event(i)))
        acks = [f.result(WAIT_S) for f in futures]
        assert sorted(a.index for a in acks) == list(range(1, 61))
        cluster.settle(61)
        assert len({led.backend.store.head() for led in cluster.running}) == 1
        states = [dict(led.backend.store.state_items()) for led in cluster.running]
        assert states[0] == states[1] == states[2]
    finally:
        cluster.close()


def _refused(endpoints: list[str], tls: EtcdTLS | None) -> str:
    """Ask etcd through a client with ``tls``; return the error it got,
    within the client's timeout and not later."""
    client = EtcdClient(endpoints, timeout=CLIENT_TIMEOUT, tls=tls)
    try:
        started = time.monotonic()
        with pytest.raises(aetcd.exceptions.ClientError) as got:
            client.call(client.raw.get(b"/anything"), timeout=CLIENT_TIMEOUT + 5)
        assert time.monotonic() - started < CLIENT_TIMEOUT + 1
        # What a node sees when it writes: an UnavailableError naming the cause.
        signed = Transaction(ORIGIN, EVENT, "alice", new_nonce(), time.time_ns() // 10**6,
                             {"event": "refused"}).sign(make_signer("alice"))  # fmt: skip
        env, tx = decode_submission(signed.to_bytes())
        sequencer = EtcdSequencer(client, "/refused/", "intruder", retry_s=1.0)
        with pytest.raises(UnavailableError, match="etcd did not take a batch within 1s"):
            sequencer.submit([Admitted(env, tx)]).result(CLIENT_TIMEOUT + 10)
        sequencer.close()
        return str(got.value)
    finally:
        client.close()


def test_a_client_without_a_certificate_is_refused(tls_etcd: TLSEtcd) -> None:
    _refused(tls_etcd.endpoints, None)  # plain HTTP/2 to a TLS port
    # TLS that trusts the members but shows no certificate of its own.
    done = subprocess.run(
        ["etcdctl", "--endpoints", f"https://{tls_etcd.endpoints[0]}", f"--cacert={tls_etcd.ca.ca}",
         "--dial-timeout=2s", "--command-timeout=2s", "get", "/anything"],
        capture_output=True, env={**os.environ, "ETCDCTL_API": "3"}, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert b"certificate" in done.stderr or b"deadline" in done.stderr, done.stderr


def test_a_node_may_name_the_members_by_the_name_their_certificates_share(
    tls_etcd: TLSEtcd,
) -> None:
    mine = tls_etcd.ca.client("n-named")
    named = EtcdTLS(mine.ca, mine.cert, mine.key, server_name=MEMBERS_NAME)
    client = EtcdClient(tls_etcd.endpoints, timeout=CLIENT_TIMEOUT, tls=named)
    try:
        client.call(client.raw.put(b"/named", b"ok"), timeout=CLIENT_TIMEOUT + 5)
    finally:
        client.close()
    wrong = EtcdTLS(mine.ca, mine.cert, mine.key, server_name="elsewhere.example")
    assert "verif" in _refused(tls_etcd.endpoints, wrong).lower()


def test_a_certificate_from_another_ca_is_refused(tls_etcd: TLSEtcd, tmp_path: Path) -> None:
    stranger = TestCA(tmp_path / "other-pki", name="other").client("n1")
    # It trusts the members (so the members are the ones that refuse it).
    error = _refused(tls_etcd.endpoints, EtcdTLS(tls_etcd.ca.ca, stranger.cert, stranger.key))
    assert "UNAVAILABLE" in error or "handshake" in error.lower(), error
    # And a client that trusts another CA refuses the members' certificates.
    error = _refused(tls_etcd.endpoints, stranger)
    assert "CERTIFICATE_VERIFY_FAILED" in error, error


def test_a_node_file_names_its_tls_files_relative_to_itself(tmp_path: Path) -> None:
    home = tmp_path / "org-a"
    home.mkdir()
    (home / "node.toml").write_text(
        'name = "org-a"\nledger = "ledger"\n\n[etcd]\n'
        'endpoints = ["10.0.0.1:2379", "10.0.0.2:2379"]\n'
        'ca = "pki/etcd-ca.pem"\ncert = "pki/org-a.pem"\nkey = "/secrets/org-a-key.pem"\n'
    )
    settings = NodeSettings.load(home / "node.toml")
    assert settings.tls == EtcdTLS(
        home / "pki/etcd-ca.pem", home / "pki/org-a.pem", Path("/secrets/org-a-key.pem")
    )
    assert settings.ledger == home / "ledger"
    (home / "again.toml").write_text(settings.to_toml())
    assert NodeSettings.load(home / "again.toml").tls == settings.tls
    (home / "half.toml").write_text(
        'name = "org-a"\nledger = "ledger"\n\n[etcd]\n'
        'endpoints = ["10.0.0.1:2379"]\nca = "ca.pem"\n'
    )
    with pytest.raises(UsageError, match="all of ca, cert and key"):
        NodeSettings.load(home / "half.toml")


def test_a_node_opened_from_its_file_writes_through_tls(tls_etcd: TLSEtcd, tmp_path: Path) -> None:
    cert = tls_etcd.ca.client("org-a")
    home = tmp_path / "org-a"
    home.mkdir()
    for p in (cert.ca, cert.cert, cert.key):
        shutil.copy(p, home / p.name)
    (home / "node.toml").write_text(
        'name = "org-a"\nledger = "ledger"\n\n[etcd]\n'
        f"endpoints = {json.dumps(tls_etcd.endpoints)}\n"
        f'ca = "{cert.ca.name}"\ncert = "{cert.cert.name}"\nkey = "{cert.key.name}"\n'
    )
    settings = NodeSettings.load(home / "node.toml")
    assert settings.tls is not None and settings.tls.cert == home / cert.cert.name
    client = EtcdClient(settings.endpoints, timeout=CLIENT_TIMEOUT, tls=settings.tls)
    try:
        client.call(client.raw.put(b"/tls-file/probe", b"ok"), timeout=10)
        got = client.call(client.raw.get(b"/tls-file/probe"), timeout=10)
        assert got is not None and got.value == b"ok"
    finally:
        client.close()
