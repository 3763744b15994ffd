"""serf's tags file: read at start, written before every change of the tags."""

from __future__ import annotations

import json
import random
import stat
from pathlib import Path

import anyio
import pytest

from swimlib import Config, MemoryNetwork, SwimError, open_agent
from swimlib.agent.tags_file import load_tags_file, write_tags_file
from swimlib.errors import ConfigError
from tests.backends import virtual_time  # noqa: F401


def test_write_then_load_round_trips_with_owner_only_mode(tmp_path: Path) -> None:
    path = tmp_path / "tags.json"
    assert load_tags_file(str(path)) is None
    write_tags_file(str(path), {"role": "db", "dc": "east"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_tags_file(str(path)) == {"role": "db", "dc": "east"}
    assert json.loads(path.read_text()) == {"dc": "east", "role": "db"}
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left


@pytest.mark.parametrize("content", ['{"role": ', '["role"]', '{"weight": 3}', "[" * 100_000])
def test_a_broken_tags_file_is_a_clear_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "tags.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match="Failed to decode tags file"):
        load_tags_file(str(path))


def _settings(*flags: str):  # type: ignore[no-untyped-def]
    from swimlib.agent.command import _Settings
    from swimlib.cli import parse_agent_args

    return _Settings.from_args(parse_agent_args(["agent", "-node=a", *flags]))


def test_the_agent_takes_its_tags_from_the_file_and_refuses_a_second_source(
        tmp_path: Path) -> None:
    path = tmp_path / "tags.json"
    s = _settings(f"-tags-file={path}")
    assert (s.tags, s.restored_tags, s.tags_file) == ({}, None, str(path))
    write_tags_file(str(path), {"role": "db"})
    s = _settings(f"-tags-file={path}")
    assert (s.tags, s.restored_tags) == ({"role": "db"}, 1)
    for extra in ("-tag=dc=east", "-role=web"):
        with pytest.raises(ConfigError, match="Tags config not allowed while using tag files"):
            _settings(f"-tags-file={path}", extra)


async def test_set_tags_writes_the_file_first(tmp_path: Path) -> None:
    path = tmp_path / "tags.json"
    network = MemoryNetwork(seed=1)
    async with open_agent("a", config=Config.local(), rng=random.Random(1),
                          transport=network.open_transport("10.0.0.1"),
                          tags={"role": "web"}, tags_file=str(path)) as agent:
        await agent.set_tags({"dc": "east"})
        assert load_tags_file(str(path)) == {"role": "web", "dc": "east"}
        await agent.set_tags(delete=["role"])
        assert load_tags_file(str(path)) == {"dc": "east"}
        # A change the file cannot keep is not made.
        path.unlink()
        path.mkdir()
        with pytest.raises(SwimError, match="failed to write tags file"):
            await agent.set_tags({"dc": "west"})
        assert agent.local_member().tag_map == {"dc": "east"}
        # Nor one the cluster refuses (too big for the node meta): the file keeps the old tags.
        path.rmdir()
        with pytest.raises(SwimError):
            await agent.set_tags({"big": "x" * 2000})
        assert load_tags_file(str(path)) == {"dc": "east"}
        with anyio.fail_after(1):
            await agent.set_tags({"dc": "west"})
        assert agent.local_member().tag_map == {"dc": "west"}
