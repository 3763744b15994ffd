"""The envelope: what turns a message into the bytes on the wire, and back.

memberlist wraps what it sends in layers, innermost first: LZW compression
(datagrams only when it helps, streams whenever it is on), a CRC-32 header
(datagrams to members speaking protocol 5 or more), AES-GCM encryption
with the keyring's primary key (both), and outermost the cluster label
header (memberlist >= 0.3: every datagram, and the start of every stream we
open; replies carry none). Receiving peels them in reverse: the label must be
ours (no label when we have none), a datagram or stream is decrypted with
whichever key opens it, and, when a keyring is set, plaintext is refused.
The label is also bound into the encryption (the AAD), so a label header
rewritten on the way does not get a packet into another cluster. The core
applies the envelope itself, so its effects carry final bytes and the
simulator runs encrypted and labelled clusters with the same code as the agent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from swimlib.errors import DecodeError
from swimlib.wire import codec
from swimlib.wire.messages import MessageType

if TYPE_CHECKING:  # cryptography is imported only when encryption is on
    from swimlib.wire.crypto import Keyring

#: AES-GCM version byte + nonce + tag that encryption adds to every datagram.
ENCRYPT_OVERHEAD = 29
#: memberlist's ``hasLabelMsg``: ``f4 | len | label`` before everything else.
HAS_LABEL = 244
#: memberlist's ``LabelMaxSize``.
MAX_LABEL_BYTES = 255


def label_header(label: bytes) -> bytes:
    """The header that carries ``label`` (nothing for no label)."""
    if len(label) > MAX_LABEL_BYTES:
        raise ValueError(f"label of {len(label)} bytes exceeds {MAX_LABEL_BYTES}")
    return bytes((HAS_LABEL, len(label))) + label if label else b""


def split_label(data: bytes) -> tuple[bytes, bytes]:
    """(label, the rest) of a datagram or stream start; no header: (b"", data)."""
    if not data or data[0] != HAS_LABEL:
        return b"", data
    if len(data) < 2 or data[1] == 0:
        raise DecodeError("label", "label header cannot be empty when present")
    end = 2 + data[1]
    if len(data) < end:
        raise DecodeError("label", "truncated label header")
    return bytes(data[2:end]), data[end:]


class Envelope:
    """Seal and open datagrams and stream messages for one member."""

    __slots__ = ("_compress_datagrams", "_compress_streams", "_header", "keyring", "label")

    def __init__(self, keyring: Keyring | None, *, compress_datagrams: bool,
                 compress_streams: bool, label: bytes = b"") -> None:
        #: Changed in place by key-management queries; None: no encryption.
        self.keyring = keyring
        self._compress_datagrams = compress_datagrams
        self._compress_streams = compress_streams
        #: The cluster label (b"": none); peers with another label are refused.
        self.label = label
        self._header = label_header(label)

    @property
    def compresses_datagrams(self) -> bool:
        return self._compress_datagrams

    @property
    def packet_overhead(self) -> int:
        """Bytes sealing adds to a datagram beyond compression and CRC."""
        return (ENCRYPT_OVERHEAD if self.keyring is not None else 0) + len(self._header)

    def seal_packet(self, data: bytes, crc: bool) -> bytes:
        """A datagram's bytes on the wire: compressed if smaller, CRC'd, encrypted."""
        if self._compress_datagrams:
            data = codec.maybe_compress(data)
        if crc:
            data = codec.add_crc(data)
        if self.keyring is not None:
            data = self.keyring.encrypt_packet(data, label=self.label)
        return self._header + data if self._header else data

    def open_packet(self, data: bytes) -> bytes:
        """A received datagram's plaintext (:class:`DecodeError` if it is not for
        our cluster or no key opens it)."""
        data = self._own_label_removed(data)
        if self.keyring is None:
            return data
        return self.keyring.decrypt_packet(data, self.label)

    def seal_stream(self, payload: bytes, *, opening: bool = False) -> bytes:
        """A stream message's bytes on the wire: compressed, then encrypted, as
        configured; ``opening``: the first message of a stream we open (labelled)."""
        if self._compress_streams:
            payload = codec.encode_compress(payload)
        if self.keyring is not None:
            payload = self.keyring.encrypt_stream(payload, label=self.label)
        return self._header + payload if opening and self._header else payload

    def open_stream(self, raw: bytes, *, incoming: bool = False) -> bytes:
        """A received stream message's plaintext; refuses plaintext when encrypted.
        ``incoming``: the first message of a stream a peer opened (labelled)."""
        if incoming:
            raw = self._own_label_removed(raw)
        if self.keyring is None:
            return raw
        if not raw or raw[0] != MessageType.ENCRYPT:
            raise DecodeError("plaintext", "unencrypted stream while encryption is enabled")
        return self.keyring.decrypt_stream(raw, self.label)

    def _own_label_removed(self, data: bytes) -> bytes:
        label, rest = split_label(data)
        if label != self.label:
            raise DecodeError("label", f"unacceptable cluster label {label!r}")
        return rest
