"""Keep modules an agent never uses out of its memory.

trio imports, at start-up, :mod:`ssl` for its TLS streams, :mod:`hmac` for
its DTLS cookies and ``idna`` for non-ASCII host names. An agent uses none of
them (gossip is UDP and plain TCP, its encryption is AES-GCM from
``cryptography``), yet ``ssl`` and ``hmac`` map and touch OpenSSL's
libraries: about 5 MB of resident memory in every agent process, a sixth of
the whole. A deferred module stands in for each: ``import ssl`` binds the
stand-in, and the first attribute anyone reads loads the real module and
hands over its contents, so code that does use them works unchanged, only
later (the RPC server's ``hmac.compare_digest`` when a token is set, say).

Called by ``swimlib agent`` before trio is imported; a library user's process
is left alone.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

#: Modules trio imports at start-up but reads only inside functions an agent never calls.
DEFERRABLE = ("ssl", "hmac", "idna")


class DeferredModule(types.ModuleType):
    """A module placeholder that imports the real module on first attribute read."""

    def __getattr__(self, attr: str) -> Any:
        # Only called for attributes the placeholder lacks: everything but the
        # module's own dunders, so the import system's checks do not trigger it.
        real = _load_real(self)
        return getattr(real, attr)


def _load_real(placeholder: DeferredModule) -> types.ModuleType:
    name = placeholder.__name__
    if sys.modules.get(name) is placeholder:
        del sys.modules[name]
    real = importlib.import_module(name)
    # Importers that already bound the placeholder see the real contents from now on.
    placeholder.__dict__.update(real.__dict__)
    return real


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
    sys.modules[name] = placeholder
    return True


def defer_unused_modules() -> list[str]:
    """Defer every module in :data:`DEFERRABLE` not yet loaded; the names deferred."""
    return [name for name in DEFERRABLE if defer(name)]
