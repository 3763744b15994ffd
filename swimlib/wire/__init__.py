"""Bytes <-> messages, wire-compatible with memberlist 0.2 / Serf protocol 5.

- :mod:`~swimlib.wire.messages`: memberlist message values.
- :mod:`~swimlib.wire.codec`: memberlist encode/decode (CRC, compound, compress, streams).
- :mod:`~swimlib.wire.lzw`: Go ``compress/lzw`` (LSB, 8), byte-identical.
- :mod:`~swimlib.wire.crypto`: AES-GCM payloads and the Serf keyring.
- :mod:`~swimlib.wire.serf`: Serf messages and tag meta.

Pure functions only: no I/O, no clock, no global randomness. Decoders raise
only :class:`~swimlib.errors.DecodeError`; encoders refuse what crashes Go.
"""
