"""Receptive fields of every layer of any network, from one traced forward pass.

>>> fields = receptive_fields(model, (3, 224, 224))          # doctest: +SKIP
>>> rf = fields["layer2"]                                     # doctest: +SKIP
>>> rf.size, rf.jump                                          # doctest: +SKIP
((99, 99), (8, 8))
>>> top, left, bottom, right = rf.box(3, 5)                   # doctest: +SKIP
>>> patch = image[top:bottom, left:right]                     # doctest: +SKIP

Coordinates are pixels of the network's input (for a :class:`Classifier`, the
preprocessed ``meta.input_size`` image; when the classifier upsamples small
images, scale by ``image_size / input_size`` to get back to the original).
The geometry comes from what the network computes (see ``geometry.py``), so
shortcuts, concatenations and functional ops in ``forward`` all count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from convscope.classifier import Classifier
from convscope.errors import ConvscopeError, UsageError
from convscope.inspect.geometry import Geometry, GeometryMode, Window, tensors_in
from convscope.inspect.hooks import model_mode


@dataclass(frozen=True)
class ReceptiveField:
    """Where the units of one layer look on the network input.

    ``size`` (height, width) is the classic receptive field size, unclipped (it
    includes zero padding); ``jump`` (y, x) is the distance on the input between
    neighbouring units (their effective stride; 0 when every unit sees the same
    global span); ``start`` (top, left) is where unit (0, 0)'s field begins,
    negative when it reaches into the padding.  ``map_size`` is the layer's
    output (H, W), None when the output has no spatial layout (after flatten).
    ``exact`` is False where an op convscope does not model made the field an
    over-estimate (never an under-estimate).  ``axes`` are the dims of the layer's
    output (batch included) that hold (y, x): (2, 3) for NCHW, (1, 2) channels-last.
    """

    size: tuple[int, int]
    jump: tuple[int, int]
    start: tuple[int, int]
    map_size: tuple[int, int] | None
    input_size: tuple[int, int]
    exact: bool = True
    axes: tuple[int, int] | None = None

    @property
    def is_global(self) -> bool:
        return self.jump == (0, 0)

    def unclipped_box(self, y: int = 0, x: int = 0) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) of unit (y, x)'s field, bottom/right exclusive."""
        if self.map_size is not None:
            h, w = self.map_size
            if not (0 <= y < h and 0 <= x < w):
                raise UsageError(f"unit ({y}, {x}) is outside the layer's {h}x{w} map.")
        top = self.start[0] + y * self.jump[0]
        left = self.start[1] + x * self.jump[1]
        return top, left, top + self.size[0], left + self.size[1]

    def box(self, y: int = 0, x: int = 0, height: int | None = None,
            width: int | None = None) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) of unit (y, x)'s field clipped to a height x width
        image (default: the network input), bottom/right exclusive, so
        ``image[top:bottom, left:right]`` is the patch the unit sees.

        >>> rf.box(0, 0)          # a corner unit: clipped by the padding   # doctest: +SKIP
        (0, 0, 2, 2)
        """
        height = self.input_size[0] if height is None else height
        width = self.input_size[1] if width is None else width
        top, left, bottom, right = self.unclipped_box(y, x)
        return max(top, 0), max(left, 0), min(bottom, height), min(right, width)

    def center(self, y: int = 0, x: int = 0) -> tuple[float, float]:
        """The centre of unit (y, x)'s field on the input (may lie outside the image)."""
        top, left, bottom, right = self.unclipped_box(y, x)
        return (top + bottom - 1) / 2, (left + right - 1) / 2

    def to_dict(self) -> dict:
        return {"size": list(self.size), "jump": list(self.jump), "start": list(self.start),
                "map_size": list(self.map_size) if self.map_size else None,
                "global": self.is_global, "exact": self.exact,
                "axes": list(self.axes) if self.axes else None}


@dataclass
class LayerRecord:
    """What one module did in the traced forward pass (its last call, for shapes)."""

    name: str
    module: nn.Module
    order: int  # position of its first call
    calls: int = 0
    input_shape: tuple[int, ...] | None = None  # without the batch dimension
    output_shape: tuple[int, ...] | None = None
    geometry: Geometry | None = None
    macs: int = 0  # multiply-adds in this module's own forward, not its children's
    windows: list[Window] = field(default_factory=list)  # its own conv/pool calls


@dataclass
class Trace:
    """One forward pass of a (1, C, H, W) zero image, layer by layer."""

    input_shape: tuple[int, int, int]
    layers: dict[str, LayerRecord]  # by name, in order of first call; "" is the model

    def field(self, name: str) -> ReceptiveField | None:
        rec = self.layers.get(name)
        if rec is None or rec.geometry is None or rec.output_shape is None:
            return None
        return to_field(rec.geometry, (1, *rec.output_shape), self.input_shape[1:])


def to_field(geo: Geometry, shape: Sequence[int], input_size: Sequence[int]) -> ReceptiveField:
    """A tensor's geometry as the public :class:`ReceptiveField`."""
    map_size = (int(shape[geo.axes[0]]), int(shape[geo.axes[1]])) if geo.axes else None
    return ReceptiveField((geo.y.size, geo.x.size), (geo.y.jump, geo.x.jump),
                          (geo.y.start, geo.x.start), map_size,
                          (int(input_size[0]), int(input_size[1])), geo.exact, geo.axes)


def _first_tensor(obj) -> torch.Tensor | None:
    return next(tensors_in(obj), None)


def _hooks(model: nn.Module, mode: GeometryMode, records: dict[str, LayerRecord]):
    """Pre/post hooks that attribute ops to the running module and record its output."""
    stack: list[str | None] = []

    def pre(name):
        def hook(module, inputs):
            rec = records.setdefault(name, LayerRecord(name, module, mode.tick()))
            rec.calls += 1
            x = _first_tensor(inputs)
            rec.input_shape = tuple(x.shape[1:]) if x is not None else None
            stack.append(mode.current)
            mode.current = name

        return hook

    def post(name):
        def hook(_module, _inputs, output):
            mode.current = stack.pop() if stack else None
            out = _first_tensor(output)
            if out is not None:
                records[name].output_shape = tuple(out.shape[1:])
                records[name].geometry = mode.get(out)

        return hook

    handles = []
    for name, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(pre(name)))
        handles.append(module.register_forward_hook(post(name)))
    return handles


def _owners(model: nn.Module) -> dict[int, str]:
    """id(tensor) -> the name of the module that holds it as a parameter or buffer."""
    owners = {}
    for name, module in model.named_modules():
        for t in [*module._parameters.values(), *module._buffers.values()]:
            if t is not None:
                owners.setdefault(id(t), name)
    return owners


def _attribute(mode: GeometryMode, records: dict[str, LayerRecord], modules: dict) -> None:
    """Give each op's multiply-adds and window to the module that ran it, or, for a
    module never called as one, to the module whose weights it used."""
    called = set(records)
    for ev in mode.events:
        inline = ev.owner is not None and ev.owner not in called
        name = ev.owner if inline else ev.current
        if name not in records:
            records[name] = LayerRecord(name, modules[name], ev.clock)
        rec = records[name]
        rec.macs += ev.macs
        if ev.window is not None:
            rec.windows.append(ev.window)
        if inline:  # its shapes and field are those of its (last) op
            rec.input_shape = ev.window.input_shape if ev.window else rec.input_shape
            rec.output_shape, rec.geometry = ev.output_shape, ev.geometry


def _parameter(model: nn.Module) -> torch.Tensor | None:
    p = next(iter(model.parameters()), None)
    return p if p is not None else next(iter(model.buffers()), None)


def trace(model: nn.Module, input_shape: Sequence[int]) -> Trace:
    """Run one (1, C, H, W) zero image through ``model`` and record every module:
    input and output shapes, receptive-field geometry, conv/pool windows and
    multiply-adds.

    The model is put in eval mode for the pass and restored after; the hooks
    are removed in ``finally``.
    """
    c, h, w = (int(s) for s in input_shape)
    ref = _parameter(model)
    dtype = ref.dtype if ref is not None and ref.is_floating_point() else torch.float32
    x = torch.zeros(1, c, h, w, dtype=dtype, device=ref.device if ref is not None else "cpu")
    mode, records = GeometryMode(_owners(model)), {}
    handles = _hooks(model, mode, records)
    try:
        with model_mode(model), torch.no_grad(), mode:
            mode.seed(x)
            model(x)
    except RuntimeError as exc:
        raise ConvscopeError(f"the model does not accept a {w}x{h}x{c} input (WxHxD): "
                             f"{str(exc).splitlines()[0][:200]}") from None
    finally:
        for handle in handles:
            handle.remove()
    _attribute(mode, records, dict(model.named_modules()))
    return Trace((c, h, w), dict(sorted(records.items(), key=lambda kv: kv[1].order)))


def receptive_fields(model, input_shape: Sequence[int] | None = None) -> dict[str, ReceptiveField]:
    """The receptive field of every layer, by the names ``--layer`` accepts.

    ``model`` is an ``nn.Module`` (then ``input_shape`` is (C, H, W)) or a
    :class:`~convscope.classifier.Classifier` (default: its network input).
    A module called several times reports its last call, as ``capture`` does.

    >>> rf = receptive_fields(net, (1, 28, 28))["conv2_1"]   # doctest: +SKIP
    >>> rf.size, rf.jump, rf.box(0, 0)                       # doctest: +SKIP
    ((10, 10), (2, 2), (0, 0, 7, 7))
    """
    net, shape = resolve_input(model, input_shape)
    t = trace(net, shape)
    fields = {name: t.field(name) for name in t.layers if name}
    return {name: f for name, f in fields.items() if f is not None}


def resolve_input(model, input_shape) -> tuple[nn.Module, tuple[int, int, int]]:
    """(network, (C, H, W)) for a Classifier or a module with an explicit shape."""
    if isinstance(model, Classifier):
        if input_shape is None:
            input_shape = (model.channels, *model.meta.input_size)
        model = model.model
    if input_shape is None or len(input_shape) != 3:
        raise UsageError(f"input_shape must be (C, H, W), got {input_shape!r}.")
    return model, tuple(int(s) for s in input_shape)


__all__ = ["LayerRecord", "ReceptiveField", "Trace", "receptive_fields", "trace"]
