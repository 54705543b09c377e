"""The model's facts and its layer table."""

from __future__ import annotations

from convscope.inspect.summary import COLUMNS, NUMERIC_COLUMNS, summarize, table_cells, totals_lines
from convscope.render.report.card import Bullets, Card, Strong, Table, para
from convscope.render.report.context import ReportContext
from convscope.render.report.registry import register_section


@register_section("model", "Model", tasks=("classify", "detect", "segment"))
def model_section(ctx: ReportContext) -> Card:
    """The network layer by layer: K filters of size F, stride S and padding P, the output
    volume WxHxD, weights, receptive field (RF) on the input and multiply-adds; the
    totals are cross-checked against the model."""
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
    table = summarize(ctx.clf)
    rows, total = table_cells(table)
    ctx.facts["params"] = table.totals["params"]
    ctx.facts["macs"] = table.totals["macs"]
    card = Card([Table(None, facts, cls="facts"),
                 Table(COLUMNS, rows, NUMERIC_COLUMNS, cls="layers", foot=total, scroll=True),
                 Bullets(tuple((Strong(k), f" {v}") for k, v in totals_lines(table)))])
    if table.notes:
        card.parts += [para("Notes:"), Bullets(tuple(table.notes))]
    return card
