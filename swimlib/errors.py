"""Error hierarchy: every error swimlib raises on purpose derives from SwimError.

Bad input from the network is a DecodeError (counted and dropped by callers);
bad local configuration is a ConfigError (also a ValueError, so generic
callers that validate arguments catch it naturally).
"""


class SwimError(Exception):
    """Root of every error swimlib raises deliberately."""


class ConfigError(SwimError, ValueError):
    """A configuration value or command-line flag is invalid."""


class JoinError(SwimError):
    """No address given to join answered."""


class DecodeError(SwimError):
    """Bytes from the network could not be decoded into a valid message.

    ``reason`` is a short, stable label used as a drop counter key
    (for example ``"crc"``, ``"msgpack"``, ``"vsn"``).
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class DecryptError(DecodeError):
    """No key in the keyring could decrypt (or authenticate) the input."""

    def __init__(self, detail: str = "") -> None:
        super().__init__("decrypt", detail)
