"""The most confidently wrong test images."""

from __future__ import annotations

import torch

from convscope.render.report.card import Card, Tile, Tiles, para
from convscope.render.report.context import ReportContext
from convscope.render.report.registry import register_section
from convscope.text import count


@register_section("mistakes", "Most confidently wrong")
def mistakes_section(ctx: ReportContext) -> Card:
    """The test images the model got wrong with the highest confidence, most confident
    first: often mislabelled images, or the confusions the model has learned."""
    ev = ctx.evaluation  # noqa: F841 - checks the classes match
    probs = torch.softmax(ctx.logits, dim=1)
    conf, pred = probs.max(dim=1)
    wrong = (pred != ctx.labels).nonzero()[:, 0]
    ctx.facts["wrong"] = int(len(wrong))
    if len(wrong) == 0:
        return Card([para("The model classifies every test image correctly.")])
    order = wrong[conf[wrong].argsort(descending=True, stable=True)][: ctx.config.wrong]
    items = [Tile(ctx.images[i], f"#{int(i)} true {ctx.label(i)}, predicted "
                  f"{ctx.clf.classes[int(pred[i])]} {float(conf[i]):.2f}", "wrong")
             for i in order]
    wrong_text = (f"{len(wrong):,} of {count(len(ctx.labels), 'test image')} "
                  f"{'is' if len(wrong) == 1 else 'are'} wrong; "
                  + ("it is:" if len(wrong) == 1 else "the most confident:" if len(order) == 1
                     else f"the {len(order)} most confident:"))
    return Card([para(wrong_text), Tiles(items, ctx.tile_side)])
