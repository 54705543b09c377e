"""Transfer learning on a small folder: fine-tuned EfficientNet-Lite0, the same net from
scratch, and the linear probe (--freeze), at equal epochs."""

from __future__ import annotations

import time

import numpy as np
import torch

from bench.common import shared_cifar

TITLE = "Transfer learning: fine-tune vs scratch vs linear probe (EfficientNet-Lite0)"
DESCRIPTION = (
    "EfficientNet-Lite0 trained on 100 shared CIFAR-10 JPEGs per class (1,000 images, picked "
    "with seed 0 from the 45,000 left after holding out 5,000 stratified ones, as the CIFAR "
    "benchmark does) and tested on those 5,000, with the images upsampled from 32 to 64 px. "
    "Three runs at the same epochs and recipe (`convscope train`'s default: SGD with Nesterov "
    "momentum at lr 0.05, flip+crop, cosine schedule): `--weights pretrained` (fine-tuning "
    "from the packaged ImageNet weights: the new head at lr, the pretrained layers at a tenth "
    "of it, `--backbone-lr 0.1`, with their batch-norm statistics kept), no weights (from "
    "scratch) and `--weights pretrained --freeze` (only the new head trains: a linear probe). Seconds are the whole run, evaluation after "
    "every epoch included. CPU, fp32."
)

PER_CLASS = 100
SIZE = 64


def small_split(quick: bool):
    from bench.bench_cifar import split_45k_5k
    from convscope.data.base import resized

    ds = split_45k_5k(shared_cifar())
    rng = np.random.default_rng(0)
    labels = ds.train_labels.numpy()
    per = 20 if quick else PER_CLASS
    keep = np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == c), per, replace=False)
                                   for c in range(ds.num_classes)]))
    ds.train_images, ds.train_labels = ds.train_images[keep], ds.train_labels[keep]
    if quick:  # a random 500 of the held-out images (they are stored class by class)
        some = torch.from_numpy(np.sort(rng.choice(len(ds.test_labels), 500, replace=False)))
        ds.test_images, ds.test_labels = ds.test_images[some], ds.test_labels[some]
    return resized(ds, SIZE)


def run(quick: bool = False) -> dict:
    if shared_cifar() is None:
        return {"columns": ["run"], "rows": [],
                "notes": ["skipped: ../shared/data/cifar10-train-jpeg.tar.gz is absent"]}
    from convscope.train import TrainConfig, fit

    ds = small_split(quick)
    epochs = 1 if quick else 6
    runs = [("fine-tuned (--weights pretrained)", {"weights": "pretrained"}),
            ("from scratch", {}),
            ("linear probe (--weights pretrained --freeze)",
             {"weights": "pretrained", "freeze": True})]
    rows = []
    for label, extra in runs:
        torch.manual_seed(0)
        t = time.perf_counter()
        clf = fit(ds, TrainConfig(data=ds.name, model="efficientnet-lite0", epochs=epochs,
                                  device="cpu", **extra), progress=False, log=print)
        seconds = time.perf_counter() - t
        rows.append([label, epochs, round(100 * clf.meta.metrics["test_acc"], 2),
                     round(seconds), round(epochs * len(ds.train_labels) / seconds, 1)])
    fine, scratch, probe = (r[2] for r in rows)
    return {"columns": ["run", "epochs", "held-out top-1 %", "seconds", "train img/s (incl. eval)"],
            "rows": rows,
            "notes": [f"{len(ds.train_labels)} training images, {len(ds.test_labels)} held out, "
                      f"{SIZE} px",
                      f"fine-tuned - scratch: {fine - scratch:+.1f} points; linear probe: "
                      f"{probe:.1f}% (target: fine-tuned beats scratch by >= 20 points; the "
                      "probe is the fastest)"]}
