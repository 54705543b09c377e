"""Objectives: what gradient ascent maximises, as small pieces that add and scale.

An :class:`Objective` turns one forward pass (a :class:`Context`) into one value per
image, ``(B,)``.  Like lucent's ``objectives.py`` they compose with ``+``, ``-`` and
scalar ``*``, and each knows the layers it reads, so the loop hooks exactly those::

    obj = channel("conv2_1", 5) + 0.5 * neuron("conv3_1", 7, y=2, x=2)

Arguments that pick a unit (``index``, ``c``) take one int for every image, or a
sequence with one entry per image of the batch: ``class_logit([3, 5, 7])`` draws
three classes at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from convscope.errors import UsageError

Index = int | Sequence[int]


@dataclass
class Context:
    """What one step's forward pass produced, for the objectives to read."""

    image: torch.Tensor  # (B, C, H, W) in [0, 1]: the image being optimised, before transforms
    logits: torch.Tensor | None  # (B, K); None when the pass stopped at the last layer needed
    acts: dict[str, torch.Tensor]  # layer name -> its output, attached to the graph


class Objective:
    """A differentiable score per image, ``fn(ctx) -> (B,)``, that adds and scales."""

    def __init__(self, fn: Callable[[Context], torch.Tensor], name: str,
                 layers: Sequence[str] = (), needs_logits: bool = False):
        self.fn = fn
        self.name = name
        self.layers = tuple(dict.fromkeys(layers))  # ordered, no repeats
        self.needs_logits = needs_logits

    def __call__(self, ctx: Context) -> torch.Tensor:
        return self.fn(ctx)

    def __repr__(self) -> str:
        return f"Objective({self.name})"

    # ------------------------------------------------------------- algebra
    def _join(self, other: Objective, fn, name: str) -> Objective:
        return Objective(fn, name, self.layers + other.layers,
                         self.needs_logits or other.needs_logits)

    def __add__(self, other):
        if isinstance(other, (int, float)):
            return Objective(lambda ctx: self(ctx) + other, f"{self.name} + {other}",
                             self.layers, self.needs_logits)
        return self._join(other, lambda ctx: self(ctx) + other(ctx), f"{self.name} + {other.name}")

    def __radd__(self, other):  # sum([...]) starts from 0
        return self + other

    def __neg__(self):
        return -1 * self

    def __sub__(self, other):
        return self + (-other)

    def __rsub__(self, other):
        return (-self) + other

    def __mul__(self, k):
        if not isinstance(k, (int, float)):
            raise TypeError("an objective scales by a number; add objectives to combine them")
        return Objective(lambda ctx: k * self(ctx), f"{k:g}*({self.name})", self.layers,
                         self.needs_logits)

    __rmul__ = __mul__

    def __truediv__(self, k):
        return self * (1.0 / k)


# ----------------------------------------------------------------- helpers
def _pick(t: torch.Tensor, index: Index) -> torch.Tensor:
    """t[b, index[b]] for each image b: (B, K, ...) -> (B, ...)."""
    b = t.shape[0]
    idx = torch.as_tensor([index] * b if isinstance(index, int) else list(index),
                          device=t.device)
    if idx.numel() != b:
        raise UsageError(f"{idx.numel()} units were given for a batch of {b} images; give one "
                         "per image, or a single one for all.")
    if int(idx.min()) < 0 or int(idx.max()) >= t.shape[1]:
        raise UsageError(f"unit {int(idx.max())} is out of range; this output has {t.shape[1]} "
                         f"(0 to {t.shape[1] - 1}).")
    return t[torch.arange(b, device=t.device), idx]


def _act(ctx: Context, layer: str) -> torch.Tensor:
    return ctx.acts[layer]


def _label(index: Index) -> str:
    return str(index) if isinstance(index, int) else ",".join(map(str, index))


# ----------------------------------------------------------------- the objectives
def class_logit(index: Index) -> Objective:
    """The unnormalised class score S_c(I) (Simonyan et al. 2014 maximise the score, not the
    softmax, so that the image cannot win by lowering the other classes)."""
    return Objective(lambda ctx: _pick(ctx.logits, index), f"class_logit:{_label(index)}",
                     needs_logits=True)


def class_logprob(index: Index) -> Objective:
    """log p_c(I), the log-softmax of the class score: it also pushes the other classes down,
    so the image ends up the model's top-1 even where two classes share their features."""
    return Objective(lambda ctx: _pick(torch.log_softmax(ctx.logits, dim=1), index),
                     f"class_logprob:{_label(index)}", needs_logits=True)


def channel(layer: str, c: Index) -> Objective:
    """The mean activation of channel ``c`` of ``layer`` over all positions; for a layer with
    no spatial map, (B, K), unit ``c`` itself."""
    def fn(ctx):
        a = _pick(_act(ctx, layer), c)  # (B, H, W), or (B,) for a layer with no map
        return a.flatten(1).mean(1) if a.ndim > 1 else a

    return Objective(fn, f"channel:{layer}:{_label(c)}", [layer])


def neuron(layer: str, c: Index, y: int | None = None, x: int | None = None) -> Objective:
    """One neuron: channel ``c`` of ``layer`` at position (y, x) of its map (the centre when
    not given)."""
    def fn(ctx):
        a = _pick(_act(ctx, layer), c)  # (B, H, W), or (B,) for a layer with no map
        if a.ndim == 1:
            return a
        h, w = a.shape[-2:]
        yy, xx = h // 2 if y is None else y, w // 2 if x is None else x
        if not (0 <= yy < h and 0 <= xx < w):
            raise UsageError(f"neuron position {yy},{xx} is outside {layer}'s {h}x{w} map; "
                             f"use Y in 0..{h - 1} and X in 0..{w - 1}.")
        return a[:, yy, xx]

    where = "" if y is None and x is None else f"@{y},{x}"
    return Objective(fn, f"neuron:{layer}:{_label(c)}{where}", [layer])


def layer_l2(layer: str) -> Objective:
    """DeepDream's objective, sum_i f_i(I)^2 over every activation of ``layer``: its gradient
    with respect to the activations is 2 f, the lecture's "gradient equal to activation"."""
    return Objective(lambda ctx: _act(ctx, layer).pow(2).flatten(1).sum(1),
                     f"layer_l2:{layer}", [layer])

