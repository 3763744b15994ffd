"""Serf's RPC ("IPC") protocol: server for the agent, client for the CLI.

``serf members -rpc-addr=...`` and ``swimlib members`` speak the same bytes,
so the stock Serf CLI (and any Serf RPC library) can drive a swimlib agent.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from swimlib.errors import RPCConnectError, RPCError
    from swimlib.rpc.api import AgentAPI, KeyQueryError, KeyResult, LogLine, QueryReply
    from swimlib.rpc.client import RPCClient
    from swimlib.rpc.server import RPCServer, serve_rpc

__all__ = [
    "AgentAPI",
    "KeyQueryError",
    "KeyResult",
    "LogLine",
    "QueryReply",
    "RPCClient",
    "RPCConnectError",
    "RPCError",
    "RPCServer",
    "serve_rpc",
]

#: Loaded on first use (PEP 562): the agent needs the server, the CLI the client.
_HOMES = {
    "AgentAPI": "swimlib.rpc.api",
    "KeyResult": "swimlib.rpc.api",
    "KeyQueryError": "swimlib.rpc.api",
    "LogLine": "swimlib.rpc.api",
    "QueryReply": "swimlib.rpc.api",
    "RPCClient": "swimlib.rpc.client",
    "RPCConnectError": "swimlib.errors",
    "RPCError": "swimlib.errors",
    "RPCServer": "swimlib.rpc.server",
    "serve_rpc": "swimlib.rpc.server",
}


def __getattr__(name: str) -> object:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'swimlib.rpc' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value
