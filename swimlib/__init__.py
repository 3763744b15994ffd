"""swimlib: SWIM gossip membership, wire-compatible with HashiCorp Serf/memberlist.

Library use (trio)::

    async with swimlib.open_agent("web-1", bind=("0.0.0.0", 7946), join=["ha"]) as agent:
        async for event in agent.events():
            ...
"""

from swimlib.agent.runtime import Agent, JoinError, QueryHandle, open_agent
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
from swimlib.errors import ConfigError, DecodeError, DecryptError, SwimError

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


def __getattr__(name: str) -> object:
    # Keyring pulls in cryptography (several MB): load it only when asked for.
    if name == "Keyring":
        from swimlib.wire.crypto import Keyring

        return Keyring
    raise AttributeError(f"module 'swimlib' has no attribute {name!r}")
