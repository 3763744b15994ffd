"""serf's tags file (``-tags-file``): the agent's tags, kept across restarts.

The file is a JSON object of strings. At start the agent's tags are read from
it when it exists (and tags given any other way are refused, as serf does:
two sources would disagree); every later change of the tags through the
agent (``serf tags -set``) is written to it first, atomically and readable
only by its owner (tags may carry secrets), and a change that cannot be
written is refused, so the file and the cluster never disagree.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from swimlib.errors import ConfigError


def load_tags_file(path: str) -> dict[str, str] | None:
    """The tags kept in ``path``, or None when there is no file yet."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
        raise ConfigError(f"Failed to read tags file {path}: {reason or exc}") from None
    try:
        tags = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ConfigError(f"Failed to decode tags file {path}: {exc}") from None
    if not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                             for k, v in tags.items()):
        raise ConfigError(f"Failed to decode tags file {path}: expected an object of strings")
    return tags


def write_tags_file(path: str, tags: Mapping[str, str]) -> None:
    """Replace the file with ``tags`` (mode 0600, as serf writes it); raises OSError."""
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(dict(tags), out, indent=2, sort_keys=True)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
