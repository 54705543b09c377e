"""Architecture specs in the lecture's pattern notation: ``spec:[(CONV3-32-RELU)*2-POOL2]*3-FC``.

The grammar (keywords in any case, spaces ignored)::

    spec     := sequence
    sequence := repeat ("-" repeat)*
    repeat   := unit ("*" N)?                 N >= 1 copies, each with its own weights
    unit     := "(" sequence ")" | "[" sequence "]" | layer
    layer    := CONV F "-" K mods             K filters of F x F; P defaults to "same", (F - 1)/2
              | POOL F mods | MAXPOOL F mods  max pooling; S defaults to F
              | AVGPOOL F mods                average pooling
              | GAP                           global average pooling to 1 x 1 x D
              | FC N | FC                     fully connected; a bare FC is the classifier
              | RELU | BN | DROPOUT p? | SOFTMAX
    mods     := ("/S" N | "/P" N | "/Psame" | "/D" N)*   stride, padding, dilation

Every conv and pool must fit its input by the lecture's rule (W - F + 2P)/S + 1
being a whole number; a spec that doesn't is rejected when the model is built
for a dataset, before any training, naming the layer and its arithmetic.  The
spec must end with an FC (optionally followed by SOFTMAX, which adds no module:
the loss and ``predict_proba`` apply it).  Layers get the ``convnet`` model's
names: ``conv{block}_{i}``, ``bn``/``relu{block}_{i}``, ``pool{block}``,
``fc{i}``, ``fc{i}_relu``, ``classifier``.

The parser is a hand-written recursive descent (the grammar is a dozen rules
and the errors must name positions in the lecture's own terms, which a parser
library's generic messages would not).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace

from torch import nn

from convscope.errors import UsageError
from convscope.models.arithmetic import (
    DoesNotFit,
    Volume,
    conv_arithmetic,
    pool_arithmetic,
    same_padding,
)
from convscope.models.registry import ModelInput, register_model

MAX_LAYERS = 2000
KINDS = {"CONV": "conv", "POOL": "pool", "MAXPOOL": "pool", "AVGPOOL": "pool", "GAP": "gap",
         "FC": "fc", "RELU": "relu", "BN": "bn", "DROPOUT": "dropout", "DROP": "dropout",
         "SOFTMAX": "softmax"}
EXAMPLE = "[(CONV3-32-RELU)*2-POOL2]*3-(FC256-RELU)*1-FC"


class SpecError(UsageError):
    """A spec that cannot be read; ``position`` is the 0-based offset of the problem."""

    def __init__(self, message: str, position: int):
        super().__init__(message)
        self.position = position


@dataclass(frozen=True)
class LayerSpec:
    """One layer of an expanded spec, with where it was written."""

    kind: str  # conv, pool, gap, fc, relu, bn, dropout, softmax
    text: str  # as written, e.g. "CONV3-32/S2"
    pos: int  # 0-based offset in the spec
    size: int = 0  # F
    filters: int = 0  # K
    stride: int = 1  # S
    pad: int = 0  # P (conv: "same" resolved to (F - 1)/2 unless given)
    dilation: int = 1
    units: int | None = None  # FC outputs; None: one per class
    p: float = 0.5  # dropout probability
    pool: str = "max"


@dataclass(frozen=True)
class Spec:
    """A parsed spec: the text and its layers with repetitions expanded."""

    text: str
    layers: tuple[LayerSpec, ...]

    def __str__(self) -> str:
        return "-".join(layer.text for layer in self.layers)


# ----------------------------------------------------------------- parsing
class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.i = 0

    def error(self, message: str, pos: int | None = None) -> SpecError:
        pos = self.i if pos is None else pos
        lo, hi = max(0, pos - 30), min(len(self.text), pos + 30)
        context = (("..." if lo else "") + self.text[lo:pos] + "^" + self.text[pos:hi]
                   + ("..." if hi < len(self.text) else ""))
        return SpecError(f"spec error at character {pos + 1} (marked ^ in {context!r}): "
                         f"{message}", pos)

    def peek(self) -> str:
        while self.i < len(self.text) and self.text[self.i].isspace():
            self.i += 1
        return self.text[self.i] if self.i < len(self.text) else ""

    def number(self, what: str, example: str, decimal: bool = False) -> str:
        self.peek()
        start = self.i
        while self.i < len(self.text) and (self.text[self.i].isdigit()
                                           or (decimal and self.text[self.i] == ".")):
            self.i += 1
        if start == self.i:
            raise self.error(f"expected {what}, e.g. {example}.")
        return self.text[start:self.i]

    def integer(self, what: str, example: str, least: int = 1) -> int:
        start = self.i
        value = int(self.number(what, example))
        if value < least:
            raise self.error(f"{what} must be at least {least}, got {value}.", start)
        return value

    # spec := sequence, then the end
    def spec(self) -> list[LayerSpec]:
        if not self.peek():
            raise self.error(f"the spec is empty; write layers like {EXAMPLE}.")
        layers = self.sequence()
        if self.peek():
            raise self.error(f"unexpected {self.peek()!r}; expected '-' between layers, '*N' "
                             "after a layer or group, or the end of the spec.")
        return layers

    def sequence(self) -> list[LayerSpec]:
        layers = self.repeat()
        while self.peek() == "-":
            self.i += 1
            layers += self.repeat()
        return layers

    def repeat(self) -> list[LayerSpec]:
        layers = self.unit()
        while self.peek() == "*":
            self.i += 1
            start = self.i
            count = self.integer("a repeat count after '*'", "*2")
            if len(layers) * count > MAX_LAYERS:
                raise self.error(f"the spec expands to more than {MAX_LAYERS} layers.", start)
            layers = layers * count
        return layers

    def unit(self) -> list[LayerSpec]:
        c = self.peek()
        if c in ("(", "["):
            start, closer = self.i, ")" if c == "(" else "]"
            self.i += 1
            layers = self.sequence()
            if self.peek() != closer:
                found = f"found {self.peek()!r}" if self.peek() else "the spec ended"
                raise self.error(f"expected {closer!r} to close the {c!r} at character "
                                 f"{start + 1}, but {found}.")
            self.i += 1
            return layers
        if c.isalpha():
            return [self.layer()]
        found = f"found {c!r}" if c else "the spec ended"
        raise self.error(f"expected a layer ({', '.join(sorted(set(KINDS) - {'DROP'}))}) or a "
                         f"group in ( ) or [ ], but {found}.")

    def layer(self) -> LayerSpec:
        start = self.i
        while self.i < len(self.text) and self.text[self.i].isalpha():
            self.i += 1
        word = self.text[start:self.i].upper()
        if word not in KINDS:
            raise self.error(f"unknown layer {self.text[start:self.i]!r}; the layers are "
                             f"{', '.join(sorted(set(KINDS) - {'DROP'}))}.", start)
        kind = KINDS[word]
        spec = LayerSpec(kind, "", start)
        if kind == "conv":
            size = self.integer("the filter size F after CONV", "CONV3-32")
            if self.peek() != "-":
                raise self.error(f"expected '-' and the number of filters after CONV{size}, "
                                 f"e.g. CONV{size}-32.")
            self.i += 1
            filters = self.integer(f"the number of filters K after CONV{size}-",
                                   f"CONV{size}-32")
            spec = replace(spec, size=size, filters=filters, pad=-1)
        elif kind == "pool":
            size = self.integer(f"the pooling size F after {word}", f"{word}2")
            spec = replace(spec, size=size, stride=size, pool="avg" if word == "AVGPOOL" else "max")
        elif kind == "fc" and self.peek().isdigit():
            spec = replace(spec, units=self.integer("the number of outputs after FC", "FC256"))
        elif kind == "dropout" and self.peek().isdigit():
            at = self.i
            p = float(self.number("a dropout probability", "DROPOUT0.5", decimal=True))
            if not 0 <= p < 1:
                raise self.error(f"a dropout probability must be in [0, 1), got {p}.", at)
            spec = replace(spec, p=p)
        spec = self.modifiers(spec)
        return replace(spec, text=self.text[start:self.i].strip())

    def modifiers(self, spec: LayerSpec) -> LayerSpec:
        while self.peek() == "/":
            self.i += 1
            at = self.i
            key = self.text[self.i:self.i + 1].upper()
            if spec.kind not in ("conv", "pool") or key not in ("S", "P", "D"):
                what = "CONV and POOL take /S (stride), /P (padding) and /D (dilation)"
                raise self.error(f"unexpected modifier after {spec.kind.upper()}; {what}.", at)
            self.i += 1
            if key == "P" and self.text[self.i:self.i + 4].lower() == "same":
                self.i += 4
                spec = replace(spec, pad=-1)
            elif key == "P":
                spec = replace(spec, pad=self.integer("a padding after /P", "/P1", least=0))
            elif key == "S":
                spec = replace(spec, stride=self.integer("a stride after /S", "/S2"))
            else:
                spec = replace(spec, dilation=self.integer("a dilation after /D", "/D2"))
        if spec.pad == -1:  # "same": (F - 1)/2, checked here so the error has a position
            try:
                spec = replace(spec, pad=same_padding(spec.size, spec.dilation))
            except DoesNotFit as exc:
                hint = f"give it with /P, e.g. CONV{spec.size}-{spec.filters}/P{spec.size // 2}"
                raise self.error(str(exc).replace("give the padding explicitly", hint),
                                 spec.pos) from None
        return spec


def parse_spec(text: str) -> Spec:
    """Read a spec string; errors (:class:`SpecError`) point at the offending character.

    >>> [l.text for l in parse_spec("(CONV3-8-RELU)*2-POOL2-FC").layers]
    ['CONV3-8', 'RELU', 'CONV3-8', 'RELU', 'POOL2', 'FC']
    """
    if not isinstance(text, str):
        raise UsageError(f"a spec must be a string like {EXAMPLE!r}.")
    layers = _Parser(text).spec()
    _check_structure(text, layers)
    return Spec(text, tuple(layers))


def _check_structure(text: str, layers: list[LayerSpec]) -> None:
    """What the grammar alone does not say: how a classifier ends."""
    p = _Parser(text)
    body = layers[:-1] if layers and layers[-1].kind == "softmax" else layers
    for layer in body:
        if layer.kind == "softmax":
            raise p.error("SOFTMAX may only end the spec (the classifier's output).", layer.pos)
    if not body or body[-1].kind != "fc":
        at = body[-1].pos if body else 0
        raise p.error("a spec must end with FC, the classifier with one output per class "
                      f"(optionally then SOFTMAX), e.g. {EXAMPLE}.", at)
    for layer in body[:-1]:
        if layer.kind == "fc" and layer.units is None:
            raise p.error("only the last FC may leave out its size (it has one output per "
                          "class); write e.g. FC256.", layer.pos)


# ----------------------------------------------------------------- building
class _Names:
    """The convnet model's layer names: conv{block}_{i}, pool{block}, fc{i}, classifier."""

    def __init__(self):
        self.block, self.conv, self.fc = 1, 0, 0
        self.used: set[str] = set()

    def take(self, name: str) -> str:
        unique, n = name, 2
        while unique in self.used:
            unique, n = f"{name}_{n}", n + 1
        self.used.add(unique)
        return unique

    def name(self, layer: LayerSpec, spatial: bool, last: bool) -> str:
        if layer.kind == "conv":
            self.conv += 1
            return self.take(f"conv{self.block}_{self.conv}")
        if layer.kind == "pool":
            name, self.block, self.conv = f"pool{self.block}", self.block + 1, 0
            return self.take(name)
        if layer.kind == "fc":
            if last:
                return self.take("classifier")
            self.fc += 1
            return self.take(f"fc{self.fc}")
        if layer.kind == "gap":
            return self.take("gap")
        if spatial:
            return self.take(f"{layer.kind}{self.block}_{self.conv}")
        return self.take(f"fc{self.fc}_{layer.kind}")


def _fit_error(exc: DoesNotFit, name: str, layer: LayerSpec, vol: Volume) -> DoesNotFit:
    return DoesNotFit(f"spec layer {name} ({layer.text} at character {layer.pos + 1}) does not "
                      f"fit its {vol} input: {exc}")


def build_spec(spec: str | Spec, inp: ModelInput) -> nn.Sequential:
    """The network a spec describes, for ``inp``'s channels, classes and image size.

    Every conv and pool is checked by the lecture's rule first, so a spec that
    doesn't fit the images fails here, before any training.

    >>> net = build_spec("[(CONV3-16-RELU)*2-POOL2]*2-FC", ModelInput(1, 10, (28, 28)))
    >>> [n for n, _ in net.named_children()][:4]
    ['conv1_1', 'relu1_1', 'conv1_2', 'relu1_2']
    """
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    body = [layer for layer in spec.layers if layer.kind != "softmax"]
    names, modules = _Names(), OrderedDict()
    vol = Volume(inp.image_size[1], inp.image_size[0], inp.channels)
    features = None  # set once flattened: the FC input size
    for k, layer in enumerate(body):
        last = k == len(body) - 1
        nxt = body[k + 1].kind if not last else ""
        if layer.kind in ("conv", "pool", "gap") and features is not None:
            raise _Parser(spec.text).error(f"{layer.text} cannot follow FC: it needs a spatial "
                                           "input; put it before the FC layers.", layer.pos)
        if layer.kind == "fc" and features is None:
            modules[names.take("flatten")] = nn.Flatten()
            features = vol.numel
        name = names.name(layer, features is None, last)
        try:
            modules[name], vol, features = _module(layer, vol, features, inp, nxt, last)
        except DoesNotFit as exc:
            raise _fit_error(exc, name, layer, vol) from None
        except UsageError as exc:  # e.g. pooling padding over half the window
            raise _Parser(spec.text).error(str(exc), layer.pos) from None
    return nn.Sequential(modules)


def _module(layer: LayerSpec, vol: Volume, features: int | None, inp: ModelInput, nxt: str,
            last: bool) -> tuple[nn.Module, Volume, int | None]:
    """One layer's module and the volume (or FC width) it produces."""
    kind = layer.kind
    if kind == "conv":
        r = conv_arithmetic(vol, layer.filters, layer.size, layer.stride, layer.pad,
                            layer.dilation, bias=nxt != "bn", where="")
        mod = nn.Conv2d(vol.depth, layer.filters, layer.size, layer.stride, layer.pad,
                        layer.dilation, bias=nxt != "bn")
        return mod, r.output, None
    if kind == "pool":
        r = pool_arithmetic(vol, layer.size, layer.stride, layer.pad, layer.dilation,
                            mode=layer.pool, where="")
        if layer.pool == "avg":
            if layer.dilation != 1:
                raise UsageError("average pooling has no dilation; remove /D.")
            return nn.AvgPool2d(layer.size, layer.stride, layer.pad), r.output, None
        return nn.MaxPool2d(layer.size, layer.stride, layer.pad, layer.dilation), r.output, None
    if kind == "gap":
        return nn.AdaptiveAvgPool2d(1), Volume(1, 1, vol.depth), None
    if kind == "fc":
        units = layer.units or inp.num_classes
        if last and units != inp.num_classes:
            raise UsageError(f"the last FC is the classifier and needs one output per class "
                             f"({inp.num_classes}), not {units}; end the spec with a bare FC.")
        return nn.Linear(features, units, bias=nxt != "bn"), vol, units
    if kind == "bn":
        mod = nn.BatchNorm2d(vol.depth) if features is None else nn.BatchNorm1d(features)
        return mod, vol, features
    if kind == "relu":
        return nn.ReLU(), vol, features
    return nn.Dropout(layer.p), vol, features  # dropout


def _check_option(options: dict) -> None:
    parse_spec(options["spec"])


@register_model("spec", f"a network in the lecture's pattern notation, e.g. spec:{EXAMPLE} "
                "(see the README for the grammar)", family="spec", free_arg="SPEC",
                check=_check_option)
def spec_model(inp: ModelInput, spec: str) -> nn.Module:
    return build_spec(spec, inp)


__all__ = ["LayerSpec", "Spec", "SpecError", "build_spec", "parse_spec"]
