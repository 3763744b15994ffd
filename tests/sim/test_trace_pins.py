"""Recorded simulator runs: a refactor of the core must reproduce them exactly.

Each pin is one scenario run (scenario, layer, seed, loss) and what it produced:
the trace hash (every member event, suspicion, death and refutation in order)
and the message, byte and event counts (every datagram and stream, so a change
in what goes on the wire shows here even when membership ends the same).
The pins were recorded before issue 8's split of the core began; a change that
means to alter behaviour re-records them on purpose and says so in its commit::

    SWIMLIB_RECORD_TRACE_PINS=1 pytest tests/sim/test_trace_pins.py

Recording rewrites ``tests/data/trace_pins.json`` and then fails, so a
recording can never pass as a check.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from simulations.scenarios import Options, run_scenario

PINS_FILE = Path(__file__).resolve().parent.parent / "data" / "trace_pins.json"
RECORD = os.environ.get("SWIMLIB_RECORD_TRACE_PINS") == "1"

SCENARIOS = ("crash", "steady", "partition", "flaky", "leave", "churn", "bootstrap")
LAYERS = ("membership", "serf")
#: Seed and UDP loss: two clean runs and one lossy run (retransmits, indirect probes).
RUNS = ((1, 0.0), (2, 0.0), (3, 0.05))
NODES = 16
#: What a pin compares; wall time and RSS are not behaviour.
PINNED = ("trace_sha256", "messages", "bytes", "events", "trace_events", "converged",
          "suspicions", "false_positives")
#: The issue's own figure: the 50-node crash run, every deterministic field.
HEADLINE = Options(scenario="crash", nodes=50, seed=1)
NOT_DETERMINISTIC = ("wall_seconds", "setup_wall_seconds", "peak_rss_mb")


def _key(scenario: str, layer: str, seed: int, loss: float) -> str:
    return f"{scenario}/{layer}/seed={seed}/loss={loss}"


CASES = [(s, layer, seed, loss) for s in SCENARIOS for layer in LAYERS for seed, loss in RUNS]


def _run(scenario: str, layer: str, seed: int, loss: float) -> dict[str, Any]:
    opts = Options(scenario=scenario, nodes=NODES, seed=seed, loss=loss, layer=layer)
    return run_scenario(opts)


def _headline() -> dict[str, Any]:
    result = run_scenario(HEADLINE)
    return {k: v for k, v in result.items() if k not in NOT_DETERMINISTIC}


def _load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(PINS_FILE.read_text())
    return data


@pytest.mark.skipif(not RECORD, reason="set SWIMLIB_RECORD_TRACE_PINS=1 to re-record")
def test_record_pins() -> None:
    pins = {
        _key(*case): {k: result[k] for k in PINNED}
        for case in CASES
        for result in [_run(*case)]
    }
    data = {"nodes": NODES, "pins": pins, "headline": _headline()}
    PINS_FILE.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    pytest.fail(f"recorded {len(pins)} pins in {PINS_FILE}; unset the variable and re-run")


@pytest.mark.skipif(RECORD, reason="recording")
@pytest.mark.parametrize("case", CASES, ids=[_key(*c) for c in CASES])
def test_run_matches_its_pin(case: tuple[str, str, int, float]) -> None:
    pinned = _load()["pins"][_key(*case)]
    result = _run(*case)
    assert {k: result[k] for k in PINNED} == pinned


@pytest.mark.skipif(RECORD, reason="recording")
def test_crash_50_nodes_gives_the_recorded_figures() -> None:
    assert _headline() == _load()["headline"]


def test_pins_cover_every_scenario_layer_and_three_seeds() -> None:
    keys = set(_load()["pins"])
    assert keys == {_key(*c) for c in CASES}
    assert len({seed for seed, _ in RUNS}) >= 3
