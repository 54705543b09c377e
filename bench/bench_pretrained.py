"""The packaged networks: predict against the bare model, fast style per photo, Gatys on
VGG-16 features, and class images read back from PNG files."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import interleaved

TITLE = "Packaged networks: predict, fast style, Gatys on VGG-16, class images"
DESCRIPTION = (
    "EfficientNet-Lite0 from its package (224 px, CPU, fp32). `convscope predict`'s path "
    "(`Classifier.predict_proba` on decoded uint8 photos: conversion, normalisation, batched "
    "forward, softmax) against the bare network called in a plain loop on tensors already "
    "normalised, in the same batches, timed in alternation; the ratio is convscope's images/s "
    "over the bare loop's. Fast style: seconds per 512-px photo (scikit-image's chelsea, "
    "451x300 scaled to 512x341) through `convscope.style.fast.fast_stylize`, warm sessions, "
    "for a fixed style and for a style image (which adds the style predictor's pass). "
    "Gatys: `stylize(chelsea, ihc, backbone=\"vgg16-hed\")` at 256 px (L-BFGS), seconds per "
    "step, the style loss's fall from the first step to the last, and EfficientNet-Lite0's "
    "top-1 on the result (content kept: still one of ImageNet's cat classes, 281-293). Class images: `visualize "
    "efficientnet-lite0 --class tabby goldfish \"school bus\"`, each saved as PNG and read back "
    "as a user's photo; its top-1 on Lite0, and whether EfficientNet-Lite1 (trained apart) has "
    "the class in its top-5."
)

#: ImageNet's cat classes (281-293: the five domestic cats and the wild ones, lynx among
#: them, which Lite0 already gives chelsea 0.04), for "the content is still a cat"
CATS = ("tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat", "cougar", "lynx",
        "leopard", "snow leopard", "jaguar", "lion", "tiger", "cheetah")
CLASSES = ("tabby", "goldfish", "school bus")


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
    rows += gatys(clf, quick) + class_images_read_back(clf, quick)
    return {"columns": ["what", "convscope", "bare loop", "ratio (convscope / bare)"],
            "rows": rows,
            "notes": [f"{n} photos in batches of {batch}; medians of alternating runs",
                      "target: predict ratio >= 0.9; fast style under 1 s per 512-px photo; "
                      "Gatys on VGG-16 lowers the style loss >= 10x and the result stays a "
                      "cat; each class image read back is top-1 its class"]}


def gatys(lite0, quick: bool) -> list[list]:
    from convscope.style import stylize

    size, steps = (128, 10) if quick else (256, 60)
    t = time.perf_counter()
    res = stylize("sample:chelsea", "sample:ihc", backbone="vgg16-hed", size=size, steps=steps,
                  progress=False)
    seconds = time.perf_counter() - t
    style = [h["style"] for h in res.history]
    [top] = lite0.topk(res.image, k=1)
    label, p = top[0]
    return [[f"Gatys on vgg16-hed, {size} px, {steps} steps",
             f"{seconds / steps:.2f} s/step", "", ""],
            ["  style loss, first step -> last", f"{style[0]:.4g} -> {style[-1]:.4g}", "",
             f"{style[0] / style[-1]:.1f}x lower"],
            ["  Lite0 top-1 of the result", f"{label} {p:.2f}", "",
             "a cat class" if label in CATS else "NOT a cat class"]]


def class_images_read_back(lite0, quick: bool) -> list[list]:
    import convscope
    from convscope.inspect.synthesis.visualize import VisualizeConfig, class_images

    wanted = CLASSES[:1] if quick else CLASSES
    config = VisualizeConfig(steps=20) if quick else None
    t = time.perf_counter()
    res = class_images(lite0, list(wanted), config, progress=False)
    seconds = time.perf_counter() - t
    judge = convscope.open_model("efficientnet-lite1")
    rows, top1, agree = [], 0, 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, image in zip(wanted, res.pil()):
            path = Path(tmp) / f"{name}.png"
            image.save(path)
            [mine] = lite0.topk(str(path), k=1)
            [theirs] = judge.topk(str(path), k=5)
            top1 += mine[0][0] == name
            agree += name in [c for c, _ in theirs]
            rows.append([f"  class image {name!r} read back from PNG",
                         f"Lite0 top-1 {mine[0][0]} {mine[0][1]:.2f}", "",
                         f"Lite1 top-5 {'has' if name in [c for c, _ in theirs] else 'lacks'} "
                         f"it ({dict(theirs).get(name, 0):.2f})"])
    return [[f"class images on Lite0, {len(wanted)} classes", f"{seconds:.0f} s", "",
             f"top-1 {top1}/{len(wanted)}; Lite1 agrees {agree}/{len(wanted)}"], *rows]
