"""A Serf member's graceful leave, as an explicit state machine.

Serf leaves in three steps, each bounded in time: gossip a leave intent
(until it has been sent enough, or ``broadcast_timeout``), then leave
memberlist (its ``dead`` about ourselves, same bound), then wait
``leave_propagate_delay`` for it to spread. Only then is the member left and
the runtime may stop it. :class:`LeaveSequence` holds the phase and its
deadline; the Serf layer calls :meth:`LeaveSequence.advance` whenever time
passes and polls again at the time it returns.
"""

from __future__ import annotations

import enum
from typing import Protocol

from swimlib.config import Config


class SerfState(enum.StrEnum):
    """A Serf member's own status (``serf info``'s ``state``)."""

    ALIVE = "alive"
    LEAVING = "leaving"
    LEFT = "left"
    SHUTDOWN = "shutdown"


class LeavePhase(enum.Enum):
    NOT_LEAVING = enum.auto()
    #: Gossiping our leave intent.
    INTENT = enum.auto()
    #: memberlist's leave sent; waiting for its broadcast to be used up.
    MEMBERLIST = enum.auto()
    #: Letting the news spread before we stop answering.
    PROPAGATE = enum.auto()
    DONE = enum.auto()


class MembershipLeave(Protocol):
    """What the sequence needs of the membership layer."""

    def leave(self, now: float) -> None: ...

    @property
    def leave_broadcast_sent(self) -> bool: ...


class LeaveSequence:
    """Phases of one graceful leave (see the module docstring)."""

    __slots__ = ("_config", "deadline", "intent_sent", "phase")

    def __init__(self, config: Config) -> None:
        self._config = config
        self.phase = LeavePhase.NOT_LEAVING
        self.deadline = 0.0
        #: Our leave intent has been gossiped enough (or there was nobody to tell).
        self.intent_sent = False

    @property
    def finished(self) -> bool:
        return self.phase is LeavePhase.DONE

    def begin(self, now: float, intent_sent: bool) -> None:
        self.phase = LeavePhase.INTENT
        self.intent_sent = intent_sent
        self.deadline = now + self._config.broadcast_timeout

    def mark_intent_sent(self) -> None:
        self.intent_sent = True

    def advance(self, now: float, membership: MembershipLeave) -> float | None:
        """Step as far as ``now`` allows; the time to look again, or None when
        the leave is over (phase DONE) or never began."""
        config = self._config
        if self.phase is LeavePhase.INTENT and (self.intent_sent or now >= self.deadline):
            membership.leave(now)
            self.phase = LeavePhase.MEMBERLIST
            self.deadline = now + config.broadcast_timeout
        if self.phase is LeavePhase.MEMBERLIST and (membership.leave_broadcast_sent
                                                    or now >= self.deadline):
            self.phase = LeavePhase.PROPAGATE
            self.deadline = now + config.leave_propagate_delay
        if self.phase is LeavePhase.PROPAGATE and now >= self.deadline:
            self.phase = LeavePhase.DONE
            return None
        if self.phase in (LeavePhase.INTENT, LeavePhase.MEMBERLIST, LeavePhase.PROPAGATE):
            return min(self.deadline, now + config.gossip_interval)
        return None
