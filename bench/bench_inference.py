"""Inference throughput of `predict` (image files) and `evaluate` (decoded tensors)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.common import interleaved

TITLE = "Inference throughput: predict and evaluate"
DESCRIPTION = (
    "Images per second on the CPU for a trained-size network, untrained weights (speed does "
    "not depend on them). `evaluate` runs on decoded uint8 tensors in batches of 500; "
    "`predict` starts from PNG files on disk (decode, resize, convert) and adds the top-5. "
    "TTA rows use the fast recipe's test-time augmentation (6 views per image)."
)


def _classifier(model: str, size: int, channels: int, tta: int = 0):
    from convscope.classifier import Classifier
    from convscope.modelfile import ModelMeta
    from convscope.models import ModelInput, build_model

    net = build_model(model, ModelInput(channels, 10, (size, size)))
    meta = ModelMeta(model=model, options={}, classes=[str(i) for i in range(10)],
                     channels=channels, image_size=[size, size], input_size=[size, size],
                     mean=[0.5] * channels, std=[0.25] * channels, tta=tta)
    return Classifier(net, meta, "cpu")


def run(quick: bool = False) -> dict:
    n_eval = 500 if quick else 5000
    n_files = 50 if quick else 500
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model, size, channels, tta in [("convnet", 28, 1, 0), ("fastnet", 32, 3, 0),
                                           ("fastnet", 32, 3, 2)]:
            clf = _classifier(model, size, channels, tta)
            x = torch.from_numpy(rng.integers(0, 255, (n_eval, channels, size, size),
                                              dtype=np.uint8))
            files = []
            for i in range(n_files):
                arr = x[i].permute(1, 2, 0).numpy()
                p = Path(tmp) / f"{model}{tta}_{i}.png"
                Image.fromarray(arr[:, :, 0] if channels == 1 else arr).save(p)
                files.append(str(p))
            t = interleaved({
                "evaluate": lambda clf=clf, x=x: clf.logits(x, batch_size=500),
                "predict": lambda clf=clf, files=files: clf.topk(files, k=5),
            }, repeats=2 if quick else 3)
            name = f"{model} {size}x{size}x{channels}" + (f", TTA {tta}" if tta else "")
            rows.append([name, round(n_eval / t["evaluate"], 1), round(n_files / t["predict"], 1)])
    return {"columns": ["model", "evaluate images/s", "predict images/s (from PNG files)"],
            "rows": rows, "notes": [f"{n_eval} images for evaluate, {n_files} PNG files for "
                                    "predict, median of interleaved repeats."]}
