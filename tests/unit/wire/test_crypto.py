"""AES-GCM keyring: both versions, both layouts, key rotation, keyring files."""

from __future__ import annotations

import base64
import json
import random
import struct

import pytest

from swimlib.errors import ConfigError, DecodeError, DecryptError
from swimlib.wire import crypto
from swimlib.wire.crypto import Keyring, KeyringError

K16, K24, K32 = bytes(range(16)), bytes(range(24)), bytes(range(100, 132))
NONCE = bytes(range(12))
PLAIN = b"\x04an alive message"


@pytest.mark.parametrize("key", [K16, K24, K32])
@pytest.mark.parametrize("version", [0, 1])
def test_packet_round_trip_and_layout(key: bytes, version: int) -> None:
    ring = Keyring([key])
    sealed = ring.encrypt_packet(PLAIN, version=version, nonce=NONCE)
    assert sealed[0] == version
    assert sealed[1:13] == NONCE
    assert len(sealed) == crypto.encrypted_length(version, len(PLAIN))
    if version == 1:
        assert len(sealed) == len(PLAIN) + crypto.ENCRYPT_OVERHEAD
    else:
        assert (len(sealed) - 29) % 16 == 0
    assert ring.decrypt_packet(sealed) == PLAIN


@pytest.mark.parametrize("version", [0, 1])
def test_stream_round_trip_and_layout(version: int) -> None:
    ring = Keyring([K32])
    frame = ring.encrypt_stream(PLAIN, version=version, nonce=NONCE)
    (size,) = struct.unpack(">I", frame[1:5])
    assert frame[0] == 0x0A
    assert size == len(frame) - 5 == crypto.encrypted_length(version, len(PLAIN))
    assert frame[5] == version
    assert crypto.stream_frame_length(frame[:5]) == len(frame)
    assert ring.decrypt_stream(frame) == PLAIN
    assert ring.decrypt_stream(frame + b"next") == PLAIN


def test_stream_header_is_authenticated() -> None:
    ring = Keyring([K32])
    frame = bytearray(ring.encrypt_stream(PLAIN, nonce=NONCE))
    # The same payload sealed as a packet (empty AAD) does not open as a stream.
    packet = ring.encrypt_packet(PLAIN, nonce=NONCE)
    assert bytes(frame[5:]) != packet
    with pytest.raises(DecryptError):
        ring.decrypt_stream(frame[:5] + packet)
    with pytest.raises(DecryptError):
        ring.decrypt_packet(bytes(frame[5:]))


def test_default_version_is_1_and_nonces_are_fresh() -> None:
    ring = Keyring([K16])
    a, b = ring.encrypt_packet(PLAIN), ring.encrypt_packet(PLAIN)
    assert a[0] == b[0] == 1
    assert a[1:13] != b[1:13]


def test_injected_nonce_sources_are_deterministic() -> None:
    one = Keyring([K16], nonce_source=random.Random(5))
    two = Keyring([K16], nonce_source=random.Random(5))
    assert [one.encrypt_packet(PLAIN) for _ in range(3)] == [
        two.encrypt_packet(PLAIN) for _ in range(3)]
    counter = iter(range(1000))
    ring = Keyring([K16], nonce_source=lambda n: bytes([next(counter)]) * n)
    assert ring.encrypt_packet(PLAIN)[1:13] == bytes(12)
    assert ring.encrypt_packet(PLAIN)[1:13] == bytes([1]) * 12
    with pytest.raises(ValueError):
        Keyring([K16], nonce_source=NONCE)
    with pytest.raises(ValueError):
        ring.encrypt_packet(PLAIN, nonce=b"short")


def test_wrong_key_raises_decrypt_error() -> None:
    sealed = Keyring([K16]).encrypt_packet(PLAIN)
    with pytest.raises(DecryptError):
        Keyring([K32]).decrypt_packet(sealed)
    frame = Keyring([K16]).encrypt_stream(PLAIN)
    with pytest.raises(DecryptError):
        Keyring([K24]).decrypt_stream(frame)


def test_decrypt_tries_every_key_in_order() -> None:
    sealed = Keyring([K24]).encrypt_packet(PLAIN)
    assert Keyring([K16, K32, K24]).decrypt_packet(sealed) == PLAIN


@pytest.mark.parametrize("mutate", [
    lambda b: b[:-1],
    lambda b: b[:28],
    lambda b: b"",
    lambda b: bytes([2]) + b[1:],
    lambda b: b[:20] + bytes([b[20] ^ 1]) + b[21:],
    lambda b: b[:-1] + bytes([b[-1] ^ 0x80]),
])
def test_tampering_is_a_decrypt_error(mutate: object) -> None:
    ring = Keyring([K16])
    sealed = ring.encrypt_packet(PLAIN)
    with pytest.raises(DecryptError):
        ring.decrypt_packet(mutate(sealed))  # type: ignore[operator]


def test_empty_plaintext_refused_both_ways() -> None:
    ring = Keyring([K16])
    with pytest.raises(ValueError):
        ring.encrypt_packet(b"")
    with pytest.raises(ValueError):
        ring.encrypt_stream(b"")
    # Sealed by hand (Go would crash on it): authenticates, then refused.
    empty = b"\x01" + NONCE + ring._ciphers[K16].encrypt(NONCE, b"", None)
    with pytest.raises(DecodeError) as info:
        ring.decrypt_packet(empty)
    assert info.value.reason == "empty"


def test_bad_v0_padding_refused() -> None:
    ring = Keyring([K16])
    cipher = ring._ciphers[K16]
    for body in (b"abc" + bytes([20]) * 13, b"x" * 15 + b"\x00", b"x" * 14 + b"\x03\x02"):
        sealed = b"\x00" + NONCE + cipher.encrypt(NONCE, body, None)
        with pytest.raises(DecryptError):
            ring.decrypt_packet(sealed)
    full_pad = b"\x00" + NONCE + cipher.encrypt(NONCE, bytes([16]) * 16, None)
    with pytest.raises(DecodeError):  # pads to nothing
        ring.decrypt_packet(full_pad)


def test_stream_frame_length() -> None:
    assert crypto.stream_frame_length(b"") is None
    assert crypto.stream_frame_length(b"\x0a\x00") is None
    assert crypto.stream_frame_length(b"\x0a\x00\x00\x00\x1d") == 34
    assert crypto.stream_frame_length(struct.pack(">BI", 10, 20 * 1024 * 1024)) == (
        5 + 20 * 1024 * 1024)
    for bad in (struct.pack(">BI", 10, 20 * 1024 * 1024 + 1), b"\x0a\x00\x00\x00\x05",
                b"\x06\x00\x00\x00\x30"):
        with pytest.raises(DecodeError):
            crypto.stream_frame_length(bad)
    ring = Keyring([K16])
    with pytest.raises(DecodeError):
        ring.decrypt_stream(ring.encrypt_stream(PLAIN)[:-1])
    with pytest.raises(DecodeError):
        ring.decrypt_stream(struct.pack(">BI", 10, 20 * 1024 * 1024 + 1))


# --------------------------------------------------------------------------- keyring


def test_keyring_rotation_rules() -> None:
    ring = Keyring([K16])
    assert ring.primary == K16 and len(ring) == 1
    assert ring.add(K24) is True
    assert ring.add(K24) is False  # no-op, like memberlist
    assert ring.add(K32) is True
    assert ring.keys == (K16, K24, K32)
    ring.use(K32)
    assert ring.keys == (K32, K16, K24)  # moved to the front, rest keep order
    assert ring.encrypt_packet(PLAIN)[0] == 1
    assert Keyring([K32]).decrypt_packet(ring.encrypt_packet(PLAIN)) == PLAIN
    with pytest.raises(KeyringError):
        ring.remove(K32)  # the primary
    assert ring.remove(K16) is True
    assert ring.remove(K16) is False
    assert ring.keys == (K32, K24) and K16 not in ring and K24 in ring
    with pytest.raises(KeyringError):
        ring.use(K16)
    assert list(ring) == [K32, K24]
    assert "Keyring" in repr(ring) and "100" not in repr(ring)


def test_keyring_primary_argument() -> None:
    assert Keyring([K16, K24], primary=K24).keys == (K24, K16)
    assert Keyring([K16], primary=K32).keys == (K32, K16)


@pytest.mark.parametrize("key", [b"", bytes(15), bytes(17), bytes(31), bytes(33)])
def test_bad_key_sizes(key: bytes) -> None:
    with pytest.raises(KeyringError):
        Keyring([key])
    ring = Keyring([K16])
    with pytest.raises(KeyringError):
        ring.add(key)


def test_keyring_errors_are_config_errors() -> None:
    assert issubclass(KeyringError, ConfigError) and issubclass(KeyringError, ValueError)
    with pytest.raises(KeyringError):
        Keyring([])


def test_base64_keys() -> None:
    text = base64.b64encode(K32).decode()
    assert crypto.decode_key(text) == K32
    assert crypto.decode_key(f"  {text}\n") == K32
    assert crypto.encode_key(K32) == text
    for bad in ("not base64!", base64.b64encode(bytes(10)).decode(), "QUJD="):
        with pytest.raises(KeyringError):
            crypto.decode_key(bad)
    ring = Keyring.from_base64([text, base64.b64encode(K16).decode()])
    assert ring.keys == (K32, K16)
    assert ring.to_base64() == [text, base64.b64encode(K16).decode()]


def test_generate_key() -> None:
    key = crypto.generate_key()
    assert len(base64.b64decode(key)) == 32
    assert crypto.generate_key(random.Random(1)) == crypto.generate_key(random.Random(1))


def test_keyring_file_as_serf_writes_it() -> None:
    ring = Keyring([K32, K16])
    body = ring.to_json()
    # Go's json.MarshalIndent(keys, "", "  "): no trailing newline.
    assert body == '[\n  "{}",\n  "{}"\n]'.format(*ring.to_base64())
    again = Keyring.from_json(body)
    assert again.keys == ring.keys
    assert Keyring.from_json(body.encode()).keys == ring.keys


@pytest.mark.parametrize("body", ["", "{}", "[]", "[1]", '["@@@"]', "[", '{"a": "b"}'])
def test_bad_keyring_files(body: str) -> None:
    with pytest.raises(KeyringError):
        Keyring.from_json(body)


def test_keyring_json_is_a_list_of_base64() -> None:
    assert json.loads(Keyring([K16]).to_json()) == [base64.b64encode(K16).decode()]
