"""The t-SNE map of the test images (the web app's map: the workbench computes it)."""

from __future__ import annotations

from convscope.render.report.card import Card, Figure, para
from convscope.render.report.context import ReportContext
from convscope.render.report.registry import register_section


@register_section("tsne", "t-SNE map of the test images", costly=True, weight=3)
def tsne_section(ctx: ReportContext) -> Card:
    """The feature vectors of test images laid out in 2-D by t-SNE (openTSNE): nearby points
    are images the network sees as alike. Left: coloured by true class; right: the images
    themselves on a grid in the same layout."""
    e = ctx.bench.embedding()
    ctx.facts["tsne"] = {"n": e.config.n, "layer": e.config.layer}
    return Card([para(f"{e.config.n:,} test images, layer {e.config.layer}."),
                 Figure(e.render(), "t-SNE map")])
