"""Figures as PNG files, drawn with matplotlib's Agg backend (no screen needed)."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from convscope.display import drawing


def _plt():
    import matplotlib  # heavy optional dependency

    if "ipykernel" not in sys.modules:  # a Jupyter kernel keeps its (inline) backend, so
        matplotlib.use("Agg", force=False)  # the user's own plots there still show
    import matplotlib.pyplot as plt  # heavy optional dependency

    return plt


CONFIG_KEY = "convscope:config"


def config_text(config) -> str:
    """A job's resolved config (a dataclass or a dict) as JSON."""
    if dataclasses.is_dataclass(config):
        config = dataclasses.asdict(config)
    return json.dumps(config, default=str, sort_keys=True)


@drawing
def save_figure(fig, path: str | os.PathLike, config=None, dpi: int = 100) -> Path:
    """Save and close a matplotlib figure, creating the folder.

    ``config`` (the job's resolved config dataclass) is embedded in the PNG as a
    text chunk, so every picture says how it was made: see :func:`read_config`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {CONFIG_KEY: config_text(config)} if config is not None else None
    if path.suffix.lower() != ".png":
        metadata = None  # only PNG takes arbitrary text keys
    fig.savefig(path, dpi=dpi, bbox_inches="tight", metadata=metadata)
    _plt().close(fig)
    return path


def figure_png(fig, dpi: int = 100) -> bytes:
    """A matplotlib figure as PNG bytes (closed afterwards): for pages that embed pictures."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


@drawing
def image_png(image) -> bytes:
    """A PIL image, an (H, W[, C]) uint8 array or a uint8 (C, H, W) tensor as PNG bytes."""
    if not isinstance(image, Image.Image):
        if hasattr(image, "permute"):  # a (C, H, W) tensor
            image = image.detach().cpu().permute(1, 2, 0).numpy()
        arr = np.asarray(image)
        image = Image.fromarray(arr[..., 0] if arr.ndim == 3 and arr.shape[-1] == 1 else arr)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@drawing
def save_image(image, path: str | os.PathLike, config=None) -> Path:
    """Save a PIL image (or HWC uint8 array) as PNG, embedding ``config`` like save_figure."""
    if not isinstance(image, Image.Image):
        arr = np.asarray(image)
        image = Image.fromarray(arr[..., 0] if arr.ndim == 3 and arr.shape[-1] == 1 else arr)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = None
    if config is not None and path.suffix.lower() == ".png":
        info = PngImagePlugin.PngInfo()
        info.add_text(CONFIG_KEY, config_text(config))
    image.save(path, pnginfo=info) if info else image.save(path)
    return path


def read_config(path: str | os.PathLike) -> dict | None:
    """The config embedded in a PNG written by convscope, or None."""
    with Image.open(path) as img:
        text = img.info.get(CONFIG_KEY)
    return json.loads(text) if text else None


@drawing
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


@drawing
def class_scores_figure(evaluation, title: str = ""):
    """A detector's or segmenter's per-class scores as horizontal bars: AP@.5 and AP@[.5:.95]
    (boxes) or IoU and pixel accuracy (masks), with the mean as a dashed line; a class
    absent from the data is marked "no data"."""
    plt = _plt()
    boxes = hasattr(evaluation, "per_class50")
    first, second = ((evaluation.per_class50, evaluation.per_class) if boxes
                     else (evaluation.per_class_iou, evaluation.per_class_accuracy))
    names = ("AP@.5", "AP@[.5:.95]") if boxes else ("IoU", "pixel accuracy")
    mean = evaluation.map50 if boxes else evaluation.miou
    k = len(evaluation.classes)
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.38 * k))
    y = np.arange(k)
    for offset, values, name, c in ((-0.2, first, names[0], "#0072B2"),
                                    (0.2, second, names[1], "#E69F00")):
        ax.barh(y + offset, [v or 0 for v in values], height=0.38, color=c, label=name)
        for yi, v in zip(y, values):
            ax.text((v or 0) + 0.01, yi + offset, "no data" if v is None else f"{v:.2f}",
                    va="center", fontsize=8)
    if mean is not None:
        ax.axvline(mean, color="#333333", ls="--", lw=1)
        ax.text(mean, -0.9, f" mean {names[0]} {mean:.2f}", fontsize=8, va="bottom")
    ax.set_yticks(y, [str(c) for c in evaluation.classes])
    ax.invert_yaxis()
    ax.set_xlim(0, 1.15)
    ax.set_xlabel("score (1 = perfect)")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title or ("per-class average precision (pycocotools)" if boxes
                           else "per-class intersection over union"))
    fig.tight_layout()
    return fig


@drawing
def image_grid(images, titles=(), cols: int | None = None, cell: float = 1.8, title: str = ""):
    """Images (PIL, or HWC uint8 arrays) in a grid with a caption under each, drawn with
    nearest-neighbour pixels so that small (32x32) images stay sharp."""
    plt = _plt()
    arrays = [np.asarray(im) for im in images]
    n = len(arrays)
    cols = cols or (n if n <= 10 else math.ceil(math.sqrt(2 * n)))  # wide rather than tall
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cell * cols, (cell + 0.5) * rows + 0.3),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        arr = arrays[i][..., 0] if arrays[i].ndim == 3 and arrays[i].shape[-1] == 1 else arrays[i]
        ax.imshow(arr, cmap="gray" if arr.ndim == 2 else None, vmin=0, vmax=255,
                  interpolation="nearest")
        if i < len(titles):
            ax.set_title(titles[i], fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def topk_bars(ax, names, probs, colours=None, title: str = "") -> None:
    """Horizontal bars of class probabilities, the most probable on top (the ILSVRC slide's
    look); ``colours`` per bar, default one blue."""
    bars = ax.barh(range(len(probs)), probs, color=colours or "tab:blue")
    ax.bar_label(bars, [f"{float(v):.2f}" for v in probs], fontsize=6, padding=2)
    ax.set_yticks(range(len(probs)), [n[:22] for n in names], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.tick_params(axis="x", labelsize=6)
    if title:
        ax.set_title(title, fontsize=8)


@drawing
def predictions_figure(images, tops, titles=(), cols: int = 4):
    """Each photo (PIL, or HWC uint8 array) above the bars of its top-k classes, as the
    lecture's ILSVRC slide shows a network's output; the top-1 bar in orange."""
    plt = _plt()
    n = len(images)
    cols = min(cols, n)
    rows = -(-n // cols)
    fig = plt.figure(figsize=(3.0 * cols, 3.6 * rows))
    grid = fig.add_gridspec(2 * rows, cols, height_ratios=[2.4, 1.2] * rows)
    for i, (image, top) in enumerate(zip(images, tops)):
        r, c = divmod(i, cols)
        ax = fig.add_subplot(grid[2 * r, c])
        arr = np.asarray(image)
        ax.imshow(arr[..., 0] if arr.ndim == 3 and arr.shape[-1] == 1 else arr,
                  cmap="gray" if arr.ndim == 2 or arr.shape[-1] == 1 else None)
        ax.set_axis_off()
        if i < len(titles):
            ax.set_title(titles[i][:40], fontsize=8)
        names, probs = [t[0] for t in top], [t[1] for t in top]
        topk_bars(fig.add_subplot(grid[2 * r + 1, c]), names, probs,
                  ["tab:orange"] + ["tab:blue"] * (len(top) - 1))
    fig.tight_layout()
    return fig
