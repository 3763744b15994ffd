"""``pip install`` into a fresh virtual environment, then the asyncio example.

What a new user does: make a venv, ``pip install 'swimlib[web]'`` (here from
this checkout, built as a wheel), run the aiohttp example and ask it for
``/members``. trio is not a dependency of the library, so it is not there,
and the example runs on asyncio alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from swimlib.testing import ProcessGroup, free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_fresh_venv_installs_and_runs_the_asyncio_example(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet",
                              f"{ROOT}[web]"], capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]
    probe = subprocess.run(
        [str(python), "-c", "import importlib.util, swimlib; print(swimlib.__file__); "
         "print(importlib.util.find_spec('trio') is not None)"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, check=True)
    where, has_trio = probe.stdout.split()
    assert where.startswith(str(venv)) and has_trio == "False"

    group = ProcessGroup(tmp_path / "run")
    try:
        http = free_port()
        app = group.start("web", [str(python), str(ROOT / "docs/examples/asyncio_web.py"),
                                  "--name", "fresh", "--bind", f"127.0.0.1:{free_port()}",
                                  "--http", f"127.0.0.1:{http}"], cwd=tmp_path)
        deadline = time.monotonic() + 30
        while True:  # bounded: the port opens once the agent is up
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http}/members",
                                            timeout=5) as response:
                    members = json.load(response)
                break
            except OSError:
                assert time.monotonic() < deadline and app.alive, app.output()
                time.sleep(0.1)
        assert [(m["name"], m["status"]) for m in members] == [("fresh", "alive")]
        assert group.stop(app) == 0, app.output()
    finally:
        group.stop_all()
