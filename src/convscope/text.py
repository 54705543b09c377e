"""Counts in words, for everything convscope prints: ``count(1, "bias", "biases")`` is
``"1 bias"``, ``count(27, "weight")`` is ``"27 weights"``, with thousands separated.

Hand-written (a few lines): the maintained inflection library (``inflect``) is not a
dependency, and the words convscope prints are few and known, so an irregular plural is
given where it is used rather than guessed (``epoch`` is not ``epoches``).

>>> count(1, "bias", "biases"), count(10, "bias", "biases"), count(1_000, "image")
('1 bias', '10 biases', '1,000 images')
"""

from __future__ import annotations


def plural(n: int | float, word: str, many: str | None = None) -> str:
    """``word`` when ``n`` is 1, else its plural (``many``, default ``word + "s"``)."""
    return word if n == 1 else (many if many is not None else word + "s")


def count(n: int | float, word: str, many: str | None = None) -> str:
    """``n`` (thousands separated) followed by the word in the right number."""
    shown = f"{int(n):,}" if float(n).is_integer() else f"{n:,g}"
    return f"{shown} {plural(n, word, many)}"


__all__ = ["count", "plural"]
