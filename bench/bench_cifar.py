"""CIFAR-10 accuracy per epoch budget: `--recipe fast` against airbench94, same data."""

from __future__ import annotations

import json
import os
import time

import torch

from bench.common import ROOT, shared_cifar

#: finished runs, so that an interrupted benchmark (hours on a CPU) resumes where it stopped
PARTIAL = ROOT / "bench" / "results" / "cifar.partial.json"


def _cached(key: str, run):
    """The row of a finished run, or run() and remember its row."""
    done = json.loads(PARTIAL.read_text()) if PARTIAL.is_file() else {}
    if key not in done:
        done[key] = run()
        PARTIAL.parent.mkdir(parents=True, exist_ok=True)
        PARTIAL.write_text(json.dumps(done, indent=1))
    return done[key]

TITLE = "CIFAR-10 accuracy at fixed epoch budgets (shared JPEGs, 45k/5k split)"
DESCRIPTION = (
    "`--recipe fast` trained on 45,000 of the shared CIFAR-10 training JPEGs and tested (with "
    "its test-time augmentation) on the other 5,000 (stratified, seed 0), at 2, 4, 8 and 10 "
    "epochs; beside it, a plain re-implementation of the airbench94 recipe "
    "(`bench/airbench94_ref.py`) on the same split. Training FLOPs count forward and backward "
    "passes over the training images (FlopCounterMode), not test-time augmentation. CPU, fp32."
)


def split_45k_5k(name: str):
    """The shared images with 5,000 held out (stratified, seed 0)."""
    from convscope.data import load_dataset

    return load_dataset(name, holdout=5000, progress=False)


def run(quick: bool = False) -> dict:
    name = shared_cifar()
    if name is None:
        return {"columns": ["recipe"], "rows": [],
                "notes": ["skipped: ../shared/data/cifar10-train-jpeg.tar.gz is absent"]}
    from torch.utils.flop_counter import FlopCounterMode

    from bench.airbench94_ref import flops_per_epoch, train_airbench94, tta_accuracy
    from convscope.models import ModelInput, build_model
    from convscope.train import TrainConfig, fit

    ds = split_45k_5k(name)
    if quick:  # a tenth of the data, one budget: checks that everything runs
        ds.train_images, ds.train_labels = ds.train_images[:4500], ds.train_labels[:4500]
        ds.test_images, ds.test_labels = ds.test_images[:500], ds.test_labels[:500]
    n = len(ds.train_labels)
    net = build_model("fastnet", ModelInput(3, 10, (32, 32)))
    with FlopCounterMode(display=False) as c:
        net(torch.randn(8, 3, 32, 32)).sum().backward()
    fast_flops_epoch = c.get_total_flops() / 8 * n

    rows = []

    def fast(epochs: int):
        t = time.perf_counter()
        clf = fit(ds, TrainConfig(data=ds.name, recipe="fast", epochs=epochs, device="cpu"),
                  progress=False, log=print)
        return ["fast", epochs, round(100 * clf.meta.metrics["test_acc"], 2),
                round(fast_flops_epoch * epochs / 1e15, 4), round(time.perf_counter() - t)]

    def reference(epochs: int):
        mean = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
        std = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)
        x = (ds.train_images.float() / 255 - mean) / std
        xt = (ds.test_images.float() / 255 - mean) / std
        t = time.perf_counter()
        ref = train_airbench94(x, ds.train_labels, epochs, log=print)
        acc = tta_accuracy(ref, xt, ds.test_labels)
        return ["airbench94 (reference)", epochs, round(100 * acc, 2),
                round(flops_per_epoch(n) * epochs / 1e15, 4), round(time.perf_counter() - t)]

    # the runs that decide the acceptance first, so a partial benchmark is already useful
    plan = ([("fast", 1), ("ref", 1)] if quick else
            [("fast", 10), ("fast", 4), ("ref", 4), ("fast", 2), ("ref", 10), ("fast", 8)])
    # BENCH_CIFAR_CACHED_ONLY=1 tabulates the finished runs without starting the others
    cached_only = os.environ.get("BENCH_CIFAR_CACHED_ONLY") == "1"
    done = json.loads(PARTIAL.read_text()) if PARTIAL.is_file() else {}
    missing = []
    for kind, epochs in plan:
        def one(kind=kind, epochs=epochs):
            return fast(epochs) if kind == "fast" else reference(epochs)

        key = f"{kind}-{epochs}-{n}"
        if cached_only and not quick and key not in done:
            missing.append(f"{kind} {epochs}")
            continue
        rows.append(one() if quick else _cached(key, one))
    rows.sort(key=lambda r: (r[0] != "fast", r[1]))
    return {"columns": ["recipe", "epochs", "test top-1 % (TTA)", "training PFLOP", "seconds"],
            "rows": rows,
            "notes": [f"{n:,} training / {len(ds.test_labels):,} test images; one run each "
                      "(seed 0).",
                      "seconds: wall clock including decoding and test-time augmentation, on "
                      "a shared machine whose load varied between runs; compare accuracy and "
                      "FLOPs, not seconds."]
            + ([f"not run in the time available: {', '.join(missing)} epochs."]
               if missing else [])}
