"""How an agent reaches the network: a small seam, real sockets, and a memory network."""

from swimlib.transport.base import Address, StreamHandler, Transport
from swimlib.transport.memory import MemoryNetwork, MemoryTransport
from swimlib.transport.sockets import SocketTransport

__all__ = ["Address", "MemoryNetwork", "MemoryTransport", "SocketTransport", "StreamHandler",
           "Transport"]
