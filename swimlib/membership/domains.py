"""What the membership core accepts from the network, and what it does at the edges.

The decoders (:mod:`swimlib.wire.codec`) guarantee a message is well formed:
every integer fits its wire type, every address is 0, 4 or 16 bytes. That is
not enough. A well-formed value can still be one the protocol cannot live
with, and a keyless attacker on an unencrypted network can send any of them:

* **An incarnation no one can refute.** ``suspect(victim, 2^32-1)`` forces the
  victim to refute with ``2^32``, which does not fit: memberlist wraps to 0,
  nobody believes the refutation, and the victim is declared dead for good.
  The same goes for a forged ``alive`` at the top of the range. Below
  :data:`INCARNATION_FREE_LIMIT` (half the range) plus :data:`NEW_MEMBER_SLACK`
  every value is accepted, as memberlist does, so honest peers, restarts that
  adopt the cluster's memory of a previous life, clusters that merge, and a
  node that joins after an attack all behave as in Go. Above it a claim may
  raise what we know of a member by at most :data:`INCARNATION_STEP`:
  exhausting a member's incarnations then takes 2^30 forged messages (each
  moves it by a step and a refutation), each of which the victim answers,
  instead of one.
  A view that falls behind in that region is brought up to date by the
  member itself (:func:`may_verify`): its own row in a push-pull we opened
  to its address is the one source allowed any jump.
* **Names that are also separators.** Names reach logs, handler scripts
  (one member per stdin line, ``SERF_*`` variables), RPC clients and HAProxy
  configuration. A name with a control character, invalid UTF-8, or empty
  is refused here, once, rather than escaped everywhere downstream;
  Serf's optional stricter rule (``ValidateNodeNames``) is :func:`strict_name_problem`.
* **Addresses that cannot be used.** Serf >= 0.9.5 refuses members whose
  address is not 4 or 16 bytes; we also refuse port 0 and the unspecified,
  multicast and broadcast addresses, which only ever produce send errors.
* **A table too big to sync.** New members are admitted while the table's
  encoded size stays under :data:`MAX_TABLE_BYTES`, so fake members in bulk
  cannot make our push-pull unencodable (and anti-entropy stop).

Each rule is a small pure function; the node applies them where a message
is handled and counts every refusal as ``drop.<reason>``.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache

#: Incarnations are uint32 on the wire.
INCARNATION_MAX = 0xFFFFFFFF
#: Any incarnation up to this is plausible (memberlist's behaviour, unchanged).
INCARNATION_FREE_LIMIT = 1 << 31
#: Above the free limit, a claim may raise a known incarnation by at most this.
INCARNATION_STEP = 1
#: How far past the free limit any claim may go (a step at a time beyond).
NEW_MEMBER_SLACK = 1 << 24

#: Longest node name we accept, in UTF-8 bytes (a DNS name is at most 253).
MAX_NAME_BYTES = 512
#: Serf's limit under ``ValidateNodeNames``.
STRICT_NAME_MAX = 128
_STRICT_NAME = re.compile(r"[A-Za-z0-9.\-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def plausible_incarnation(known: int | None, claimed: int) -> bool:
    """Whether a peer's ``claimed`` incarnation for a member may be believed:
    ``claimed <= max(known, 2^31 + 2^24) + 1``.

    ``known`` is the member's incarnation in our table (ours, for claims
    about ourselves), ``None`` for a member we do not know. What a node that
    does not know a member accepts, one that knows it accepts too: otherwise a
    member nobody can re-check (a fake one) stayed at different incarnations
    in different views, and every push-pull between them refused its row.
    """
    if known is None:
        return claimed <= INCARNATION_FREE_LIMIT + NEW_MEMBER_SLACK
    return claimed <= max(known, INCARNATION_FREE_LIMIT + NEW_MEMBER_SLACK) + INCARNATION_STEP


def refutation_incarnation(own: int, accused: int) -> int | None:
    """The incarnation that out-bids ``accused``: ``max(own, accused) + 1``
    (memberlist's refute), or ``None`` when it would not fit in uint32."""
    incarnation = max(own, accused) + 1
    return incarnation if incarnation <= INCARNATION_MAX else None


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a member name (a drop reason), or None if it can.

    Names are decoded with ``surrogateescape``, so bytes that are not UTF-8
    show up as lone surrogates.
    """
    if not name:
        return "name_empty"
    if len(name) > MAX_NAME_BYTES or len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        return "name_long"
    if _CONTROL.search(name):
        return "name_control"
    if _has_surrogate(name):
        return "name_utf8"
    return None


def strict_name_problem(name: str) -> str | None:
    """Serf's ``ValidateNodeNames``: letters, digits, ``-`` and ``.``, at most 128."""
    if _STRICT_NAME.fullmatch(name) is None:
        return "name_invalid"
    if len(name) > STRICT_NAME_MAX:
        return "name_long"
    return None


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def vsn_compatible(ours: bytes, theirs: bytes) -> bool:
    """Whether a member speaking ``theirs`` can share a cluster with us.

    memberlist refuses a whole push-pull when any alive member's current
    versions fall outside the cluster-wide ranges; one fake member with a
    range that excludes ours would make every push-pull fail for as long as
    it is alive (and a stream of them, for ever). So a member must speak
    within our ranges and we within its, for memberlist (bytes 0-2) and the
    delegate (bytes 3-5). Serf agents of any protocol 2-5 pass.
    """
    return (theirs[0] <= ours[2] <= theirs[1] and ours[0] <= theirs[2] <= ours[1]
            and theirs[3] <= ours[5] <= theirs[4] and ours[3] <= theirs[5] <= ours[4])


def address_problem(addr: str, port: int) -> str | None:
    """Why a member cannot live at ``addr:port`` (a drop reason), or None."""
    if port == 0:
        return "addr_port_zero"
    return _ip_problem(addr)


@lru_cache(maxsize=4096)
def _ip_problem(addr: str) -> str | None:
    if not addr:
        return "addr_missing"  # Serf >= 0.9.5: "IP byte length is invalid"
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return "addr_invalid"
    if ip.is_unspecified or ip.is_multicast or addr == "255.255.255.255":
        return "addr_unusable"
    return None


#: Encoded bytes the member table may hold: every push-pull carries it whole,
#: and a push-pull must fit memberlist's 20 MiB stream limit with Serf's state
#: beside it. Honest rows are ~100 bytes (60,000 members); rows of hostile
#: 512-byte names and 512-byte tags are ~1.1 KB (5,600 of them).
MAX_TABLE_BYTES = 6 * 1024 * 1024
#: A push-pull row's bytes besides its name and meta (addresses, numbers, keys).
ROW_OVERHEAD = 82


def row_cost(name: str, meta: bytes) -> int:
    """Upper bound of one member's encoded push-pull row, in bytes."""
    return len(name.encode("utf-8", "surrogateescape")) + len(meta) + ROW_OVERHEAD


#: A member's view may be re-checked against the member itself this often.
VERIFY_INTERVAL = 10.0


def may_verify(last_verified: float | None, now: float) -> bool:
    """Whether a refused claim about a member may trigger a sync with it now.

    Refusals are what an attacker controls, so the syncs they cause are
    rate-limited per member.
    """
    return last_verified is None or now - last_verified >= VERIFY_INTERVAL
