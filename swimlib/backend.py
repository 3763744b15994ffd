"""Which event loop the command-line programs run on, and how to start it.

The library runs on anyio, so a program that embeds it chooses: asyncio or
trio. The commands (``swimlib agent``, ``lbadapter run``) choose for
themselves, :data:`DEFAULT_BACKEND` unless ``--backend`` or the
``SWIMLIB_BACKEND`` environment variable says otherwise. asyncio is the
default because it measures better for an agent: it starts faster (asyncio
is in the standard library and mostly imported already; trio costs about
80 ms of imports per process) and, on this path, its event loop costs no
more CPU than trio's (docs/results.md has the figures). uvloop, when
installed (the ``uvloop`` extra), runs asyncio's loop.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from swimlib.errors import ConfigError

T = TypeVar("T")

BACKENDS = ("asyncio", "trio")
DEFAULT_BACKEND = "asyncio"
#: Overrides the default for every command (not a flag given explicitly).
ENV_VAR = "SWIMLIB_BACKEND"


def choose_backend(flag: str | None = None) -> str:
    """The backend a command runs on: its flag, else $SWIMLIB_BACKEND, else the default."""
    choice = flag or os.environ.get(ENV_VAR, "").strip() or DEFAULT_BACKEND
    if choice not in BACKENDS:
        source = "--backend" if flag else ENV_VAR
        raise ConfigError(f"{source}={choice!r}: must be one of {', '.join(BACKENDS)}"
                          f" (unset: {DEFAULT_BACKEND})")
    if choice == "trio" and not _installed("trio"):
        raise ConfigError("the trio backend needs trio: pip install 'swimlib[trio]'")
    return choice


def run(main: Callable[..., Awaitable[T]], *args: Any, backend: str) -> T:
    """``anyio.run`` on ``backend``; asyncio runs on uvloop when it is installed."""
    import anyio

    options: dict[str, Any] = {}
    if backend == "asyncio" and _have_uvloop():
        options["use_uvloop"] = True
    return anyio.run(main, *args, backend=backend, backend_options=options)


def _have_uvloop() -> bool:
    return _installed("uvloop")


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
