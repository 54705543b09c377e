"""Deletion and insertion curves of every attribution method."""

from __future__ import annotations

from convscope.inspect.faithfulness import faithfulness
from convscope.render.attribution import faithfulness_figure
from convscope.render.report.card import Card, Figure, Table, note
from convscope.render.report.context import ReportContext
from convscope.render.report.registry import register_section


@register_section("faithfulness", "How faithful is each map", costly=True, weight=3)
def faithfulness_section(ctx: ReportContext) -> Card:
    """Deletion: remove the pixels a map ranks highest first and watch the predicted class's
    probability fall (lower area is better); insertion: add them to a blurred image
    (higher is better). A random map is the baseline to beat."""
    r = faithfulness(ctx.clf, ctx.dataset, n=ctx.config.faithfulness_images,
                     seed=ctx.config.seed)
    dele, ins = r.auc("deletion"), r.auc("insertion")
    best_d = min(dele, key=lambda m: dele[m][0])
    best_i = max(ins, key=lambda m: ins[m][0])
    ctx.facts["faithfulness"] = {m: {"deletion": dele[m][0], "insertion": ins[m][0]}
                                 for m in r.methods}
    rows = [(m + (" (baseline)" if m == "random" else ""),
             f"{dele[m][0]:.3f} ± {dele[m][1]:.3f}" + (" best" if m == best_d else ""),
             f"{ins[m][0]:.3f} ± {ins[m][1]:.3f}" + (" best" if m == best_i else ""))
            for m in r.methods]
    n = len(next(iter(r.deletion.values())))
    return Card([Table(("method", "deletion AUC (lower is better)",
                        "insertion AUC (higher is better)"), rows, (1, 2)),
                 note(f"Mean ± standard error over {n} test images, {r.config.steps} steps."),
                 Figure(faithfulness_figure(r), "faithfulness")])
