"""Protocol timing and sizing, with Serf's LAN / WAN / local profiles.

All durations are float seconds. Values match memberlist's
``DefaultLANConfig`` / ``DefaultWANConfig`` / ``DefaultLocalConfig`` as used by
the ``serf agent`` (see shared/reference/memberlist-wire.md section 14).
Transport settings (bind address, keys) live elsewhere: this class is only
about how the protocol behaves, so the simulator can use it unchanged.
"""

from __future__ import annotations

from typing import Any

from swimlib.errors import ConfigError
from swimlib.records import field, record, replace

PROFILES = ("lan", "wan", "local")


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{name} must be > 0, got {value!r}")


def _non_negative(name: str, value: float) -> None:
    if value < 0:
        raise ConfigError(f"{name} must be >= 0, got {value!r}")


def _label(name: str, value: str) -> None:
    if len(value.encode()) > 255:
        raise ConfigError(f"could not use {value!r} as a {name}: too long (255 bytes at most)")


@record(kw_only=True)
class Config:
    """Everything that shapes SWIM + Lifeguard behaviour. Immutable."""

    #: How often a node probes one peer (SWIM protocol period T').
    probe_interval: float = field(default=1.0, validator=_positive)
    #: How long to wait for a direct ack before asking helpers (indirect probe).
    probe_timeout: float = field(default=0.5, validator=_positive)
    #: Number of helpers asked to ping a target that missed its direct ack.
    indirect_checks: int = field(default=3, validator=_non_negative)
    #: Minimum suspicion timeout = mult * max(1, log10 n) * probe_interval.
    suspicion_mult: int = field(default=4, validator=_positive)
    #: Maximum suspicion timeout = this * minimum (Lifeguard starts here).
    suspicion_max_timeout_mult: int = field(default=6, validator=_positive)
    #: Lifeguard local-health score is capped at this - 1.
    awareness_max_multiplier: int = field(default=8, validator=_positive)
    #: How often queued broadcasts are gossiped (besides piggybacking).
    gossip_interval: float = field(default=0.2, validator=_positive)
    #: Peers each gossip round sends to.
    gossip_nodes: int = field(default=3, validator=_non_negative)
    #: Dead nodes keep receiving gossip this long, so they can refute.
    gossip_to_the_dead_time: float = field(default=30.0, validator=_non_negative)
    #: Each broadcast is sent retransmit_mult * ceil(log10(n + 1)) times.
    retransmit_mult: int = field(default=4, validator=_positive)
    #: Full-state TCP sync period (scaled up above 32 nodes); 0 disables it.
    push_pull_interval: float = field(default=30.0, validator=_non_negative)
    #: Connect + I/O deadline for TCP exchanges (push-pull, fallback ping).
    tcp_timeout: float = field(default=10.0, validator=_positive)
    #: Largest UDP datagram we assemble (piggyback budget).
    udp_buffer_size: int = field(default=1400, validator=_positive)
    #: After this long dead, a node name may be reclaimed by a new address on anyone's
    #: word (0 = never: a dead or left node moves only once its new address answers).
    dead_node_reclaim_time: float = field(default=0.0, validator=_non_negative)
    #: Fall back to a TCP ping when UDP probes fail (memberlist default on).
    tcp_pings: bool = True
    #: LZW-compress TCP streams (push-pull), as memberlist does; off = send plain.
    enable_compression: bool = True
    #: Also compress datagrams that shrink (memberlist does, with enable_compression).
    #: Off except on WAN: in pure Python, LZW costs ~200 ns per byte each way,
    #: half an agent's CPU while a cluster churns, to save bytes but no packets
    #: on a LAN. Receivers always accept both forms.
    compress_datagrams: bool = False
    #: LZW-compress push-pull streams we send (with enable_compression). The
    #: simulator turns it off: pure-Python LZW of every push-pull would triple
    #: its wall time, and receivers accept both forms.
    compress_streams: bool = True
    #: Refuse members whose names are not letters, digits, ``-`` and ``.`` (at
    #: most 128), as Serf's ``ValidateNodeNames``. Names with control
    #: characters or invalid UTF-8 are refused whatever this says.
    validate_node_names: bool = False
    #: Lifeguard (local health awareness, dynamic suspicion, buddy, nacks).
    #: Off reproduces classic SWIM-with-suspicion, for comparison only.
    lifeguard: bool = True
    #: Profile name this config was derived from (informational).
    profile: str = "lan"

    # --- Serf layer (swimlib.cluster); Serf's defaults, the same in every profile.
    #: How long leave, force-leave and tag broadcasts may take to go out.
    broadcast_timeout: float = field(default=5.0, validator=_positive)
    #: After leaving, keep answering probes this long so peers learn we left.
    leave_propagate_delay: float = field(default=1.0, validator=_non_negative)
    #: How often failed and left members are checked for reaping.
    reap_interval: float = field(default=15.0, validator=_positive)
    #: How often we may try to reconnect to a failed member.
    reconnect_interval: float = field(default=30.0, validator=_positive)
    #: Failed members are forgotten (member-reap) after this long.
    reconnect_timeout: float = field(default=86400.0, validator=_positive)
    #: Left members are forgotten (member-reap) after this long.
    tombstone_timeout: float = field(default=86400.0, validator=_positive)
    #: Intents about not-yet-known members are kept this long.
    recent_intent_timeout: float = field(default=300.0, validator=_positive)
    #: Serf's broadcast queues are pruned to this many messages (oldest dropped).
    max_queue_depth: int = field(default=4096, validator=_positive)
    #: Default query timeout = gossip_interval * this * ceil(log10(alive + 1)).
    query_timeout_mult: int = field(default=16, validator=_positive)
    #: Encoded size limits (bytes) for queries, query responses and user events.
    query_size_limit: int = field(default=1024, validator=_positive)
    query_response_size_limit: int = field(default=1024, validator=_positive)
    user_event_size_limit: int = field(default=512, validator=_positive)
    #: Serf's ``DisableCoordinates``: no Vivaldi coordinate in our acks, none
    #: computed from theirs, and ``get-coordinate`` (``serf rtt``) answers not found.
    disable_coordinates: bool = False
    #: Cluster label (memberlist >= 0.3): sent before every datagram and stream and
    #: bound into encryption; members with another label (or none) are refused, so
    #: two clusters on one network never merge. "" = no label (memberlist 0.2).
    label: str = field(default="", validator=_label)

    def __post_init__(self) -> None:
        if self.probe_timeout > self.probe_interval:
            raise ConfigError(
                f"probe_timeout ({self.probe_timeout}) must not exceed "
                f"probe_interval ({self.probe_interval})"
            )
        if self.udp_buffer_size < 512:
            raise ConfigError("udp_buffer_size must be at least 512 bytes")

    @classmethod
    def lan(cls, **overrides: Any) -> Config:
        """Serf's default: a LAN where RTTs are well under 500 ms."""
        return cls(**overrides)

    @classmethod
    def wan(cls, **overrides: Any) -> Config:
        """Slower, more tolerant timing for links across the internet."""
        values: dict[str, Any] = dict(
            probe_interval=5.0,
            probe_timeout=3.0,
            suspicion_mult=6,
            push_pull_interval=60.0,
            tcp_timeout=30.0,
            gossip_interval=0.5,
            gossip_nodes=4,
            gossip_to_the_dead_time=60.0,
            compress_datagrams=True,
            profile="wan",
        )
        values.update(overrides)
        return cls(**values)

    @classmethod
    def local(cls, **overrides: Any) -> Config:
        """Fast timing for nodes on one host or one rack."""
        values: dict[str, Any] = dict(
            probe_interval=1.0,
            probe_timeout=0.2,
            indirect_checks=1,
            retransmit_mult=2,
            suspicion_mult=3,
            push_pull_interval=15.0,
            tcp_timeout=1.0,
            gossip_interval=0.1,
            gossip_to_the_dead_time=15.0,
            profile="local",
        )
        values.update(overrides)
        return cls(**values)

    @classmethod
    def for_profile(cls, name: str, **overrides: Any) -> Config:
        """Look a profile up by name (``lan``, ``wan``, ``local``)."""
        if name not in PROFILES:
            raise ConfigError(f"unknown profile {name!r}; expected one of {', '.join(PROFILES)}")
        factory = {"lan": cls.lan, "wan": cls.wan, "local": cls.local}[name]
        return factory(**overrides)

    def evolve(self, **changes: Any) -> Config:
        """A copy with some values changed (validated again)."""
        return replace(self, **changes)
