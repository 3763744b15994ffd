"""Reading and writing one memberlist TCP exchange with trio.

A plain stream has no length prefix (the peer waits for our reply on the same
connection), so the reader parses incrementally with
:class:`~swimlib.wire.codec.StreamFramer` to learn where the message ends.
Outgoing payloads are LZW-compressed when enabled and sealed when a keyring
is set, exactly as memberlist's ``rawSendMsgStream`` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from swimlib.errors import DecodeError
from swimlib.wire import codec
from swimlib.wire.messages import MessageType

if TYPE_CHECKING:  # cryptography is imported only when encryption is on
    from swimlib.wire.crypto import Keyring

#: Bytes read per receive call.
_CHUNK = 65536


async def read_message(stream: trio.abc.ReceiveStream,
                       limit: int = codec.MAX_STREAM_SIZE) -> bytes:
    """Receive exactly one stream message (plain or encrypted frame)."""
    framer = codec.StreamFramer(limit)
    buf = bytearray()
    while True:
        chunk = await stream.receive_some(_CHUNK)
        if not chunk:
            raise DecodeError("truncated", "connection closed mid-message")
        buf += chunk
        length = framer.feed(chunk)
        if length is not None and len(buf) >= length:
            return bytes(buf[:length])


def seal_stream(payload: bytes, keyring: Keyring | None, compress: bool) -> bytes:
    """What goes on the wire for ``payload``: compressed, then encrypted, as configured."""
    if compress:
        payload = codec.encode_compress(payload)
    if keyring is not None:
        payload = keyring.encrypt_stream(payload)
    return payload


def open_stream(raw: bytes, keyring: Keyring | None) -> bytes:
    """The plaintext of a received stream message; refuses plaintext when encrypted."""
    if keyring is None:
        return raw
    if not raw or raw[0] != MessageType.ENCRYPT:
        raise DecodeError("plaintext", "unencrypted stream while encryption is enabled")
    return keyring.decrypt_stream(raw)
