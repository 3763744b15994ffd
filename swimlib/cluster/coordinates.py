"""Vivaldi network coordinates, exactly as Serf's ``coordinate`` package computes them.

Every node keeps a point in an 8-dimensional Euclidean space plus a height
(the access link) and an adjustment (a non-Euclidean correction), so the
estimated round trip time between two nodes is::

    dist(a, b) = |a.vec - b.vec| + a.height + b.height       (raw distance)
    rtt(a, b)  = dist + a.adjustment + b.adjustment, if that is > 0, else dist

Each probe answered directly gives an RTT sample and the peer's coordinate
(in its ack). :meth:`CoordinateClient.update` then, as Serf's ``Client.Update``:

1. **latency filter**: the RTT used is the median of the node's last
   ``latency_filter_size`` (3) samples (Ledlie et al., "Network Coordinates in
   the Wild", NSDI 2007), riding out one-off blips;
2. **Vivaldi** (Dabek et al., SIGCOMM 2004): with ``w = e_me / (e_me + e_other)``
   and ``wrongness = |dist - rtt| / rtt``, the error becomes
   ``ce*w*wrongness + e_me*(1 - ce*w)`` (capped at ``vivaldi_error_max``) and a
   force ``cc*w*(rtt - dist)`` pushes us away from (or pulls us toward) the peer;
3. **adjustment** (Lee et al., IEEE/ACM ToN 2010): the mean of the last
   ``adjustment_window_size`` (20) values of ``rtt - raw dist``, halved;
4. **gravity** (Ledlie et al.): a pull toward the origin of ``(|c| / rho)^2``
   so the whole system does not drift;
5. a coordinate that came out NaN or infinite is **reset** to the origin
   (counted in :attr:`CoordinateClient.resets`, Serf's ``coordinate_resets``).

Forces move the vector along the unit vector from the peer to us; the height
moves by ``(h_me + h_other) * force / |a - b|``, never below ``height_min``.
Two coincident points get a *random* direction, drawn from the
``random.Random`` handed in (the only randomness; no clock is read).

The arithmetic follows Go operation by operation so results are equal to the
last bit: sums left to right (not :func:`math.fsum`, not :func:`sum`, which
compensates since Python 3.12), ``x * (1 / mag)`` rather than ``x / mag``, and
the distances Serf passes through ``time.Duration`` truncated to whole
nanoseconds (:func:`distance_ns`), RTTs too.

**Hostile input** (beyond Serf, which trusts its peers): a peer's coordinate
must have our dimension, be finite (as in Serf), and lie in
:func:`coordinate_problem`'s domain (no negative height or error, nothing
beyond :data:`MAX_COORDINATE_SECONDS`); an RTT outside 0..10 s is refused as
Serf does. An update that would carry our own coordinate out of that domain
is discarded whole, so a finite but absurd peer cannot drag our coordinate
to 1e200 (which Serf would accept, and send on). The per-node state is one
latency filter per member name, which the caller forgets when the member is
reaped (Serf's ``ForgetNode``).
"""

from __future__ import annotations

import math
import random

from swimlib.errors import ConfigError
from swimlib.records import field, record
from swimlib.wire.serf import Coordinate

__all__ = [
    "MAX_COORDINATE_SECONDS",
    "MAX_RTT",
    "Coordinate",
    "CoordinateClient",
    "VivaldiConfig",
    "apply_force",
    "coordinate_problem",
    "distance_ns",
    "distance_seconds",
    "filter_latency",
    "is_compatible",
    "is_valid",
    "new_coordinate",
    "raw_distance",
]

#: Longest RTT an update accepts (Serf's ``maxRTT``), in seconds.
MAX_RTT = 10.0
#: Largest magnitude of any part of an accepted coordinate, in seconds (ours, not
#: Serf's): ten times the longest RTT. Honest coordinates stay within about the
#: largest RTT they have seen; this only keeps absurd values (1e308) out.
MAX_COORDINATE_SECONDS = 100.0

#: Serf's ``zeroThreshold``: two points closer than this coincide; RTTs and total
#: errors below it are raised to it.
_ZERO_THRESHOLD = 1.0e-6
_NS_PER_S = 1_000_000_000
_INT64_MIN = -(1 << 63)


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{name} must be > 0, got {value!r}")


def _non_negative(name: str, value: float) -> None:
    if not value >= 0:
        raise ConfigError(f"{name} must be >= 0, got {value!r}")


@record(kw_only=True)
class VivaldiConfig:
    """Serf's ``coordinate.DefaultConfig()``; the references are in the module docstring."""

    #: Euclidean dimensions (Ledlie et al.: 8 plus a height).
    dimensionality: int = field(default=8, validator=_positive)
    #: A new node's error, and the cap on error.
    vivaldi_error_max: float = field(default=1.5, validator=_positive)
    #: How much one sample may move our confidence (Vivaldi's ce).
    vivaldi_ce: float = field(default=0.25, validator=_positive)
    #: How much one sample may move our coordinate (Vivaldi's cc).
    vivaldi_cc: float = field(default=0.25, validator=_positive)
    #: Samples kept for the adjustment term; 0 turns it off.
    adjustment_window_size: int = field(default=20, validator=_non_negative)
    #: Smallest height, in seconds.
    height_min: float = field(default=10.0e-6, validator=_non_negative)
    #: RTT samples kept per node for the median filter.
    latency_filter_size: int = field(default=3, validator=_positive)
    #: Gravity's rho, in seconds: the pull toward the origin is (|c| / rho)^2.
    gravity_rho: float = field(default=150.0, validator=_positive)


DEFAULT_CONFIG = VivaldiConfig()


# ---------------------------------------------------------------------- Go's arithmetic


def _duration_ns(seconds: float) -> int:
    """Go's ``time.Duration(seconds * 1e9)``: truncated toward zero; NaN or out of
    range gives the minimum int64, as the conversion does on amd64."""
    ns = seconds * 1.0e9
    if ns != ns or not -9.223372036854775808e18 <= ns < 9.223372036854775808e18:
        return _INT64_MIN
    return int(ns)


def _duration_seconds(ns: int) -> float:
    """Go's ``Duration.Seconds()``: whole seconds plus the remainder / 1e9."""
    sec = abs(ns) // _NS_PER_S
    nsec = abs(ns) % _NS_PER_S
    if ns < 0:
        sec, nsec = -sec, -nsec
    return float(sec) + float(nsec) / 1e9


def _magnitude(vec: list[float]) -> float:
    total = 0.0
    for x in vec:
        total += x * x
    return math.sqrt(total)


def _go_max(x: float, y: float) -> float:
    """Go's ``math.Max``: NaN wins."""
    if x != x or y != y:
        return math.nan
    return x if x > y else y


# ---------------------------------------------------------------------- coordinates


def new_coordinate(config: VivaldiConfig = DEFAULT_CONFIG) -> Coordinate:
    """Where a node starts: the origin, full error, the minimum height."""
    return Coordinate((0.0,) * config.dimensionality, config.vivaldi_error_max, 0.0,
                      config.height_min)


def is_valid(c: Coordinate) -> bool:
    """No NaN or infinity anywhere (Serf's ``IsValid``)."""
    return all(math.isfinite(x) for x in c.vec) and math.isfinite(c.error) \
        and math.isfinite(c.adjustment) and math.isfinite(c.height)


def is_compatible(a: Coordinate, b: Coordinate) -> bool:
    """Same dimension (Serf's ``IsCompatibleWith``)."""
    return len(a.vec) == len(b.vec)


def coordinate_problem(c: Coordinate, dimensionality: int = 8) -> str | None:
    """Why a coordinate is outside what we accept, or None: a drop-counter suffix.

    ``coordinate_dimension`` (not ``dimensionality`` long), ``coordinate_invalid``
    (NaN or infinite, as Serf refuses), ``coordinate_domain`` (negative height or
    error, or a part beyond :data:`MAX_COORDINATE_SECONDS`: ours).
    """
    if len(c.vec) != dimensionality:
        return "coordinate_dimension"
    if not is_valid(c):
        return "coordinate_invalid"
    limit = MAX_COORDINATE_SECONDS
    if not (0.0 <= c.height <= limit and 0.0 <= c.error <= limit
            and -limit <= c.adjustment <= limit and all(-limit <= x <= limit for x in c.vec)):
        return "coordinate_domain"
    return None


def raw_distance(a: Coordinate, b: Coordinate) -> float:
    """``|a.vec - b.vec| + a.height + b.height`` in seconds, without adjustments."""
    return _magnitude([x - y for x, y in zip(a.vec, b.vec, strict=True)]) + a.height + b.height


def distance_ns(a: Coordinate, b: Coordinate) -> int:
    """Estimated RTT in nanoseconds (Serf's ``DistanceTo``, a Go ``time.Duration``):
    the raw distance plus both adjustments when that sum is positive."""
    if not is_compatible(a, b):
        raise ValueError("coordinate dimensionality does not match")
    dist = raw_distance(a, b)
    adjusted = dist + a.adjustment + b.adjustment
    if adjusted > 0.0:
        dist = adjusted
    return _duration_ns(dist)


def distance_seconds(a: Coordinate, b: Coordinate) -> float:
    """:func:`distance_ns` as Go's ``Duration.Seconds()`` gives it."""
    return _duration_seconds(distance_ns(a, b))


def _unit_vector_at(rng: random.Random, v1: tuple[float, ...],
                    v2: tuple[float, ...]) -> tuple[list[float], float]:
    """Unit vector from ``v2`` toward ``v1`` and their distance; a random unit vector
    (distance 0) when they coincide (Serf's ``unitVectorAt``)."""
    ret = [x - y for x, y in zip(v1, v2, strict=True)]
    mag = _magnitude(ret)
    if mag > _ZERO_THRESHOLD:
        inv = 1.0 / mag
        return [x * inv for x in ret], mag
    ret = [rng.random() - 0.5 for _ in ret]
    mag = _magnitude(ret)
    if mag > _ZERO_THRESHOLD:
        inv = 1.0 / mag
        return [x * inv for x in ret], 0.0
    ret = [0.0] * len(ret)
    ret[0] = 1.0
    return ret, 0.0


def apply_force(config: VivaldiConfig, rng: random.Random, force: float, c: Coordinate,
                other: Coordinate) -> Coordinate:
    """``c`` moved by ``force`` seconds along the direction from ``other`` to ``c``
    (a negative force pulls toward ``other``), with its height scaled as Serf's
    ``ApplyForce`` does: ``h + (h + h_other) * force / |c - other|``, at least
    ``height_min``; the height stays when the points coincide."""
    if not is_compatible(c, other):
        raise ValueError("coordinate dimensionality does not match")
    unit, mag = _unit_vector_at(rng, c.vec, other.vec)
    vec = tuple(x + u * force for x, u in zip(c.vec, unit, strict=True))
    height = c.height
    if mag > _ZERO_THRESHOLD:
        height = (height + other.height) * force / mag + height
        height = _go_max(height, config.height_min)
    return Coordinate(vec, c.error, c.adjustment, height)


def filter_latency(samples: list[float], rtt: float, size: int) -> tuple[list[float], float]:
    """Serf's ``latencyFilter``: the last ``size`` samples with ``rtt`` appended (a
    new list), and their median (the upper one of an even count)."""
    kept = [*samples, rtt][-size:]
    return kept, sorted(kept)[len(kept) // 2]


# ---------------------------------------------------------------------- the client


class CoordinateClient:
    """Our coordinate and what updates it (Serf's ``coordinate.Client``).

    Sans-IO: :meth:`update` takes the RTT the caller measured; the only
    randomness is ``rng``. Refusals are returned as a drop-counter suffix,
    never raised.
    """

    def __init__(self, rng: random.Random, config: VivaldiConfig = DEFAULT_CONFIG) -> None:
        self.config = config
        self._rng = rng
        self._coord = new_coordinate(config)
        self._origin = new_coordinate(config)
        self._adjustment_index = 0
        self._adjustment_samples = [0.0] * config.adjustment_window_size
        #: Last RTT samples (seconds) per node name, oldest first.
        self._latency: dict[str, list[float]] = {}
        #: Times our coordinate went invalid and was reset (Serf's ``Stats().Resets``).
        self.resets = 0
        #: Updates with an RTT of exactly zero (accepted, as Serf does; it counts them).
        self.zero_rtts = 0

    @property
    def coordinate(self) -> Coordinate:
        return self._coord

    def set_coordinate(self, c: Coordinate) -> str | None:
        """Force our coordinate (tests, restores); a problem suffix if refused."""
        problem = coordinate_problem(c, self.config.dimensionality)
        if problem is None:
            self._coord = c
        return problem

    def forget(self, node: str) -> None:
        """Drop the node's latency samples (Serf's ``ForgetNode``, on reap)."""
        self._latency.pop(node, None)

    def tracked_nodes(self) -> int:
        """How many nodes have latency samples (bounded by the member list)."""
        return len(self._latency)

    def distance_to(self, other: Coordinate) -> float:
        """Estimated RTT from us to ``other``, in seconds (Go Duration semantics)."""
        return distance_seconds(self._coord, other)

    def update(self, node: str, other: Coordinate, rtt: float) -> str | None:
        """Fold one observation in: ``node`` answered us in ``rtt`` seconds and says it
        sits at ``other``. None when applied; otherwise why not (nothing changed):
        ``coordinate_dimension``, ``coordinate_invalid``, ``coordinate_domain``,
        ``coordinate_rtt`` (outside 0..10 s), ``coordinate_diverged`` (the result
        would leave the domain)."""
        problem = coordinate_problem(other, self.config.dimensionality)
        if problem is not None:
            return problem
        if not 0.0 <= rtt <= MAX_RTT:  # also refuses NaN
            return "coordinate_rtt"
        rtt_ns = _duration_ns(rtt)  # memberlist measures a time.Duration
        if rtt_ns == 0:
            self.zero_rtts += 1

        samples, rtt_seconds = filter_latency(self._latency.get(node, []),
                                              _duration_seconds(rtt_ns),
                                              self.config.latency_filter_size)

        coord = self._vivaldi(self._coord, other, rtt_seconds)
        adjustment_samples = self._adjustment_samples
        adjustment_index = self._adjustment_index
        window = self.config.adjustment_window_size
        if window:
            adjustment_samples = adjustment_samples[:]
            adjustment_samples[adjustment_index] = rtt_seconds - raw_distance(coord, other)
            adjustment_index = (adjustment_index + 1) % window
            total = 0.0
            for sample in adjustment_samples:
                total += sample
            coord = Coordinate(coord.vec, coord.error, total / (2.0 * window), coord.height)
        coord = self._gravity(coord)

        if not is_valid(coord):
            self.resets += 1
            coord = new_coordinate(self.config)
        elif coordinate_problem(coord, self.config.dimensionality) is not None:
            return "coordinate_diverged"
        self._latency[node] = samples
        self._adjustment_samples = adjustment_samples
        self._adjustment_index = adjustment_index
        self._coord = coord
        return None

    def _vivaldi(self, coord: Coordinate, other: Coordinate, rtt: float) -> Coordinate:
        """Serf's ``updateVivaldi``: move the error and the point toward agreement."""
        config = self.config
        dist = _duration_seconds(distance_ns(coord, other))
        if rtt < _ZERO_THRESHOLD:
            rtt = _ZERO_THRESHOLD
        wrongness = abs(dist - rtt) / rtt
        total_error = coord.error + other.error
        if total_error < _ZERO_THRESHOLD:
            total_error = _ZERO_THRESHOLD
        weight = coord.error / total_error
        error = config.vivaldi_ce * weight * wrongness \
            + coord.error * (1.0 - config.vivaldi_ce * weight)
        if error > config.vivaldi_error_max:
            error = config.vivaldi_error_max
        force = config.vivaldi_cc * weight * (rtt - dist)
        moved = Coordinate(coord.vec, error, coord.adjustment, coord.height)
        return apply_force(config, self._rng, force, moved, other)

    def _gravity(self, coord: Coordinate) -> Coordinate:
        """Serf's ``updateGravity``: pull toward the origin by ``(dist / rho)^2``."""
        dist = _duration_seconds(distance_ns(self._origin, coord))
        ratio = dist / self.config.gravity_rho
        force = -1.0 * (ratio * ratio)  # Go's math.Pow(x, 2): x*x rounded once
        return apply_force(self.config, self._rng, force, coord, self._origin)
