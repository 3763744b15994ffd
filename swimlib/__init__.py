"""swimlib: SWIM gossip membership, wire-compatible with HashiCorp Serf/memberlist.

Library use (trio)::

    async with swimlib.open_agent("web-1", bind=("0.0.0.0", 7946), join=["ha"]) as agent:
        async for event in agent.events():
            ...
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from swimlib.agent.runtime import Agent, QueryHandle, open_agent
    from swimlib.cluster.events import (
        ClusterMember,
        Event,
        EventType,
        MemberEvent,
        MemberStatus,
        QueryEvent,
        UserEvent,
    )
    from swimlib.config import Config
    from swimlib.errors import ConfigError, DecodeError, DecryptError, JoinError, SwimError
    from swimlib.wire.crypto import Keyring

__all__ = [
    "Agent",
    "ClusterMember",
    "Config",
    "ConfigError",
    "DecodeError",
    "DecryptError",
    "Event",
    "EventType",
    "JoinError",
    "Keyring",
    "MemberEvent",
    "MemberStatus",
    "QueryEvent",
    "QueryHandle",
    "SwimError",
    "UserEvent",
    "open_agent",
]
__version__ = "0.1.0"


#: Where each public name lives. Loaded on first use (PEP 562), so that
#: ``import swimlib.config`` or the CLI's RPC commands do not pay for trio, and
#: ``Keyring`` does not pull in cryptography unless asked for.
_HOMES = {
    "Agent": "swimlib.agent.runtime",
    "JoinError": "swimlib.errors",
    "QueryHandle": "swimlib.agent.runtime",
    "open_agent": "swimlib.agent.runtime",
    "ClusterMember": "swimlib.cluster.events",
    "Event": "swimlib.cluster.events",
    "EventType": "swimlib.cluster.events",
    "MemberEvent": "swimlib.cluster.events",
    "MemberStatus": "swimlib.cluster.events",
    "QueryEvent": "swimlib.cluster.events",
    "UserEvent": "swimlib.cluster.events",
    "Config": "swimlib.config",
    "ConfigError": "swimlib.errors",
    "DecodeError": "swimlib.errors",
    "DecryptError": "swimlib.errors",
    "SwimError": "swimlib.errors",
    "Keyring": "swimlib.wire.crypto",
}


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'swimlib' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
