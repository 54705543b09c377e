"""Training-step time of every detector and segmenter on the digit canvases."""

from __future__ import annotations

import time

import torch

TITLE = "Detectors and segmenters: seconds per training step on the digit canvases"
DESCRIPTION = (
    "One SGD step (forward with the loss, backward, update) at batch 8 on `digits-boxes` / "
    "`digits-masks` canvases (96-128 px, models built for 128 px), random weights, on the "
    "CPU: what choosing a default that trains in minutes starts from. Detectors take the "
    "canvases at their own sizes (their transform scales the shorter side to 128 px); "
    "segmenters take them padded to 128 x 128 (padding 255, not scored). `build s` is the "
    "time to build the network (a packaged backbone reads its weights)."
)

BATCH = 8
SIZE = 128
#: (name, weights): every entry with its default trunk, then the other trunks on one
#: detector and one segmenter
MODELS = [
    ("fasterrcnn", None), ("retinanet", None), ("fcos", None), ("ssdlite", None),
    ("fasterrcnn:backbone=resnet18", None), ("fasterrcnn:backbone=efficientnet-lite0", "pretrained"),
    ("fcn", None), ("deeplabv3", None), ("lraspp", None),
    ("lraspp:backbone=resnet18", None), ("lraspp:backbone=efficientnet-lite0", "pretrained"),
]


def _padded(images, masks) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.zeros(len(images), images[0].shape[0], SIZE, SIZE, dtype=torch.uint8)
    y = torch.full((len(images), SIZE, SIZE), 255, dtype=torch.uint8)
    for i, (image, mask) in enumerate(zip(images, masks)):
        h, w = mask.shape
        x[i, :, :h, :w], y[i, :h, :w] = image, mask
    return x, y


def run(quick: bool = False) -> dict:
    from convscope.data import load_dataset
    from convscope.models import ModelInput, build_model, get_entry
    from convscope.models.detection import detection_loss
    from convscope.models.segmentation import segmentation_loss

    steps = 3 if quick else 10
    boxes = load_dataset("digits-boxes", task="detect")
    masks = load_dataset("digits-masks", task="segment")
    runs = []
    for name, weights in MODELS:
        task = get_entry(name).task
        ds = boxes if task == "detect" else masks
        torch.manual_seed(0)
        t = time.perf_counter()
        model = build_model(name, ModelInput(ds.channels, ds.num_classes, (SIZE, SIZE)),
                            weights=weights, task=task).train()
        built = time.perf_counter() - t
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad],
                                    lr=0.01, momentum=0.9)
        runs.append({"name": name, "weights": weights, "task": task, "ds": ds, "model": model,
                     "optimizer": optimizer, "built": built, "times": []})

    def step(task, ds, model, optimizer, rows_) -> None:
        if task == "detect":
            loss = detection_loss(model, [ds.train.images[i] for i in rows_],
                                  [ds.train.target(i) for i in rows_])
        else:
            loss = segmentation_loss(model, *_padded([ds.train.images[i] for i in rows_],
                                                     [ds.train.masks[i] for i in rows_]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    # the models take turns, step by step, so that the machine's noise hits all alike; the
    # first step of each warms up and is not counted
    for i in range(steps + 1):
        for r in runs:
            t = time.perf_counter()
            step(r["task"], r["ds"], r["model"], r["optimizer"],
                 range(i * BATCH, (i + 1) * BATCH))
            if i:
                r["times"].append(time.perf_counter() - t)
    rows = []
    for r in runs:
        seconds = sorted(r["times"])[len(r["times"]) // 2]
        params = sum(p.numel() for p in r["model"].parameters())
        rows.append([r["name"] + (f" (weights {r['weights']})" if r["weights"] else ""),
                     r["task"], round(params / 1e6, 2), round(r["built"], 2), round(seconds, 3),
                     round(BATCH / seconds, 1)])
    return {"columns": ["model", "task", "parameters (M)", "build s", "s per step",
                        "images/s"],
            "rows": rows,
            "notes": [f"median of {steps} steps after one warm-up step, batch {BATCH}, the models "
                      "taking turns step by step, "
                      f"{torch.get_num_threads()} torch threads; a shared machine's noise "
                      "moves single numbers, compare rows as ratios."]}
