"""The training loop: data in memory as uint8, batches augmented on tensors,
evaluation after every epoch, and three files written to the run's folder."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from convscope.classifier import Classifier, resolve_device
from convscope.data import ImageDataset
from convscope.errors import ConvscopeError
from convscope.evaluate import evaluate_logits
from convscope.modelfile import ModelMeta
from convscope.models import ModelInput, build_model, canonical_name, parse_model_name
from convscope.models.zoo import IMAGENET_MEAN, IMAGENET_STD
from convscope.progress import progress_bar
from convscope.train.augment import augment_batch, resolve_augment
from convscope.train.config import TrainConfig


def lr_lambda(config: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """Linear warm-up for ``warmup_epochs``, then cosine/linear decay to 0 (or constant)."""
    total = config.epochs * steps_per_epoch
    warm = min(int(round(config.warmup_epochs * steps_per_epoch)), total // 2)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if config.schedule == "constant":
            return 1.0
        t = (step - warm) / max(1, total - warm)
        return 0.5 * (1 + math.cos(math.pi * t)) if config.schedule == "cosine" else 1.0 - t

    return factor


def make_optimizer(model: nn.Module, config: TrainConfig, steps_per_epoch: int):
    """SGD (Nesterov) or AdamW; no weight decay on biases and norm layers."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum,
                              nesterov=config.momentum > 0)
    else:
        opt = torch.optim.AdamW(groups, lr=config.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(config, steps_per_epoch))
    return opt, sched


def make_classifier(dataset: ImageDataset, config: TrainConfig, device: torch.device) -> Classifier:
    """Build the (seeded) network and the metadata that describes it."""
    entry, options = parse_model_name(config.model)
    inp = ModelInput(dataset.channels, dataset.num_classes, dataset.image_size)
    torch.manual_seed(config.seed)
    model = build_model(config.model, inp, weights=config.weights)
    mean, std = dataset.normalization()
    if config.weights and dataset.channels == 3:  # pretrained filters expect ImageNet statistics
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    meta = ModelMeta(
        model=entry.name,
        options=options,
        classes=list(dataset.classes),
        channels=dataset.channels,
        image_size=list(dataset.image_size),
        input_size=list(entry.input_size(dataset.image_size)),
        mean=list(mean),
        std=list(std),
        dataset=dataset.name,
    )
    return Classifier(model, meta, device)


def fit(dataset: ImageDataset, config: TrainConfig, *, progress: bool = True,
        log: Callable[[str], None] = print) -> Classifier:
    """Train a classifier on ``dataset`` as ``config`` says; write files if ``config.out``.

    >>> clf = fit(load_dataset("digits"), TrainConfig(model="linear", epochs=1))  # doctest: +SKIP
    """
    config.resolve()
    device = resolve_device(config.device)
    clf = make_classifier(dataset, config, device)
    model, pre = clf.model, clf.preprocess
    n = len(dataset.train_labels)
    if n == 0:
        raise ConvscopeError(f"{dataset.name} has no training images.")
    batch = min(config.batch_size, n)
    steps = math.ceil(n / batch)
    augment = resolve_augment(config.augment, dataset.natural)
    optimizer, scheduler = make_optimizer(model, config, steps)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    g = torch.Generator().manual_seed(config.seed)

    config.resolved = {
        "model": canonical_name(*parse_model_name(config.model)),
        "model_options": clf.meta.options,
        "device": str(device),
        "augment": augment,
        "steps_per_epoch": steps,
        "input_size": clf.meta.input_size,
        "parameters": sum(p.numel() for p in model.parameters()),
        "dataset": {k: v for k, v in dataset.describe().items() if k != "notes"},
        "threads": torch.get_num_threads(),
    }
    out = Path(config.out) if config.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
        (out / "metrics.jsonl").write_text("")
    log(f"training {config.resolved['model']} ({config.resolved['parameters']:,} parameters) on "
        f"{dataset.name}: {n:,} train / {len(dataset.test_labels):,} test images, "
        f"{config.epochs} epochs, {config.optimizer} lr {config.lr:g}, augment {augment}, "
        f"{device}")

    images, labels = dataset.train_images, dataset.train_labels
    history: list[dict] = []
    for epoch in range(1, config.epochs + 1):
        model.train()
        start = time.perf_counter()
        order = torch.randperm(n, generator=g)
        seen, loss_sum, correct = 0, 0.0, 0
        bar = progress_bar(total=n, desc=f"epoch {epoch}/{config.epochs}", unit="img",
                           enable=progress, leave=False)
        with bar:
            for i in range(steps):
                idx = order[i * batch : (i + 1) * batch]
                if len(idx) < 2 and seen:  # a batch of one breaks batch norm; skip the remainder
                    break
                x = pre(images[idx].to(device, non_blocking=True))  # (B, C, H, W) float
                y = labels[idx].to(device, non_blocking=True)
                x = augment_batch(x, augment, g)
                logits = model(x)
                loss = loss_fn(logits, y)
                if not torch.isfinite(loss):
                    raise ConvscopeError(
                        f"training diverged: the loss became {loss.item()} at epoch {epoch}, "
                        f"step {i + 1} (lr {scheduler.get_last_lr()[0]:.3g}); lower --lr.")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                seen += len(idx)
                loss_sum += loss.item() * len(idx)
                correct += int((logits.argmax(1) == y).sum())
                elapsed = time.perf_counter() - start
                bar.update(len(idx))
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}",
                                img_s=f"{seen / max(elapsed, 1e-9):.0f}", refresh=False)
        train_seconds = time.perf_counter() - start
        ev = evaluate_logits(clf.logits(dataset.test_images, config.eval_batch_size),
                             dataset.test_labels, dataset.classes)
        row = {
            "epoch": epoch,
            "train_loss": round(loss_sum / seen, 6),
            "train_acc": round(correct / seen, 6),
            "test_acc": round(ev.top1, 6),
            "test_top5": round(ev.top5, 6),
            "lr": scheduler.get_last_lr()[0],
            "seconds": round(time.perf_counter() - start, 3),
            "train_seconds": round(train_seconds, 3),
            "images_per_sec": round(seen / train_seconds, 1),
        }
        history.append(row)
        log(f"epoch {epoch:>3}/{config.epochs}  loss {row['train_loss']:.4f}  "
            f"train {100 * row['train_acc']:6.2f}%  test {100 * row['test_acc']:6.2f}%  "
            f"top-{ev.k} {100 * row['test_top5']:6.2f}%  {row['seconds']:.1f}s  "
            f"{row['images_per_sec']:.0f} img/s")
        if out:
            with open(out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")

    clf.meta.train_config = config.to_dict()
    clf.meta.metrics = dict(history[-1])
    if out:
        clf.save(out / "model.safetensors")
    return clf
