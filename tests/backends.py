"""Backend choices for async tests: import one into a test module to apply it."""

from __future__ import annotations

from typing import Any

import pytest
import trio.testing


@pytest.fixture(name="anyio_backend", params=["asyncio", "trio"])
def both_backends(request: pytest.FixtureRequest) -> str:
    """Every test of the module runs under asyncio and under trio."""
    return str(request.param)


@pytest.fixture(name="anyio_backend")
def virtual_time() -> tuple[str, dict[str, Any]]:
    """trio with a MockClock that jumps ahead whenever every task waits: no real sleeping."""
    return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})
