"""swimlib: SWIM gossip membership, wire-compatible with HashiCorp Serf/memberlist."""

from swimlib.config import Config
from swimlib.errors import ConfigError, DecodeError, DecryptError, SwimError

__all__ = ["Config", "ConfigError", "DecodeError", "DecryptError", "SwimError"]
__version__ = "0.1.0"
