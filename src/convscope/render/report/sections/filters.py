"""The first convolution's filters."""

from __future__ import annotations

from convscope.inspect.filters import filters
from convscope.render.report.card import Card, Figure, para
from convscope.render.report.context import ReportContext
from convscope.render.report.registry import register_section


@register_section("filters", "First-layer filters")
def filters_section(ctx: ReportContext) -> Card:
    """The weights of the first convolution, one tile per filter: trained filters look like
    oriented edges, colour blobs and stroke pieces; noise means the layer learned little."""
    f = filters(ctx.clf)
    ctx.facts["filters"] = f.to_dict()
    return Card([para(f"{f.describe()}."), Figure(f.render(), "filters")])
