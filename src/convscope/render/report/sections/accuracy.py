"""Top-1 and top-5, accuracy per class, the confusion matrix."""

from __future__ import annotations

import numpy as np

from convscope.render.figures import confusion_figure
from convscope.render.report.card import Bar, Big, Card, Figure, Table, note, para
from convscope.render.report.context import ReportContext
from convscope.render.report.registry import register_section


@register_section("accuracy", "Test accuracy")
def accuracy_section(ctx: ReportContext) -> Card:
    """Top-1 and top-5 accuracy on the test images, accuracy per class, and the confusion
    matrix: row = true class, column = prediction, so off-diagonal cells are the
    confusions."""
    ev = ctx.evaluation
    ctx.facts.update(top1=ev.top1, top5=ev.top5, n=ev.n)
    counts = ev.confusion.sum(axis=1)
    order = np.argsort(ev.per_class, kind="stable")  # weakest classes first
    shown = order[:50]
    rows = [(ev.classes[i], f"{int(counts[i]):,}", f"{100 * ev.per_class[i]:.1f}%",
             Bar(float(ev.per_class[i]))) for i in shown]
    card = Card([para(Big(f"top-1 {100 * ev.top1:.2f}%"), Big(f"top-{ev.k} {100 * ev.top5:.2f}%"),
                      f" on {ev.n:,} test images of {ctx.dataset.name}"),
                 Table(("class (weakest first)", "images", "accuracy", ""), rows, (1, 2))])
    if len(ev.classes) > len(shown):
        card.parts.append(note(f"The {len(shown)} weakest of {len(ev.classes)} classes."))
    card.parts.append(Figure(confusion_figure(ev), "confusion matrix"))
    return card
