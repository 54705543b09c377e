"""The report: one self-contained HTML page with the picture of a trained model.

Sections come from one registry, :data:`SECTIONS` (the CLI's ``--sections`` choices read
it); each is a small function that turns a :class:`ReportContext` into the section's HTML,
with a title and one line that says what it shows and how to read it.  Costly sections are
flagged so users can leave them out.  Pictures are embedded as ``data:`` URIs and style is
inline, so the file opens anywhere without a network.  The resolved :class:`ReportConfig`
is embedded too, in ``<script type="application/json" id="convscope-config">``.

The report is written here, by hand, because no maintained library assembles one; every
number and picture in it comes from convscope's own library functions.

>>> r = build_report("runs/demo/model.safetensors", "mnist5k")   # doctest: +SKIP
>>> r.save("report.html")                                         # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from convscope.classifier import Classifier
from convscope.data import ImageDataset
from convscope.display import PageDisplay
from convscope.errors import ConvscopeError, UsageError, unknown_name
from convscope.evaluate import Evaluation, evaluate_logits, resolve_split, sharded_logits
from convscope.fileio import write_text_atomic
from convscope.inspect.attribution import explain_many, list_methods
from convscope.inspect.challenges import challenges
from convscope.inspect.embedding import embed
from convscope.inspect.faithfulness import faithfulness
from convscope.inspect.filters import filters
from convscope.inspect.neighbors import neighbors
from convscope.inspect.patches import DEFAULT_CHANNELS as PATCH_CHANNELS  # the first 16
from convscope.inspect.patches import patches
from convscope.inspect.sources import open_dataset, sample
from convscope.inspect.summary import COLUMNS, NUMERIC_COLUMNS, summarize, table_cells, totals_lines
from convscope.inspect.synthesis import VisualizeConfig, class_images
from convscope.loading import as_classifier
from convscope.progress import progress_bar
from convscope.registries import adds_to
from convscope.render import html as H
from convscope.render.attribution import explanation_figure, faithfulness_figure
from convscope.render.figures import _plt, confusion_figure, figure_png, image_png
from convscope.text import count

CONFIG_ID = "convscope-config"


# --------------------------------------------------------------------------- the config
@dataclass(frozen=True)
class ReportConfig:
    """The options of one report; the resolved values are embedded in the page."""

    #: the dataset (None: the one the model was trained on); its test split is scored
    data: str | None = None
    #: the sections, in page order (empty: every registered section)
    sections: tuple[str, ...] = ()
    #: test images in the t-SNE map (a seeded sample)
    n: int = 2000
    #: most confidently wrong test images shown
    wrong: int = 24
    #: test images with attribution panels (every method)
    explain_images: int = 6
    #: test images scored by the faithfulness curves
    faithfulness_images: int = 40
    #: classes drawn by gradient ascent (the first ones, when the model has more)
    class_images: int = 10
    #: gradient-ascent steps per class image
    class_steps: int = 150
    #: a second model trained apart on the same classes; its probability and top-1 on the
    #: class images are shown beside p (None: the card says that none was given)
    judge: str | None = None
    #: query images of the nearest-neighbour section
    neighbour_queries: int = 8
    #: training images searched for neighbours (a seeded sample; None: all)
    neighbour_database: int | None = 10_000
    #: channels shown with their maximally activating patches (of the first 16 searched)
    patch_units: int = 8
    #: test images scored under the six challenges (a seeded sample)
    challenge_images: int = 300
    seed: int = 0
    batch_size: int = 256
    #: training curves: this metrics.jsonl (None: the one next to the model file)
    metrics: str | None = None
    #: what MODEL was on the command line (for the record)
    model: str = ""

    def resolved(self) -> ReportConfig:
        """A copy with the sections filled in and every value checked."""
        sections = tuple(dict.fromkeys(self.sections or SECTIONS))
        for name in sections:
            if name not in SECTIONS:
                raise unknown_name("report section", name, list(SECTIONS))
        for key in ("n", "wrong", "explain_images", "faithfulness_images", "class_images",
                    "class_steps", "neighbour_queries", "patch_units", "batch_size",
                    "challenge_images"):
            if getattr(self, key) < 1:
                raise UsageError(f"{key.replace('_', '-')} must be at least 1, got "
                                 f"{getattr(self, key)}.")
        if self.patch_units > PATCH_CHANNELS:
            raise UsageError(f"patch-units is at most {PATCH_CHANNELS} (the channels the "
                             f"patches search covers), got {self.patch_units}.")
        return replace(self, sections=sections)


# --------------------------------------------------------------------------- the registry
@dataclass(frozen=True)
class Section:
    name: str
    title: str
    #: one line: what the section shows and how to read it
    how: str
    fn: Callable[[ReportContext], str]
    #: takes more than a few seconds on a CIFAR-10-sized model (skip with --sections)
    costly: bool = False
    #: share of the progress bar
    weight: int = 1


SECTIONS: dict[str, Section] = {}


def register_section(name: str, title: str, how: str, costly: bool = False, weight: int = 1):
    """Add a section: ``fn(ctx) -> HTML``, placed after the ones registered before it."""

    return adds_to(SECTIONS, lambda fn: Section(name, title, how, fn, costly, weight))


def list_sections(costly: bool | None = None) -> list[str]:
    """Section names in page order; ``costly`` True/False keeps only those (not) costly."""
    return [s.name for s in SECTIONS.values() if costly is None or s.costly == costly]


# --------------------------------------------------------------------------- the context
@dataclass
class ReportContext:
    """What every section reads: the model, the data (its test split is the one scored),
    the config, and results computed once and shared (the logits of the test images)."""

    clf: Classifier
    source: ImageDataset    # the dataset as loaded: train split (neighbours) and test split
    split: str              # the split scored: "test" of the model's own data, else "all"
    config: ReportConfig
    model_path: Path | None = None
    facts: dict = field(default_factory=dict)  # what sections measured, for the record

    @cached_property
    def dataset(self) -> ImageDataset:
        """The dataset with the scored split as its test images."""
        return self.source.as_evaluation_split(self.split)

    @property
    def images(self) -> torch.Tensor:
        return self.dataset.test_images

    @property
    def labels(self) -> torch.Tensor:
        return self.dataset.test_labels

    @cached_property
    def logits(self) -> torch.Tensor:
        """(N, K) scores of every test image: the one pass the accuracy sections share
        (under torchrun each process scores a share and all get every score)."""
        if isinstance(self.images, torch.Tensor):
            return sharded_logits(self.clf, self.images, self.config.batch_size)
        return self.clf.logits(self.images, self.config.batch_size)

    @cached_property
    def evaluation(self) -> Evaluation:
        if list(self.dataset.classes) != self.clf.classes:
            raise ConvscopeError(f"{self.dataset.name} has other classes than the model, so "
                                 "accuracy cannot be scored; pass --data with the model's "
                                 "classes.")
        return evaluate_logits(self.logits, self.labels, self.clf.classes)

    def sample(self, n: int) -> torch.Tensor:
        """Sorted positions of a seeded sample of ``n`` test images."""
        return sample(len(self.images), n, self.config.seed)

    def label(self, i: int) -> str:
        return self.dataset.classes[int(self.labels[i])]


# --------------------------------------------------------------------------- the result
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


def open_report_data(clf: Classifier, data, *, data_root=None, image_size: int | None = None,
                     progress: bool = True) -> tuple[ImageDataset, str]:
    """``(dataset, split)``: the dataset a report (or the web app) looks at, and the split
    it scores: a name (None: the model's own data, split exactly as in training, so its
    test images stay unseen) or an ImageDataset; ``auto`` scores the test images of the
    model's own data and every image of any other (as ``convscope evaluate`` does)."""
    ds, own = open_dataset(clf, data, data_root=data_root, image_size=image_size,
                           progress=progress)
    return ds, resolve_split("auto", own)


def build_report(model, data=None, config: ReportConfig | None = None, *,
                 progress: bool = True, data_root=None, image_size: int | None = None,
                 model_path: str | os.PathLike | None = None, **options) -> Report:
    """The report of ``model`` (a Classifier, model file or torchvision name) on ``data``
    (a dataset name, None for the model's own, or an ImageDataset).

    ``model_path`` is the file a Classifier was loaded from (a model given as a file needs
    none): the training curves are read from the ``metrics.jsonl`` beside it.
    ``options`` are :class:`ReportConfig` fields.  One progress bar covers the job.
    """
    clf = as_classifier(model)
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
    sections = [SECTIONS[name] for name in config.sections]
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    with progress_bar(total=1 + sum(s.weight for s in sections), desc="report", unit="step",
                      enable=progress) as bar:
        bar.set_postfix_str("data")
        t = time.perf_counter()
        source, split = open_report_data(clf, data if data is not None else config.data,
                                         data_root=data_root, image_size=image_size,
                                         progress=False)
        seconds["data"] = round(time.perf_counter() - t, 3)
        bar.update(1)
        ctx = ReportContext(clf, source, split, config, model_path)
        parts = []
        for s in sections:
            bar.set_postfix_str(s.name)
            t = time.perf_counter()
            parts.append(render_section(s, ctx))
            seconds[s.name] = round(time.perf_counter() - t, 3)
            bar.update(s.weight)
    seconds["total"] = round(time.perf_counter() - started, 3)
    return Report(assemble(ctx, sections, parts, seconds), config, seconds, ctx.facts)


def render_section(s: Section, ctx: ReportContext) -> str:
    """One section's card; a section that does not apply to this model or data says why
    (a ConvscopeError's sentence) instead of ending the report."""
    try:
        body = s.fn(ctx)
    except ConvscopeError as exc:
        body = f'<p class="unavailable">Not available here: {H.esc(exc)}</p>'
    return (f'<section class="card" id="sec-{s.name}" data-section="{s.name}">'
            f"<h2>{H.esc(s.title)}</h2><p class=\"how\">{H.esc(s.how)}</p>{body}</section>")


def assemble(ctx: ReportContext, sections: Sequence[Section], parts: Sequence[str],
             seconds: dict[str, float]) -> str:
    clf, ds = ctx.clf, ctx.dataset
    h, w = clf.image_size
    toc = "".join(f'<a href="#sec-{s.name}">{H.esc(s.title)}</a>' for s in sections)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    record = {"job": "report", **asdict(ctx.config), "dataset": ds.name,
              "test_images": len(ds.test_images), "seconds": seconds, "facts": ctx.facts,
              "created": when}
    footer = (f'<footer class="page">Made by convscope report on {when} in '
              f"{seconds['total']:.1f} s. Settings: <code>{H.esc(_settings(ctx.config))}</code>"
              "</footer>")
    body = f'<nav class="toc">{toc}</nav>{"".join(parts)}{footer}{H.json_script(record, CONFIG_ID)}'
    name = H.model_label(ctx.config.model or clf.meta.model)
    subtitle = (f"{clf.meta.model} · {count(len(clf.classes), 'class', 'classes')} · "
                f"{h}x{w}x{clf.channels} images · scored on {ds.name} "
                f"({count(len(ds.test_images), 'test image')})")
    return H.page(f"convscope report: {name}", body, subtitle)


def _settings(config: ReportConfig) -> str:
    d = asdict(config)
    return ", ".join(f"{k}={v}" for k, v in d.items() if k not in ("sections", "model"))


def read_report_config(html_text: str) -> dict:
    """The resolved config embedded in a report page."""
    start = html_text.index(f'id="{CONFIG_ID}">') + len(f'id="{CONFIG_ID}">')
    end = html_text.index("</script>", start)
    return json.loads(html_text[start:end])


# --------------------------------------------------------------------------- helpers
def figure(fig, alt: str) -> str:
    return H.img(figure_png(fig), alt, "fig")


def tiles(items: Sequence[tuple[torch.Tensor, str, str]], side: int = 96) -> str:
    """Captioned thumbnails, ``(image (C, H, W) uint8, caption, css class)``."""
    return '<div class="tiles">' + "".join(H.tile(im, cap, side, cls)
                                           for im, cap, cls in items) + "</div>"


def display_side(clf: Classifier) -> int:
    """Thumbnail width: small images enlarged (pixelated), big ones shrunk."""
    return int(min(128, max(64, 4 * max(clf.image_size))))


# --------------------------------------------------------------------------- sections
@register_section("model", "Model", "The network layer by layer: K filters of size F, stride "
                  "S and padding P, the output volume WxHxD, weights, receptive field (RF) on "
                  "the input and multiply-adds; the totals are cross-checked against the model.")
def model_section(ctx: ReportContext) -> str:
    meta = ctx.clf.meta
    h, w = meta.image_size
    options = ", ".join(f"{k}={v}" for k, v in meta.options.items())
    facts = [("model", meta.model + (f" ({options})" if options else "")),
             ("classes", f"{len(meta.classes)}: " + ", ".join(meta.classes[:12])
              + (" ..." if len(meta.classes) > 12 else "")),
             ("images", f"{w}x{h}x{meta.channels} (network input "
                        f"{meta.input_size[1]}x{meta.input_size[0]})"),
             ("trained on", meta.dataset or "?"),
             ("created", meta.created)]
    if meta.train_config:
        keys = ("recipe", "epochs", "batch_size", "optimizer", "lr", "seed")
        facts.append(("training", ", ".join(f"{k} {meta.train_config[k]}" for k in keys
                                            if meta.train_config.get(k) is not None)))
    info = H.table(None, facts, cls="facts")
    table = summarize(ctx.clf)
    rows, total = table_cells(table)
    ctx.facts["params"] = table.totals["params"]
    ctx.facts["macs"] = table.totals["macs"]
    lines = "".join(f"<li><b>{H.esc(k)}</b> {H.esc(v)}</li>" for k, v in totals_lines(table))
    notes = "".join(f"<li>{H.esc(n)}</li>" for n in table.notes)
    return (info + '<div class="scroll">'
            + H.table(COLUMNS, rows, NUMERIC_COLUMNS, cls="layers", foot=total)
            + f"</div><ul>{lines}</ul>" + (f"<p>Notes:</p><ul>{notes}</ul>" if notes else ""))


def read_metrics(path: Path) -> list[dict]:
    """The epochs of a metrics.jsonl, skipping lines that are not JSON objects (a run killed
    mid-write leaves a partial last line)."""
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "epoch" in row:
            rows.append(row)
    return rows


@register_section("training", "Training curves", "Loss and accuracy after every epoch, from "
                  "the metrics.jsonl written next to the model: a test accuracy that stalls "
                  "while the training accuracy climbs is overfitting.")
def training_section(ctx: ReportContext) -> str:
    path = Path(ctx.config.metrics) if ctx.config.metrics else (
        ctx.model_path.parent / "metrics.jsonl" if ctx.model_path else None)
    if path is None:
        return ('<p class="note">The model was given without its file, so there is no '
                "metrics.jsonl to draw curves from; pass the model file (or --metrics).</p>")
    if not path.is_file():
        return (f'<p class="note">No metrics.jsonl next to the model ({H.esc(path)}), so '
                "there are no curves to draw.</p>")
    rows = read_metrics(path)
    if not rows:
        return f'<p class="note">{H.esc(path)} holds no epochs.</p>'
    ctx.facts["epochs"] = len(rows)
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
    epochs = [r["epoch"] for r in rows]
    ax1.plot(epochs, [r.get("train_loss") for r in rows], "o-", label="training loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    for key, label in (("train_acc", "training top-1"), ("test_acc", "test top-1"),
                       ("test_top5", "test top-5")):
        if any(key in r for r in rows):
            ax2.plot(epochs, [r.get(key) for r in rows], "o-", label=label)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("accuracy")
    ax2.set_ylim(0, 1.02)
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    last = rows[-1]
    test = last.get("test_acc")
    text = (f"<p>{H.esc(count(len(rows), 'epoch'))}; last: training loss "
            f"{last.get('train_loss', '?')}, "
            + (f"test top-1 {100 * test:.2f}%" if test is not None else "no test split")
            + f" (from {H.esc(path)}).</p>")
    return text + figure(fig, "training curves")


@register_section("accuracy", "Test accuracy", "Top-1 and top-5 accuracy on the test images, "
                  "accuracy per class, and the confusion matrix: row = true class, column = "
                  "prediction, so off-diagonal cells are the confusions.")
def accuracy_section(ctx: ReportContext) -> str:
    ev = ctx.evaluation
    ctx.facts.update(top1=ev.top1, top5=ev.top5, n=ev.n)
    counts = ev.confusion.sum(axis=1)
    head = (f'<p><span class="big">top-1 {100 * ev.top1:.2f}%</span>'
            f'<span class="big">top-{ev.k} {100 * ev.top5:.2f}%</span> on {ev.n:,} test '
            f"images of {H.esc(ctx.dataset.name)}</p>")
    order = np.argsort(ev.per_class, kind="stable")  # weakest classes first
    shown = order[:50]
    rows = "".join(
        f"<tr><td>{H.esc(ev.classes[i])}</td><td class=num>{int(counts[i]):,}</td>"
        f"<td class=num>{100 * ev.per_class[i]:.1f}%</td><td><span class=bar "
        f'style="width:{200 * ev.per_class[i]:.0f}px"></span></td></tr>' for i in shown)
    more = (f'<p class="note">The {len(shown)} weakest of {len(ev.classes)} classes.</p>'
            if len(ev.classes) > len(shown) else "")
    per_class = ("<table><thead><tr><th>class (weakest first)</th><th class=num>images</th>"
                 f"<th class=num>accuracy</th><th></th></tr></thead><tbody>{rows}</tbody>"
                 f"</table>{more}")
    return head + per_class + figure(confusion_figure(ev), "confusion matrix")


@register_section("mistakes", "Most confidently wrong", "The test images the model got wrong "
                  "with the highest confidence, most confident first: often mislabelled "
                  "images, or the confusions the model has learned.")
def mistakes_section(ctx: ReportContext) -> str:
    ev = ctx.evaluation  # noqa: F841 - checks the classes match
    probs = torch.softmax(ctx.logits, dim=1)
    conf, pred = probs.max(dim=1)
    wrong = (pred != ctx.labels).nonzero()[:, 0]
    ctx.facts["wrong"] = int(len(wrong))
    if len(wrong) == 0:
        return "<p>The model classifies every test image correctly.</p>"
    order = wrong[conf[wrong].argsort(descending=True, stable=True)][: ctx.config.wrong]
    items = [(ctx.images[i], f"#{int(i)} true {ctx.label(i)}, predicted "
              f"{ctx.clf.classes[int(pred[i])]} {float(conf[i]):.2f}", "wrong") for i in order]
    wrong_text = (f"{len(wrong):,} of {count(len(ctx.labels), 'test image')} "
                  f"{'is' if len(wrong) == 1 else 'are'} wrong; "
                  + ("it is:" if len(wrong) == 1 else "the most confident:" if len(order) == 1
                     else f"the {len(order)} most confident:"))
    return f"<p>{wrong_text}</p>" + tiles(items, display_side(ctx.clf))


def _view(caption: str, result, alt: str) -> str:
    """A view's card: one line of HTML ``caption`` above the result's own picture."""
    return f"<p>{caption}</p>" + H.img(image_png(result.render()), alt, "fig")


@register_section("filters", "First-layer filters", "The weights of the first convolution, "
                  "one tile per filter: trained filters look like oriented edges, colour blobs "
                  "and stroke pieces; noise means the layer learned little.")
def filters_section(ctx: ReportContext) -> str:
    f = filters(ctx.clf)
    ctx.facts["filters"] = f.to_dict()
    return _view(f"{H.esc(f.describe())}.", f, "filters")


@register_section("neighbours", "Nearest neighbours: features against pixels", "For test "
                  "images (left), the nearest training images by the network's features "
                  "(\"FC7\") beside the nearest by raw pixels; green: same label as the "
                  "query, red: another. Feature neighbours share meaning, pixel neighbours "
                  "only colour and layout.", costly=True, weight=2)
def neighbours_section(ctx: ReportContext) -> str:
    c = ctx.config
    queries = min(len(ctx.source.test_images), max(100, c.neighbour_queries))
    r = neighbors(ctx.clf, ctx.source, queries=queries, show=c.neighbour_queries, k=6,
                  database=c.neighbour_database, seed=c.seed)
    ctx.facts["neighbour_agreement"] = r.agreement
    return _view(f"Label agreement of the {r.config.k} nearest of {r.config.database:,} "
                 f"training images, over {len(r.query_indices)} test images: <b>"
                 f"{100 * r.agreement['feature']:.1f}%</b> in feature space "
                 f"({H.esc(r.config.layer)}), {100 * r.agreement['pixel']:.1f}% in pixel space.",
                 r, "neighbours")


@register_section("tsne", "t-SNE map of the test images", "The feature vectors of test "
                  "images laid out in 2-D by t-SNE (openTSNE): nearby points are images the "
                  "network sees as alike. Left: coloured by true class; right: the images "
                  "themselves on a grid in the same layout.", costly=True, weight=3)
def tsne_section(ctx: ReportContext) -> str:
    e = embed(ctx.clf, ctx.source, split=ctx.split, n=min(ctx.config.n, len(ctx.images)),
              seed=ctx.config.seed)
    ctx.facts["tsne"] = {"n": e.config.n, "layer": e.config.layer}
    return _view(f"{e.config.n:,} test images, layer {H.esc(e.config.layer)}.", e, "t-SNE map")


@register_section("patches", "What units respond to", "For a few channels of the last "
                  "convolutional layer, the test-image patches (each unit's receptive field) "
                  "that excite it most, strongest first: what that unit detects.",
                  costly=True, weight=2)
def patches_section(ctx: ReportContext) -> str:
    p = patches(ctx.clf, ctx.source, split=ctx.split, seed=ctx.config.seed)
    k = ctx.config.patch_units  # the first k of the channels searched (PATCH_CHANNELS)
    p = replace(p, hits=p.hits[:k], config=replace(p.config, channels=p.config.channels[:k]))
    ctx.facts["patches"] = {"layer": p.config.layer, "channels": list(p.config.channels)}
    return _view(f"Layer {H.esc(p.config.layer)}, channels "
                 f"{', '.join(map(str, p.config.channels))}, over {p.config.n:,} test images; "
                 f"receptive field {p.field.size[0]}x{p.field.size[1]} px.", p,
                 "maximally activating patches")


@register_section("explanations", "Why: attribution maps", "For sample test images, which "
                  "pixels the predicted class depends on: occlusion (probability with a patch "
                  "masked; blue = the patch matters), saliency, guided backprop, Grad-CAM and "
                  "guided Grad-CAM (bright = important).", costly=True, weight=3)
def explanations_section(ctx: ReportContext) -> str:
    pick = ctx.sample(ctx.config.explain_images)
    results = explain_many(ctx.clf, ctx.images[pick], list_methods())
    names = [f"#{int(i)} {ctx.label(i)}" for i in pick]
    return figure(explanation_figure(results, names=names), "attribution maps")


@register_section("faithfulness", "How faithful is each map", "Deletion: remove the pixels a "
                  "map ranks highest first and watch the predicted class's probability fall "
                  "(lower area is better); insertion: add them to a blurred image (higher is "
                  "better). A random map is the baseline to beat.", costly=True, weight=3)
def faithfulness_section(ctx: ReportContext) -> str:
    r = faithfulness(ctx.clf, ctx.dataset, n=ctx.config.faithfulness_images,
                     seed=ctx.config.seed)
    dele, ins = r.auc("deletion"), r.auc("insertion")
    best_d = min(dele, key=lambda m: dele[m][0])
    best_i = max(ins, key=lambda m: ins[m][0])
    ctx.facts["faithfulness"] = {m: {"deletion": dele[m][0], "insertion": ins[m][0]}
                                 for m in r.methods}
    rows = [(m + (" (baseline)" if m == "random" else ""),
             f"{dele[m][0]:.3f} ± {dele[m][1]:.3f}" + (" best" if m == best_d else ""),
             f"{ins[m][0]:.3f} ± {ins[m][1]:.3f}" + (" best" if m == best_i else ""))
            for m in r.methods]
    n = len(next(iter(r.deletion.values())))
    return (H.table(("method", "deletion AUC (lower is better)",
                     "insertion AUC (higher is better)"), rows, (1, 2))
            + f"<p class=\"note\">Mean ± standard error over {n} test images, "
              f"{r.config.steps} steps.</p>" + figure(faithfulness_figure(r), "faithfulness"))


@register_section("classes", "What each class looks like to the model", "Images made by "
                  "gradient ascent on the class score (visualize's default preset: pixels "
                  "with total variation for grayscale models, Fourier for colour ones; "
                  "jitter, scale and rotation); p is the model's probability of that class "
                  "for the image shown, judge the probability a second model trained apart "
                  "(report --judge MODEL) gives it.", costly=True, weight=3)
def classes_section(ctx: ReportContext) -> str:
    k = min(len(ctx.clf.classes), ctx.config.class_images)
    res = class_images(ctx.clf, list(range(k)),
                       VisualizeConfig(steps=ctx.config.class_steps, seed=ctx.config.seed),
                       progress=False, judge=ctx.config.judge)
    images = res.uint8()
    proba = ctx.clf.predict_proba(images)
    ctx.facts["class_images_top1"] = float(np.mean(proba.argmax(1) == np.arange(k)))
    j = res.judgement
    items = [(images[i], f"{label} p={proba[i, i]:.2f}"
              + (f" judge {j.probability[i]:.2f}" if j else ""),
              "" if j is None or j.agrees[i] else "wrong") for i, label in enumerate(res.labels)]
    if j:
        ctx.facts["class_images_judge_agreement"] = j.rate
        judged = f'<p class="note">{H.esc(j.summary())} (red: its top-1 is another class).</p>'
    else:
        judged = ('<p class="note">No judge was given (report --judge MODEL, a second model '
                  "trained apart on the same classes): p alone also rewards images that only "
                  "fool this model.</p>")
    more = (f'<p class="note">The first {k} of {len(ctx.clf.classes)} classes.</p>'
            if k < len(ctx.clf.classes) else "")
    return tiles(items, display_side(ctx.clf)) + judged + more


@register_section("challenges", "The six challenges", "Top-1 accuracy on test images under "
                  "the lecture's recognition challenges (viewpoint, illumination, deformation, "
                  "occlusion, background clutter, intra-class variation), from severity 0 (the "
                  "plain images) to 5; the strip shows one test image at every severity. "
                  "The command convscope challenges gives every number.", costly=True, weight=3)
def challenges_section(ctx: ReportContext) -> str:
    r = challenges(ctx.clf, ctx.dataset, n=min(ctx.config.challenge_images, len(ctx.images)),
                   seed=ctx.config.seed, split="test", batch_size=ctx.config.batch_size)
    m = r.main
    ctx.facts["challenges"] = {"scores": m.group_scores(), "hardest": m.hardest()}
    rows = [(g, f"{100 * v:.1f}%") for g, v in m.group_scores().items()]
    skipped = "".join(f'<p class="note">Skipped {H.esc(k)}: {H.esc(v)}.</p>'
                      for k, v in r.skipped.items())
    return (f"<p>{r.n:,} test images; clean top-1 {100 * m.clean:.1f}%. Hurts most: "
            f"<b>{H.esc(m.hardest())}</b>.</p>"
            + H.table(("challenge", "mean top-1 over severities 1-5"), rows, (1,))
            + figure(r.figure(), "accuracy against severity for each challenge")
            + figure(r.strips_figure(), "one test image at every severity") + skipped)
