"""Nearest training images by features and by pixels."""

from __future__ import annotations

from convscope.inspect.neighbors import neighbors
from convscope.render.report.card import Card, Figure, Strong, para
from convscope.render.report.context import ReportContext
from convscope.render.report.registry import register_section


@register_section("neighbours", "Nearest neighbours: features against pixels", costly=True, weight=2)
def neighbours_section(ctx: ReportContext) -> Card:
    """For test images (left), the nearest training images by the network's features ("FC7")
    beside the nearest by raw pixels; green: same label as the query, red: another.
    Feature neighbours share meaning, pixel neighbours only colour and layout."""
    c = ctx.config
    queries = min(len(ctx.source.test_images), max(100, c.neighbour_queries))
    r = neighbors(ctx.clf, ctx.source, queries=queries, show=c.neighbour_queries, k=6,
                  database=c.neighbour_database, seed=c.seed)
    ctx.facts["neighbour_agreement"] = r.agreement
    return Card([para(f"Label agreement of the {r.config.k} nearest of {r.config.database:,} "
                      f"training images, over {len(r.query_indices)} test images: ",
                      Strong(f"{100 * r.agreement['feature']:.1f}%"),
                      f" in feature space ({r.config.layer}), "
                      f"{100 * r.agreement['pixel']:.1f}% in pixel space."),
                 Figure(r.render(), "neighbours")])
