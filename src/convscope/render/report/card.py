"""What a report section returns: its card as data, a list of parts that
:mod:`convscope.render.report.page` (the one template) turns into HTML.

A part is a paragraph (:class:`Text`, made of plain, :class:`Strong` and :class:`Big`
runs), a list (:class:`Bullets`), a :class:`Table` (whose cells may be :class:`Bar`), a
:class:`Figure` or a row of captioned :class:`Tiles`.  No section writes HTML.

>>> card = Card([para("3 test images"), Table(("class", "top-1"), [("cat", "90%")], (1,))])
>>> card.parts[0]
Text(runs=('3 test images',), cls='')
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Strong:
    """A bold run of text."""

    text: str


@dataclass(frozen=True)
class Big:
    """A headline number (large type)."""

    text: str


@dataclass(frozen=True)
class Text:
    """A paragraph: runs of plain text (str), :class:`Strong` and :class:`Big`; ``cls``
    "note" (a side remark) or "unavailable" (why the section does not apply)."""

    runs: tuple = ()
    cls: str = ""


def para(*runs) -> Text:
    """A plain paragraph of ``runs``."""
    return Text(runs)


def note(*runs) -> Text:
    """A side remark (set in the soft, italic style)."""
    return Text(runs, "note")


@dataclass(frozen=True)
class Bullets:
    """A list; each item is a tuple of runs (or one str)."""

    items: tuple = ()


@dataclass(frozen=True)
class Bar:
    """A table cell drawn as a bar ``fraction`` (0-1) of the full width long."""

    fraction: float


@dataclass(frozen=True)
class Table:
    """Rows of cells (text, or :class:`Bar`); ``head`` None: no header row; columns in
    ``numeric`` are right-aligned; ``scroll``: wide, scrolls sideways."""

    head: Sequence | None
    rows: Sequence[Sequence]
    numeric: Sequence[int] = ()
    cls: str = ""
    foot: Sequence | None = None
    scroll: bool = False


@dataclass(frozen=True)
class Figure:
    """A picture: PNG bytes, a uint8 image (array or tensor) or a matplotlib Figure; ``alt``
    says what it shows."""

    picture: object
    alt: str


@dataclass(frozen=True)
class Tile:
    """One small image (uint8 (C, H, W)) with its caption; ``cls`` "wrong" outlines it red."""

    image: object
    caption: str
    cls: str = ""


@dataclass(frozen=True)
class Tiles:
    """Captioned thumbnails, ``side`` pixels wide."""

    items: Sequence[Tile]
    side: int = 96


@dataclass
class Card:
    """A section's card, in page order (its title and how-to-read line are the section's)."""

    parts: list = field(default_factory=list)
