"""Credit for a federated round: each participant's share, summing to one.

``example_shares`` weights by example count (the ledger recomputes these).
``leave_one_out`` and ``shapley_mc`` read a ``score(subset) -> float`` (higher
is better, e.g. accuracy on the task's held-out dataset of the model
aggregated from that subset's updates) and return raw contributions;
``shares`` turns those into shares. The rule: a negative contribution (the
participant made the model worse) is clipped to 0; the rest are divided by
their sum; where nothing is positive, every participant gets an equal share.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence

from ..errors import UsageError

__all__ = [
    "MAX_SHAPLEY_PARTICIPANTS",
    "Score",
    "cumulative",
    "example_shares",
    "leave_one_out",
    "shapley_mc",
    "shares",
]

MAX_SHAPLEY_PARTICIPANTS = 10
Score = Callable[[frozenset[str]], float]


def example_shares(examples: Mapping[str, int]) -> dict[str, float]:
    """Each participant's examples over the round's, as the ledger checks them."""
    total = sum(examples.values())
    if not examples or total <= 0 or any(n <= 0 for n in examples.values()):
        raise UsageError("example shares need a positive example count per participant")
    return {p: n / total for p, n in sorted(examples.items())}


def shares(contributions: Mapping[str, float]) -> dict[str, float]:
    """Contributions as shares summing to one (the module's clipping rule)."""
    if not contributions:
        raise UsageError("no contributions to share")
    if any(not math.isfinite(v) for v in contributions.values()):
        raise UsageError("a contribution is not finite")
    clipped = {p: max(0.0, float(v)) for p, v in sorted(contributions.items())}
    total = math.fsum(clipped.values())
    if total <= 0:
        return {p: 1 / len(clipped) for p in clipped}
    return {p: v / total for p, v in clipped.items()}


def _cached(score: Score) -> Score:
    memo: dict[frozenset[str], float] = {}

    def cached(subset: frozenset[str]) -> float:
        if subset not in memo:
            value = float(score(subset))
            if not math.isfinite(value):
                raise UsageError(f"the score of {sorted(subset)} is not finite")
            memo[subset] = value
        return memo[subset]

    return cached


def leave_one_out(participants: Iterable[str], score: Score) -> dict[str, float]:
    """score(all) - score(all but p), for each participant p."""
    everyone = frozenset(participants)
    s = _cached(score)
    full = s(everyone)
    return {p: full - s(everyone - {p}) for p in sorted(everyone)}


def shapley_mc(
    participants: Iterable[str], score: Score, *, samples: int = 200, seed: int = 0
) -> dict[str, float]:
    """Monte Carlo Shapley values: the mean marginal contribution of each
    participant over ``samples`` random orders (``random.Random(seed)``), for
    at most ten participants. With all n! orders covered it is exact."""
    order = sorted(set(participants))
    if not 0 < len(order) <= MAX_SHAPLEY_PARTICIPANTS:
        raise UsageError(f"Shapley credit is for 1..{MAX_SHAPLEY_PARTICIPANTS} participants")
    if samples < 1:
        raise UsageError("samples is at least 1")
    s = _cached(score)
    rng = random.Random(seed)
    totals = dict.fromkeys(order, 0.0)
    for _ in range(samples):
        perm = list(order)
        rng.shuffle(perm)
        before: frozenset[str] = frozenset()
        prev = s(before)
        for p in perm:
            after = before | {p}
            now = s(after)
            totals[p] += now - prev
            before, prev = after, now
    return {p: v / samples for p, v in totals.items()}


def cumulative(rounds: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Shares over several rounds: the mean of each round's shares (a round a
    participant was not in counts 0 for it), so they sum to one too."""
    if not rounds:
        return {}
    names = sorted({p for r in rounds for p in r})
    return {p: math.fsum(r.get(p, 0.0) for r in rounds) / len(rounds) for p in names}
