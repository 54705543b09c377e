"""Top-1 under the six challenges (the web app's view: the workbench computes it)."""

from __future__ import annotations

from convscope.render.report.card import Card, Figure, Strong, Table, note, para
from convscope.render.report.context import ReportContext
from convscope.render.report.registry import register_section


@register_section("challenges", "The six challenges", costly=True, weight=3)
def challenges_section(ctx: ReportContext) -> Card:
    """Top-1 accuracy on test images under the lecture's recognition challenges (viewpoint,
    illumination, deformation, occlusion, background clutter, intra-class variation),
    from severity 0 (the plain images) to 5; the strip shows one test image at every
    severity. The command convscope challenges gives every number."""
    r = ctx.bench.challenge_result()
    m = r.main
    ctx.facts["challenges"] = {"scores": m.group_scores(), "hardest": m.hardest()}
    rows = [(g, f"{100 * v:.1f}%") for g, v in m.group_scores().items()]
    return Card([para(f"{r.n:,} test images; clean top-1 {100 * m.clean:.1f}%. Hurts most: ",
                      Strong(m.hardest()), "."),
                 Table(("challenge", "mean top-1 over severities 1-5"), rows, (1,)),
                 Figure(r.figure(), "accuracy against severity for each challenge"),
                 Figure(r.strips_figure(), "one test image at every severity"),
                 *(note(f"Skipped {k}: {v}.") for k, v in r.skipped.items())])
