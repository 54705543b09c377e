"""The job: :func:`build_report` runs each chosen section, has the page render its card,
and returns the :class:`Report`."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

from convscope.display import PageDisplay
from convscope.errors import ConvscopeError, UsageError
from convscope.evaluate import dataset_for_model
from convscope.fileio import write_text_atomic
from convscope.loading import open_model
from convscope.progress import progress_bar
from convscope.render.report.card import Card, note
from convscope.render.report.config import ReportConfig
from convscope.render.report.context import AnnotatedContext, ReportContext, open_report_data
from convscope.render.report.page import assemble, card_html, unavailable
from convscope.render.report.registry import SECTIONS, Section


@dataclass
class Report(PageDisplay):
    """The page and what went into it."""

    html: str
    config: ReportConfig
    seconds: dict[str, float]   # per section
    facts: dict

    def figure(self):
        """Where the report's time went: seconds per section, as a matplotlib Figure (the
        page itself is the notebook's picture: ``_repr_html_``)."""
        from matplotlib.figure import Figure  # lazily, without pyplot  # heavy optional dependency

        parts = {k: v for k, v in self.seconds.items() if k != "total"}
        fig = Figure(figsize=(6, 0.3 * len(parts) + 1))
        ax = fig.add_subplot()
        ax.barh(list(parts), list(parts.values()))
        ax.invert_yaxis()
        ax.set_xlabel("seconds")
        ax.set_title(f"report: {self.seconds.get('total', sum(parts.values())):.1f} s",
                     fontsize=10)
        fig.tight_layout()
        return fig

    def save(self, path: str | os.PathLike) -> Path:
        """Write the page atomically (a temp file, then a rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_text_atomic(path, self.html)


def build_report(model, data=None, config: ReportConfig | None = None, *,
                 progress: bool = True, data_root=None, image_size: int | None = None,
                 model_path: str | os.PathLike | None = None, **options) -> Report:
    """The report of ``model`` (a Classifier, model file or torchvision name; or a detector
    or segmenter convscope trained, whose report has the sections that apply to it) on
    ``data`` (a dataset name, None for the model's own, or a dataset).

    ``model_path`` is the file a Classifier was loaded from (a model given as a file needs
    none): the training curves are read from the ``metrics.jsonl`` beside it.
    ``options`` are :class:`ReportConfig` fields.  One progress bar covers the job.
    """
    clf = open_model(model)
    task = getattr(clf, "task", "classify")
    if task not in ("classify", "detect", "segment") or (
            task != "classify" and not hasattr(clf, "evaluate")):
        raise UsageError(f"a report is made of a classifier or of a detector or segmenter "
                         f"convscope trained, not of the packaged {task} network "
                         f"{getattr(clf, 'name', model)}.")
    config = replace(config or ReportConfig(), **options)
    if isinstance(data, str):
        config = replace(config, data=data)
    if not config.model and isinstance(model, (str, os.PathLike)):
        config = replace(config, model=str(model))
    config = config.resolved()
    if model_path is None and isinstance(model, (str, os.PathLike)):
        model_path = model
    model_path = Path(model_path) if model_path is not None and Path(
        model_path).is_file() else None
    chosen = [SECTIONS[name] for name in config.sections]
    sections = [s for s in chosen if task in s.tasks]
    left_out = [s.name for s in chosen if task not in s.tasks]
    config = replace(config, sections=tuple(s.name for s in sections))
    if not sections:
        raise UsageError(f"none of the sections chosen applies to a {_kind(task)}; choose "
                         "from: " + ", ".join(n for n, s in SECTIONS.items() if task in s.tasks)
                         + ".")
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    with progress_bar(total=1 + sum(s.weight for s in sections), desc="report", unit="step",
                      enable=progress) as bar:
        bar.set_postfix_str("data")
        t = time.perf_counter()
        wanted = data if data is not None else config.data
        if task == "classify":
            source, split = open_report_data(clf, wanted, data_root=data_root,
                                             image_size=image_size, progress=False)
            ctx = ReportContext(clf, source, split, config, model_path)
        else:
            source = wanted if hasattr(wanted, "task") else dataset_for_model(
                clf, wanted, data_root=data_root, image_size=image_size, progress=False)[0]
            ctx = AnnotatedContext(clf, source, config, model_path)
        seconds["data"] = round(time.perf_counter() - t, 3)
        bar.update(1)
        parts = []
        if left_out and task != "classify":
            parts.append(card_html("left-out", "Sections left out",
                                   f"The sections of a classifier that do not apply to a "
                                   f"{_kind(task)}.",
                                   Card([note(f"Left out: {', '.join(left_out)} (a "
                                              f"classifier's); a {_kind(task)}'s own are "
                                              + ", ".join(n for n, s in SECTIONS.items()
                                                          if task in s.tasks) + ".")])))
        for s in sections:
            bar.set_postfix_str(s.name)
            t = time.perf_counter()
            parts.append(card_html(s.name, s.title, s.how, run_section(s, ctx)))
            seconds[s.name] = round(time.perf_counter() - t, 3)
            bar.update(s.weight)
    seconds["total"] = round(time.perf_counter() - started, 3)
    return Report(assemble(ctx, sections, parts, seconds), config, seconds, ctx.facts)


def _kind(task: str) -> str:
    return {"classify": "classifier", "detect": "detector", "segment": "segmenter"}[task]


def run_section(s: Section, ctx: ReportContext) -> Card:
    """One section's card as data; a section that does not apply to this model or data says
    why (a ConvscopeError's sentence) instead of ending the report."""
    try:
        return s.fn(ctx)
    except ConvscopeError as exc:
        return unavailable(exc)
