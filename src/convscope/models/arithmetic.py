"""ConvNet arithmetic in the lecture's notation.

A conv layer takes a W1 x H1 x D1 volume and four hyperparameters: K filters of
spatial size F, stride S and zero padding P.  It produces

    W2 = (W1 - F + 2P)/S + 1,   H2 = (H1 - F + 2P)/S + 1,   D2 = K

with F*F*D1 weights per filter plus one bias each.  Pooling follows the same
rule without parameters and keeps the depth.  A setting "fits" when the
division is exact; the lecture (and convscope's spec models) reject the rest,
while torch rounds down (or up, with ``ceil_mode``) and silently drops the
last rows and columns.  ``strict=False`` gives torch's answer together with
the arithmetic, which ``convscope summary`` uses on any network.

>>> r = conv_arithmetic(Volume(32, 32, 3), filters=10, size=5, stride=1, pad=2)
>>> str(r.output), r.params_per_filter, r.params
('32x32x10', 76, 760)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from convscope.display import TextDisplay
from convscope.errors import ConvscopeError, UsageError
from convscope.text import count, plural

Pair = tuple[int, int]


# ----------------------------------------------------------------- volumes
@dataclass(frozen=True)
class Volume:
    """A W x H x D volume, in the lecture's order (width, height, depth)."""

    width: int
    height: int
    depth: int

    def __str__(self) -> str:
        return f"{self.width}x{self.height}x{self.depth}"

    @property
    def numel(self) -> int:
        return self.width * self.height * self.depth

    @classmethod
    def parse(cls, text: str, depth: int | None = None) -> Volume:
        """``"32x32x3"`` (W x H x D), or ``"32x32"`` / ``"32"`` with ``depth`` given."""
        m = re.fullmatch(r"\s*(\d+)\s*(?:[x×*,]\s*(\d+)\s*)?(?:[x×*,]\s*(\d+)\s*)?", str(text))
        if not m:
            raise UsageError(f"cannot read {text!r} as a volume; write WxHxD, e.g. 32x32x3.")
        w = int(m.group(1))
        h = int(m.group(2)) if m.group(2) else w
        d = int(m.group(3)) if m.group(3) else depth
        if d is None:
            raise UsageError(f"{text!r} gives no depth; write WxHxD, e.g. 32x32x3.")
        if min(w, h, d) < 1:
            raise UsageError(f"a volume needs positive sizes, got {text!r}.")
        return cls(w, h, d)

    @classmethod
    def from_chw(cls, shape) -> Volume:
        """The volume of a (C, H, W) shape."""
        c, h, w = (int(s) for s in shape)
        return cls(w, h, c)

    def to_dict(self) -> dict:
        return {"width": self.width, "height": self.height, "depth": self.depth}


class DoesNotFit(ConvscopeError):
    """Hyperparameters whose output size is not a whole number (or not positive)."""


# ----------------------------------------------------------------- one axis
def _num(v: float) -> str:
    """2.3333 -> '2.33', 16.5 -> '16.5', 5.0 -> '5'."""
    return str(int(v)) if float(v).is_integer() else f"{v:.2f}".rstrip("0")


def effective_size(f: int, d: int = 1) -> int:
    """The span of an F-wide filter dilated by D: D(F - 1) + 1."""
    return d * (f - 1) + 1


def formula(n: int, f: int, s: int, p: int, d: int = 1) -> str:
    """The lecture's formula with numbers filled in, e.g. ``(7 - 3)/3 + 1``."""
    pad = f" + 2*{p}" if p else ""
    return f"({n} - {effective_size(f, d)}{pad})/{s} + 1"


def exact_size(n: int, f: int, s: int, p: int, d: int = 1) -> float:
    """(n - F + 2P)/S + 1 as a real number: whole when the setting fits."""
    return (n - effective_size(f, d) + 2 * p) / s + 1


def output_size(n: int, f: int, s: int = 1, p: int = 0, d: int = 1,
                ceil_mode: bool = False) -> int:
    """torch's output size: the formula rounded down (or up with ``ceil_mode``, where a
    window starting in the right padding is dropped, as torch's pooling does)."""
    span = n + 2 * p - effective_size(f, d)
    if span < 0:
        return 0
    if not ceil_mode:
        return span // s + 1
    out = -(-span // s) + 1
    return out - 1 if (out - 1) * s >= n + p else out


def fitting_size(n: int, f: int, s: int, p: int, d: int = 1, axis: str = "W",
                 where: str = "") -> int:
    """The output size when the setting fits; otherwise :class:`DoesNotFit` with the arithmetic."""
    value = exact_size(n, f, s, p, d)
    if value >= 1 and value.is_integer():
        return int(value)
    text = f"{axis}2 = {formula(n, f, s, p, d)} = {_num(value)}"
    if value < 1:
        padded = f"the padded input ({n} + 2*{p} = {n + 2 * p})" if p else f"the input ({n})"
        why = f": the {effective_size(f, d)}-wide filter is larger than {padded}"
    else:
        why = ", not a whole number"
    hint = suggest(n, f, s, p, d)
    raise DoesNotFit(f"{where}{text}{why}" + (f"; {hint}" if hint else "") + ".")


def suggest(n: int, f: int, s: int, p: int, d: int = 1) -> str:
    """Nearby settings that fit: other strides, then other paddings."""
    options = []
    for s2 in range(1, max(f, s) + 1):
        v = exact_size(n, f, s2, p, d)
        if s2 != s and v >= 1 and v.is_integer():
            options.append(f"S={s2} gives {int(v)}")
    for p2 in range(0, f):
        v = exact_size(n, f, s, p2, d)
        if p2 != p and v >= 1 and v.is_integer():
            options.append(f"P={p2} gives {int(v)}")
    return ("settings that fit: " + ", ".join(options[:3])) if options else ""


def same_padding(f: int, d: int = 1, where: str = "") -> int:
    """'Same' padding (F - 1)/2, which keeps the size at stride 1; F must be odd."""
    span = effective_size(f, d) - 1
    if span % 2:
        raise DoesNotFit(f"{where}'same' padding (F - 1)/2 = ({effective_size(f, d)} - 1)/2 = "
                         f"{_num(span / 2)} is not a whole number; give the padding explicitly.")
    return span // 2


# ----------------------------------------------------------------- layers
def _weights_biases(weights: int, biases: int) -> str:
    """'750 weights + 10 biases', '9 weights + 1 bias', '9 weights' (no bias)."""
    text = count(weights, "weight")
    return text + (f" + {count(biases, 'bias', 'biases')}" if biases else "")


def _pair(v: int | Pair) -> Pair:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _show(p: Pair) -> str:
    return str(p[0]) if p[0] == p[1] else f"{p[0]}x{p[1]}"


@dataclass(frozen=True)
class LayerArithmetic(TextDisplay):
    """Input, hyperparameters, output and parameter counts of one conv or pool layer.

    Pairs are (height, width) like torch's; ``fits`` says whether both divisions
    were exact (the output is then the lecture's; otherwise torch's rounding).
    """

    kind: str  # "conv" or "pool" (max/avg)
    input: Volume
    output: Volume
    size: Pair  # F
    stride: Pair  # S
    pad: Pair  # P
    dilation: Pair = (1, 1)
    filters: int = 0  # K (conv)
    groups: int = 1
    bias: bool = True
    ceil_mode: bool = False
    fits: bool = True
    pool: str = ""  # "max" or "avg" for pooling

    # -- parameter counts
    @property
    def weights_per_filter(self) -> int:
        """F*F*D1 (divided among groups for grouped convolutions)."""
        if self.kind != "conv":
            return 0
        return self.size[0] * self.size[1] * (self.input.depth // self.groups)

    @property
    def params_per_filter(self) -> int:
        return self.weights_per_filter + (1 if self.bias and self.kind == "conv" else 0)

    @property
    def weights(self) -> int:
        return self.weights_per_filter * self.filters

    @property
    def biases(self) -> int:
        return self.filters if self.bias and self.kind == "conv" else 0

    @property
    def params(self) -> int:
        return self.weights + self.biases

    @property
    def macs(self) -> int:
        """Multiply-adds: one F*F*D1 dot product per output number."""
        return self.output.numel * self.weights_per_filter

    # -- the arithmetic, filled in
    def axis_formula(self, axis: str) -> str:
        i = 1 if axis == "W" else 0
        n = self.input.width if axis == "W" else self.input.height
        out = self.output.width if axis == "W" else self.output.height
        f, s, p, d = self.size[i], self.stride[i], self.pad[i], self.dilation[i]
        value = exact_size(n, f, s, p, d)
        text = f"{axis}2 = ({axis}1 - F + 2P)/S + 1 = {formula(n, f, s, p, d)} = {_num(value)}"
        if not value.is_integer():
            text += f", which torch rounds {'up' if self.ceil_mode else 'down'} to {out}"
        return text

    def _text(self) -> str:
        return self.explain()

    def explain(self) -> str:
        """The calculation as the lecture writes it, one line per quantity."""
        if self.kind == "conv":
            head = (f"conv: K={self.filters} {plural(self.filters, 'filter')} of "
                    f"F={_show(self.size)}, "
                    f"S={_show(self.stride)}, P={_show(self.pad)}")
        else:
            head = (f"{self.pool} pool: F={_show(self.size)}, S={_show(self.stride)}, "
                    f"P={_show(self.pad)}")
        if self.dilation != (1, 1):
            head += f", dilation {_show(self.dilation)} (the filter spans D(F - 1) + 1)"
        if self.groups > 1:
            head += f", {self.groups} groups"
        lines = [f"{head} on a {self.input} input (W1 x H1 x D1)",
                 self.axis_formula("W"), self.axis_formula("H")]
        if self.kind == "conv":
            lines.append(f"D2 = K = {self.filters}")
        else:
            lines.append(f"D2 = D1 = {self.input.depth} (pooling keeps the depth)")
        lines.append(f"output volume   {self.output}")
        if self.kind == "conv":
            fh, fw = self.size
            d1 = self.input.depth // self.groups
            per = f"F*F*D1{'/groups' if self.groups > 1 else ''}"
            bias = " + 1" if self.bias else ""
            lines.append(f"params/filter   {per}{bias} = {fh}*{fw}*{d1}{bias} = "
                         f"{self.params_per_filter}"
                         + (f" ({count(self.weights_per_filter, 'weight')} + 1 bias)"
                            if self.bias else ""))
            lines.append(f"params total    {self.params_per_filter} * {self.filters} = "
                         f"{self.params:,} ({_weights_biases(self.weights, self.biases)})")
            o = self.output
            lines.append(f"multiply-adds   W2*H2*D2 * {per} = {o.width}*{o.height}*{o.depth} * "
                         f"{self.weights_per_filter} = {self.macs:,}")
            if self.size == (1, 1):
                lines.append(f"a 1x1 convolution mixes depth only: each filter is a "
                             f"{d1}-long dot product at every position")
        else:
            lines.append("params          0 (pooling has no parameters)")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        d = {"kind": self.kind, "input": self.input.to_dict(), "output": self.output.to_dict(),
             "F": list(self.size), "S": list(self.stride), "P": list(self.pad),
             "dilation": list(self.dilation), "fits": self.fits,
             "formula": {"W2": self.axis_formula("W"), "H2": self.axis_formula("H")}}
        if self.kind == "conv":
            d.update(K=self.filters, groups=self.groups, bias=self.bias,
                     weights_per_filter=self.weights_per_filter,
                     params_per_filter=self.params_per_filter, weights=self.weights,
                     biases=self.biases, params=self.params, macs=self.macs)
        else:
            d.update(pool=self.pool, ceil_mode=self.ceil_mode, params=0, macs=0)
        return d


def _resolve_pad(pad, size: Pair, dilation: Pair, where: str | None) -> Pair:
    if pad == "same":
        where = where or ""
        return (same_padding(size[0], dilation[0], where), same_padding(size[1], dilation[1], where))
    if pad == "valid":
        return (0, 0)
    return _pair(pad)


def _check(name: str, value: Pair, least: int) -> None:
    if min(value) < least:
        raise UsageError(f"{name} must be at least {least}, got {_show(value)}.")


def _spatial(inp: Volume, size: Pair, stride: Pair, pad: Pair, dilation: Pair, strict: bool,
             ceil_mode: bool, where: str | None) -> tuple[int, int, bool]:
    """(W2, H2, fits) by the lecture's rule (strict) or torch's rounding."""
    (fh, fw), (sh, sw), (ph, pw), (dh, dw) = size, stride, pad, dilation
    if where is None:
        where = (f"F={_show(size)}, S={_show(stride)}, P={_show(pad)} does not fit a "
                 f"{inp} input: ")
    fits = all(v >= 1 and v.is_integer() for v in (exact_size(inp.width, fw, sw, pw, dw),
                                                   exact_size(inp.height, fh, sh, ph, dh)))
    if strict:
        w2 = fitting_size(inp.width, fw, sw, pw, dw, "W", where)
        h2 = fitting_size(inp.height, fh, sh, ph, dh, "H", where)
        return w2, h2, True
    w2 = output_size(inp.width, fw, sw, pw, dw, ceil_mode)
    h2 = output_size(inp.height, fh, sh, ph, dh, ceil_mode)
    if min(w2, h2) < 1:  # even torch refuses this one: say why with the arithmetic
        fitting_size(inp.width, fw, sw, pw, dw, "W", where)
        fitting_size(inp.height, fh, sh, ph, dh, "H", where)
    return w2, h2, fits


def conv_arithmetic(input: Volume, filters: int, size: int | Pair, stride: int | Pair = 1,
                    pad: int | Pair | str = 0, dilation: int | Pair = 1, groups: int = 1,
                    bias: bool = True, strict: bool = True,
                    where: str | None = None) -> LayerArithmetic:
    """A conv layer's output volume and parameter counts.

    ``pad`` may be ``"same"`` ((F - 1)/2) or ``"valid"`` (0).  With ``strict``
    a setting that doesn't fit raises :class:`DoesNotFit` showing the
    arithmetic; otherwise the output is torch's (rounded down) and ``fits``
    says whether the division was exact.  ``where`` prefixes error messages
    (by default it names the setting and the input).

    >>> conv_arithmetic(Volume(7, 7, 1), filters=1, size=3, stride=2).output.width
    3
    """
    size, stride, dilation = _pair(size), _pair(stride), _pair(dilation)
    _check("the number of filters K", (filters, filters), 1)
    _check("the filter size F", size, 1)
    _check("the stride S", stride, 1)
    _check("the dilation", dilation, 1)
    if groups < 1 or input.depth % groups or filters % groups:
        raise UsageError(f"groups={groups} must divide both the input depth {input.depth} and "
                         f"the number of filters {filters}.")
    pad = _resolve_pad(pad, size, dilation, where)
    _check("the padding P", pad, 0)
    w2, h2, fits = _spatial(input, size, stride, pad, dilation, strict, False, where)
    return LayerArithmetic("conv", input, Volume(w2, h2, filters), size, stride, pad, dilation,
                           filters=filters, groups=groups, bias=bias, fits=fits)


def pool_arithmetic(input: Volume, size: int | Pair, stride: int | Pair | None = None,
                    pad: int | Pair = 0, dilation: int | Pair = 1, ceil_mode: bool = False,
                    mode: str = "max", strict: bool = True,
                    where: str | None = None) -> LayerArithmetic:
    """A pooling layer's output volume: the conv rule with D2 = D1 and no parameters.

    ``stride`` defaults to ``size`` (non-overlapping windows, as in POOL2).

    >>> str(pool_arithmetic(Volume(224, 224, 64), size=2).output)
    '112x112x64'
    """
    size = _pair(size)
    stride = size if stride is None else _pair(stride)
    pad, dilation = _pair(pad), _pair(dilation)
    _check("the pooling size F", size, 1)
    _check("the stride S", stride, 1)
    _check("the padding P", pad, 0)
    if pad[0] > size[0] // 2 or pad[1] > size[1] // 2:
        raise UsageError(f"pooling padding P={_show(pad)} must be at most half the "
                         f"window F={_show(size)}.")
    w2, h2, fits = _spatial(input, size, stride, pad, dilation, strict, ceil_mode, where)
    return LayerArithmetic("pool", input, Volume(w2, h2, input.depth), size, stride, pad,
                           dilation, ceil_mode=ceil_mode, fits=fits, pool=mode)


def uncovered(n: int, f: int, s: int, p: int, d: int = 1) -> int:
    """How many rows/columns of the padded input a rounded-down layer never reads."""
    span = n + 2 * p - effective_size(f, d)
    return span % s if span >= 0 else 0


__all__ = [
    "DoesNotFit",
    "LayerArithmetic",
    "Volume",
    "conv_arithmetic",
    "effective_size",
    "exact_size",
    "fitting_size",
    "formula",
    "output_size",
    "pool_arithmetic",
    "same_padding",
    "suggest",
    "uncovered",
]
