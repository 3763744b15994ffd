"""What a ``swimlib agent`` process loads: what it does not use stays out.

The unit under test is :mod:`swimlib.agent.deferred_imports`; each case runs in
a fresh interpreter because deferring changes ``sys.modules`` for good.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from .procs import Procs, wait_for


def _python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.parametrize("loop", ["trio", "asyncio, anyio._backends._asyncio"])
def test_the_event_loops_import_without_loading_openssl(loop: str) -> None:
    out = _python(f"""
        import sys
        from swimlib.agent.deferred_imports import defer_unused_modules
        print(defer_unused_modules())
        import {loop}, anyio._core._sockets, anyio.streams.tls, swimlib.agent.command
        print(sorted(m for m in ("_ssl", "_hashlib", "idna.core") if m in sys.modules))
    """)
    assert out.splitlines() == ["['ssl', 'hmac', 'idna']", "[]"]


def test_names_bound_from_the_stand_in_are_rebound_when_ssl_loads() -> None:
    out = _python("""
        import sys
        from swimlib.agent.deferred_imports import defer_unused_modules
        defer_unused_modules()
        import asyncio.sslproto, anyio.streams.tls
        early = asyncio.sslproto.SSLAgainErrors
        import ssl
        ctx = ssl.create_default_context()        # the real module loads here
        print(early[0] is ssl.SSLWantReadError,
              asyncio.sslproto.SSLAgainErrors == (ssl.SSLWantReadError, ssl.SSLSyscallError),
              anyio.streams.tls.SSLContext is ssl.SSLContext is type(ctx))
    """)
    assert out == "False True True"


def test_first_use_loads_the_real_module_for_every_importer() -> None:
    out = _python("""
        import sys
        from swimlib.agent.deferred_imports import defer_unused_modules
        defer_unused_modules()
        import ssl, hmac
        early = ssl                               # bound before the real import
        from ssl import PROTOCOL_TLS_CLIENT       # triggers it
        ctx = ssl.create_default_context()
        print(type(ctx).__name__, early.SSLContext is sys.modules["ssl"].SSLContext)
        print(hmac.compare_digest(b"token", b"token"), hmac.compare_digest(b"a", b"b"))
        import trio
        print(trio.socket.getaddrinfo is not None, "_ssl" in sys.modules)
    """)
    assert out.splitlines() == ["SSLContext True", "True False", "True True"]


def test_nothing_is_deferred_twice_or_when_already_loaded() -> None:
    out = _python("""
        import ssl
        from swimlib.agent.deferred_imports import defer, defer_unused_modules
        print(defer_unused_modules(), defer("no_such_module_here"))
    """)
    assert out == "['hmac', 'idna'] False"


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    p = Procs(tmp_path)
    yield p
    p.stop_all()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/maps")
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_plaintext_agent_maps_no_openssl(procs: Procs,
                                                                 backend: str) -> None:
    """No OpenSSL: ``cryptography`` (AES-GCM) loads only with a key, ``hmac``'s
    _hashlib only with an RPC token, and ssl never (no TLS anywhere); no thread
    but the main one."""
    agent = procs.swimlib("lean", "--backend", backend)
    wait_for(lambda: "agent running" in agent.output(), 15, what="agent start-up")
    maps = Path(f"/proc/{agent.pid}/maps").read_text()
    assert "_rust.abi3.so" not in maps and "_hashlib" not in maps
    assert "libssl" not in maps and "libcrypto" not in maps
    # Binding address literals (gossip and RPC) resolves nothing on a thread pool.
    assert len(list(Path(f"/proc/{agent.pid}/task").iterdir())) == 1
    assert procs.stop(agent) == 0


def test_an_agent_without_discover_never_imports_the_mdns_code(procs: Procs) -> None:
    """mDNS is loaded only with -discover (tests/integration/test_mdns_discover.py
    shows the same import log naming it when it is given)."""
    agent = procs.swimlib("plain", env={"PYTHONPROFILEIMPORTTIME": "1"})
    wait_for(lambda: "agent running" in agent.output(), 15, what="agent start-up")
    imported = agent.output()
    assert "swimlib.agent.command" in imported  # the import log is there
    assert "swimlib.mdns" not in imported and "swimlib.agent.mdns" not in imported
    assert procs.stop(agent) == 0
