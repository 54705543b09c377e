"""A detector's COCO mAP or a segmenter's mean IoU on the test images, per class."""

from __future__ import annotations

from convscope.render.report.card import Bar, Big, Card, Table, note, para
from convscope.render.report.context import AnnotatedContext
from convscope.render.report.registry import register_section
from convscope.text import count


def _cell(v) -> str:
    return "none in the test images" if v is None else f"{v:.3f}"


@register_section("scores", "Scores per class", tasks=("detect", "segment"))
def scores_section(ctx: AnnotatedContext) -> Card:
    """How well the model does on the test images: a detector's COCO mAP@[.5:.95] and
    mAP@.5 (pycocotools) with each class's AP, a segmenter's mean IoU and pixel accuracy
    with each class's IoU; the weakest classes are where to look first."""
    ev = ctx.evaluation
    if ctx.task == "detect":
        ctx.facts.update(map=ev.map, map50=ev.map50)
        head = para(Big(_cell(ev.map)), f" mAP@[.5:.95]; mAP@.5 {_cell(ev.map50)}, mAP@.75 "
                    f"{_cell(ev.map75)} on {count(ev.images, 'test image')} holding "
                    f"{count(ev.objects, 'object')}.")
        rows = [(name, _cell(ap50), Bar(ap50 or 0), _cell(ap))
                for name, ap, ap50 in zip(ev.classes, ev.per_class, ev.per_class50)]
        table = Table(("class", "AP@.5", "", "AP@[.5:.95]"), rows, (1, 3))
    else:
        ctx.facts.update(miou=ev.miou, pixel_accuracy=ev.pixel_accuracy)
        head = para(Big(_cell(ev.miou)), f" mean IoU; pixel accuracy "
                    f"{_cell(ev.pixel_accuracy)} on {count(ev.images, 'test image')} "
                    f"({ev.pixels:,} pixels scored).")
        rows = [(name, _cell(iou), Bar(iou or 0), _cell(acc))
                for name, iou, acc in zip(ev.classes, ev.per_class_iou,
                                          ev.per_class_accuracy)]
        table = Table(("class", "IoU", "", "pixel accuracy"), rows, (1, 3))
    card = Card([head, table])
    if any(r[1] == "none in the test images" for r in rows):
        card.parts.append(note("A class with none in the test images has no score and is "
                               "left out of the mean."))
    return card
