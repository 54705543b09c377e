"""Attribution maps of a few test images, every method."""

from __future__ import annotations

from convscope.inspect.attribution import explain_many, list_methods
from convscope.render.attribution import explanation_figure
from convscope.render.report.card import Card, Figure
from convscope.render.report.context import ReportContext
from convscope.render.report.registry import register_section


@register_section("explanations", "Why: attribution maps", costly=True, weight=3)
def explanations_section(ctx: ReportContext) -> Card:
    """For sample test images, which pixels the predicted class depends on: occlusion
    (probability with a patch masked; blue = the patch matters), saliency, guided
    backprop, Grad-CAM and guided Grad-CAM (bright = important)."""
    pick = ctx.sample(ctx.config.explain_images)
    results = explain_many(ctx.clf, ctx.images[pick], list_methods())
    names = [f"#{int(i)} {ctx.label(i)}" for i in pick]
    return Card([Figure(explanation_figure(results, names=names), "attribution maps")])
