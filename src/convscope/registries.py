"""The one shape of every registry (datasets, models, methods, challenges, report sections).

Each registry is a ``dict`` from a name to an entry with a ``name`` field, filled by a
decorator on the function the entry wraps; :func:`adds_to` is that decorator's body, so the
registries differ only in their entries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from convscope.errors import UsageError, unknown_name

F = TypeVar("F", bound=Callable)


def adds_to(table: dict, make: Callable) -> Callable[[F], F]:
    """A decorator storing ``make(fn)`` in ``table`` under the entry's name; ``fn`` is
    returned unchanged, so it stays callable on its own."""

    def decorate(fn: F) -> F:
        entry = make(fn)
        table[entry.name] = entry
        return fn

    return decorate


def look_up(table: dict, kind: str, name, usages: list[str]):
    """``"key:arg"`` -> (entry, key, sep, arg); a missing or unknown name is one sentence that
    lists the names a user may type (``usages``)."""
    if not isinstance(name, str) or not name:
        raise UsageError(f"a {kind} name is required; choose one of: {', '.join(usages)}.")
    key, sep, arg = name.partition(":")
    entry = table.get(key)
    if entry is None:
        raise unknown_name(kind, name, usages)
    return entry, key, sep, arg
