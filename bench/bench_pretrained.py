"""The packaged networks: predict against the bare model, and fast style per photo."""

from __future__ import annotations

import numpy as np
import torch

from bench.common import interleaved

TITLE = "Packaged networks: predict against the bare model, fast style per photo"
DESCRIPTION = (
    "EfficientNet-Lite0 from its package (224 px, CPU, fp32). `convscope predict`'s path "
    "(`Classifier.predict_proba` on decoded uint8 photos: conversion, normalisation, batched "
    "forward, softmax) against the bare network called in a plain loop on tensors already "
    "normalised, in the same batches, timed in alternation; the ratio is convscope's images/s "
    "over the bare loop's. Fast style: seconds per 512-px photo (scikit-image's chelsea, "
    "451x300 scaled to 512x341) through `convscope.style.fast.fast_stylize`, warm sessions, "
    "for a fixed style and for a style image (which adds the style predictor's pass)."
)


def run(quick: bool = False) -> dict:
    import convscope
    from convscope.style.fast import fast_stylize, open_fast

    n, batch = (16, 8) if quick else (64, 16)
    clf = convscope.open_model("efficientnet-lite0")
    rng = np.random.default_rng(0)
    photos = torch.from_numpy(rng.integers(0, 255, (n, 3, 224, 224), dtype=np.uint8))
    mean = torch.tensor(clf.meta.mean).view(1, 3, 1, 1)
    std = torch.tensor(clf.meta.std).view(1, 3, 1, 1)
    ready = (photos.float() / 255 - mean) / std
    net = clf.model.eval()

    def ours():
        clf.predict_proba(photos, batch_size=batch)

    def bare():
        with torch.inference_mode():
            for i in range(0, n, batch):
                net(ready[i:i + batch]).softmax(1)

    t = interleaved({"convscope": ours, "bare": bare}, repeats=3 if quick else 5)
    rows = [["predict, EfficientNet-Lite0", f"{n / t['convscope']:.1f}", f"{n / t['bare']:.1f}",
             f"{t['bare'] / t['convscope']:.2f}"]]

    nets = open_fast()
    size = 256 if quick else 512
    s = interleaved({"fixed": lambda: fast_stylize("sample:chelsea", "7", size, nets),
                     "image": lambda: fast_stylize("sample:chelsea", "sample:ihc", size, nets)},
                    repeats=3 if quick else 5)
    rows.append([f"fast style, fixed style, {size} px", f"{s['fixed']:.3f} s/photo", "", ""])
    rows.append([f"fast style, style image, {size} px", f"{s['image']:.3f} s/photo", "", ""])
    return {"columns": ["what", "convscope", "bare loop", "ratio (convscope / bare)"],
            "rows": rows,
            "notes": [f"{n} photos in batches of {batch}; medians of alternating runs",
                      "target: predict ratio >= 0.9; fast style under 1 s per 512-px photo"]}
