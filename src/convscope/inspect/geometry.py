"""Where every tensor of a forward pass looks on the input: per-op receptive-field rules.

A spatial tensor's geometry, per axis, is an affine map from a unit's index i
to the input pixels it can see: ``[start + i*jump, start + i*jump + size - 1]``
(unclipped: it reaches into the padding).  A convolution or pooling with kernel
F, stride S, padding P and dilation D composes it the classic way::

    size' = size + (D(F - 1)) * jump,   jump' = jump * S,   start' = start - P * jump

Ops that combine tensors (the ``+`` of a ResNet shortcut, the ``cat`` of an
Inception or DenseNet block, a broadcast multiply) take the union of their
inputs' fields unit by unit, so branches are handled by what the network
actually computes, not by the order its modules were declared in.  Ops that
mix all positions (flatten, linear, global pooling, a softmax over space) make
the field global: every unit sees the union of all.  Ops this module does not
know that change the spatial shape (interpolation, say) are counted as global
too, an over-estimate marked ``exact=False``, never an under-estimate.

No library tracks receptive fields through arbitrary torch code, so this is
hand-written over ``torch.overrides.TorchFunctionMode``.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import torch
from torch.overrides import TorchFunctionMode


@dataclass(frozen=True)
class AxisField:
    """One axis: unit i sees input pixels [start + i*jump, start + i*jump + size - 1].

    ``jump`` is 0 for a global field (every unit sees the same span).
    """

    size: int
    jump: int
    start: int

    def span(self, i: int) -> tuple[int, int]:
        lo = self.start + i * self.jump
        return lo, lo + self.size - 1

    def compose(self, f: int, s: int, p: int, d: int = 1) -> AxisField:
        """The field after a window of F taps (dilation D) at stride S with padding P."""
        return AxisField(self.size + d * (f - 1) * self.jump, self.jump * s,
                         self.start - p * self.jump)

    def union(self, n: int) -> AxisField:
        """The global field covering units 0..n-1."""
        return AxisField(self.size + max(n - 1, 0) * self.jump, 0, self.start)


@dataclass(frozen=True)
class Geometry:
    """A tensor's receptive field: ``axes`` are its (y, x) dims, None when not spatial."""

    axes: tuple[int, int] | None
    y: AxisField
    x: AxisField
    exact: bool = True

    def globalized(self, shape, exact: bool = True) -> Geometry:
        ny, nx = (shape[self.axes[0]], shape[self.axes[1]]) if self.axes else (1, 1)
        return Geometry(None, self.y.union(ny), self.x.union(nx), self.exact and exact)


def input_geometry(ndim: int = 4) -> Geometry:
    unit = AxisField(1, 1, 0)
    return Geometry((ndim - 2, ndim - 1), unit, unit)


def fit_spans(spans: list[tuple[int, int]], jumps) -> tuple[AxisField, bool]:
    """The tightest affine field covering per-unit spans; exact when it equals every span."""
    best, best_exact = None, False
    for j in sorted(set(jumps), reverse=True):
        lo = min(a - i * j for i, (a, _) in enumerate(spans))
        hi = max(b - i * j for i, (_, b) in enumerate(spans))
        field = AxisField(hi - lo + 1, j, lo)
        if best is None or field.size < best.size:
            best = field
            best_exact = all(a - i * j == lo and b - i * j == hi for i, (a, b) in enumerate(spans))
    return best, best_exact


# ----------------------------------------------------------------- op families
CONV = {"conv2d", "convolution", "_convolution"}
MAX_POOL = {"max_pool2d", "max_pool2d_with_indices"}
AVG_POOL = {"avg_pool2d"}
LP_POOL = {"lp_pool2d"}
ADAPTIVE = {"adaptive_avg_pool2d", "adaptive_max_pool2d", "_adaptive_avg_pool2d",
            "adaptive_max_pool2d_with_indices"}
PAD = {"pad", "constant_pad_nd", "reflection_pad2d", "replication_pad2d", "circular_pad2d"}
LAYOUT = {"permute", "transpose", "transpose_", "swapaxes", "swapdims", "movedim", "moveaxis",
          "t", "t_"}
RESHAPE = {"view", "reshape", "flatten", "unflatten", "squeeze", "unsqueeze", "view_as",
           "reshape_as", "_unsafe_view", "squeeze_", "unsqueeze_", "ravel"}
REDUCE = {"sum", "mean", "amax", "amin", "max", "min", "std", "var", "norm", "prod",
          "logsumexp", "argmax", "argmin", "all", "any", "nansum", "nanmean", "median",
          "nanmedian", "count_nonzero", "var_mean", "std_mean", "aminmax"}
MIX = {"softmax", "log_softmax", "_softmax", "_log_softmax", "cumsum", "cumprod", "cummax",
       "cummin", "logcumsumexp", "sort", "argsort", "flip", "roll", "rot90", "topk",
       "kthvalue", "fliplr", "flipud"}
CONTRACT = {"linear", "matmul", "mm", "bmm", "addmm", "baddbmm", "einsum", "tensordot",
            "bilinear", "mv", "addmv", "inner", "dot", "_addmm_activation"}
#: multiply-adds per output number: the contracted size
MAC_OPS = {"conv2d", "convolution", "_convolution", "linear", "matmul", "mm", "bmm", "addmm",
           "baddbmm", "_addmm_activation"}


def op_name(func) -> str:
    """``torch.conv2d`` -> "conv2d"; ``aten.conv2d.default`` -> "conv2d"."""
    name = getattr(func, "__name__", "") or ""
    return name.split(".")[0]


def _pair(v, default=None) -> tuple[int, int]:
    if v is None or (isinstance(v, (list, tuple)) and len(v) == 0):
        v = default
    if isinstance(v, (list, tuple)):
        return (int(v[0]), int(v[-1])) if len(v) in (1, 2) else (int(v[-2]), int(v[-1]))
    return int(v), int(v)


def _arg(args, kwargs, index: int, name: str, default=None):
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def _dims(value, ndim: int) -> set[int] | None:
    """Normalised dims of a ``dim`` argument; None means all dims."""
    if value is None:
        return None
    values = value if isinstance(value, (list, tuple, torch.Size)) else [value]
    return {int(d) % ndim for d in values}


# ----------------------------------------------------------------- rules
@dataclass(frozen=True)
class Window:
    """The hyperparameters of one conv or pooling call, as the forward pass made it.

    Pairs are (height, width); shapes exclude the batch dimension.
    """

    kind: str  # "conv", "max", "avg" or "lp"
    size: tuple[int, int]
    stride: tuple[int, int]
    pad: tuple[int, int]
    dilation: tuple[int, int] = (1, 1)
    filters: int = 0
    groups: int = 1
    bias: bool = False
    ceil_mode: bool = False
    input_shape: tuple[int, ...] = ()
    output_shape: tuple[int, ...] = ()


def window_of(name: str, args, kwargs, out) -> Window | None:
    """The :class:`Window` of a conv2d/pool2d call (any of torch's spellings), else None."""
    x = _arg(args, kwargs, 0, "input")
    out = out[0] if isinstance(out, (tuple, list)) else out
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not isinstance(out, torch.Tensor):
        return None
    shapes = {"input_shape": tuple(x.shape[1:]), "output_shape": tuple(out.shape[1:])}
    if name in CONV:
        if name != "conv2d" and _arg(args, kwargs, 6, "transposed", False):
            return None  # transposed convolution: not a window over the input
        weight = _arg(args, kwargs, 1, "weight")
        f = (int(weight.shape[-2]), int(weight.shape[-1]))
        dil = _pair(_arg(args, kwargs, 5, "dilation", 1), 1)
        pad = _arg(args, kwargs, 4, "padding", 0)
        if pad == "valid":
            pad = 0
        if pad == "same":  # torch pads (total // 2) before, the rest after
            pad = (dil[0] * (f[0] - 1) // 2, dil[1] * (f[1] - 1) // 2)
        groups = _arg(args, kwargs, 6 if name == "conv2d" else 8, "groups", 1)
        return Window("conv", f, _pair(_arg(args, kwargs, 3, "stride", 1), 1), _pair(pad, 0),
                      dil, int(weight.shape[0]), int(groups),
                      _arg(args, kwargs, 2, "bias") is not None, **shapes)
    if name in LP_POOL:
        f = _pair(_arg(args, kwargs, 2, "kernel_size"))
        return Window("lp", f, _pair(_arg(args, kwargs, 3, "stride"), f), (0, 0),
                      ceil_mode=bool(_arg(args, kwargs, 4, "ceil_mode", False)), **shapes)
    if name in MAX_POOL | AVG_POOL:
        f = _pair(_arg(args, kwargs, 1, "kernel_size"))
        is_max = name in MAX_POOL
        return Window("max" if is_max else "avg", f, _pair(_arg(args, kwargs, 2, "stride"), f),
                      _pair(_arg(args, kwargs, 3, "padding", 0), 0),
                      _pair(_arg(args, kwargs, 4, "dilation", 1), 1) if is_max else (1, 1),
                      ceil_mode=bool(_arg(args, kwargs, 5 if is_max else 4, "ceil_mode",
                                          False)), **shapes)
    return None


def _windowed(g: Geometry, x: torch.Tensor, w: Window) -> Geometry | None:
    """Conv/pool composition on the last two dims (the only layout torch's 2-D ops take)."""
    if g.axes != (x.ndim - 2, x.ndim - 1):
        return None
    (fy, fx), (sy, sx), (py, px), (dy, dx) = w.size, w.stride, w.pad, w.dilation
    return Geometry(g.axes, g.y.compose(fy, sy, py, dy), g.x.compose(fx, sx, px, dx), g.exact)


def _adaptive_axis(field: AxisField, n_in: int, n_out: int) -> tuple[AxisField, bool]:
    """Adaptive pooling's bins [floor(i*n/m), ceil((i+1)*n/m)) as an affine field."""
    spans = []
    for i in range(n_out):
        a, b = (i * n_in) // n_out, -(-(i + 1) * n_in // n_out) - 1
        spans.append((field.span(a)[0], field.span(b)[1]))
    jumps = {field.jump * (n_in // n_out), field.jump * math.ceil(n_in / n_out)}
    return fit_spans(spans, jumps)


def _adaptive(g: Geometry, x: torch.Tensor, out: torch.Tensor) -> Geometry | None:
    if g.axes != (x.ndim - 2, x.ndim - 1) or out.ndim != x.ndim:
        return None
    fy, ey = _adaptive_axis(g.y, x.shape[-2], out.shape[-2])
    fx, ex = _adaptive_axis(g.x, x.shape[-1], out.shape[-1])
    return Geometry(g.axes, fy, fx, g.exact and ey and ex)


def _pad(name, args, kwargs, g, x) -> Geometry | None:
    pad = list(_arg(args, kwargs, 1, "pad" if name != "reflection_pad2d" else "padding"))
    if g.axes != (x.ndim - 2, x.ndim - 1) or len(pad) < 2:
        return None
    left, top = pad[0], pad[2] if len(pad) >= 4 else 0
    y = AxisField(g.y.size, g.y.jump, g.y.start - top * g.y.jump)
    return Geometry(g.axes, y, AxisField(g.x.size, g.x.jump, g.x.start - left * g.x.jump),
                    g.exact)


def _layout(func, args, kwargs, g, x) -> Geometry | None:
    """Permutes/transposes: replay the op on a meta tensor of distinct sizes to see the moves."""
    primes = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29][: x.ndim]
    if g.axes is None or len(primes) < x.ndim or args[0] is not x:
        return None
    moved = func(torch.empty(primes, device="meta"), *args[1:], **kwargs)
    shape = list(moved.shape)
    return Geometry((shape.index(primes[g.axes[0]]), shape.index(primes[g.axes[1]])),
                    g.y, g.x, g.exact)


def _reshape(g: Geometry, x: torch.Tensor, out: torch.Tensor) -> Geometry:
    """Views keep the units when the (H, W) block survives between the same outer sizes."""
    if g.axes is not None and g.axes[1] == g.axes[0] + 1:
        a = g.axes[0]
        before, h, w = math.prod(x.shape[:a]), x.shape[a], x.shape[a + 1]
        after = math.prod(x.shape[a + 2:])
        t = list(out.shape)
        for k in range(len(t) - 1):
            if (math.prod(t[:k]) == before and t[k] == h and t[k + 1] == w
                    and math.prod(t[k + 2:]) == after):
                return Geometry((k, k + 1), g.y, g.x, g.exact)
    return g.globalized(x.shape, exact=out.ndim <= 2)


def _reduce(name, args, kwargs, g, x, out) -> Geometry | None:
    dim = _arg(args, kwargs, 2, "dim") if name == "norm" else _arg(args, kwargs, 1, "dim")
    if isinstance(dim, torch.Tensor):  # torch.max(a, b): elementwise
        return None
    dims = _dims(dim, x.ndim)
    if g.axes is None or dims is None or dims & set(g.axes):
        return g.globalized(x.shape)
    if out.ndim == x.ndim:  # keepdim
        return g
    shift = [sum(1 for d in dims if d < a) for a in g.axes]
    return Geometry((g.axes[0] - shift[0], g.axes[1] - shift[1]), g.y, g.x, g.exact)


def _mix(name, args, kwargs, g, x) -> Geometry | None:
    """Ops that reorder or normalise along a dim: global when that dim is spatial."""
    if name in ("fliplr", "flipud"):
        dims = {1 if name == "fliplr" else 0}
    elif name == "roll":
        dims = _dims(_arg(args, kwargs, 2, "dims"), x.ndim)
    elif name == "rot90":
        dims = _dims(_arg(args, kwargs, 2, "dims", (0, 1)), x.ndim)
    elif name == "flip":
        dims = _dims(_arg(args, kwargs, 1, "dims"), x.ndim)
    elif name in ("topk", "kthvalue"):
        dims = _dims(_arg(args, kwargs, 2, "dim", -1), x.ndim)
    else:
        dims = _dims(_arg(args, kwargs, 1, "dim", -1), x.ndim)
    if g.axes is None or dims is None or dims & set(g.axes):
        return g.globalized(x.shape, exact=name in ("softmax", "log_softmax", "_softmax",
                                                     "_log_softmax"))
    return None  # along a non-spatial dim: pointwise in space


def _contract(name, inputs, out) -> Geometry | None:
    """linear/matmul contract the last dim of their first operand: pointwise unless spatial."""
    if name in ("linear", "matmul", "mm", "bmm") and len(inputs) == 1:
        (x, g), = inputs
        if g.axes is not None and x.ndim - 1 not in g.axes and out.ndim == x.ndim:
            return g
    first_t, first_g = inputs[0]
    return first_g.globalized(first_t.shape, exact=out.ndim <= 2)


def _getitem(args, g: Geometry, x: torch.Tensor, out: torch.Tensor) -> Geometry | None:
    """Basic slicing (ints, slices, ...): a spatial slice start:stop:step shifts and strides."""
    index = args[1] if isinstance(args[1], tuple) else (args[1],)
    if g.axes is None or not all(isinstance(i, (int, slice)) or i is Ellipsis for i in index):
        return None
    if sum(1 for i in index if i is Ellipsis) > 1:
        return None
    if Ellipsis in index:
        k = index.index(Ellipsis)
        fill = x.ndim - (len(index) - 1)
        index = index[:k] + (slice(None),) * fill + index[k + 1:]
    index = index + (slice(None),) * (x.ndim - len(index))
    fields, new_axes, dim_out = {}, [], 0
    for dim, i in enumerate(index):
        if isinstance(i, int):
            if dim in g.axes:
                return g.globalized(x.shape, exact=False)  # a single row/column: not modelled
            continue
        if dim in g.axes:
            start, _stop, step = i.indices(x.shape[dim])
            f = g.y if dim == g.axes[0] else g.x
            fields[dim] = AxisField(f.size, f.jump * step, f.start + start * f.jump)
            new_axes.append(dim_out)
        dim_out += 1
    return Geometry((new_axes[0], new_axes[1]), fields[g.axes[0]], fields[g.axes[1]], g.exact)


def _pointwise(inputs, out: torch.Tensor) -> Geometry:
    """Elementwise ops, cat along channels, norms, activations: the union, unit by unit.

    Inputs are aligned on their trailing dims (broadcasting); an input of size 1 on
    a spatial axis is broadcast and lends every output unit its one field.
    """
    spatial = [(t, g) for t, g in inputs if g.axes is not None]
    if not spatial:  # flattened features: each unit already sees the global span
        return _merge_global([g for _, g in inputs])
    axes = None
    for t, g in spatial:
        shift = out.ndim - t.ndim
        aligned = (g.axes[0] + shift, g.axes[1] + shift)
        sizes = (t.shape[g.axes[0]], t.shape[g.axes[1]])
        if min(aligned) < 0:
            continue
        if tuple(out.shape[a] for a in aligned) == sizes:
            axes = axes or aligned
        elif sizes != (1, 1):
            axes = None
            break
    if axes is None:  # the spatial shape changed in a way no rule here explains
        merged = [g.globalized(t.shape, exact=False) for t, g in inputs]
        return _merge_global(merged)
    ny, nx = out.shape[axes[0]], out.shape[axes[1]]
    ys, xs, exact = [], [], all(g.exact for _, g in inputs)
    for t, g in inputs:
        if g.axes is None:
            ys.append(g.y)
            xs.append(g.x)
            continue
        by, bx = t.shape[g.axes[0]] == 1 and ny > 1, t.shape[g.axes[1]] == 1 and nx > 1
        ys.append(AxisField(g.y.size, 0, g.y.start) if by else g.y)
        xs.append(AxisField(g.x.size, 0, g.x.start) if bx else g.x)
    fy, ey = fit_spans([_union(ys, i) for i in range(ny)], {f.jump for f in ys})
    fx, ex = fit_spans([_union(xs, i) for i in range(nx)], {f.jump for f in xs})
    return Geometry(axes, fy, fx, exact and ey and ex)


def _union(fields: list[AxisField], i: int) -> tuple[int, int]:
    spans = [f.span(i) for f in fields]
    return min(a for a, _ in spans), max(b for _, b in spans)


def _merge_global(geos: list[Geometry]) -> Geometry:
    y = _union([g.y for g in geos], 0)
    x = _union([g.x for g in geos], 0)
    return Geometry(None, AxisField(y[1] - y[0] + 1, 0, y[0]), AxisField(x[1] - x[0] + 1, 0, x[0]),
                    all(g.exact for g in geos))


def output_geometry(func, args, kwargs, inputs, out: torch.Tensor) -> Geometry:
    """The geometry of ``out``, produced by ``func`` from tensors with known geometry."""
    name = op_name(func)
    x, g = inputs[0]
    geo = None
    if name in CONV | MAX_POOL | AVG_POOL | LP_POOL:
        window = window_of(name, args, kwargs, out)
        geo = _windowed(g, x, window) if window is not None else None
    elif name in ADAPTIVE:
        geo = _adaptive(g, x, out)
    elif name in PAD:
        geo = _pad(name, args, kwargs, g, x)
    elif name in LAYOUT:
        geo = _layout(func, args, kwargs, g, x)
    elif name in RESHAPE and args and args[0] is x:
        return _reshape(g, x, out)
    elif name in REDUCE and args and args[0] is x:
        geo = _reduce(name, args, kwargs, g, x, out)
    elif name in MIX and args and args[0] is x:
        geo = _mix(name, args, kwargs, g, x)
    elif name in CONTRACT:
        return _contract(name, inputs, out)
    elif name == "__getitem__" and args and args[0] is x:
        geo = _getitem(args, g, x, out)
    if geo is None:
        geo = _pointwise(inputs, out)
    return geo


def macs_of(func, args, kwargs, out) -> int:
    """Multiply-adds of a conv/linear/matmul call: output numbers times the contracted size."""
    name = op_name(func)
    if name not in MAC_OPS or not isinstance(out, torch.Tensor):
        return 0
    if name in CONV:
        if name != "conv2d" and _arg(args, kwargs, 6, "transposed", False):
            return 0
        weight = _arg(args, kwargs, 1, "weight")
        return out.numel() * math.prod(weight.shape[1:])
    if name in ("linear",):
        return out.numel() * _arg(args, kwargs, 1, "weight").shape[-1]
    if name in ("addmm", "baddbmm", "_addmm_activation"):
        return out.numel() * _arg(args, kwargs, 1, "mat1").shape[-1]
    first = _arg(args, kwargs, 0, "input")
    return out.numel() * first.shape[-1]


# ----------------------------------------------------------------- the mode
def tensors_in(obj):
    """The tensors in nested lists, tuples and dicts, in order."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from tensors_in(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from tensors_in(o)


@dataclass(frozen=True)
class OpEvent:
    """One op worth a table row's attention: it multiplies-adds, is a conv/pool window,
    or uses a module's weights (``owner``), which names its layer even when the module
    itself was never called (a converted TorchScript runs its layers inline)."""

    clock: int
    current: str | None  # the module running when the op ran
    owner: str | None  # the module whose parameters or buffers the op used
    macs: int
    window: Window | None
    output_shape: tuple[int, ...] | None  # without the batch dimension
    geometry: Geometry | None


class GeometryMode(TorchFunctionMode):
    """Tracks the geometry of every tensor computed from a seeded input, and records the
    ops that count (multiply-adds, conv/pool windows, weight uses) as :class:`OpEvent`,
    attributed to ``self.current``, the running module, which module hooks set."""

    def __init__(self, owners: dict[int, str] | None = None):
        super().__init__()
        self.geometry: dict[int, Geometry] = {}
        self._refs: dict[int, weakref.ref] = {}
        self.owners = owners or {}  # id(parameter or buffer) -> its module's name
        self.current: str | None = None
        self.clock = 0
        self.events: list[OpEvent] = []

    def tick(self) -> int:
        self.clock += 1
        return self.clock

    def seed(self, x: torch.Tensor) -> None:
        self._set(x, input_geometry(x.ndim))

    def get(self, t: torch.Tensor) -> Geometry | None:
        return self.geometry.get(id(t))

    def _set(self, t: torch.Tensor, geo: Geometry) -> None:
        key = id(t)
        self.geometry[key] = geo
        if key not in self._refs:  # forget a tensor's geometry when the tensor is freed
            self._refs[key] = weakref.ref(t, lambda _r, k=key: self._forget(k))

    def _forget(self, key: int) -> None:
        self.geometry.pop(key, None)
        self._refs.pop(key, None)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        tensors = list(tensors_in((args, kwargs)))
        inputs = [(t, g) for t in tensors if (g := self.get(t)) is not None]
        try:
            for t in tensors_in(out) if inputs else ():
                if t.ndim >= 1 and t.is_floating_point():  # not indices or shapes
                    self._set(t, output_geometry(func, args, kwargs, inputs, t))
            macs = macs_of(func, args, kwargs, out)
            window = window_of(op_name(func), args, kwargs, out)
        except (TypeError, ValueError, IndexError, AttributeError):
            # an op spelled in a way these rules don't parse: never fail the user's forward
            # pass; its outputs see everything their inputs saw, marked as an estimate
            if inputs:
                guess = _merge_global([g.globalized(x.shape, exact=False) for x, g in inputs])
                for t in tensors_in(out):
                    self._set(t, guess)
            macs, window = 0, None
        owner = next((self.owners[id(t)] for t in tensors if id(t) in self.owners), None)
        if macs or window or owner is not None:
            first = next(tensors_in(out), None)
            self.events.append(OpEvent(
                self.tick(), self.current, owner, macs, window,
                tuple(first.shape[1:]) if first is not None else None,
                self.get(first) if first is not None else None))
        return out
