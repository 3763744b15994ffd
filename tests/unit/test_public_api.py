"""swimlib's public names: ``__all__``, the lazy loader and the type-checking imports agree."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys

import swimlib
import swimlib.errors


def _type_checking_names() -> set[str]:
    tree = ast.parse(inspect.getsource(swimlib))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for stmt in node.body:
                if isinstance(stmt, ast.ImportFrom):
                    names.update(alias.asname or alias.name for alias in stmt.names)
    return names


def test_all_the_loader_and_the_stubs_name_the_same_things() -> None:
    lazy = set(swimlib._HOMES) | swimlib._SUBMODULES
    assert set(swimlib.__all__) == lazy == _type_checking_names()
    assert swimlib.__all__ == sorted(swimlib.__all__)
    for name in swimlib.__all__:
        value = getattr(swimlib, name)
        home = swimlib._HOMES.get(name)
        if home is not None:  # the object really is defined (or re-exported) there
            assert getattr(sys.modules[home], name) is value


def test_every_public_error_is_defined_in_errors_and_is_a_swim_error() -> None:
    errors = {name for name in swimlib.__all__ if name.endswith(("Error", "Crashed"))}
    for name in errors:
        cls = getattr(swimlib, name)
        assert cls.__module__ == "swimlib.errors", name
        assert issubclass(cls, swimlib.SwimError)
    defined = {name for name, obj in vars(swimlib.errors).items()
               if isinstance(obj, type) and issubclass(obj, Exception)
               and obj.__module__ == "swimlib.errors"}
    assert defined == errors


def test_importing_swimlib_loads_no_event_loop() -> None:
    code = ("import sys, swimlib, swimlib.config; "
            "print(sorted(m for m in ('trio', 'anyio', 'asyncio') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == "[]"
