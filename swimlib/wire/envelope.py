"""The envelope: what turns a message into the bytes on the wire, and back.

memberlist wraps what it sends in layers, innermost first: LZW compression
(datagrams only when it helps, streams whenever it is on), a CRC-32 header
(datagrams to members speaking protocol 5 or more), and AES-GCM encryption
with the keyring's primary key (both). Receiving peels them in reverse: a
datagram or stream is decrypted with whichever key opens it, and, when a
keyring is set, plaintext is refused. The core applies the envelope itself,
so its effects carry final bytes and the simulator runs encrypted clusters
with the same code as the agent.
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


class Envelope:
    """Seal and open datagrams and stream messages for one member."""

    __slots__ = ("_compress_datagrams", "_compress_streams", "keyring")

    def __init__(self, keyring: Keyring | None, *, compress_datagrams: bool,
                 compress_streams: bool) -> None:
        #: Changed in place by key-management queries; None: no encryption.
        self.keyring = keyring
        self._compress_datagrams = compress_datagrams
        self._compress_streams = compress_streams

    @property
    def compresses_datagrams(self) -> bool:
        return self._compress_datagrams

    @property
    def packet_overhead(self) -> int:
        """Bytes sealing adds to a datagram beyond compression and CRC."""
        return ENCRYPT_OVERHEAD if self.keyring is not None else 0

    def seal_packet(self, data: bytes, crc: bool) -> bytes:
        """A datagram's bytes on the wire: compressed if smaller, CRC'd, encrypted."""
        if self._compress_datagrams:
            data = codec.maybe_compress(data)
        if crc:
            data = codec.add_crc(data)
        if self.keyring is not None:
            data = self.keyring.encrypt_packet(data)
        return data

    def open_packet(self, data: bytes) -> bytes:
        """A received datagram's plaintext (:class:`DecodeError` if no key opens it)."""
        if self.keyring is None:
            return data
        return self.keyring.decrypt_packet(data)

    def seal_stream(self, payload: bytes) -> bytes:
        """A stream message's bytes on the wire: compressed, then encrypted, as configured."""
        if self._compress_streams:
            payload = codec.encode_compress(payload)
        if self.keyring is not None:
            payload = self.keyring.encrypt_stream(payload)
        return payload

    def open_stream(self, raw: bytes) -> bytes:
        """A received stream message's plaintext; refuses plaintext when encrypted."""
        if self.keyring is None:
            return raw
        if not raw or raw[0] != MessageType.ENCRYPT:
            raise DecodeError("plaintext", "unencrypted stream while encryption is enabled")
        return self.keyring.decrypt_stream(raw)
