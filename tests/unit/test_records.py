"""Records (swimlib.records): attrs' semantics, methods compiled ahead of time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest

from swimlib import _record_code, records
from swimlib.records import FrozenRecordError, field, record, replace


def _positive(name: str, value: int) -> None:
    if value <= 0:
        raise ValueError(f"{name} must be > 0")


@record
class Point:
    LIMIT: ClassVar[int] = 10
    x: int
    y: int = 0
    tags: dict[str, str] = field(factory=dict)

    def norm1(self) -> int:
        return abs(self.x) + abs(self.y)


@record(kw_only=True)
class Settings:
    interval: int = field(default=1, validator=_positive)
    timeout: int = field(default=1, validator=_positive)
    names: tuple[str, ...] = field(default=["b", "a"], converter=lambda v: tuple(sorted(v)))

    def __post_init__(self) -> None:
        if self.timeout > self.interval:
            raise ValueError("timeout exceeds interval")


@record(frozen=False)
class Tally:
    seen: list[int] = field(factory=list)


@record
class Named:
    name: str

    def describe(self) -> str:
        return super().__repr__()  # the zero-argument super() of the rebuilt class


def test_shipped_code_is_current() -> None:
    """``python -m swimlib.records`` was run after the last change to a record."""
    shipped = Path(_record_code.__file__).read_text()
    assert shipped == records.render_code_module(records.shipped_sources()), (
        "swimlib/_record_code.py is stale: run `python -m swimlib.records`")


def test_no_record_of_the_packages_compiles_at_import() -> None:
    records.import_every_module()
    ours = [(module, name) for module, name in records.compiled_at_import
            if module.split(".")[0] in records.PACKAGES]
    assert ours == []
    # This module's records are not shipped: they compiled, and were counted.
    assert (__name__, "Point") in records.compiled_at_import


def test_the_agent_imports_no_attrs_and_compiles_no_record() -> None:
    code = ("import sys, swimlib.agent.command, swimlib.records as r;"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('attr', 'attrs',"
            " 'dataclasses_json')), r.compiled_at_import)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.strip()
    assert out == "[] []"


def test_fields_defaults_and_factories() -> None:
    p = Point(1)
    assert (p.x, p.y, p.tags) == (1, 0, {})
    assert Point(1).tags is not p.tags  # a fresh default per instance
    assert Point(x=2, y=3) == Point(2, 3)
    assert Point.LIMIT == 10 and "LIMIT" not in Point.__slots__
    assert Point.__slots__ == ("x", "y", "tags")
    assert not hasattr(p, "__dict__")
    with pytest.raises(TypeError):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Point(1, 2, {}, 4)  # type: ignore[call-arg]


def test_frozen_equality_hash_and_repr() -> None:
    p = Point(1, 2)
    with pytest.raises(FrozenRecordError):
        p.x = 5  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del p.y  # type: ignore[misc]
    assert p != Point(1, 3) and p.__eq__(Named("a")) is NotImplemented
    assert hash(Settings()) == hash(Settings()) and Settings() == Settings()
    # attrs' format, which simulation trace hashes are computed over
    assert repr(p) == "Point(x=1, y=2, tags={})"
    assert p.norm1() == 3


def test_kw_only_converter_validator_and_post_init() -> None:
    s = Settings()
    assert s.names == ("a", "b")  # the converter ran on the default too
    assert Settings(names=["z", "y"]).names == ("y", "z")
    with pytest.raises(TypeError):
        Settings(2)  # type: ignore[misc]
    with pytest.raises(ValueError, match="interval must be > 0"):
        Settings(interval=0)
    with pytest.raises(ValueError, match="timeout exceeds interval"):
        Settings(interval=1, timeout=2)
    assert Settings.__match_args__ == ()


def test_replace_checks_again() -> None:
    s = Settings(interval=5, timeout=2)
    assert replace(s, timeout=5) == Settings(interval=5, timeout=5)
    with pytest.raises(ValueError, match="timeout exceeds interval"):
        replace(s, timeout=6)


def test_mutable_records_are_unhashable() -> None:
    t = Tally()
    t.seen.append(1)
    t.seen = [2]
    assert t == Tally([2])
    with pytest.raises(TypeError):
        hash(t)


def test_match_args_and_super() -> None:
    match Point(1, 2):
        case Point(x, y):
            assert (x, y) == (1, 2)
    assert Named("n").describe().startswith("<")


def test_a_field_without_default_after_one_with_is_refused() -> None:
    with pytest.raises(TypeError, match="has no default"):
        @record
        class Bad:
            a: int = 0
            b: int
