"""The six challenges: images/s of a whole `convscope challenges` run against plain
evaluation of the same number of images."""

from __future__ import annotations

import os
import time

import torch

TITLE = "Challenges: corrupted images scored per second against plain evaluation"
DESCRIPTION = (
    "Images per second of `convscope.challenges` (every challenge, 5 severities: corrupting "
    "the images with torchvision's v2 ops, one batched forward pass per severity, the "
    "intra-class features) against `Classifier.logits` on the same number of uint8 images "
    "(the plain evaluation a user would otherwise run per corrupted set). The ratio bounds the "
    "overhead of the corruptions. Rows with and without the evidence-placed occlusion, which "
    "also computes one occlusion map per image. Untrained weights (speed does not depend on "
    "them), 500 test images (100 with `--quick`), CPU."
)


def _classifier(channels: int, size: int):
    from convscope.classifier import Classifier
    from convscope.modelfile import ModelMeta
    from convscope.models import ModelInput, build_model

    net = build_model("convnet", ModelInput(channels, 10, (size, size)))
    meta = ModelMeta(model="convnet", options={}, classes=[str(i) for i in range(10)],
                     channels=channels, image_size=[size, size], input_size=[size, size],
                     mean=[0.5] * channels, std=[0.25] * channels)
    return Classifier(net, meta)


def run(quick: bool) -> dict:
    from convscope.inspect.challenges import challenges, list_challenges

    torch.manual_seed(0)
    load_before = os.getloadavg()[0]
    n = 100 if quick else 500
    rows = []
    for label, channels, size in (("28x28 gray convnet", 1, 28), ("32x32 RGB convnet", 3, 32)):
        clf = _classifier(channels, size)
        images = torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8)
        labels = torch.randint(0, 10, (n,))
        for only in (None, tuple(c for c in list_challenges() if c != "occlusion-evidence")):
            t = time.perf_counter()
            r = challenges(clf, images, labels=labels, only=only, n=None)
            t_ch = time.perf_counter() - t
            scored = sum(sum(c.counts) for c in r.main.curves.values())
            passes = -(-scored // n)  # whole plain evaluations of the same images
            t = time.perf_counter()
            for _ in range(passes):
                clf.logits(images)
            t_plain = time.perf_counter() - t
            ips_ch, ips_plain = scored / t_ch, passes * n / t_plain
            rows.append([label, "all" if only is None else "all but occlusion-evidence",
                         len(r.names), scored, round(ips_ch), round(ips_plain),
                         round(ips_ch / ips_plain, 3)])
    return {
        "columns": ["images, model", "challenges", "run", "images scored", "challenges img/s",
                    "plain img/s", "ratio"],
        "rows": rows,
        "notes": ["The two sides run back to back in one process; compare the ratio, not the "
                  "absolute rates, on a shared machine.",
                  f"1-minute load average {load_before:.1f} at the start, "
                  f"{os.getloadavg()[0]:.1f} at the end."],
    }
