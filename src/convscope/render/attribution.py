"""Figures for attribution maps and their faithfulness curves.

An explanation figure has one row per image: the image, one panel per method (a heatmap
over the image, or the guided gradient drawn as an image), and the predicted top-5 with the
target marked.
"""

from __future__ import annotations

import numpy as np

from convscope.display import drawing
from convscope.inspect.attribution import METHODS, Attribution
from convscope.render.figures import _plt, topk_bars

TARGET_COLOUR, OTHER_COLOUR = "tab:orange", "tab:blue"


def _hwc(image) -> np.ndarray:
    """uint8 (C, H, W) tensor -> (H, W) or (H, W, 3) array for imshow."""
    a = image.permute(1, 2, 0).numpy()
    return a[..., 0] if a.shape[-1] == 1 else a


def _show_image(ax, image) -> None:
    a = _hwc(image)
    ax.imshow(a, cmap="gray" if a.ndim == 2 else None, vmin=0, vmax=255,
              interpolation="nearest")
    ax.set_axis_off()


def _gradient_image(g: np.ndarray) -> np.ndarray:
    """A signed (C, H, W) gradient as an image: 0 is mid-grey, the largest |g| saturates."""
    g = g / max(float(np.abs(g).max()), 1e-12) * 0.5 + 0.5
    g = np.clip(g.transpose(1, 2, 0), 0, 1)
    return g[..., 0] if g.shape[-1] == 1 else g


def draw_map(ax, a: Attribution, i: int, fig=None) -> None:
    """One method's map of image ``i``, as its registry entry says it is drawn."""
    draw = METHODS[a.method].draw
    if draw == "gradient":
        g = _gradient_image(a.gradients[i].numpy())
        ax.imshow(g, cmap="gray" if g.ndim == 2 else None, vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_axis_off()
    else:
        _show_image(ax, a.images[i])
        m = a.maps[i].numpy()
        if draw == "probability":   # P(target | mask here), on an absolute 0-1 scale
            im = ax.imshow(m, cmap="jet", vmin=0, vmax=1, alpha=0.55, interpolation="nearest")
            if fig is not None:
                fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
        else:                        # scaled to each image's own maximum
            ax.imshow(m / max(float(m.max()), 1e-12), cmap="jet", vmin=0, vmax=1, alpha=0.55,
                      interpolation="nearest")
    label = a.target_label(i)
    if a.neurons is None:
        label += f" ({float(a.probs[i, a.targets[i]]):.2f})"
    ax.set_title(f"{a.method}\n{label}", fontsize=8)


def overlay(a: Attribution, i: int, alpha: float = 0.55) -> np.ndarray:
    """Image ``i``'s map as an (H, W, 3) uint8 picture, drawn as in the figures: a jet
    heatmap blended over the image (occlusion on the absolute 0-1 scale, the others scaled
    to their maximum), or the guided gradient as an image."""
    import matplotlib  # heavy optional dependency

    draw = METHODS[a.method].draw
    if draw == "gradient":
        g = _gradient_image(a.gradients[i].numpy())
        g = np.repeat(g[..., None], 3, axis=2) if g.ndim == 2 else g
        return (g * 255).round().astype(np.uint8)
    base = _hwc(a.images[i]).astype(np.float32) / 255
    base = np.repeat(base[..., None], 3, axis=2) if base.ndim == 2 else base
    m = a.maps[i].numpy()
    if draw != "probability":
        m = m / max(float(m.max()), 1e-12)
    heat = matplotlib.colormaps["jet"](np.clip(m, 0, 1))[..., :3]
    blended = np.clip((1 - alpha) * base + alpha * heat, 0, 1)
    return (blended * 255).round().astype(np.uint8)


def draw_topk(ax, a: Attribution, i: int, k: int = 5) -> None:
    """The predicted top-k as bars, the target's bar in orange."""
    p, idx = a.probs[i].topk(min(k, a.probs.shape[1]))
    names = [a.classes[int(j)] for j in idx]
    target = int(a.targets[i]) if a.neurons is None else -1
    colours = [TARGET_COLOUR if int(j) == target else OTHER_COLOUR for j in idx]
    topk_bars(ax, [n[:18] for n in names], p.numpy(), colours,
              f"top-{len(p)}" + ("" if target < 0 or target in idx.tolist() else
                                 f" (target {a.classes[target][:18]}: "
                                 f"{float(a.probs[i, target]):.2f})"))


@drawing
def explanation_figure(results: dict[str, Attribution], names: list[str] | None = None):
    """One row per image: the image, each method's map, the top-5 (target in orange)."""
    plt = _plt()
    methods = list(results)
    first = results[methods[0]]
    n, cols = len(first.images), len(methods) + 2
    fig, axes = plt.subplots(n, cols, figsize=(2.2 * cols + 0.6, 2.5 * n), squeeze=False,
                             gridspec_kw={"width_ratios": [1] * (cols - 1) + [1.2]})
    for i in range(n):
        _show_image(axes[i, 0], first.images[i])
        axes[i, 0].set_title(names[i] if names else f"image {i}", fontsize=8)
        for j, m in enumerate(methods):
            draw_map(axes[i, j + 1], results[m], i, fig)
        draw_topk(axes[i, -1], first, i)
    fig.tight_layout()
    return fig


@drawing
def faithfulness_figure(result):
    """Mean deletion and insertion curves per method, the random baseline dashed."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    x = result.fractions
    for ax, kind, better in ((axes[0], "deletion", "lower"), (axes[1], "insertion", "higher")):
        auc = result.auc(kind)
        for m in result.methods:
            random = m == "random"
            ax.plot(x, getattr(result, kind)[m].mean(axis=0), ls="--" if random else "-",
                    color="grey" if random else None, lw=1.5,
                    label=f"{m}  (AUC {auc[m][0]:.3f})")
        ax.set_xlabel(f"fraction of pixels {'deleted' if kind == 'deletion' else 'inserted'}")
        ax.set_ylabel("P(target class), mean over images")
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{kind}: {better} area is better", fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    n = len(next(iter(result.deletion.values())))
    fig.suptitle(f"faithfulness on {n} images, {result.config.steps} steps", fontsize=10)
    fig.tight_layout()
    return fig
