"""Serf's key-management queries, answered from this member's keyring.

``_serf_install-key``, ``_serf_use-key``, ``_serf_remove-key`` and
``_serf_list-keys`` travel as internal queries; each member changes its own
keyring and answers with a :class:`~swimlib.wire.serf.KeyResponse`. The
asking side tallies the answers (:func:`tally_key_responses`), as Serf's
``KeyManager`` does.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from swimlib.errors import DecodeError, SwimError
from swimlib.records import field, record
from swimlib.wire import serf as sw

if TYPE_CHECKING:  # cryptography is imported only when encryption is on
    from swimlib.wire.crypto import Keyring

#: The internal query names, after Serf's ``_serf_`` prefix.
KEY_QUERIES = ("install-key", "use-key", "remove-key", "list-keys")
#: Room left in a list-keys response for its framing.
_RESPONSE_SLACK = 64


def key_request(key_base64: str | None) -> bytes:
    """The payload of a key query for ``key`` (None for list-keys)."""
    raw = b""
    if key_base64 is not None:
        try:
            raw = base64.b64decode(key_base64, validate=True)
        except (binascii.Error, ValueError):
            raise SwimError("illegal base64 data in key") from None
    return sw.encode_serf(sw.KeyRequest(raw))


def answer_key_query(keyring: Keyring | None, kind: str, payload: bytes,
                     response_limit: int) -> tuple[bytes, bool]:
    """Apply one key query to ``keyring``: our encoded answer (Serf's keyring
    handlers), and whether the keyring changed."""
    from swimlib.errors import KeyringError
    from swimlib.wire.crypto import encode_key

    if keyring is None:
        return sw.encode_serf(sw.KeyResponse(
            False, "No keyring to modify (encryption not enabled)")), False
    try:
        req = sw.decode_serf(payload)
    except DecodeError:
        req = None
    if not isinstance(req, sw.KeyRequest):
        return sw.encode_serf(sw.KeyResponse(False, "Failed to decode key request")), False
    try:
        if kind == "install-key":
            keyring.add(req.key)
        elif kind == "use-key":
            keyring.use(req.key)
        elif kind == "remove-key":
            keyring.remove(req.key)
    except (KeyringError, ValueError) as exc:
        return sw.encode_serf(sw.KeyResponse(False, str(exc))), False
    if kind != "list-keys":
        return sw.encode_serf(sw.KeyResponse(True)), True
    primary = encode_key(keyring.primary)
    keys = tuple(keyring.to_base64())
    while True:  # truncate the key list to fit the response limit, as Serf does
        raw = sw.encode_serf(sw.KeyResponse(True, "", keys, primary))
        if len(raw) <= response_limit - _RESPONSE_SLACK or not keys:
            return raw, False
        keys = keys[:-1]


def _frozen_str_map(value: Mapping[str, str]) -> dict[str, str]:
    return dict(value)


def _frozen_int_map(value: Mapping[str, int]) -> dict[str, int]:
    return dict(value)


@record
class KeyResult:
    """Outcome of a cluster-wide key query (Serf's ``KeyResponse`` to the RPC).

    ``messages`` maps node name to its error text; ``keys`` (list only) maps a
    base64 key to how many nodes have it installed.
    """

    messages: dict[str, str] = field(factory=dict, converter=_frozen_str_map)
    keys: dict[str, int] = field(factory=dict, converter=_frozen_int_map)
    num_nodes: int = 0
    num_err: int = 0
    num_resp: int = 0

    @property
    def failed(self) -> bool:
        """Some member answered with an error."""
        return self.num_err > 0

    @property
    def incomplete(self) -> bool:
        """Not every member we count answered."""
        return self.num_resp != self.num_nodes


def tally_key_responses(replies: Iterable[tuple[str, bytes]], num_nodes: int) -> KeyResult:
    """Count the ``(member, payload)`` answers to a key query."""
    messages: dict[str, str] = {}
    keys: dict[str, int] = {}
    num_err = num_resp = 0
    for member, payload in replies:
        num_resp += 1
        try:
            resp = sw.decode_serf(payload)
        except DecodeError:
            resp = None
        if not isinstance(resp, sw.KeyResponse):
            messages[member] = "Invalid key query response"
            num_err += 1
            continue
        if not resp.result:
            messages[member] = resp.message
            num_err += 1
        for k in resp.keys:
            keys[k] = keys.get(k, 0) + 1
    return KeyResult(messages, keys, num_nodes, num_err, num_resp)
