"""Keep modules an agent never uses out of its memory.

The event loops import, at start-up, :mod:`ssl` for their TLS streams (asyncio,
anyio's socket module, trio), :mod:`hmac` for DTLS cookies (trio) and
``idna`` for non-ASCII host names. An agent uses none of them (gossip is UDP
and plain TCP, its encryption is AES-GCM from ``cryptography``), yet ``ssl``
and ``hmac`` map and initialise OpenSSL's libraries: about 4.4 MB of resident
memory in every agent process, a sixth of the whole, and 10 ms of its
start-up. A deferred module stands in for each: ``import ssl`` binds the
stand-in, and the first attribute anyone reads loads the real module and
hands over its contents, so code that does use them works unchanged, only
later (the RPC server's ``hmac.compare_digest`` when a token is set, say).

Four names of ``ssl`` are read while asyncio and anyio are imported, to bind
them for later (``asyncio.sslproto.SSLAgainErrors``, anyio's ``SSLContext``)
or to tell an ``ssl.SSLSocket`` from a plain socket: the stand-in serves
placeholder classes for those (no object is an instance of them, no code
raises them), and when the real module loads, the places that bound them are
bound to the real classes (:data:`SSL_REBINDS`).

Called by ``swimlib agent`` before the event loop is imported; a library
user's process is left alone.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Callable
from typing import Any

#: Modules trio imports at start-up but reads only inside functions an agent never calls.
DEFERRABLE = ("ssl", "hmac", "idna")


#: Names of ``ssl`` read during the event loops' imports, served as placeholders.
SSL_STAND_INS = ("SSLContext", "SSLSocket", "SSLWantReadError", "SSLSyscallError")
#: (module, attribute, value from the real ssl): where those names got bound early.
SSL_REBINDS: tuple[tuple[str, str, Callable[[types.ModuleType], Any]], ...] = (
    ("asyncio.sslproto", "SSLAgainErrors",
     lambda ssl: (ssl.SSLWantReadError, ssl.SSLSyscallError)),
    ("anyio.streams.tls", "SSLContext", lambda ssl: ssl.SSLContext),
)


class DeferredModule(types.ModuleType):
    """A module placeholder that imports the real module on first attribute read."""

    def __getattr__(self, attr: str) -> Any:
        # Only called for attributes the placeholder lacks. A dunder it lacks
        # (``__path__``: is it a package?) is the import system asking, not a user.
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        real = _load_real(self)
        return getattr(real, attr)


def _load_real(placeholder: DeferredModule) -> types.ModuleType:
    name = placeholder.__name__
    if sys.modules.get(name) is placeholder:
        del sys.modules[name]
    real = importlib.import_module(name)
    # Importers that already bound the placeholder see the real contents from now on.
    placeholder.__dict__.update(real.__dict__)
    if name == "ssl":
        _rebind_ssl(real)
    return real


def _ssl_placeholders(module: DeferredModule) -> None:
    """Placeholder classes for :data:`SSL_STAND_INS` (never instantiated, never raised)."""
    for name in SSL_STAND_INS:
        base = Exception if name.endswith("Error") else object
        setattr(module, name, type(name, (base,), {"__module__": "ssl (deferred)"}))


def _rebind_ssl(real: types.ModuleType) -> None:
    for module_name, attr, value in SSL_REBINDS:
        module = sys.modules.get(module_name)
        if module is not None:
            setattr(module, attr, value(real))


def defer(name: str) -> bool:
    """Put a placeholder for ``name`` in ``sys.modules``; False if already loaded or absent."""
    if name in sys.modules:
        return False
    spec = importlib.util.find_spec(name)
    if spec is None:
        return False
    placeholder = DeferredModule(name)
    placeholder.__spec__ = spec
    placeholder.__file__ = spec.origin
    if name == "ssl":
        _ssl_placeholders(placeholder)
    sys.modules[name] = placeholder
    return True


def defer_unused_modules() -> list[str]:
    """Defer every module in :data:`DEFERRABLE` not yet loaded; the names deferred."""
    return [name for name in DEFERRABLE if defer(name)]
