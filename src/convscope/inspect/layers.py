"""Layer names with their output shapes, and the layer each view looks at by default.

>>> table = list_layers("resnet18")            # doctest: +SKIP
>>> table.defaults["neighbors"], table.defaults["filters"]   # doctest: +SKIP
('avgpool', 'conv1')
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from convscope.classifier import Classifier
from convscope.display import TextDisplay
from convscope.errors import UsageError
from convscope.inspect.hooks import (
    LayerCall,
    _outermost,
    default_conv_layer,
    default_feature_layer,
    get_layer,
    trace_layers,
)
from convscope.inspect.summary import volume_text
from convscope.loading import as_classifier, open_model
from convscope.scene.trained import TrainedDetector, TrainedSegmenter

#: activation functions: the first one after the first convolution is what `activations`
#: shows by default (the rectified conv1 maps)
ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Hardswish,
               nn.Mish, nn.Tanh, nn.Sigmoid, nn.PReLU)


@dataclass
class LayerInfo:
    """One named module: what ``--layer`` accepts."""

    name: str
    type: str
    output_shape: tuple[int, ...] | None  # without the batch dim; None if never called
    calls: int                            # times the forward pass called it
    params: int                           # its own and its children's parameters

    @property
    def depth(self) -> int:
        return self.name.count(".")

    def to_dict(self) -> dict:
        return {"name": self.name, "type": self.type, "calls": self.calls,
                "output_shape": list(self.output_shape) if self.output_shape else None,
                "output": volume_text(self.output_shape) if self.output_shape else None,
                "params": self.params}


@dataclass
class LayerList(TextDisplay):
    """Every layer of a model, in registration order, with each view's default layer."""

    model: str
    input_shape: tuple[int, int, int]  # (C, H, W) the network receives
    layers: list[LayerInfo]
    defaults: dict[str, str] = field(default_factory=dict)  # view -> layer

    def to_dict(self) -> dict:
        return {"model": self.model, "input_shape": list(self.input_shape),
                "input": volume_text(self.input_shape),
                "layers": [r.to_dict() for r in self.layers], "defaults": self.defaults}

    def _text(self) -> str:
        return self.format()

    def format(self) -> str:
        """The table: name (indented by depth), type, output WxHxD, calls."""
        marks: dict[str, list[str]] = {}
        for view, name in self.defaults.items():
            marks.setdefault(name, []).append(view)
        names = ["  " * r.depth + r.name for r in self.layers]
        nw = max([len(n) for n in names] + [5])
        tw = max([len(r.type) for r in self.layers] + [4])
        ow = max([len(volume_text(r.output_shape)) for r in self.layers] + [6])
        lines = [f"{self.model} on a {volume_text(self.input_shape)} input (WxHxD)", "",
                 f"{'layer':<{nw}}  {'type':<{tw}}  {'output':<{ow}}  calls  default for"]
        for r, shown in zip(self.layers, names):
            out = volume_text(r.output_shape) if r.output_shape else "-"
            calls = str(r.calls) if r.calls else "never"
            lines.append(f"{shown:<{nw}}  {r.type:<{tw}}  {out:<{ow}}  {calls:>5}  "
                         + ", ".join(marks.get(r.name, [])))
        lines.append("")
        lines.append("output is the last call's (a module called several times shows its "
                     "last output, the one hooks see); `--layer NAME` takes any name above.")
        return "\n".join(line.rstrip() for line in lines)


# --------------------------------------------------------------------------- tracing
def traced_calls(clf: Classifier) -> list[LayerCall]:
    """Every module call of one forward pass of a blank image at the model's size."""
    x = torch.zeros(1, clf.channels, *clf.image_size, dtype=torch.uint8, device=clf.device)
    return trace_layers(clf.model, clf.preprocess(x))


def first_conv_layer(calls: list[LayerCall]) -> str:
    """The first convolution that runs (its filters look at pixels); a network without one
    (a linear classifier, an MLP) offers its first fully connected layer's templates."""
    for kind in (nn.Conv2d, nn.Linear):
        for c in calls:
            if isinstance(c.module, kind):
                return c.name
    raise UsageError("the model has no convolutional or linear layer, so it has no filters "
                     "to draw.")


def default_activation_layer(calls: list[LayerCall]) -> str:
    """The rectified output of the first convolution (its activation function), else the
    first convolution itself; without convolutions, the feature vector ("FC7")."""
    conv = next((i for i, c in enumerate(calls) if isinstance(c.module, nn.Conv2d)), None)
    if conv is None:
        return default_feature_layer(calls)
    uses = {}
    for c in calls:
        uses[c.name] = uses.get(c.name, 0) + 1
    for i in range(conv + 1, len(calls)):
        c = calls[i]
        if isinstance(c.module, nn.Conv2d) or len(c.output_shape) != 3:
            break
        # an activation module, or the block around the conv (a conv-bn-relu module whose
        # forward applies a functional ReLU, as in GoogLeNet)
        if isinstance(c.module, ACTIVATIONS) or calls[conv].name.startswith(c.name + "."):
            name = _outermost(calls, i)
            if uses[name] == 1:  # a reused ReLU's output would be its last call's
                return name
    return calls[conv].name


def default_layers(calls: list[LayerCall]) -> dict[str, str]:
    """The layer each view starts from when ``--layer`` is not given."""
    out = {"filters": first_conv_layer(calls), "activations": default_activation_layer(calls)}
    out["neighbors"] = out["embed"] = default_feature_layer(calls)
    try:
        out["patches"] = default_conv_layer(calls)
    except UsageError:  # no spatial layer: patches of a fully connected unit are whole images
        out["patches"] = default_feature_layer(calls)
    return out


def choose_layer(clf: Classifier, layer: str | None, view: str,
                 calls: list[LayerCall] | None = None) -> str:
    """``layer`` if the model has it (else an error listing the valid names), or the view's
    default."""
    if layer:
        get_layer(clf.model, layer)
        return layer
    return default_layers(calls if calls is not None else traced_calls(clf))[view]


def list_layers(model, weights: str | None = None, device="cpu") -> LayerList:
    """Every named module of ``model`` (a Classifier, model file or torchvision name): type,
    output shape (C, H, W) for one image at the model's size, calls per forward pass, and
    each view's default layer."""
    obj = open_model(model, weights, device)
    if isinstance(obj, (TrainedDetector, TrainedSegmenter)):
        return _annotator_layers(obj)
    clf = as_classifier(obj)
    calls = traced_calls(clf)
    shapes, counts = {}, {}
    for c in calls:
        shapes[c.name] = c.output_shape
        counts[c.name] = counts.get(c.name, 0) + 1
    rows = [LayerInfo(name, type(m).__name__, shapes.get(name), counts.get(name, 0),
                      sum(p.numel() for p in m.parameters()))
            for name, m in clf.model.named_modules() if name]
    return LayerList(clf.meta.model, (clf.channels, *clf.meta.input_size), rows,
                     default_layers(calls))


def _annotator_layers(model) -> LayerList:
    """A detector's or segmenter's layers, traced on one blank image at its size; the views
    that read whole-image classes (neighbours, embeddings, patches) have no default."""
    x = torch.zeros(1, model.channels, *model.image_size, device=model.device)
    calls = trace_layers(model.model, x)
    shapes, counts = {}, {}
    for c in calls:
        shapes.setdefault(c.name, c.output_shape)
        counts[c.name] = counts.get(c.name, 0) + 1
    rows = [LayerInfo(name, type(m).__name__, shapes.get(name), counts.get(name, 0),
                      sum(p.numel() for p in m.parameters()))
            for name, m in model.model.named_modules() if name]
    return LayerList(model.name, (model.channels, *model.image_size), rows,
                     {"filters": first_conv_layer(calls),
                      "activations": default_activation_layer(calls)})
