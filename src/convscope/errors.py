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
    """An image file that is missing, unreadable or not allowed.

    ``kind`` says which, for callers that answer differently (the web app's HTTP status):
    ``missing``, ``empty``, ``format`` (not an image, or a format outside the allow-list),
    ``too_large`` (above the pixel limit, refused before decoding) or ``corrupt``.
    """

    KINDS = ("missing", "empty", "format", "too_large", "corrupt")

    def __init__(self, message: str, kind: str = "corrupt"):
        super().__init__(message)
        self.kind = kind


class ModelFileError(ConvscopeError):
    """A model file that is missing, malformed or not a convscope model."""


def unknown_name(kind: str, name: str, valid: list[str]) -> UsageError:
    """The error for a name that is not in a registry, listing the valid ones."""
    return UsageError(f"unknown {kind} {name!r}; choose one of: {', '.join(valid)}.")
