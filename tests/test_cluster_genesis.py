"""The genesis a cluster starts from (no etcd, no nodes: the body alone): its
checkpoint policy, its founding admin and the policies it installs."""

from __future__ import annotations

from conftest import make_signer, run_cli

from modelchain.cluster.dev import cluster_genesis_body
from modelchain.contracts.genesis import check_genesis
from modelchain.contracts.policy import DEFAULT_POLICIES
from modelchain.core.identity import Ed25519Signer
from modelchain.core.policy import CheckpointPolicy

ORIGIN = "models.genesis-test/log"


def _policy() -> CheckpointPolicy:
    nodes = {
        n: (Ed25519Signer(n, bytes([i]) * 32).public_key, None)
        for i, n in enumerate(("n1", "n2", "n3"), 1)
    }
    return CheckpointPolicy.of_cluster(ORIGIN, nodes, 2)


def test_a_cluster_genesis_installs_the_policies_it_is_given() -> None:
    admin = make_signer("alice")
    body = cluster_genesis_body(ORIGIN, _policy(), admin, "acme", policies=DEFAULT_POLICIES)
    check_genesis(body)
    assert body["policies"] == DEFAULT_POLICIES
    assert [(m["name"], m["org"], m["roles"]) for m in body["members"]] == [
        ("alice", "acme", ["admin"])
    ]
    assert "witness n1" in body["checkpoint_policy"]
    bare = cluster_genesis_body(ORIGIN, _policy(), admin, "acme")
    check_genesis(bare)
    assert "policies" not in bare


def test_cluster_genesis_installs_the_default_policies_unless_told_not_to(
    env: dict[str, str],
) -> None:
    helped = run_cli({**env, "COLUMNS": "200"}, "cluster", "genesis", "--help")
    shown = " ".join(helped.stdout.split())
    assert "--default-policies / --no-default-policies" in shown
    assert "[default: default-policies]" in shown
