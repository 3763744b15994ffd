"""``python -m benchmarks sim_scale --json PATH`` writes the suite's dict."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_sim_scale_suite_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "out" / "sim_scale.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "sim_scale", "--json", str(out),
         "--sizes", "10,20", "--duration", "5"],
        check=True, capture_output=True, text=True,
    )
    assert "nodes" in proc.stdout  # the table
    result = json.loads(out.read_text())
    assert result["suite"] == "sim_scale"
    assert [r["nodes"] for r in result["rows"]] == [10, 20]
    assert all(r["converged"] and r["peak_rss_mb"] > 0 for r in result["rows"])


def test_unknown_suite_is_an_error() -> None:
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "no_such_suite"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown suite" in proc.stderr
