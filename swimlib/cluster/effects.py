"""What the Serf layer hands the runtime besides the membership effects."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from swimlib.cluster import events as ev
from swimlib.membership.types import Address, Effect
from swimlib.records import record


@record
class QueryReply:
    """An ack or a response to a query we sent. ``handle`` (what :meth:`Serf.query`
    returned) tells the runtime which query; the RPC and the Python API hand the
    same object on."""

    kind: Literal["ack", "response"]
    from_node: str
    payload: bytes = b""
    handle: int = 0


@record
class QueryDone:
    """A query we sent reached its deadline; no more replies will be reported."""

    handle: int


@record
class LeaveFinished:
    """Graceful leave is complete: the runtime may shut the node down."""


@record
class KeyringChanged:
    """A key-management query changed our keyring: persist it if it has a file."""


@record
class Emit:
    """A cluster event for the application (handlers, RPC streams, Python API)."""

    event: ev.Event


ClusterEffect = Effect | QueryReply | QueryDone | LeaveFinished | KeyringChanged | Emit

#: Sends one Serf message to an address directly (memberlist's SendTo).
SendUser = Callable[[Address, bytes], None]
