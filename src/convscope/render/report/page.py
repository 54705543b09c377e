"""The report's one template: every section's card from the data it returned
(:mod:`~convscope.render.report.card`), the page around the cards, and the resolved config
embedded in it (``<script type="application/json" id="convscope-config">``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime, timezone

from convscope.render import html as H
from convscope.render.figures import figure_png, image_png
from convscope.render.report import card as C
from convscope.render.report.config import ReportConfig
from convscope.render.report.context import ReportContext
from convscope.render.report.registry import Section
from convscope.text import count

CONFIG_ID = "convscope-config"


# --------------------------------------------------------------------------- one card
def runs_html(runs) -> str:
    """A paragraph's runs (a str, or a tuple of str, Strong and Big) as HTML."""
    if isinstance(runs, (str, C.Strong, C.Big)):
        runs = (runs,)
    out = []
    for run in runs:
        if isinstance(run, C.Strong):
            out.append(f"<b>{H.esc(run.text)}</b>")
        elif isinstance(run, C.Big):
            out.append(f'<span class="big">{H.esc(run.text)}</span>')
        else:
            out.append(H.esc(run))
    return "".join(out)


def cell_html(cell) -> str:
    if isinstance(cell, C.Bar):
        return f'<span class=bar style="width:{200 * cell.fraction:.0f}px"></span>'
    return runs_html(cell)


def picture_png(picture) -> bytes:
    """PNG bytes of a Figure's picture: PNG bytes as they are, a matplotlib Figure or an
    image."""
    if isinstance(picture, bytes):
        return picture
    if hasattr(picture, "savefig"):
        return figure_png(picture)
    return image_png(picture)


def part_html(part) -> str:
    if isinstance(part, C.Text):
        klass = f' class="{H.esc(part.cls)}"' if part.cls else ""
        return f"<p{klass}>{runs_html(part.runs)}</p>"
    if isinstance(part, C.Bullets):
        return "<ul>" + "".join(f"<li>{runs_html(item)}</li>" for item in part.items) + "</ul>"
    if isinstance(part, C.Table):
        table = H.table(part.head, part.rows, part.numeric, cls=part.cls, foot=part.foot,
                        cell=cell_html)
        return f'<div class="scroll">{table}</div>' if part.scroll else table
    if isinstance(part, C.Figure):
        return H.img(picture_png(part.picture), part.alt, "fig")
    if isinstance(part, C.Tiles):
        return '<div class="tiles">' + "".join(H.tile(t.image, t.caption, part.side, t.cls)
                                               for t in part.items) + "</div>"
    raise TypeError(f"a card part is Text, Bullets, Table, Figure or Tiles, not "
                    f"{type(part).__name__}.")


def card_html(name: str, title: str, how: str, card: C.Card) -> str:
    """One section's card: its title, how to read it, then its parts in order."""
    body = "".join(part_html(p) for p in card.parts)
    return (f'<section class="card" id="sec-{H.esc(name)}" data-section="{H.esc(name)}">'
            f"<h2>{H.esc(title)}</h2><p class=\"how\">{H.esc(how)}</p>{body}</section>")


def unavailable(reason) -> C.Card:
    """The card of a section that does not apply to this model or data: why."""
    return C.Card([C.Text((f"Not available here: {reason}",), "unavailable")])


# --------------------------------------------------------------------------- the page
def assemble(ctx: ReportContext, sections: Sequence[Section], cards: Sequence[str],
             seconds: dict[str, float]) -> str:
    """The page: title, table of contents, the cards (HTML), the footer and the record."""
    clf, ds = ctx.clf, ctx.dataset
    h, w = clf.image_size
    toc = "".join(f'<a href="#sec-{s.name}">{H.esc(s.title)}</a>' for s in sections)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    record = {"job": "report", **asdict(ctx.config), "dataset": ds.name,
              "test_images": ctx.test_count, "seconds": seconds, "facts": ctx.facts,
              "created": when}
    footer = (f'<footer class="page">Made by convscope report on {when} in '
              f"{seconds['total']:.1f} s. Settings: <code>{H.esc(_settings(ctx.config))}</code>"
              "</footer>")
    body = f'<nav class="toc">{toc}</nav>{"".join(cards)}{footer}{H.json_script(record, CONFIG_ID)}'
    name = H.model_label(ctx.config.model or clf.meta.model)
    subtitle = (f"{clf.meta.model} · {count(len(clf.classes), 'class', 'classes')} · "
                f"{h}x{w}x{clf.channels} images · scored on {ds.name} "
                f"({count(ctx.test_count, 'test image')})")
    return H.page(f"convscope report: {name}", body, subtitle)


def _settings(config: ReportConfig) -> str:
    d = asdict(config)
    return ", ".join(f"{k}={v}" for k, v in d.items() if k not in ("sections", "model"))


def read_report_config(html_text: str) -> dict:
    """The resolved config embedded in a report page."""
    start = html_text.index(f'id="{CONFIG_ID}">') + len(f'id="{CONFIG_ID}">')
    end = html_text.index("</script>", start)
    return json.loads(html_text[start:end])
