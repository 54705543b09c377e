"""The patches that excite a few units of the last convolution most."""

from __future__ import annotations

from dataclasses import replace

from convscope.inspect.patches import patches
from convscope.render.report.card import Card, Figure, para
from convscope.render.report.context import ReportContext
from convscope.render.report.registry import register_section


@register_section("patches", "What units respond to", costly=True, weight=2)
def patches_section(ctx: ReportContext) -> Card:
    """For a few channels of the last convolutional layer, the test-image patches (each
    unit's receptive field) that excite it most, strongest first: what that unit detects."""
    p = patches(ctx.clf, ctx.source, split=ctx.split, seed=ctx.config.seed)
    k = ctx.config.patch_units  # the first k of the channels searched (PATCH_CHANNELS)
    p = replace(p, hits=p.hits[:k], config=replace(p.config, channels=p.config.channels[:k]))
    ctx.facts["patches"] = {"layer": p.config.layer, "channels": list(p.config.channels)}
    return Card([para(f"Layer {p.config.layer}, channels "
                      f"{', '.join(map(str, p.config.channels))}, over {p.config.n:,} test "
                      f"images; receptive field {p.field.size[0]}x{p.field.size[1]} px."),
                 Figure(p.render(), "maximally activating patches")])
