"""What the model finds on a few test images."""

from __future__ import annotations

import numpy as np

from convscope.render.report.card import Card, Figure, para
from convscope.render.report.context import AnnotatedContext
from convscope.render.report.registry import register_section
from convscope.render.views import fit, grid
from convscope.text import count


@register_section("predictions", "Predictions on test images", tasks=("detect", "segment"))
def predictions_section(ctx: AnnotatedContext) -> Card:
    """The model's boxes (at its default score, 0.5) or masks on a seeded sample of test
    images, as `convscope detect` and `segment` draw them."""
    rows = ctx.sample(ctx.config.explain_images).tolist()
    split = ctx.source.test
    photos = [split.images[i].permute(1, 2, 0).numpy() for i in rows]
    photos = [np.repeat(p, 3, axis=2) if p.shape[2] == 1 else p for p in photos]
    found = ctx.clf.predict(photos)
    pictures = [fit(r.render(), 360) for r in found]
    what = "boxes at score >= 0.5" if ctx.task == "detect" else "classes of every pixel"
    return Card([para(f"The {what} on {count(len(rows), 'test image')} (a seeded sample)."),
                 Figure(grid(pictures, 3, gap=6), f"{ctx.clf.name}'s predictions")])
