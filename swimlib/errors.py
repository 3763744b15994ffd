"""Error hierarchy: every error swimlib raises on purpose derives from SwimError.

Every public error is defined here, so ``except swimlib.SwimError`` and the
names a caller catches are all in one place.

Bad input from the network is a DecodeError (counted and dropped by callers);
bad local configuration is a ConfigError (also a ValueError, so generic
callers that validate arguments catch it naturally).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from swimlib.cluster.keys import KeyResult


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


class KeyQueryError(SwimError):
    """A key query failed on some members; ``result`` holds each one's answer.

    Serf answers e.g. ``"2/3 nodes reported failure"`` together with the
    per-node messages, and ``serf keys`` prints both.
    """

    def __init__(self, message: str, result: KeyResult) -> None:
        super().__init__(message)
        self.result = result


class KeyringError(ConfigError):
    """A key or keyring operation is invalid (bad size, bad base64, removing the primary)."""


class RPCError(SwimError):
    """The agent answered an RPC with an error (``str`` is its text) or hung up."""

    def __init__(self, message: str, body: Any = None) -> None:
        super().__init__(message)
        #: The response body that came with the error, if any (key operations).
        self.body = body


class RPCConnectError(RPCError):
    """Could not reach the agent's RPC port or complete the handshake / auth."""


class AgentCrashed(SwimError):
    """The agent behind a blocking handle stopped with an error (see ``__cause__``)."""
