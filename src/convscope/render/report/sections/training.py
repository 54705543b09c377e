"""The training curves, from the metrics.jsonl next to the model."""

from __future__ import annotations

import json
from pathlib import Path

from convscope.render.figures import _plt
from convscope.render.report.card import Card, Figure, note, para
from convscope.render.report.context import ReportContext
from convscope.render.report.registry import register_section
from convscope.text import count


def read_metrics(path: Path) -> list[dict]:
    """The epochs of a metrics.jsonl, skipping lines that are not JSON objects (a run killed
    mid-write leaves a partial last line)."""
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "epoch" in row:
            rows.append(row)
    return rows


#: the scores a metrics.jsonl may hold (a classifier's, a detector's, a segmenter's)
SCORES = (("train_acc", "training top-1"), ("test_acc", "test top-1"),
          ("test_top5", "test top-5"), ("test_map", "test mAP@[.5:.95]"),
          ("test_map50", "test mAP@.5"), ("test_miou", "test mean IoU"),
          ("test_pixel_acc", "test pixel accuracy"))


def _headline(rows: list[dict]) -> tuple[str, str]:
    """The test score the text names: top-1, mAP@[.5:.95] or mean IoU."""
    for key, label in (("test_acc", "test top-1"), ("test_map", "test mAP@[.5:.95]"),
                       ("test_miou", "test mean IoU")):
        if any(key in r for r in rows):
            return key, label
    return "test_acc", "test top-1"


@register_section("training", "Training curves", tasks=("classify", "detect", "segment"))
def training_section(ctx: ReportContext) -> Card:
    """Loss and test score after every epoch (accuracy; a detector's mAP, a segmenter's mean
    IoU), from the metrics.jsonl written next to the model: a test score that stalls while
    the training loss keeps falling is overfitting."""
    path = Path(ctx.config.metrics) if ctx.config.metrics else (
        ctx.model_path.parent / "metrics.jsonl" if ctx.model_path else None)
    if path is None:
        return Card([note("The model was given without its file, so there is no "
                          "metrics.jsonl to draw curves from; pass the model file (or "
                          "--metrics).")])
    if not path.is_file():
        return Card([note(f"No metrics.jsonl next to the model ({path}), so there are no "
                          "curves to draw.")])
    rows = read_metrics(path)
    if not rows:
        return Card([note(f"{path} holds no epochs.")])
    ctx.facts["epochs"] = len(rows)
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
    epochs = [r["epoch"] for r in rows]
    ax1.plot(epochs, [r.get("train_loss") for r in rows], "o-", label="training loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("loss")
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    for key, label in SCORES:
        if any(key in r for r in rows):
            ax2.plot(epochs, [r.get(key) for r in rows], "o-", label=label)
    ax2.set_xlabel("epoch")
    ax2.set_ylabel({"test_map": "mAP", "test_miou": "IoU"}.get(_headline(rows)[0], "accuracy"))
    ax2.set_ylim(0, 1.02)
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    last = rows[-1]
    key, label = _headline(rows)
    test = last.get(key)
    return Card([para(f"{count(len(rows), 'epoch')}; last: training loss "
                      f"{last.get('train_loss', '?')}, "
                      + (f"{label} {100 * test:.2f}%" if test is not None else "no test split")
                      + f" (from {path})."),
                 Figure(fig, "training curves")])
