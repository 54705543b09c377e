"""A detector's worst detections, a segmenter's worst masks."""

from __future__ import annotations

from convscope.inspect.annotated import worst_detections, worst_masks
from convscope.render.report.card import Card, Figure, Table, para
from convscope.render.report.context import AnnotatedContext
from convscope.render.report.registry import register_section


@register_section("worst", "Worst detections or masks", tasks=("detect", "segment"))
def worst_section(ctx: AnnotatedContext) -> Card:
    """A detector's false positives with the highest scores and the objects it missed (matched
    as COCO matches them, at IoU 0.5; truth green, detections orange), each with why; a
    segmenter's test images with the lowest IoU, the image, truth and prediction side by
    side."""
    n = ctx.config.wrong
    if ctx.task == "detect":
        w = worst_detections(ctx.clf, ctx.source, n=n)
        ctx.facts.update(false_positives=w.detections - w.found, missed=w.objects - w.found)
        rows = [(m.kind, f"#{m.image} {m.file}", m.label, f"{m.score:.2f}", m.why)
                for m in w.false_positives + w.missed]
        text = (f"{w.found} of {w.objects} objects found at score >= {w.min_score:g}; "
                f"{w.detections - w.found} of {w.detections} detections are false positives.")
        table = Table(("kind", "image", "label", "score", "why"), rows, (3,))
    else:
        w = worst_masks(ctx.clf, ctx.source, n=min(n, 8))
        ctx.facts["mean_image_iou"] = w.mean_iou
        rows = [(f"#{m.image} {m.file}", f"{m.iou:.3f}", f"{m.accuracy:.3f}",
                 ", ".join(f"{k} {v:.2f}" for k, v in m.per_class.items())) for m in w.worst]
        text = (f"The mean of the per-image IoU is {w.mean_iou:.3f}; the "
                f"{len(w.worst)} lowest:")
        table = Table(("image", "IoU", "pixel accuracy", "IoU per class"), rows, (1, 2))
    return Card([para(text), Figure(w.render(), "the worst"), table])
