"""Receptive fields against autograd: the nonzero gradient footprint of one output unit.

The footprint is measured on a copy of the network whose convolutions and linear
layers average their inputs (positive weights, zero bias) and whose max pooling
is average pooling with the same window, all in float64: then every input pixel
a unit can depend on gets a nonzero gradient (max pooling would route it to one
argmax; a ReLU could zero it), and the footprint's bounding box is exactly the
receptive field clipped to the image.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convscope.errors import UsageError
from convscope.inspect.hooks import capture
from convscope.inspect.receptive import receptive_fields, trace
from convscope.models import ModelInput, build_model


# ----------------------------------------------------------------- the measurement
def averaging_copy(model: nn.Module) -> nn.Module:
    m = copy.deepcopy(model).double().eval()
    for name, mod in list(m.named_modules()):
        if isinstance(mod, nn.MaxPool2d):
            m.set_submodule(name, nn.AvgPool2d(mod.kernel_size, mod.stride, mod.padding,
                                               mod.ceil_mode))
        elif isinstance(mod, (nn.Conv2d, nn.Linear)):
            with torch.no_grad():
                mod.weight.copy_(torch.ones_like(mod.weight) / mod.weight[0].numel())
                if mod.bias is not None:
                    mod.bias.zero_()
    return m


def footprints(model: nn.Module, layer: str, shape, units) -> list[tuple[int, int, int, int]]:
    """(top, left, bottom, right) of the input pixels with a nonzero gradient for each
    unit (y, x) of ``layer``, bottom/right exclusive; one forward pass for all units."""
    torch.manual_seed(0)
    image = (torch.rand(1, *shape, dtype=torch.float64) + 0.5).requires_grad_()
    with capture(model, [layer], detach=False) as acts:
        model(image)
    a, boxes = acts[layer], []
    for y, x in units:
        unit = a[0, :, y, x].sum() if a.ndim == 4 else a[0].sum()
        (grad,) = torch.autograd.grad(unit, image, retain_graph=True)
        rows, cols = (grad[0].abs().sum(0) > 0).nonzero(as_tuple=True)
        boxes.append((int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1))
    return boxes


def check_layers(model, shape, layers, units=None, exact=True):
    """Every named layer's box equals (or, inexact, covers) the footprint of some units."""
    fields = receptive_fields(model, shape)
    measured = averaging_copy(model)
    for layer in layers:
        rf = fields[layer]
        assert rf.exact == exact, layer
        h, w = rf.map_size or (1, 1)
        chosen = sorted(units or {(0, 0), (h // 2, w // 2), (h - 1, w - 1), (0, w - 1)})
        for (y, x), got in zip(chosen, footprints(measured, layer, shape, chosen)):
            box = rf.box(y, x)
            if exact:
                assert box == got, (layer, (y, x), box, got)
            else:  # an over-estimate covers the footprint
                assert box[:2] <= got[:2] and box[2:] >= got[2:], (layer, box, got)


# ----------------------------------------------------------------- small nets with branches
class Inception(nn.Module):
    """Branches of 5x5 and 1x1 convs concatenated; the 1x1 is declared (and run) last,
    so a walk over the modules in order would report the 1x1's field."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 2, 3, stride=2, padding=1)
        self.wide = nn.Conv2d(2, 2, 5, padding=2)
        self.pool = nn.MaxPool2d(3, stride=1, padding=1)
        self.narrow = nn.Conv2d(2, 2, 1)

    def forward(self, x):
        x = self.stem(x)
        return torch.cat([self.wide(x), self.narrow(self.pool(x))], 1)


class Residual(nn.Module):
    """A strided main path plus a 1x1 strided shortcut; ReLU after the add."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 3, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(3, 3, 3, padding=1, dilation=1)
        self.shortcut = nn.Conv2d(1, 3, 1, stride=2)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.conv2(torch.relu(self.conv1(x))) + self.shortcut(x))


class Functional(nn.Module):
    """Ops in forward rather than modules: 'same' conv, ceil-mode pooling, a dilated conv,
    a channels-last Linear (ConvNeXt style), option-A shortcut slicing and padding."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(2, 1, 3, 3) / 9)
        self.dilated = nn.Conv2d(2, 2, 3, padding=2, dilation=2)
        self.mix = nn.Linear(2, 2)
        self.down = nn.Conv2d(2, 2, 3, stride=2, padding=1)
        self.out = nn.Identity()

    def forward(self, x):
        x = F.conv2d(x, self.weight, padding="same")
        x = F.avg_pool2d(x, 3, stride=2, ceil_mode=True)
        x = self.dilated(x)
        x = self.mix(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # pointwise in space
        x = self.down(x) + F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0))
        return self.out(x)


class SqueezeExcite(nn.Module):
    """Channel gates from a global average: every unit then sees the whole image."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 4)
        self.gated = nn.Identity()

    def forward(self, x):
        x = self.conv(x)
        gate = torch.sigmoid(self.fc(self.gap(x).flatten(1)))[:, :, None, None]
        return self.gated(x * gate)


def test_concat_takes_the_union_of_its_branches():
    check_layers(Inception(), (1, 15, 15), ["stem", "wide", "narrow", ""][:3])
    rf = receptive_fields(Inception(), (1, 15, 15))
    # the concatenated output is the model's; check through a wrapper layer name
    wrapped = nn.Sequential(Inception())
    check_layers(wrapped, (1, 15, 15), ["0"])
    assert receptive_fields(wrapped, (1, 15, 15))["0"].size == (11, 11)  # 3 + (5 - 1) * 2
    assert rf["narrow"].size == (7, 7)  # pool 3 then 1x1, on the stem's jump of 2


def test_residual_add_and_shortcut():
    wrapped = nn.Sequential(Residual())
    check_layers(wrapped, (1, 12, 12), ["0", "0.shortcut", "0.conv1"])
    rf = receptive_fields(wrapped, (1, 12, 12))
    assert rf["0"].size == (7, 7) and rf["0"].jump == (2, 2)
    assert rf["0.shortcut"].size == (1, 1)


def test_functional_ops_layouts_slicing_and_ceil_mode():
    check_layers(Functional(), (1, 17, 17), ["dilated", "down", "out"])
    rf = receptive_fields(Functional(), (1, 17, 17))
    assert rf["dilated"].size == (13, 13)  # 3, then pool: 3 + 2 = 5 (jump 2), then 5 + 2*2*2
    # a Linear over channels (B, H, W, C) is pointwise: same field, map found on dims 1, 2
    assert rf["mix"].size == rf["dilated"].size and rf["mix"].map_size == (8, 8)
    assert rf["mix"].axes == (1, 2) and rf["dilated"].axes == (2, 3)


def test_broadcast_gate_makes_the_field_global():
    check_layers(SqueezeExcite(), (1, 9, 9), ["conv", "gated"])
    rf = receptive_fields(SqueezeExcite(), (1, 9, 9))
    assert rf["conv"].size == (3, 3) and rf["gated"].is_global
    assert rf["gated"].box(4, 4) == (0, 0, 9, 9)


def test_adaptive_pooling_with_uneven_bins():
    net = nn.Sequential(nn.Conv2d(1, 1, 3), nn.AdaptiveAvgPool2d(3))  # 7 -> 3: bins of 3, jump 2
    check_layers(net, (1, 9, 9), ["1"])
    assert receptive_fields(net, (1, 9, 9))["1"].size == (5, 5)
    uneven = nn.Sequential(nn.Conv2d(1, 1, 3), nn.AdaptiveAvgPool2d(3))  # 8 -> 3: not affine
    fields = receptive_fields(uneven, (1, 10, 10))
    assert not fields["1"].exact
    check_layers(uneven, (1, 10, 10), ["1"], exact=False)


def test_unknown_resampling_is_an_over_estimate_never_an_under_estimate():
    class Upsample(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3, padding=1)
            self.after = nn.Identity()

        def forward(self, x):
            return self.after(F.interpolate(self.conv(x), scale_factor=2, mode="nearest"))

    check_layers(Upsample(), (1, 8, 8), ["after"], units=[(0, 0), (7, 9)], exact=False)


# ----------------------------------------------------------------- torchvision's nets
def _zoo(name: str) -> nn.Module:
    model = build_model(name, ModelInput(3, 1000, (224, 224))).eval()
    # training starts residual branches at zero (zero-initialised last BN gammas), which
    # would hide them from the gradient footprints: every branch must carry signal here
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
    return model


def test_resnet18_shortcuts_against_gradients():
    check_layers(_zoo("resnet18"), (3, 64, 64), ["layer1", "layer2.0", "layer3.0.downsample"],
                 units=[(0, 0), (2, 3)])


def test_googlenet_inception_concat_and_ceil_pooling():
    check_layers(_zoo("googlenet"), (3, 64, 64), ["maxpool1", "inception3a", "maxpool3"],
                 units=[(0, 0), (3, 3)])


def test_densenet_concatenation():
    check_layers(_zoo("densenet121"), (3, 48, 48),
                 ["features.denseblock1", "features.transition1"], units=[(0, 0), (5, 4)])


@pytest.mark.parametrize("name,layer,size,jump", [
    ("alexnet", "features.12", 195, 32),   # pool5
    ("vgg16", "features.30", 212, 32),     # pool5
    ("resnet18", "layer4", 435, 32),
    ("resnet50", "layer4", 427, 32),
])
def test_published_receptive_fields(name, layer, size, jump):
    with torch.device("meta"):  # shapes only: no weights needed
        net = build_model(name, ModelInput(3, 1000, (224, 224)))
    rf = receptive_fields(net, (3, 224, 224))[layer]
    assert rf.size == (size, size) and rf.jump == (jump, jump) and rf.exact


# ----------------------------------------------------------------- the API
def test_box_clips_and_checks_units():
    net = nn.Sequential(nn.Conv2d(1, 1, 5, padding=2), nn.MaxPool2d(2))
    rf = receptive_fields(net, (1, 8, 8))["1"]
    assert (rf.size, rf.jump, rf.start, rf.map_size) == ((6, 6), (2, 2), (-2, -2), (4, 4))
    assert rf.box(0, 0) == (0, 0, 4, 4) and rf.unclipped_box(0, 0) == (-2, -2, 4, 4)
    assert rf.box(1, 2) == (0, 2, 6, 8) and rf.box(3, 3, height=100, width=100) == (4, 4, 10, 10)
    assert rf.center(1, 1) == (2.5, 2.5)
    with pytest.raises(UsageError, match="outside the layer's 4x4 map"):
        rf.box(4, 0)


def test_classifier_input_and_model_left_untouched(digits_model):
    import convscope

    clf = convscope.load(digits_model)
    clf.model.train()
    fields = receptive_fields(clf)  # the classifier's own 8x8x1 input
    assert fields["conv1_1"].input_size == (8, 8) and fields["conv1_1"].size == (3, 3)
    assert fields["pool1"].size == (6, 6) and fields["classifier"].is_global
    assert clf.model.training  # mode restored
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in clf.model.modules())


def test_trace_records_calls_and_multiply_adds():
    net = nn.Sequential(nn.Conv2d(3, 10, 5, padding=2), nn.Flatten(), nn.Linear(10 * 8 * 8, 4))
    t = trace(net, (3, 8, 8))
    assert t.layers["0"].macs == 8 * 8 * 10 * 5 * 5 * 3 and t.layers["2"].macs == 640 * 4
    assert t.layers["0"].output_shape == (10, 8, 8) and t.layers[""].calls == 1
    with pytest.raises(Exception, match="does not accept a 9x9x3 input"):
        trace(net, (3, 9, 9))


def test_an_op_the_rules_cannot_parse_never_breaks_the_forward_pass(monkeypatch):
    import convscope.inspect.geometry as geometry

    real = geometry.output_geometry

    def fragile(func, *args):  # as if the rules met an argument spelling they can't read
        if geometry.op_name(func) == "mul":
            raise TypeError("unparsed")
        return real(func, *args)

    monkeypatch.setattr(geometry, "output_geometry", fragile)

    class Twice(nn.Module):
        def forward(self, x):
            return x * 2

    net = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), Twice(), nn.Conv2d(1, 1, 3, padding=1))
    fields = receptive_fields(net, (1, 8, 8))
    assert fields["0"].exact and not fields["1"].exact and not fields["2"].exact
    assert fields["2"].box(0, 0) == (0, 0, 8, 8)  # an over-estimate: the whole image
