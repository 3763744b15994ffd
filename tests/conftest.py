"""Async tests run on anyio's pytest plugin (``anyio_mode = "auto"``).

An ``async def test_`` runs on trio unless its module chooses: tests of the
public API import ``both_backends`` (asyncio and trio), runtime tests on
virtual time import ``virtual_time`` (trio with an autojumping MockClock),
both from :mod:`tests.backends`.
"""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """The backend of async tests whose module does not choose."""
    return "trio"
