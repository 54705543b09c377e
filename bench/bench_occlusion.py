"""Occlusion maps: one masked copy per forward pass (captum's default) against our batches."""

from __future__ import annotations

import torch

from bench.common import interleaved

TITLE = "Occlusion: perturbations_per_eval = 1 against the batched default"
DESCRIPTION = (
    "Seconds per image for an occlusion map (`convscope explain --method occlusion`), with "
    "captum evaluating one masked copy per forward pass (`--perturbations-per-eval 1`) and "
    "with our default, which puts as many masked copies in one batch as fit 256 images or "
    "2^23 input values. 32x32 RGB: the default `convnet` (random weights), window 4, stride "
    "2. 224x224 RGB: torchvision's `resnet18` (random weights; the speed does not depend on "
    "them), window 16, stride 8. One image per call, timed alternately."
)


def cases(quick: bool):
    from convscope.classifier import Classifier, open_model
    from convscope.modelfile import ModelMeta
    from convscope.models import ModelInput, build_model

    small = build_model("convnet", ModelInput(3, 10, (32, 32)))
    meta = ModelMeta(model="convnet", options={}, classes=[str(i) for i in range(10)],
                     channels=3, image_size=[32, 32], input_size=[32, 32], mean=[0.5] * 3,
                     std=[0.25] * 3)
    yield "32x32 convnet", Classifier(small, meta), 32, 4, 2, (1 if quick else 5, 1)
    window, stride = (32, 32) if quick else (16, 8)
    # one P=1 map is ~730 forward passes of resnet18: one timed run of each, no warm-up
    yield "224x224 resnet18", open_model("resnet18"), 224, window, stride, (1, 0)


def run(quick: bool) -> dict:
    import os

    from convscope.inspect.attribution import explain

    torch.manual_seed(0)
    load_before = os.getloadavg()[0]
    rows = []
    for name, clf, size, window, stride, (repeats, warmup) in cases(quick):
        x = torch.randint(0, 256, (1, 3, size, size), dtype=torch.uint8)
        resolved = {}

        def occlusion(per_eval, clf=clf, x=x, window=window, stride=stride, resolved=resolved):
            def go():
                resolved[per_eval] = explain(clf, x, "occlusion", window=window, stride=stride,
                                             perturbations_per_eval=per_eval)
            return go

        t = interleaved({"one": occlusion(1), "batched": occlusion(None)}, repeats=repeats,
                        warmup=warmup)
        torch.testing.assert_close(resolved[1].maps, resolved[None].maps, atol=1e-5, rtol=1e-4)
        masks = ((size - window + stride - 1) // stride + 1) ** 2
        rows.append([name, f"{window} / {stride}", masks,
                     resolved[None].config.perturbations_per_eval, round(t["one"], 3),
                     round(t["batched"], 3), round(t["one"] / t["batched"], 1)])
    return {
        "columns": ["image, model", "window / stride", "masks", "batched P", "s/image P=1",
                    "s/image batched", "speed-up"],
        "rows": rows,
        "notes": ["P is perturbations_per_eval: masked copies per forward pass. Both settings "
                  "give the same map (checked to 1e-5 in the run).",
                  "32x32: median of 5 alternating runs after a warm-up; 224x224: one run of "
                  "each (P=1 takes minutes). Compare the ratio, not the absolute times, on a "
                  "shared machine.",
                  f"1-minute load average {load_before:.1f} at the start, "
                  f"{os.getloadavg()[0]:.1f} at the end."],
    }
