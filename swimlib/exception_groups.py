"""Reading the exception groups task groups raise (trio always, asyncio under anyio).

One failure inside a task group reaches its caller wrapped, perhaps more than
once; what an operator should read, and what a caller should test, is the
error inside.
"""

from __future__ import annotations

__all__ = ["innermost", "leaves"]


def innermost(exc: BaseException) -> BaseException:
    """The one error inside (nested) single-member groups; ``exc`` itself otherwise."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def leaves(exc: BaseException) -> list[BaseException]:
    """Every error that is not a group, in the (nested) groups of ``exc``."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in leaves(sub)]
    return [exc]
