"""Optimisers and schedules: SGD/AdamW for the default recipe, Muon for the fast one."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from convscope.models.zoo import head_layer
from convscope.train.config import TrainConfig


def newton_schulz(g: torch.Tensor, steps: int = 3, eps: float = 1e-7) -> torch.Tensor:
    """Approximately orthogonalise a 2-D matrix (U S V^T -> U S' V^T, S' ~ 1) with the
    quintic Newton-Schulz iteration of Muon (Jordan et al. 2024)."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.to(torch.bfloat16 if g.is_cuda else torch.float32)
    x = x / (x.norm() + eps)
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    for _ in range(steps):
        s = x @ x.T
        x = a * x + (b * s + c * s @ s) @ x
    return (x.T if tall else x).to(g.dtype)


class Muon(torch.optim.Optimizer):
    """Muon for filters, Nesterov SGD for the rest, in one optimiser.

    Groups with ``orthogonalize=True`` (conv filters) keep each filter bank at a
    fixed norm and step along the orthogonalised momentum; other groups take plain
    Nesterov SGD steps with weight decay.  Hand-written because ``torch.optim.Muon``
    accepts only 2-D parameters and has no weight normalisation.
    """

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.9,
                 weight_decay: float = 0.0, orthogonalize: bool = False) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      orthogonalize=orthogonalize))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, m = group["lr"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if group["weight_decay"] and not group["orthogonalize"]:
                    g = g.add(p, alpha=group["weight_decay"])
                buf = self.state[p].setdefault("momentum_buffer", torch.zeros_like(g))
                buf.mul_(m).add_(g)
                g = g.add(buf, alpha=m)  # Nesterov
                if group["orthogonalize"]:
                    p.mul_(math.sqrt(p.shape[0]) / (p.norm() + 1e-12))
                    g = newton_schulz(g.reshape(len(g), -1)).view_as(g)
                p.add_(g, alpha=-lr)


WARMUP_START = 0.01  # the warm-up's first learning rate, as a fraction of the peak


def warmup_decay(config: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """Linear warm-up for ``warmup_epochs`` from ``WARMUP_START`` of the peak, then
    cosine/linear decay to 0 (or constant).  The first step is always small, even when
    the warm-up is one step long (tiny data): a deep net's first steps are its riskiest."""
    total = config.epochs * steps_per_epoch
    warm = min(int(round(config.warmup_epochs * steps_per_epoch)), total // 2)
    if config.warmup_epochs > 0 and total > 1:
        warm = max(warm, 1)

    def factor(step: int) -> float:
        if step < warm:
            return WARMUP_START + (1 - WARMUP_START) * step / warm
        if config.schedule == "constant":
            return 1.0
        t = min(1.0, (step - warm) / max(1, total - warm))  # past the end: stay at 0
        return 0.5 * (1 + math.cos(math.pi * t)) if config.schedule == "cosine" else 1.0 - t

    return factor


def split_decay(model: torch.nn.Module) -> tuple[list, list]:
    """Trainable parameters with weight decay (weights) and without (biases, norms)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [p for p in params if p.ndim > 1], [p for p in params if p.ndim <= 1]


def new_layers(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The layers a fine-tuning run adds to pretrained ones, which train at the full rate:
    a classifier's head (its last Linear), or all but a detector's or segmenter's trunk
    (the module its builder names in ``trunk_name``)."""
    trunk = getattr(model, "trunk_name", None)
    if trunk:
        inside = {id(p) for p in model.get_submodule(trunk).parameters()}
        return [p for p in model.parameters() if id(p) not in inside]
    return list(head_layer(model)[1].parameters())


def default_optimizer(model: torch.nn.Module, config: TrainConfig, steps_per_epoch: int):
    """SGD (Nesterov) or AdamW; no weight decay on biases and norm layers.  Fine-tuning
    pretrained weights (``weights`` without ``freeze``), the new head (the last Linear)
    trains at ``lr`` and the pretrained layers at ``backbone_lr`` times it, so that the
    head's first, large corrections do not wash out the features being transferred."""
    decay, no_decay = split_decay(model)
    tuning = bool(config.weights) and not config.freeze
    head = {id(p) for p in new_layers(model)} if tuning else set()
    groups = []
    for params, wd in ((decay, config.weight_decay), (no_decay, 0.0)):
        for lr, part in ((config.lr * (config.backbone_lr if tuning else 1.0),
                          [p for p in params if id(p) not in head]),
                         (config.lr, [p for p in params if id(p) in head])):
            if part:
                groups.append({"params": part, "weight_decay": wd, "lr": lr})
    if config.optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum,
                              nesterov=config.momentum > 0)
    else:
        opt = torch.optim.AdamW(groups, lr=config.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_decay(config, steps_per_epoch))
    return opt, sched


def muon_optimizer(model: torch.nn.Module, config: TrainConfig, steps_per_epoch: int):
    """The fast recipe's optimiser: Muon on conv filters; Nesterov SGD on the head, the
    norm biases and the whitening bias, whose learning rate reaches 0 after 3 epochs.

    Learning rates are given per example (as for a summed loss) and scaled by the batch
    size here, so the recipe keeps its behaviour at any batch size.
    """
    b = config.batch_size
    head = getattr(model, "head", None)
    whiten_bias = getattr(getattr(model, "whiten", None), "bias", None)
    special = {id(p) for p in (getattr(head, "weight", None), whiten_bias) if p is not None}
    params = [p for p in model.parameters() if p.requires_grad]
    filters = [p for p in params if p.ndim == 4]
    rest = [p for p in params if p.ndim != 4 and id(p) not in special]
    sgd_lr, head_lr, wd = config.lr * b, 0.67 * b, 2e-6 * b  # summed-loss units x batch
    decay = warmup_decay(config, steps_per_epoch)
    whiten_steps = max(1, min(3, config.epochs) * steps_per_epoch)
    pairs = [
        ({"params": filters, "lr": 0.24, "momentum": 0.6, "orthogonalize": True}, decay),
        ({"params": rest, "lr": sgd_lr, "momentum": 0.85, "weight_decay": wd / sgd_lr}, decay),
    ]
    if head is not None and head.weight.requires_grad:
        pairs.append(({"params": [head.weight], "lr": head_lr, "momentum": 0.85,
                       "weight_decay": wd / head_lr}, decay))
    if whiten_bias is not None and whiten_bias.requires_grad:
        pairs.append(({"params": [whiten_bias], "lr": sgd_lr, "momentum": 0.85,
                       "weight_decay": wd / sgd_lr},
                      lambda step: max(0.0, 1 - step / whiten_steps)))
    pairs = [(g, f) for g, f in pairs if g["params"]]
    opt = Muon([g for g, _ in pairs])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, [f for _, f in pairs])
    return opt, sched


OPTIMIZER_FACTORIES = {"sgd": default_optimizer, "adamw": default_optimizer,
                       "muon": muon_optimizer}


def make_optimizer(model: torch.nn.Module, config: TrainConfig, steps_per_epoch: int):
    """The optimiser and per-step learning-rate schedule that ``config`` names."""
    return OPTIMIZER_FACTORIES[config.optimizer](model, config, steps_per_epoch)
