"""The errors convscope raises for things a user can fix.

Every user-facing failure is a :class:`ConvscopeError` whose message is one
sentence: what went wrong and what to do.  The CLI prints it without a
traceback and exits non-zero (2 for usage errors, 1 otherwise).
"""

from __future__ import annotations


class ConvscopeError(Exception):
    """A problem with the user's input, files or environment."""

    exit_code = 1


class UsageError(ConvscopeError):
    """A bad command-line choice: unknown name, malformed option value."""

    exit_code = 2


class ImageError(ConvscopeError):
    """An image file that is missing, unreadable or not allowed."""


class ModelFileError(ConvscopeError):
    """A model file that is missing, malformed or not a convscope model."""


def unknown_name(kind: str, name: str, valid: list[str]) -> UsageError:
    """The error for a name that is not in a registry, listing the valid ones."""
    return UsageError(f"unknown {kind} {name!r}; choose one of: {', '.join(valid)}.")
