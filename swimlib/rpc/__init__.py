"""Serf's RPC ("IPC") protocol: server for the agent, client for the CLI.

``serf members -rpc-addr=...`` and ``swimlib members`` speak the same bytes,
so the stock Serf CLI (and any Serf RPC library) can drive a swimlib agent.
"""

from swimlib.rpc.api import AgentAPI, KeyResult, KeyringError, LogLine, QueryReply
from swimlib.rpc.client import RPCClient, RPCConnectError, RPCError
from swimlib.rpc.server import RPCServer, serve_rpc

__all__ = [
    "AgentAPI",
    "KeyResult",
    "KeyringError",
    "LogLine",
    "QueryReply",
    "RPCClient",
    "RPCConnectError",
    "RPCError",
    "RPCServer",
    "serve_rpc",
]
