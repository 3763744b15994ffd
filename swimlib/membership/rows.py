"""Rows of the member table, and the cache of their encoded bytes.

A push-pull sends every row; encoding them each time costs more than the
rest of a sync, so each row keeps its bytes until a field changes. A
:class:`RowCache` shares identical rows and version tuples between tables:
a simulated cluster holds the same row in thousands of tables, so the
simulator gives every node one cache; a real agent has its own.
"""

from __future__ import annotations

from typing import Any

from swimlib.membership.types import Member, MemberState
from swimlib.wire import codec
from swimlib.wire.messages import DEFAULT_VSN, PushNodeState

#: Rows a cache holds before it starts over (it is a cache: misses only cost time).
ROW_CACHE_SIZE = 1 << 15
#: Distinct version tuples a cache shares.
VSN_CACHE_SIZE = 1024


class RowCache:
    """Encoded rows and version tuples, shared by whoever holds this cache."""

    __slots__ = ("_rows", "_vsns")

    def __init__(self) -> None:
        self._rows: dict[tuple[Any, ...], bytes] = {}
        self._vsns: dict[bytes, bytes] = {DEFAULT_VSN: DEFAULT_VSN}

    def vsn(self, vsn: bytes) -> bytes:
        """One bytes object per distinct version tuple."""
        return self._vsns.setdefault(vsn, vsn) if len(self._vsns) < VSN_CACHE_SIZE else vsn

    def encoded(self, st: NodeState) -> bytes:
        """``st``'s push-pull row, encoded once per distinct content."""
        row = st.row
        if row is None:
            key = (st.name, st.addr, st.port, st.meta, st.incarnation, st.state, st.vsn)
            row = self._rows.get(key)
            if row is None:
                row = codec.encode_node_state(PushNodeState(
                    st.name, st.addr, st.port, st.meta, st.incarnation, int(st.state), st.vsn))
                if len(self._rows) >= ROW_CACHE_SIZE:
                    self._rows.clear()
                self._rows[key] = row
            st.row = row
        return row


class NodeState:
    """One row of the member table (mutable; snapshots go out as :class:`Member`)."""

    __slots__ = ("addr", "heard", "incarnation", "meta", "name", "port", "row", "state",
                 "state_change", "vsn")

    def __init__(self, name: str, addr: str, port: int, meta: bytes, vsn: bytes,
                 incarnation: int, state: MemberState, state_change: float) -> None:
        self.name = name
        self.addr = addr
        self.port = port
        self.meta = meta
        self.vsn = vsn
        self.incarnation = incarnation
        self.state = state
        self.state_change = state_change
        #: This row's encoded push-pull bytes; None whenever a field changes.
        self.row: bytes | None = None
        #: It acked one of our pings from its own address since it was last
        #: announced at a new address: see :meth:`MemberTable.random_heard_first`.
        self.heard = False

    @property
    def pmax(self) -> int:
        """Highest memberlist protocol the member understands (feature gates)."""
        return self.vsn[1] if len(self.vsn) >= 2 else 0

    @property
    def address(self) -> tuple[str, int]:
        return (self.addr, self.port)

    def dead_or_left(self) -> bool:
        return self.state >= MemberState.DEAD

    def snapshot(self) -> Member:
        return Member(self.name, self.addr, self.port, self.meta, self.incarnation,
                      self.state, self.vsn)
