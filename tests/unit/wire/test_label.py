"""Cluster labels (memberlist >= 0.3): the header, the envelope's check, the AAD binding."""

from __future__ import annotations

import pytest

from swimlib.config import Config
from swimlib.errors import ConfigError, DecodeError
from swimlib.wire import codec
from swimlib.wire.crypto import Keyring
from swimlib.wire.envelope import Envelope, label_header, split_label
from swimlib.wire.messages import Ping, PushPull

KEY = bytes(range(16))


def envelope(label: bytes, encrypted: bool = False) -> Envelope:
    keyring = Keyring([KEY]) if encrypted else None
    return Envelope(keyring, compress_datagrams=False, compress_streams=False, label=label)


def test_header_is_memberlists() -> None:
    # memberlist's AddLabelHeaderToPacket: hasLabelMsg (244), length, label.
    assert label_header(b"prod") == b"\xf4\x04prod"
    assert label_header(b"") == b""
    assert split_label(b"\xf4\x04prod\x00rest") == (b"prod", b"\x00rest")
    assert split_label(b"\x00rest") == (b"", b"\x00rest")


@pytest.mark.parametrize("bad", [b"\xf4", b"\xf4\x00\x00", b"\xf4\x05abc"])
def test_empty_or_truncated_headers_are_refused(bad: bytes) -> None:
    with pytest.raises(DecodeError) as err:
        split_label(bad)
    assert err.value.reason == "label"


@pytest.mark.parametrize("encrypted", [False, True])
def test_same_label_opens_other_or_none_is_refused(encrypted: bool) -> None:
    ping = codec.encode(Ping(1, "n", "127.0.0.1", 7946, "me"))
    prod, staging, plain = (envelope(b"prod", encrypted), envelope(b"staging", encrypted),
                            envelope(b"", encrypted))
    sealed = prod.seal_packet(ping, crc=False)
    assert sealed.startswith(b"\xf4\x04prod")
    assert prod.open_packet(sealed) == ping
    for other in (staging, plain):
        with pytest.raises(DecodeError) as err:
            other.open_packet(sealed)
        assert err.value.reason == "label"
    with pytest.raises(DecodeError):
        prod.open_packet(plain.seal_packet(ping, crc=False))


def test_the_label_is_bound_into_encryption() -> None:
    """A rewritten header does not get a datagram into another cluster with the same key."""
    ping = codec.encode(Ping(1, "n", "127.0.0.1", 7946, "me"))
    sealed = envelope(b"prod", encrypted=True).seal_packet(ping, crc=False)
    forged = label_header(b"dev!") + sealed[len(label_header(b"prod")):]
    with pytest.raises(DecodeError):
        envelope(b"dev!", encrypted=True).open_packet(forged)
    stream = envelope(b"prod", encrypted=True).seal_stream(b"\x06payload", opening=True)
    forged_stream = label_header(b"dev!") + stream[len(label_header(b"prod")):]
    with pytest.raises(DecodeError):
        envelope(b"dev!", encrypted=True).open_stream(forged_stream, incoming=True)


@pytest.mark.parametrize("encrypted", [False, True])
def test_streams_we_open_are_labelled_replies_are_not(encrypted: bool) -> None:
    env = envelope(b"prod", encrypted)
    push = codec.encode_push_pull(PushPull(True, ()))
    opened = env.seal_stream(push, opening=True)
    reply = env.seal_stream(push)
    assert opened.startswith(b"\xf4\x04prod") and not reply.startswith(b"\xf4")
    # The framer counts the header in the message length, so the reader takes it whole.
    assert codec.stream_message_length(opened) == len(opened)
    assert codec.decode_stream(env.open_stream(opened, incoming=True)) == PushPull(True, ())
    assert codec.decode_stream(env.open_stream(reply)) == PushPull(True, ())
    with pytest.raises(DecodeError):
        envelope(b"", encrypted).open_stream(opened, incoming=True)


def test_framer_takes_the_header_a_byte_at_a_time() -> None:
    opened = envelope(b"prod").seal_stream(codec.encode_push_pull(PushPull(False, ())),
                                           opening=True)
    framer = codec.StreamFramer()
    lengths = [framer.feed(opened[i:i + 1]) for i in range(len(opened))]
    assert lengths[-1] == len(opened)
    with pytest.raises(DecodeError):
        codec.StreamFramer().feed(b"\xf4\x00\x06")


def test_config_refuses_a_label_over_255_bytes() -> None:
    assert Config.lan(label="x" * 255).label == "x" * 255
    with pytest.raises(ConfigError):
        Config.lan(label="é" * 128)
