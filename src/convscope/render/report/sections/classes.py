"""Class images made by gradient ascent, with a judge's verdict when one is given."""

from __future__ import annotations

import numpy as np

from convscope.inspect.synthesis import VisualizeConfig, class_images
from convscope.render.report.card import Card, Tile, Tiles, note
from convscope.render.report.context import ReportContext
from convscope.render.report.registry import register_section


@register_section("classes", "What each class looks like to the model", costly=True, weight=3)
def classes_section(ctx: ReportContext) -> Card:
    """Images made by gradient ascent on the class score (visualize's default preset: pixels
    with total variation for grayscale models, Fourier for colour ones; jitter, scale and
    rotation); p is the model's probability of that class for the image shown, judge the
    probability a second model trained apart (report --judge MODEL) gives it."""
    k = min(len(ctx.clf.classes), ctx.config.class_images)
    res = class_images(ctx.clf, list(range(k)),
                       VisualizeConfig(steps=ctx.config.class_steps, seed=ctx.config.seed),
                       progress=False, judge=ctx.config.judge)
    images = res.uint8()
    proba = ctx.clf.predict_proba(images)
    ctx.facts["class_images_top1"] = float(np.mean(proba.argmax(1) == np.arange(k)))
    j = res.judgement
    items = [Tile(images[i], f"{label} p={proba[i, i]:.2f}"
                  + (f" judge {j.probability[i]:.2f}" if j else ""),
                  "" if j is None or j.agrees[i] else "wrong")
             for i, label in enumerate(res.labels)]
    card = Card([Tiles(items, ctx.tile_side)])
    if j:
        ctx.facts["class_images_judge_agreement"] = j.rate
        card.parts.append(note(f"{j.summary()} (red: its top-1 is another class)."))
    else:
        card.parts.append(note("No judge was given (report --judge MODEL, a second model "
                               "trained apart on the same classes): p alone also rewards "
                               "images that only fool this model."))
    if k < len(ctx.clf.classes):
        card.parts.append(note(f"The first {k} of {len(ctx.clf.classes)} classes."))
    return card
