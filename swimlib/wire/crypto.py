"""memberlist's AES-GCM encryption and Serf's keyring (reference section 5).

Payload layout: ``vsn(1) | nonce(12) | ciphertext | tag(16)``. Version 0 pads
the plaintext PKCS7 to 16 bytes before sealing (memberlist protocol 1 only);
version 1 does not (what Serf always speaks). We decrypt both and encrypt with
version 1 unless told otherwise.

- UDP: the whole datagram is the payload, AAD empty.
- Stream: ``0a | L:u32be | payload``; AAD is those first 5 bytes.

Nonces come from an injectable source so tests and simulations are
deterministic; the default is ``os.urandom``. The keyring mirrors memberlist's
rules: ordered, index 0 (the primary) encrypts, decryption tries every key in
order, the primary cannot be removed, and ``use`` moves a key to the front.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import random
import struct
from collections.abc import Callable, Iterable, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from swimlib.errors import DecodeError, DecryptError, KeyringError

#: Valid key sizes: AES-128, AES-192, AES-256.
KEY_SIZES = (16, 24, 32)
VERSION_SIZE = 1
NONCE_SIZE = 12
TAG_SIZE = 16
BLOCK_SIZE = 16
#: Bytes an encrypted version-1 payload adds (what piggybacking budgets subtract).
ENCRYPT_OVERHEAD = VERSION_SIZE + NONCE_SIZE + TAG_SIZE
#: ``0a`` + u32 length in front of an encrypted stream.
STREAM_HEADER_SIZE = 5
#: memberlist refuses encrypted streams announcing more than this.
MAX_STREAM_FRAME = 20 * 1024 * 1024
#: The stream message type byte for an encrypted frame.
ENCRYPT_MSG = 10
#: Encryption versions: 0 = PKCS7-padded (memberlist protocol 1), 1 = unpadded.
VERSIONS = (0, 1)

#: Where nonces come from: fixed bytes (one encryption), a seeded
#: ``random.Random``, a callable ``n -> n bytes``, or None for ``os.urandom``.
NonceSource = bytes | random.Random | Callable[[int], bytes] | None


def validate_key(key: bytes) -> bytes:
    """Return ``key`` as bytes if it is 16, 24 or 32 bytes long."""
    if not isinstance(key, (bytes, bytearray)):
        raise KeyringError(f"a key must be bytes, not {type(key).__name__}")
    if len(key) not in KEY_SIZES:
        raise KeyringError(f"key size must be 16, 24 or 32 bytes, got {len(key)}")
    return bytes(key)


def decode_key(text: str) -> bytes:
    """A base64 key (as ``serf keygen`` prints and ``-encrypt`` takes) -> raw bytes."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise KeyringError("key is not valid base64") from None
    return validate_key(raw)


def encode_key(key: bytes) -> str:
    """Raw key -> standard base64, as Serf writes it."""
    return base64.b64encode(validate_key(key)).decode("ascii")


def generate_key(nonce_source: NonceSource = None) -> str:
    """A new 32-byte key in base64, like ``serf keygen`` (randomness injectable)."""
    return encode_key(_random_bytes(nonce_source, 32))


def _random_bytes(source: NonceSource, n: int) -> bytes:
    if source is None:
        return os.urandom(n)
    if isinstance(source, (bytes, bytearray)):
        if len(source) != n:
            raise ValueError(f"need {n} bytes, got {len(source)}")
        return bytes(source)
    if isinstance(source, random.Random):
        return source.randbytes(n)
    out = source(n)
    if len(out) != n:
        raise ValueError(f"nonce source returned {len(out)} bytes, wanted {n}")
    return bytes(out)


def encrypted_length(version: int, plaintext_len: int) -> int:
    """Size of the sealed payload for a plaintext of ``plaintext_len`` bytes."""
    if version == 0:
        plaintext_len += BLOCK_SIZE - plaintext_len % BLOCK_SIZE
    return VERSION_SIZE + NONCE_SIZE + plaintext_len + TAG_SIZE


def _pkcs7_pad(data: bytes) -> bytes:
    more = BLOCK_SIZE - len(data) % BLOCK_SIZE
    return data + bytes((more,)) * more


def _pkcs7_unpad(data: bytes) -> bytes:
    # Go trusts the last byte blindly (and panics on an empty buffer); we check it.
    if not data or len(data) % BLOCK_SIZE:
        raise DecryptError("bad PKCS7 padding length")
    more = data[-1]
    if not 1 <= more <= BLOCK_SIZE or data[-more:] != bytes((more,)) * more:
        raise DecryptError("bad PKCS7 padding")
    return data[:-more]


def seal(cipher: AESGCM, plaintext: bytes, aad: bytes, *, version: int = 1,
         nonce: NonceSource = None) -> bytes:
    """Encrypt one payload: ``vsn | nonce | ciphertext | tag``.

    An empty plaintext is refused: Go indexes the first decrypted byte
    unchecked, so it would crash the receiver.
    """
    if version not in VERSIONS:
        raise ValueError(f"unsupported encryption version {version}")
    if not plaintext:
        raise ValueError("cannot encrypt an empty message (it crashes Go peers)")
    iv = _random_bytes(nonce, NONCE_SIZE)
    body = _pkcs7_pad(plaintext) if version == 0 else plaintext
    return bytes((version,)) + iv + cipher.encrypt(iv, body, aad or None)


def open_payload(ciphers: Iterable[AESGCM], payload: bytes, aad: bytes) -> bytes:
    """Decrypt one payload with the first key that authenticates it."""
    if not payload:
        raise DecryptError("empty payload")
    version = payload[0]
    if version not in VERSIONS:
        raise DecryptError(f"unsupported encryption version {version}")
    if len(payload) < encrypted_length(version, 0):
        raise DecryptError(f"payload of {len(payload)} bytes is too small")
    iv = payload[VERSION_SIZE:VERSION_SIZE + NONCE_SIZE]
    sealed = payload[VERSION_SIZE + NONCE_SIZE:]
    for cipher in ciphers:
        try:
            plain = cipher.decrypt(iv, sealed, aad or None)
        except InvalidTag:
            continue
        if version == 0:
            plain = _pkcs7_unpad(plain)
        if not plain:
            raise DecodeError("empty", "decrypted to nothing")
        return plain
    raise DecryptError("no installed key could decrypt the message")


def stream_frame_length(prefix: bytes | bytearray | memoryview) -> int | None:
    """Total size of the encrypted stream frame starting ``prefix``, or None if < 5 bytes.

    Lets an async reader learn, from the first 5 bytes, exactly how many to
    read. Raises :class:`DecodeError` if the frame is not an encrypted one or
    announces more than 20 MiB (memberlist's limit) or less than an empty
    sealed payload.
    """
    if len(prefix) < 1:
        return None
    if prefix[0] != ENCRYPT_MSG:
        raise DecodeError("encrypt", "stream is not encrypted")
    if len(prefix) < STREAM_HEADER_SIZE:
        return None
    (size,) = struct.unpack_from(">I", prefix, 1)
    if size > MAX_STREAM_FRAME:
        raise DecodeError("size", f"encrypted stream of {size} bytes")
    if size < ENCRYPT_OVERHEAD:
        raise DecodeError("size", f"encrypted stream of {size} bytes is too small")
    return STREAM_HEADER_SIZE + int(size)


class Keyring:
    """Ordered AES keys: the first (primary) encrypts, all are tried to decrypt.

    Mutable like memberlist's keyring, because key rotation (install, use,
    remove) changes it in place at run time; :attr:`keys` is a snapshot.
    """

    __slots__ = ("_ciphers", "_keys", "_nonce_source")

    def __init__(self, keys: Iterable[bytes], primary: bytes | None = None, *,
                 nonce_source: NonceSource = None) -> None:
        """``keys`` in order; ``primary`` (default: the first) is moved to the front.

        ``nonce_source`` must produce fresh nonces (a seeded ``random.Random``
        or a callable); fixed nonce bytes are only accepted per call.
        """
        if isinstance(nonce_source, (bytes, bytearray)):
            raise ValueError("a keyring-wide nonce source must not be fixed bytes")
        self._keys: list[bytes] = []
        self._ciphers: dict[bytes, AESGCM] = {}
        self._nonce_source = nonce_source
        for key in keys:
            self.add(key)
        if not self._keys:
            raise KeyringError("a keyring needs at least one key")
        if primary is not None:
            self.add(primary)
            self.use(primary)

    # -- construction and files

    @classmethod
    def from_base64(cls, keys: Iterable[str], *, nonce_source: NonceSource = None) -> Keyring:
        """From base64 keys, first = primary (``-encrypt`` and keyring files)."""
        return cls([decode_key(k) for k in keys], nonce_source=nonce_source)

    @classmethod
    def from_json(cls, body: str | bytes, *, nonce_source: NonceSource = None) -> Keyring:
        """From a Serf ``-keyring-file`` body: a JSON array of base64 keys, first = primary."""
        try:
            items = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise KeyringError(f"keyring file is not valid JSON: {exc}") from None
        if not isinstance(items, list) or not all(isinstance(k, str) for k in items):
            raise KeyringError("keyring file must be a JSON array of base64 strings")
        if not items:
            raise KeyringError("keyring file contains no keys")
        return cls.from_base64(items, nonce_source=nonce_source)

    def to_base64(self) -> list[str]:
        return [encode_key(k) for k in self._keys]

    def to_json(self) -> str:
        """The keyring file body as Serf writes it (Go's ``json.MarshalIndent``, 2 spaces)."""
        return json.dumps(self.to_base64(), indent=2)

    # -- inspection

    @property
    def keys(self) -> tuple[bytes, ...]:
        return tuple(self._keys)

    @property
    def primary(self) -> bytes:
        return self._keys[0]

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[bytes]:
        return iter(tuple(self._keys))

    def __contains__(self, key: object) -> bool:
        return key in self._ciphers

    def __repr__(self) -> str:  # never print key material
        return f"<Keyring {len(self._keys)} keys>"

    # -- rotation (memberlist's AddKey / UseKey / RemoveKey)

    def add(self, key: bytes) -> bool:
        """Install ``key`` as a secondary key; False if it was already installed."""
        key = validate_key(key)
        if key in self._ciphers:
            return False
        self._keys.append(key)
        self._ciphers[key] = AESGCM(key)
        return True

    def use(self, key: bytes) -> None:
        """Make an installed key the primary (it moves to the front; the rest keep order)."""
        key = validate_key(key)
        if key not in self._ciphers:
            raise KeyringError("requested key is not in the keyring")
        self._keys.remove(key)
        self._keys.insert(0, key)

    def remove(self, key: bytes) -> bool:
        """Remove a secondary key; False if it was not installed. The primary can't be removed."""
        key = validate_key(key)
        if key == self._keys[0]:
            raise KeyringError("removing the primary key is not allowed")
        if key not in self._ciphers:
            return False
        self._keys.remove(key)
        del self._ciphers[key]
        return True

    # -- encryption

    def _ordered_ciphers(self) -> Iterator[AESGCM]:
        return (self._ciphers[k] for k in tuple(self._keys))

    def encrypt_packet(self, plaintext: bytes, *, version: int = 1,
                       nonce: NonceSource = None, label: bytes = b"") -> bytes:
        """Seal a datagram with the primary key; AAD = the cluster label
        (empty without one, as memberlist 0.2)."""
        source = nonce if nonce is not None else self._nonce_source
        return seal(self._ciphers[self._keys[0]], plaintext, label, version=version,
                    nonce=source)

    def decrypt_packet(self, data: bytes, label: bytes = b"") -> bytes:
        """Open a datagram with whichever key works; :class:`DecryptError` if none does."""
        return open_payload(self._ordered_ciphers(), bytes(data), label)

    def encrypt_stream(self, plaintext: bytes, *, version: int = 1,
                       nonce: NonceSource = None, label: bytes = b"") -> bytes:
        """Frame and seal a stream payload: ``0a | L | vsn | nonce | ct | tag``,
        AAD = the 5-byte header, then the cluster label (memberlist >= 0.3)."""
        size = encrypted_length(version, len(plaintext))
        if size > MAX_STREAM_FRAME:
            raise ValueError(f"stream payload too large to encrypt ({size} bytes)")
        header = struct.pack(">BI", ENCRYPT_MSG, size)
        source = nonce if nonce is not None else self._nonce_source
        return header + seal(self._ciphers[self._keys[0]], plaintext, header + label,
                             version=version, nonce=source)

    def decrypt_stream(self, frame: bytes, label: bytes = b"") -> bytes:
        """Open a complete encrypted stream frame (bytes after the frame are ignored)."""
        frame = bytes(frame)
        total = stream_frame_length(frame)
        if total is None or len(frame) < total:
            raise DecodeError("truncated", "encrypted stream frame is incomplete")
        return open_payload(self._ordered_ciphers(), frame[STREAM_HEADER_SIZE:total],
                            frame[:STREAM_HEADER_SIZE] + label)
