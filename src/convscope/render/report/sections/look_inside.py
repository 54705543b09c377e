"""Grad-CAM (and occlusion) of one box or one mask class."""

from __future__ import annotations

from convscope.errors import ConvscopeError
from convscope.inspect.annotated import MaskExplainConfig, explain_mask_class
from convscope.inspect.detection import BoxExplainConfig, explain_detection
from convscope.render.report.card import Card, Figure, note, para
from convscope.render.report.context import AnnotatedContext
from convscope.render.report.registry import register_section


@register_section("look-inside", "Looking inside one box or mask class",
                  tasks=("detect", "segment"))
def look_inside_section(ctx: AnnotatedContext) -> Card:
    """Which pixels the model's answer rests on, for the first test image where it finds
    something: Grad-CAM of the best box's score (a detector), Grad-CAM and occlusion of the
    commonest class but the first (a segmenter); red is where the evidence is."""
    split = ctx.source.test
    for i in range(len(split)):
        photo = split.images[i].permute(1, 2, 0).numpy()
        if photo.shape[2] == 1:
            photo = photo.repeat(3, axis=2)
        try:
            if ctx.task == "detect":
                found = [explain_detection(ctx.clf, photo, BoxExplainConfig(0, "gradcam"),
                                           progress=False)]
            else:
                found = [explain_mask_class(ctx.clf, photo, MaskExplainConfig(method=m),
                                            progress=False) for m in ("gradcam", "occlusion")]
        except ConvscopeError:  # nothing found on this image: try the next
            continue
        parts = [para(f"Test image #{i} ({split.files[i]}): {found[0].label}, "
                      f"score {found[0].score:.2f}.")]
        for e in found:
            ctx.facts[f"look_inside_{e.method}_inside"] = round(e.inside_share(), 4)
            parts.append(Figure(e.render(), f"{e.method} of {e.label}"))
        return Card(parts)
    what = "box at score 0.5 or more" if ctx.task == "detect" else "pixel of a class but the first"
    return Card([note(f"The model finds no {what} on any test image, so there is nothing to "
                      "look inside; train it longer.")])
