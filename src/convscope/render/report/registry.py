"""The report's sections by name: :data:`SECTIONS`, in page order (the CLI's
``--sections`` choices read it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from convscope.registries import adds_to
from convscope.render.report.card import Card


@dataclass(frozen=True)
class Section:
    name: str
    title: str
    #: one line: what the section shows and how to read it
    how: str
    #: ``fn(ctx: ReportContext) -> Card``: computes the section and returns its card as data
    fn: Callable[..., Card]
    #: takes more than a few seconds on a CIFAR-10-sized model (skip with --sections)
    costly: bool = False
    #: share of the progress bar
    weight: int = 1
    #: the tasks of the models it applies to (classify; detect and segment: a detector or
    #: segmenter convscope trained); a report leaves the others out
    tasks: tuple[str, ...] = ("classify",)


SECTIONS: dict[str, Section] = {}


def register_section(name: str, title: str, how: str | None = None, costly: bool = False,
                     weight: int = 1, tasks: tuple[str, ...] = ("classify",)):
    """Add a section: ``fn(ctx) -> Card``, placed after the ones registered before it; the
    line under its title (``how``) is, by default, the function's docstring."""

    def section(fn) -> Section:
        about = how if how is not None else " ".join((fn.__doc__ or "").split())
        if not about:
            raise TypeError(f"section {name!r} says how to read it: give it a docstring.")
        return Section(name, title, about, fn, costly, weight, tuple(tasks))

    return adds_to(SECTIONS, section)


def list_sections(costly: bool | None = None, task: str | None = None) -> list[str]:
    """Section names in page order; ``costly`` True/False keeps only those (not) costly,
    ``task`` those that apply to a model of that task."""
    return [s.name for s in SECTIONS.values() if (costly is None or s.costly == costly)
            and (task is None or task in s.tasks)]
