"""Figures as PNG files, drawn with matplotlib's Agg backend (no screen needed)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Save and close a matplotlib figure, creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    _plt().close(fig)
    return path


def confusion_figure(evaluation, title: str = ""):
    """The confusion matrix as a heatmap, rows normalised, counts written in the cells."""
    plt = _plt()
    cm = np.asarray(evaluation.confusion, dtype=float)
    k = len(evaluation.classes)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = min(2 + 0.55 * k, 24)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), evaluation.classes, rotation=45 if k > 10 else 0, ha="right")
    ax.set_yticks(range(k), evaluation.classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if k <= 25:
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    ax.set_title(title or f"top-1 {100 * evaluation.top1:.2f}%  top-{evaluation.k} "
                 f"{100 * evaluation.top5:.2f}%  ({evaluation.n:,} images)")
    return fig
