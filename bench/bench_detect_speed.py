"""Training images/s of convscope's Trainer on a detector and a segmenter, against a plain
loop over the same torchvision model and data."""

from __future__ import annotations

import time

import torch

TITLE = "Detectors and segmenters: the Trainer's training speed against a plain loop"
DESCRIPTION = (
    "Training images per second of one epoch on `digits-boxes` (FCOS) and `digits-masks` "
    "(LR-ASPP), batch 8, AdamW, on the CPU: `convscope` is `convscope.train.fit` (the "
    "Trainer: its objective's batches, the per-step collective, divergence check, progress "
    "bar, schedule), `plain` is the loop of torchvision's detection reference "
    "(references/detection/engine.py `train_one_epoch`: a DataLoader with the reference's "
    "tuple collate, `model(images, targets)`, the summed losses, backward, step) over the "
    "same model, data and augmentation (none, then the same scale-and-shift jitter applied in "
    "the dataset, as the reference applies its transforms). Rounds alternate, so the "
    "machine's noise hits both alike; the ratio is what counts (the issue asks >= 0.95)."
)


def _plain_epoch(model, images, targets, batch: int, transform, task: str, lr: float) -> float:
    """One epoch of the reference's loop; returns images/s over the training steps."""
    from torch.utils.data import DataLoader

    from convscope.models.detection import detection_loss
    from convscope.train.annotated import IGNORE

    class Data(torch.utils.data.Dataset):  # the reference's dataset: transform per item
        def __len__(self):
            return len(images)

        def __getitem__(self, i):
            x, t = images[i], targets[i]
            if transform is not None:
                x, t = transform(i, x, t)
            return x, t

    loader = DataLoader(Data(), batch_size=batch, shuffle=True,
                        collate_fn=lambda b: tuple(zip(*b)),
                        generator=torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    seen, start = 0, time.perf_counter()
    for xs, ts in loader:
        if task == "detect":
            loss = detection_loss(model, list(xs), list(ts))
        else:
            h = max(x.shape[1] for x in xs)
            w = max(x.shape[2] for x in xs)
            x = torch.zeros(len(xs), xs[0].shape[0], h, w)
            y = torch.full((len(xs), h, w), IGNORE, dtype=torch.long)
            for k, (image, t) in enumerate(zip(xs, ts)):
                x[k, :, :image.shape[1], :image.shape[2]] = image.float() / 255
                y[k, :image.shape[1], :image.shape[2]] = t["mask"]
            loss = torch.nn.functional.cross_entropy(model(x)["out"], y, ignore_index=IGNORE)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 2.0)  # the Trainer's for deep nets
        opt.step()
        seen += len(xs)
    return seen / (time.perf_counter() - start)


def run(quick: bool = False) -> dict:
    from convscope.data import load_dataset
    from convscope.models import ModelInput, build_model
    from convscope.train import TrainConfig
    from convscope.train.annotated import AnnotatedObjective
    from convscope.train.loop import Trainer

    n = 48 if quick else 400
    rounds = 1 if quick else 3
    rows, notes = [], []
    for task, name, model_name in (("detect", f"digits-boxes:n={n},test=0", "fcos"),
                                   ("segment", f"digits-masks:n={n},test=0", "lraspp")):
        ds = load_dataset(name)
        for augment in ("none", "crop"):
            config = TrainConfig(model=model_name, epochs=1, batch_size=8, optimizer="adamw",
                                 lr=1e-3, augment=augment, warmup_epochs=0.0, seed=0)
            # the plain loop gets the objective's own augmentation, per item as the
            # reference's dataset applies its transforms
            objective = AnnotatedObjective(ds, config.resolve(task), torch.device("cpu"))

            def jitter(i, x, t, objective=objective):
                return objective._sample(i, i)

            ts = [ds.train.target(i) for i in range(len(ds.train))]
            if task == "segment":
                ts = [{"mask": t["masks"]} for t in ts]
            speeds: dict[str, list[float]] = {"convscope": [], "plain": []}
            for _ in range(rounds):
                trainer = Trainer(ds, config, progress=True, log=lambda _m: None)
                trainer.run()
                speeds["convscope"].append(trainer.state.history[-1]["images_per_sec"])
                torch.manual_seed(0)
                model = build_model(model_name, ModelInput(ds.channels, len(ds.classes),
                                                           (128, 128)), task=task)
                speeds["plain"].append(_plain_epoch(
                    model, ds.train.images, ts, 8, jitter if augment != "none" else None,
                    task, 1e-3))
            ours = sorted(speeds["convscope"])[len(speeds["convscope"]) // 2]
            plain = sorted(speeds["plain"])[len(speeds["plain"]) // 2]
            rows.append([model_name, name.split(":")[0], augment, round(ours, 1),
                         round(plain, 1), round(ours / plain, 3)])
    notes.append(f"median of {rounds} alternating one-epoch rounds of {n} canvases each, "
                 f"{torch.get_num_threads()} torch threads; the Trainer's images/s is its "
                 "metrics.jsonl figure (training steps only, evaluation excluded), the plain "
                 "loop's is timed over its steps the same way.")
    notes.append("Both build the same network from the same seed and clip the gradient norm "
                 "at 2 (the Trainer's default for nets of 20 or more layers), so that the two "
                 "do the same arithmetic.")
    return {"columns": ["model", "data", "augment", "convscope img/s", "plain img/s",
                        "ratio"], "rows": rows, "notes": notes}
