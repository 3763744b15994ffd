"""Lifeguard's reason to exist, measured: slow members on a lossy network.

The flaky scenario makes 5% of the nodes process every message and timer 1-3 s
late. On a clean network neither mode produces more than a stray false
positive (refutations arrive well inside the suspicion timeout), so the
comparison runs where the Lifeguard paper's effect shows: the same slow
members on a network that also loses 5% of datagrams. Same seeds, both modes.
"""

from __future__ import annotations

import pytest

from simulations.scenarios import Options, run_scenario

SEEDS = (1, 2, 3, 4)


def total(lifeguard: bool, key: str) -> int:
    return sum(run_scenario(Options(scenario="flaky", nodes=50, seed=seed, loss=0.05,
                                    lifeguard=lifeguard))[key] for seed in SEEDS)


@pytest.mark.slow
def test_lifeguard_cuts_false_positives_at_least_five_fold() -> None:
    with_lg = total(True, "false_positives")
    without = total(False, "false_positives")
    print(f"false positives over seeds {SEEDS}: lifeguard {with_lg}, classic SWIM {without}")
    assert without >= 10, "the scenario must produce false positives without Lifeguard"
    assert with_lg * 5 <= without
