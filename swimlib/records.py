"""Records: frozen (or plain) classes of named fields, cheap to define.

Why not attrs or dataclasses: both write each class's ``__init__``,
``__eq__``, ``__repr__`` and more as source text and compile it while the
module imports. Every message, event and effect here is such a class, so an
agent paid about 40 ms of its start-up (a third of it) compiling the same
methods on every run.

A record is the same idea with that cost moved out of the start-up:

- ``__init__`` is still generated (it runs for every decoded message, so it
  must be straight-line code), but its compiled form ships in
  :mod:`swimlib._record_code`, which Python caches as bytecode like any
  module. The generated source is the lookup key, so a stale entry can never
  be used: a record whose source is not there (someone edited a record and
  did not run ``python -m swimlib.records``) compiles at import, correct but
  slower, and ``tests/unit/test_records.py`` fails until the file is
  regenerated.
- ``__eq__``, ``__hash__`` and ``__repr__`` are shared closures over an
  ``operator.attrgetter``; nothing is compiled for them.

Semantics follow attrs' ``frozen``/``define``: fields in declaration order,
``__slots__``, positional or keyword arguments (``kw_only=True``: keyword
only), defaults, ``field(factory=, converter=, validator=)``; converters run
on defaults too, validators after every field is set, then the class's
``__post_init__`` if it has one (checks across fields). Equality needs the
same class; a frozen record hashes by value, a mutable one is unhashable.
The repr is attrs' (simulation traces are hashed over it).
"""

from __future__ import annotations

import operator
import sys
import types
from collections.abc import Callable
from typing import Any, Final, TypeVar, dataclass_transform, overload

T = TypeVar("T")
C = TypeVar("C", bound=type)


class _Nothing:
    """No value given: distinct from ``None``, which is a legitimate value."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NOTHING"


NOTHING: Final = _Nothing()

_CODE_MODULE: Final = "swimlib._record_code"


class FrozenRecordError(AttributeError):
    """A frozen record's field was assigned or deleted."""


class Field:
    """How one field gets its value (see :func:`field`)."""

    __slots__ = ("converter", "default", "factory", "validator")

    def __init__(
        self,
        default: Any,
        factory: Callable[[], Any] | None,
        converter: Callable[[Any], Any] | None,
        validator: Callable[[str, Any], None] | None,
    ) -> None:
        if default is not NOTHING and factory is not None:
            raise TypeError("a field takes a default or a factory, not both")
        self.default = default
        self.factory = factory
        self.converter = converter
        self.validator = validator


def field(
    *,
    default: Any = NOTHING,
    factory: Callable[[], Any] | None = None,
    converter: Callable[[Any], Any] | None = None,
    validator: Callable[[str, Any], None] | None = None,
) -> Any:
    """A field with a mutable default (``factory``), a ``converter`` applied to
    every value (defaults too), or a ``validator(name, value)`` that raises."""
    return Field(default, factory, converter, validator)


def _is_classvar(annotation: object) -> bool:
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return text.startswith(("ClassVar", "typing.ClassVar", "t.ClassVar"))


def _has_default(spec: Field) -> bool:
    return spec.default is not NOTHING or spec.factory is not None


def _init_source(names: list[str], specs: dict[str, Field], frozen: bool, kw_only: bool,
                 post_init: bool) -> str:
    """``__init__``'s source. Defaults are written ``_D`` and supplied when the
    function is made, so the text depends only on the shape of the record."""
    params = [f"{name}=_D" if _has_default(specs[name]) else name for name in names]
    if kw_only and params:
        params.insert(0, "*")
    lines = [f"def __init__(self, {', '.join(params)}):" if params else "def __init__(self):"]
    for name in names:
        spec = specs[name]
        value = name
        if spec.factory is not None:
            lines.append(f"    if {name} is _NOTHING: {name} = _f_{name}()")
        if spec.converter is not None:
            value = f"_c_{name}({name})"
        if frozen:
            lines.append(f"    _osa(self, {name!r}, {value})")
        else:
            lines.append(f"    self.{name} = {value}")
    lines.extend(f"    _v_{name}({name!r}, self.{name})"
                 for name in names if specs[name].validator is not None)
    if post_init:
        lines.append("    self.__post_init__()")
    if len(lines) == 1:
        lines.append("    pass")
    return "\n".join(lines) + "\n"


#: Sources compiled at import because :mod:`swimlib._record_code` lacked
#: them, by the record's module and name (checked by the tests).
compiled_at_import: list[tuple[str, str]] = []
#: Every ``__init__`` source made so far, with the modules of its records.
init_sources: dict[str, set[str]] = {}
_shipped_code: dict[str, Any] | None = None


def _code_for(source: str, module: str, qualname: str) -> Any:
    global _shipped_code
    if _shipped_code is None:
        try:
            from swimlib import _record_code
            _shipped_code = _record_code.CODE
        except ImportError:  # being regenerated
            _shipped_code = {}
    init_sources.setdefault(source, set()).add(module)
    code = _shipped_code.get(source)
    if code is None:
        namespace: dict[str, Any] = {"_D": None}
        exec(compile(source, f"<record {qualname}>", "exec"), namespace)
        code = namespace["__init__"].__code__
        compiled_at_import.append((module, qualname))
    return code


def _make_init(cls: type, names: list[str], specs: dict[str, Field], frozen: bool,
               kw_only: bool) -> Any:
    source = _init_source(names, specs, frozen, kw_only, "__post_init__" in cls.__dict__)
    code = _code_for(source, cls.__module__, cls.__qualname__)
    namespace: dict[str, Any] = {"_osa": object.__setattr__, "_NOTHING": NOTHING,
                                 "__builtins__": __builtins__}
    positional: list[Any] = []
    keyword: dict[str, Any] = {}
    for name in names:
        spec = specs[name]
        if spec.factory is not None:
            namespace[f"_f_{name}"] = spec.factory
        if spec.converter is not None:
            namespace[f"_c_{name}"] = spec.converter
        if spec.validator is not None:
            namespace[f"_v_{name}"] = spec.validator
        if not _has_default(spec):
            continue
        default = NOTHING if spec.factory is not None else spec.default
        if kw_only:
            keyword[name] = default
        else:
            positional.append(default)
    init = types.FunctionType(code, namespace, "__init__", tuple(positional) or None)
    init.__kwdefaults__ = keyword or None
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    return init


def _shared_methods(names: tuple[str, ...], frozen: bool) -> dict[str, Any]:
    """``__eq__``, ``__hash__``, ``__repr__`` (and the frozen guards): closures, not compiled."""
    values: Callable[[Any], Any] = (operator.attrgetter(*names) if names
                                    else (lambda _self: ()))

    def __eq__(self: Any, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return bool(values(self) == values(other))

    def __repr__(self: Any) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
        return f"{self.__class__.__qualname__.rsplit('>.', 1)[-1]}({fields})"

    methods: dict[str, Any] = {"__eq__": __eq__, "__repr__": __repr__}
    if frozen:
        def __hash__(self: Any) -> int:
            return hash(values(self))

        def __setattr__(self: Any, name: str, value: Any) -> None:
            raise FrozenRecordError(f"{type(self).__name__} is frozen")

        def __delattr__(self: Any, name: str) -> None:
            raise FrozenRecordError(f"{type(self).__name__} is frozen")

        methods.update(__hash__=__hash__, __setattr__=__setattr__, __delattr__=__delattr__)
    else:
        methods["__hash__"] = None
    return methods


_REQUIRED: Final = Field(NOTHING, None, None, None)


def _build(cls: C, frozen: bool, kw_only: bool) -> C:
    annotations = cls.__dict__.get("__annotations__", {})  # noqa: RUF063 (own fields only)
    names = [name for name, ann in annotations.items() if not _is_classvar(ann)]
    specs: dict[str, Field] = {}
    defaulted = False  # a field before this one has a default
    for name in names:
        value = cls.__dict__.get(name, NOTHING)
        spec = (_REQUIRED if value is NOTHING
                else value if isinstance(value, Field) else Field(value, None, None, None))
        if _has_default(spec):
            defaulted = True
        elif defaulted and not kw_only:
            raise TypeError(f"{cls.__qualname__}.{name} has no default, but a field before it has")
        specs[name] = spec
    body = {key: value for key, value in cls.__dict__.items()
            if key not in ("__dict__", "__weakref__") and key not in names}
    body["__slots__"] = tuple(names)
    body["__qualname__"] = cls.__qualname__
    body["__match_args__"] = () if kw_only else tuple(names)
    body.update(_shared_methods(tuple(names), frozen))
    body["__init__"] = _make_init(cls, names, specs, frozen, kw_only)
    new = type(cls)(cls.__name__, cls.__bases__, body)
    _repoint_class_cells(new, cls)
    return new


def _repoint_class_cells(new: type, old: type) -> None:
    """``super()`` and ``__class__`` in methods refer to the class they were
    defined in; the record is a new class (slots need one), so point them at it."""
    for value in new.__dict__.values():
        functions = [value.fget, value.fset, value.fdel] if isinstance(value, property) \
            else [getattr(value, "__func__", value)]
        for function in functions:
            for cell in getattr(function, "__closure__", None) or ():
                try:
                    if cell.cell_contents is old:
                        cell.cell_contents = new
                except ValueError:  # an empty cell
                    pass


@overload
def record(cls: C, /) -> C: ...
@overload
def record(*, frozen: bool = True, kw_only: bool = False) -> Callable[[C], C]: ...


@dataclass_transform(frozen_default=True, field_specifiers=(field, Field))
def record(cls: Any = None, /, *, frozen: bool = True, kw_only: bool = False) -> Any:
    """Make ``cls`` a record (``@record``, ``@record(kw_only=True)``,
    ``@record(frozen=False)`` for a mutable one)."""
    if cls is None:
        return lambda c: _build(c, frozen, kw_only)
    return _build(cls, frozen, kw_only)


def replace(instance: T, /, **changes: Any) -> T:
    """A copy with some fields changed; converters and validators run again."""
    cls = type(instance)
    values = {name: getattr(instance, name) for name in cls.__slots__}  # type: ignore[attr-defined]
    values.update(changes)
    return cls(**values)


# -- the shipped code ----------------------------------------------------------

_HEADER: Final = '''"""Compiled ``__init__`` of every record in swimlib and lbadapter.

Generated by ``python -m swimlib.records``; ``tests/unit/test_records.py``
checks it is current. Do not edit: see :mod:`swimlib.records`.
"""

# ruff: noqa
# mypy: ignore-errors
from typing import Any

_D = None
CODE: dict[str, Any] = {}
'''

#: The packages whose records ship compiled.
PACKAGES: Final = ("swimlib", "lbadapter")


def import_every_module() -> None:
    """Import each module of :data:`PACKAGES` (so every record is defined)."""
    import importlib
    import pkgutil

    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        for info in pkgutil.walk_packages(package.__path__, f"{package_name}."):
            if info.name == _CODE_MODULE or info.name.endswith("__main__"):
                continue
            try:
                importlib.import_module(info.name)
            except ImportError:  # an optional extra that is not installed
                continue


def shipped_sources() -> list[str]:
    """The sources of every record of :data:`PACKAGES`, sorted."""
    import_every_module()
    return sorted(source for source, modules in init_sources.items()
                  if any(module.split(".")[0] in PACKAGES for module in modules))


def render_code_module(sources: list[str]) -> str:
    parts = [_HEADER]
    for source in sources:
        parts.append(f"\n{source}\nCODE[{source!r}] = __init__.__code__\n")
    return "".join(parts)


def main() -> int:
    from pathlib import Path

    from swimlib import records  # this module as the records import it (not __main__)

    sources = records.shipped_sources()
    target = Path(__file__).with_name("_record_code.py")
    target.write_text(records.render_code_module(sources))
    print(f"wrote {target} ({len(sources)} record shapes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
