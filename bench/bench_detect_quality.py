"""mAP@.5 and mean IoU against training time on the embedded defaults, by one command each."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

TITLE = "Detectors and segmenters: test score against training time on the digit canvases"
DESCRIPTION = (
    "`convscope train --data digits-boxes` and `convscope train --data digits-masks`, every "
    "option left to the data's recipe (`detect`: FCOS, `segment`: LR-ASPP; see the README), on "
    "the CPU. Each row is one epoch: the training seconds so far (evaluation excluded), the "
    "test split's COCO mAP@.5 and mAP@[.5:.95] by pycocotools, or mean IoU and pixel "
    "accuracy. The issue asks mAP@.5 >= 0.90 and mean IoU >= 0.80 on the test canvases "
    "(made from mnist5k's test digits, never seen in training). The curve is "
    "docs/images/detect-quality.png."
)
PICTURE = Path(__file__).resolve().parents[1] / "docs" / "images" / "detect-quality.png"


def _curve(runs: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for (label, rows), key, goal, c in zip(runs.items(), ("test_map50", "test_miou"),
                                           (0.90, 0.80), ("#0072B2", "#E69F00")):
        t, v = [0.0], [0.0]
        for r in rows:
            t.append(t[-1] + r["train_seconds"] / 60)
            v.append(r[key] or 0.0)
        ax.plot(t, v, "o-", color=c, label=label)
        ax.axhline(goal, color=c, ls=":", lw=1)
    ax.set_xlabel("training minutes (2 CPU cores)")
    ax.set_ylabel("test score")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title("digit canvases: detector mAP@.5 and segmenter mean IoU by epoch")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(quick: bool = False) -> dict:
    import convscope

    rows, runs, notes = [], {}, []
    for task, data in (("detect", "digits-boxes"), ("segment", "digits-masks")):
        name = data + (":n=32,test=16" if quick else "")
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            model = convscope.train(name, out=out, progress=True, verbose=True,
                                    **({"epochs": 1} if quick else {}))
            wall = time.perf_counter() - start
            history = [json.loads(line) for line in
                       (Path(out) / "metrics.jsonl").read_text().splitlines()]
            config = json.loads((Path(out) / "config.json").read_text())
        label = f"{model.meta.model} on {data}"
        runs[label] = history
        total = 0.0
        for r in history:
            total += r["train_seconds"]
            scores = ((r["test_map50"], r["test_map"]) if task == "detect"
                      else (r["test_miou"], r["test_pixel_acc"]))
            rows.append([label, r["epoch"], round(total / 60, 2), round(scores[0], 4),
                         round(scores[1], 4), r["images_per_sec"]])
        notes.append(f"{label}: {config['epochs']} epochs, batch {config['batch_size']}, "
                     f"{config['optimizer']} lr {config['lr']}, augment "
                     f"{config['resolved']['augment']}; {wall / 60:.1f} min wall in all "
                     "(evaluation after every epoch included).")
    if not quick:
        _curve(runs, PICTURE)
    return {"columns": ["run", "epoch", "training min", "mAP@.5 / mIoU",
                        "mAP / pixel acc.", "images/s"], "rows": rows, "notes": notes}
