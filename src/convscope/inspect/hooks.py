"""Hooks as resources, layer names, and the default layers every view starts from.

Every hook registered here is removed in ``finally``, so a user's model is left
exactly as it was, even when the call fails half-way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from convscope.errors import UsageError


@contextmanager
def forward_hooks(model: nn.Module, hooks: dict[str, callable]) -> Iterator[None]:
    """Register ``{layer_name: hook(module, inputs, output)}``; remove them all on exit."""
    handles = []
    modules = dict(model.named_modules())
    try:
        for name, fn in hooks.items():
            module = modules.get(name) if name else None
            if module is None:
                module = get_layer(model, name)  # raises, listing the valid names
            handles.append(module.register_forward_hook(fn))
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def model_mode(model: nn.Module, training: bool = False) -> Iterator[nn.Module]:
    """Put every submodule in eval mode (or train mode, with ``training``) for the block;
    on exit give each submodule its own ``training`` flag back, so a mixed state (a
    training model with one frozen batch norm) comes back exactly."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.train(training)
        yield model
    finally:
        for m, flag in modes:
            m.training = flag


class _Stop(Exception):
    """Raised from a hook of a stopping :class:`Capture` once every layer it needs has run,
    to skip the rest of the forward pass; it names the capture (captures may nest)."""

    def __init__(self, capture: Capture):
        super().__init__("forward pass stopped after the last layer needed")
        self.capture = capture


class Capture(dict):
    """``{layer: output}`` of the hooked layers in the current forward pass.

    A layer that runs several times per pass keeps its last call's output.  ``seen``
    counts the calls so far; :meth:`run` starts a pass from scratch.
    """

    def __init__(self, calls: Counter, detach: bool, clone: bool, stop: bool):
        super().__init__()
        self.calls, self.detach, self.clone, self.stop = calls, detach, clone, stop
        self.seen: Counter = Counter()

    def reset(self) -> None:
        """Forget the outputs (and the graph they hold) and the call counts."""
        self.clear()
        self.seen.clear()

    def complete(self) -> bool:
        """Whether every layer has run as many times as it runs in one pass."""
        return all(self.seen[n] >= k for n, k in self.calls.items())

    def run(self, fn: Callable, *args, **kwargs):
        """One forward pass ``fn(*args, **kwargs)`` from a reset: its output, or None when
        this capture stopped it after the last layer needed."""
        self.reset()
        try:
            return fn(*args, **kwargs)
        except _Stop as exc:
            if exc.capture is not self:
                raise
            return None

    def hook(self, name: str) -> Callable:
        def fn(_module, _inputs, output):
            out = output[0] if isinstance(output, (tuple, list)) else output
            if self.detach:
                out = out.detach()
            if self.clone:
                out = out.clone()
            self[name] = out
            self.seen[name] += 1
            if self.stop and self.complete():
                raise _Stop(self)

        return fn


@contextmanager
def capture(model: nn.Module, layers: Iterable[str] | Mapping[str, int], detach: bool = True,
            *, clone: bool = False, stop: bool = False) -> Iterator[Capture]:
    """Record the output of each named layer during the forward passes inside the block.

    ``layers`` are names, or ``{name: calls per pass}`` for modules a pass runs several
    times (torchvision's ResNets reuse one ReLU).  ``detach`` (the default) keeps values
    only; ``detach=False`` keeps them attached to the graph, for gradients.  ``clone``
    copies each output, so a later in-place op (a ReLU after a convolution) cannot change
    it.  ``stop`` ends the forward pass as soon as every layer has run its last time, so
    nothing past them is computed: use :meth:`Capture.run`, which then returns None, or
    a plain call at the end of the block.  The hooks are removed in ``finally``.

    >>> with capture(model, ["conv1_1"]) as acts:   # doctest: +SKIP
    ...     model(x)
    >>> acts["conv1_1"].shape                        # doctest: +SKIP
    >>> with capture(model, ["conv1_1"], stop=True) as acts:  # doctest: +SKIP
    ...     acts.run(model, x)                       # None: the pass ended at conv1_1
    """
    calls = Counter(layers) if isinstance(layers, Mapping) else Counter(dict.fromkeys(layers, 1))
    cap = Capture(calls, detach, clone, stop)
    try:
        with forward_hooks(model, {name: cap.hook(name) for name in calls}):
            yield cap
    except _Stop as exc:  # a plain model(x) in the block, stopped: the block ends there
        if exc.capture is not cap:
            raise


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

    try:
        with forward_hooks(model, dict.fromkeys(names.values(), hook)), model_mode(model), \
                torch.no_grad():
            model(x)
    finally:
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
