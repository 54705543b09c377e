"""The challenges' pictures: accuracy against severity per challenge group, and a strip of
one test image at every severity of every challenge."""

from __future__ import annotations

import numpy as np

from convscope.display import drawing
from convscope.inspect.challenges import GROUPS
from convscope.render.figures import _plt


@drawing
def curves_figure(result):
    """One panel per challenge group; a line per challenge, dashed for compared models,
    dotted for the baseline."""
    plt = _plt()
    groups = [g for g in GROUPS if any(result.main.curves[n].group == g for n in result.names)]
    cols = min(3, len(groups))
    rows = -(-len(groups) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    s = result.config.severities
    xs = np.arange(s + 1)
    styles = ["-", "--", "-.", ":"]
    entries = [(m, styles[min(i, 2)]) for i, m in enumerate(result.models)]
    if result.baseline is not None:
        entries.append((result.baseline, ":"))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, group in zip(axes.flat, groups):
        names = [n for n in result.names if result.main.curves[n].group == group]
        for j, name in enumerate(names):
            for k, (m, style) in enumerate(entries):
                acc = 100 * np.asarray(m.curves[name].accuracy)
                # colour names the challenge, line style the model: the legend lists each
                # challenge once and each model once, however many are compared
                ax.plot(xs, acc, style, marker="o", ms=3, color=colors[j % len(colors)],
                        label=name if k == 0 else None)
        if len(entries) > 1:
            for m, style in entries:
                ax.plot([], [], style, color="0.3", label=_short(m.model))
        scores = [np.mean([m.curves[n].score for n in names]) for m, _ in entries]
        ax.set_title(f"{group}: " + " | ".join(f"{100 * v:.1f}%" for v in scores),
                     fontsize=10)
        ax.set_xticks(xs)
        ax.set_xlabel("typicality quantile (1 = most typical)" if group == "intra-class"
                      else "severity (0 = the plain images)", fontsize=8)
        ax.set_ylabel(f"top-1 {result.measure} (%)", fontsize=8)
        ax.set_ylim(0, 101)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    for ax in list(axes.flat)[len(groups):]:
        ax.axis("off")
    title = (f"{result.data}: {result.n:,} images; hurts most: {result.main.hardest()}"
             + (f"; mCE {result.mce:.0f}% vs {_short(result.baseline.model)}"
                if result.mce is not None else ""))
    if len(entries) > 1:
        title += "\npanel titles: mean accuracy of " + " | ".join(_short(m.model)
                                                              for m, _ in entries)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


@drawing
def strips_figure(result):
    """Rows: challenges; columns: severities 0..S, with each severity's parameters."""
    plt = _plt()
    names = result.names
    s = result.config.severities
    fig, axes = plt.subplots(len(names), s + 1, figsize=(1.45 * (s + 1), 1.6 * len(names)),
                             squeeze=False)
    for r, name in enumerate(names):
        strip = result.strips[name]
        for col in range(s + 1):
            ax = axes[r, col]
            ax.set_xticks([])
            ax.set_yticks([])
            arr = strip[col].permute(1, 2, 0).numpy()
            arr = arr[..., 0] if arr.shape[-1] == 1 else arr[..., :3]
            ax.imshow(arr, cmap="gray" if arr.ndim == 2 else None, vmin=0, vmax=255,
                      interpolation="nearest")
            params = result.params[name][col]
            ax.set_xlabel(_params_text(params) if col else "plain", fontsize=6)
            if col == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.suptitle("one test image at every severity", fontsize=10, y=1.0)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    return fig


def _params_text(params: dict) -> str:
    parts = []
    for k, v in params.items():
        if isinstance(v, list):
            v = "-".join(f"{x:g}" for x in v)
        parts.append(f"{k} {v:g}" if isinstance(v, (int, float)) else f"{k} {v}")
    return ", ".join(parts)


def _short(name: str) -> str:
    return name if len(name) <= 28 else "…" + name[-27:]
