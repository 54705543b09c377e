"""Hooks as resources, layer names, and the default layers every view starts from.

Every hook registered here is removed in ``finally``, so a user's model is left
exactly as it was, even when the call fails half-way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from convscope.errors import UsageError


@contextmanager
def forward_hooks(model: nn.Module, hooks: dict[str, callable]) -> Iterator[None]:
    """Register ``{layer_name: hook(module, inputs, output)}``; remove them all on exit."""
    handles = []
    try:
        for name, fn in hooks.items():
            handles.append(get_layer(model, name).register_forward_hook(fn))
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode; give each its own training flag back on exit."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        yield model
    finally:
        for m, training in modes:
            m.training = training


@contextmanager
def capture(model: nn.Module, layers: list[str], detach: bool = True) -> Iterator[dict]:
    """Record the output of each named layer during the forward passes inside the block.

    >>> with capture(model, ["conv1_1"]) as acts:   # doctest: +SKIP
    ...     model(x)
    >>> acts["conv1_1"].shape                        # doctest: +SKIP
    """
    store: dict[str, torch.Tensor] = {}

    def make(name):
        def hook(_module, _inputs, output):
            out = output[0] if isinstance(output, (tuple, list)) else output
            store[name] = out.detach() if detach else out

        return hook

    with forward_hooks(model, {name: make(name) for name in layers}):
        yield store


def layer_names(model: nn.Module) -> list[str]:
    """Every named submodule, in registration order (the names ``--layer`` accepts)."""
    return [name for name, _ in model.named_modules() if name]


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name``; an unknown name lists the valid ones."""
    modules = dict(model.named_modules())
    if not name or name not in modules:
        names = layer_names(model)
        shown = ", ".join(names[:60]) + (f", ... ({len(names)} in all)" if len(names) > 60 else "")
        raise UsageError(f"unknown layer {name!r}; `convscope layers MODEL` lists them: {shown}.")
    return modules[name]


@dataclass
class LayerCall:
    name: str
    module: nn.Module
    output_shape: tuple[int, ...]  # without the batch dimension
    output_id: int


def trace_layers(model: nn.Module, x: torch.Tensor) -> list[LayerCall]:
    """Run ``x`` through the model once and record every module call in execution order.

    A module called several times (torchvision's ResNets reuse one ReLU) appears once
    per call.  Containers appear after their children, when their output is ready.
    """
    calls: list[LayerCall] = []
    alive: list[torch.Tensor] = []  # keep outputs alive so that id() identifies each tensor
    names = {id(m): n for n, m in model.named_modules() if n}

    def hook(module, _inputs, output):
        out = output[0] if isinstance(output, (tuple, list)) else output
        if isinstance(out, torch.Tensor) and id(module) in names:
            alive.append(out)
            calls.append(LayerCall(names[id(module)], module, tuple(out.shape[1:]), id(out)))

    handles = [m.register_forward_hook(hook) for n, m in model.named_modules() if n]
    try:
        with eval_mode(model), torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        alive.clear()
    return calls


def _outermost(calls: list[LayerCall], index: int) -> str:
    """Name the tensor calls[index] returned by the best of the modules that returned it.

    Containers return their last child's tensor and in-place ReLUs return their
    input, so several modules can share one output: prefer the outermost, then
    the latest call (the ReLU over the conv it rectified in place), and never a
    Dropout, which is the identity at inference.
    """
    same = [(i, c) for i, c in enumerate(calls) if c.output_id == calls[index].output_id]
    real = [(i, c) for i, c in same if not isinstance(c.module, (nn.Dropout, nn.Identity))]
    return min(real or same, key=lambda ic: (ic[1].name.count("."), -ic[0]))[1].name


def default_feature_layer(calls: list[LayerCall]) -> str:
    """The layer feeding the final classifier: the lecture's "FC7" code of an image."""
    linear = [i for i, c in enumerate(calls) if isinstance(c.module, nn.Linear)]
    if not linear:
        return calls[-1].name
    last = linear[-1]
    return _outermost(calls, last - 1) if last > 0 else calls[last].name


def default_conv_layer(calls: list[LayerCall]) -> str:
    """The last layer with a spatial map (C, H, W), H*W > 1: where Grad-CAM looks."""
    spatial = [i for i, c in enumerate(calls)
               if len(c.output_shape) == 3 and c.output_shape[1] * c.output_shape[2] > 1]
    if not spatial:
        raise UsageError("the model has no layer with a spatial output; this view needs a "
                         "convolutional layer.")
    return _outermost(calls, spatial[-1])
