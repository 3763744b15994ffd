"""``python -m benchmarks join_storms``: fresh storms of real serf and swimlib agents."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .procs import needs_serf

pytestmark = [needs_serf, pytest.mark.slow]


def test_a_small_storm_of_each_completes_and_is_recorded(tmp_path: Path) -> None:
    out = tmp_path / "storms.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "join_storms", "--json", str(out), "--size", "3",
         "--storms", "1", "--timeout", "20", "--workdir", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    for impl in ("serf", "swimlib"):
        (storm,) = result["storms"][impl]
        assert storm["complete"], (impl, storm)
        assert 0 < storm["convergence_s"] < 20
        assert storm["agents_cpu_s"] >= 0
        assert result["summary"][impl]["complete"] == 1
