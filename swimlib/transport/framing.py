"""Reading one memberlist TCP message off a byte stream.

A plain stream has no length prefix (the peer waits for our reply on the same
connection), so the reader parses incrementally with
:class:`~swimlib.wire.codec.StreamFramer` to learn where the message ends.
What is read goes to the core as it came off the wire: the core's envelope
(swimlib/wire/envelope.py) decrypts it, and seals what it sends.
"""

from __future__ import annotations

import anyio
from anyio.abc import ByteReceiveStream

from swimlib.errors import DecodeError
from swimlib.wire import codec

#: Bytes read per receive call.
_CHUNK = 65536


async def read_message(stream: ByteReceiveStream, limit: int = codec.MAX_STREAM_SIZE) -> bytes:
    """Receive exactly one stream message (plain or encrypted frame)."""
    framer = codec.StreamFramer(limit)
    buf = bytearray()
    while True:
        try:
            chunk = await stream.receive(_CHUNK)
        except anyio.EndOfStream:
            raise DecodeError("truncated", "connection closed mid-message") from None
        buf += chunk
        length = framer.feed(chunk)
        if length is not None and len(buf) >= length:
            return bytes(buf[:length])
