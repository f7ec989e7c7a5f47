"""Writes tests/data/ledger-v1: a ledger made by modelchain before contract-set
versions (commit d500bad^, before issue 10's rule changes), holding entries whose
outcome differs under version 2. Run it with that commit's src on PYTHONPATH."""

import hashlib
import sys
from pathlib import Path

import modelchain as mc
from modelchain.core.identity import Ed25519Signer, verifier_of
from modelchain.ledger import Founder

ORIGIN = "example.org/ledger-v1"


def signer(name: str) -> Ed25519Signer:
    return Ed25519Signer(name, hashlib.sha256(name.encode()).digest())


alice, dave, bob = signer("alice"), signer("dave"), signer("bob")
out = Path(sys.argv[1])
led = mc.init(
    out,
    ORIGIN,
    alice,
    org="acme",
    members=[
        Founder(verifier_of(dave), "bank", ("admin",)),
        Founder(verifier_of(bob), "bank", ("approver:risk",)),
    ],
)


def submit(type_: str, body: dict, *signers: Ed25519Signer) -> None:
    env = led.transaction(type_, body, signers[0].name).sign(signers[0])
    for s in signers[1:]:
        env = env.with_signature(s)
    ack = led.submit(env)
    print(ack.index, type_, ack.outcome.to_json())


# version 1: approver:risk does not hold "approver" (event.record lists it)
submit("event.record", {"event": "note", "data": {}}, bob)
policy = {
    "action": "model.approve:production",
    "rule": "actor.name != model.by",
    "description": "no self-approval",
}
submit("policy.set", policy, alice, dave)
# version 1: an approval's rule sees no `model`: the rule fails to evaluate
approval = {"model": "m", "version": 1, "env": "production", "role": "risk", "comment": ""}
submit("model.approve", approval, bob)
# version 1: access.log is not in the role map and open to every member
access = {"artifact": {"kind": "dataset", "name": "d", "version": 1}, "purpose": "audit"}
submit("access.log", access, bob)
submit("event.record", {"event": "note", "data": {"n": 1}}, alice)
led.checkpoint()
led.close()
