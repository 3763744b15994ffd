"""swimlib: SWIM gossip membership, wire-compatible with HashiCorp Serf/memberlist.

Library use, under asyncio or trio (anyio underneath)::

    async with swimlib.open_agent("web-1", bind=("0.0.0.0", 7946), join=["ha"]) as agent:
        async for event in agent.events():
            ...

Code that is not async uses :mod:`swimlib.blocking` (the agent on a thread).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from swimlib import blocking
    from swimlib.agent.runtime import Agent, AgentStatistics, QueryHandle, open_agent
    from swimlib.cluster.effects import QueryReply
    from swimlib.cluster.events import (
        ClusterMember,
        Event,
        EventType,
        MemberEvent,
        MemberStatus,
        QueryEvent,
        UserEvent,
    )
    from swimlib.cluster.keys import KeyResult
    from swimlib.config import Config
    from swimlib.errors import (
        AgentCrashed,
        ConfigError,
        DecodeError,
        DecryptError,
        JoinError,
        KeyQueryError,
        KeyringError,
        RPCConnectError,
        RPCError,
        SwimError,
    )
    from swimlib.transport import MemoryNetwork, SocketTransport, Transport
    from swimlib.wire.crypto import Keyring

__all__ = [
    "Agent",
    "AgentCrashed",
    "AgentStatistics",
    "ClusterMember",
    "Config",
    "ConfigError",
    "DecodeError",
    "DecryptError",
    "Event",
    "EventType",
    "JoinError",
    "KeyQueryError",
    "KeyResult",
    "Keyring",
    "KeyringError",
    "MemberEvent",
    "MemberStatus",
    "MemoryNetwork",
    "QueryEvent",
    "QueryHandle",
    "QueryReply",
    "RPCConnectError",
    "RPCError",
    "SocketTransport",
    "SwimError",
    "Transport",
    "UserEvent",
    "blocking",
    "open_agent",
]
__version__ = "0.1.0"


#: Where each public name lives. Loaded on first use (PEP 562), so that
#: ``import swimlib.config`` or the CLI's RPC commands do not pay for the
#: runtime, and ``Keyring`` does not pull in cryptography unless asked for.
_HOMES = {
    "Agent": "swimlib.agent.runtime",
    "AgentStatistics": "swimlib.agent.runtime",
    "QueryHandle": "swimlib.agent.runtime",
    "open_agent": "swimlib.agent.runtime",
    "QueryReply": "swimlib.cluster.effects",
    "ClusterMember": "swimlib.cluster.events",
    "Event": "swimlib.cluster.events",
    "EventType": "swimlib.cluster.events",
    "MemberEvent": "swimlib.cluster.events",
    "MemberStatus": "swimlib.cluster.events",
    "QueryEvent": "swimlib.cluster.events",
    "UserEvent": "swimlib.cluster.events",
    "KeyResult": "swimlib.cluster.keys",
    "Config": "swimlib.config",
    "AgentCrashed": "swimlib.errors",
    "ConfigError": "swimlib.errors",
    "DecodeError": "swimlib.errors",
    "DecryptError": "swimlib.errors",
    "JoinError": "swimlib.errors",
    "KeyQueryError": "swimlib.errors",
    "KeyringError": "swimlib.errors",
    "RPCConnectError": "swimlib.errors",
    "RPCError": "swimlib.errors",
    "SwimError": "swimlib.errors",
    "MemoryNetwork": "swimlib.transport",
    "SocketTransport": "swimlib.transport",
    "Transport": "swimlib.transport",
    "Keyring": "swimlib.wire.crypto",
}
#: Submodules reachable as attributes without an import of their own.
_SUBMODULES = {"blocking"}


def __getattr__(name: str) -> object:
    if name in _SUBMODULES:
        return importlib.import_module(f"swimlib.{name}")
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'swimlib' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES, *_SUBMODULES])
