"""The lecture's own classifiers: linear, 2-layer net, ConvNet and a CIFAR ResNet.

Every layer has a readable name (``conv1_2``, ``pool1``, ``fc1``, ``classifier``);
these are the names ``--layer`` accepts everywhere.  ReLUs are separate,
non-in-place modules, so hooks and guided backprop see each one.
"""

from __future__ import annotations

from collections import OrderedDict
from math import prod

import torch
from torch import nn

from convscope.errors import UsageError
from convscope.models.registry import ModelInput, register_model


@register_model("linear", "linear classifier f = Wx + b on the raw pixels")
def linear(inp: ModelInput) -> nn.Module:
    d = inp.channels * prod(inp.image_size)
    return nn.Sequential(OrderedDict(flatten=nn.Flatten(), classifier=nn.Linear(d, inp.num_classes)))


@register_model("mlp", "2-layer network f = W2 max(0, W1 x); option hidden",
                defaults={"hidden": 256})
def mlp(inp: ModelInput, hidden: int) -> nn.Module:
    if hidden < 1:
        raise UsageError(f"mlp hidden must be at least 1, got {hidden}.")
    d = inp.channels * prod(inp.image_size)
    return nn.Sequential(OrderedDict(
        flatten=nn.Flatten(),
        fc1=nn.Linear(d, hidden),
        relu1=nn.ReLU(),
        classifier=nn.Linear(hidden, inp.num_classes),
    ))


@register_model(
    "convnet",
    "[(CONV3-RELU)*n - POOL2]*m - (FC-RELU)*k - FC; options n, m, k, width (doubles per "
    "block), fc, bn, dropout",
    defaults={"n": 2, "m": 2, "k": 1, "width": 32, "fc": 128, "bn": True, "dropout": 0.0},
)
def convnet(inp: ModelInput, n: int, m: int, k: int, width: int, fc: int, bn: bool,
            dropout: float) -> nn.Module:
    if n < 1 or m < 0 or k < 0 or width < 1 or fc < 1 or not 0 <= dropout < 1:
        raise UsageError("convnet needs n >= 1, m >= 0, k >= 0, width >= 1, fc >= 1 and "
                         "0 <= dropout < 1.")
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    c, (h, w) = inp.channels, inp.image_size
    for i in range(1, m + 1):
        out = width * 2 ** (i - 1)
        for j in range(1, n + 1):
            layers[f"conv{i}_{j}"] = nn.Conv2d(c, out, 3, padding=1, bias=not bn)
            if bn:
                layers[f"bn{i}_{j}"] = nn.BatchNorm2d(out)
            layers[f"relu{i}_{j}"] = nn.ReLU()
            c = out
        if min(h, w) >= 2:  # pool while there is something left to pool
            layers[f"pool{i}"] = nn.MaxPool2d(2)
            h, w = h // 2, w // 2
    if m == 0:
        pass
    elif max(h, w) > 7:  # big inputs: average down to 7x7 so the FC layer stays small
        layers["avgpool"] = nn.AdaptiveAvgPool2d((min(h, 7), min(w, 7)))
        h, w = min(h, 7), min(w, 7)
    layers["flatten"] = nn.Flatten()
    d = c * h * w
    for i in range(1, k + 1):
        layers[f"fc{i}"] = nn.Linear(d, fc)
        layers[f"fc{i}_relu"] = nn.ReLU()
        if dropout:
            layers[f"fc{i}_dropout"] = nn.Dropout(dropout)
        d = fc
    layers["classifier"] = nn.Linear(d, inp.num_classes)
    return nn.Sequential(layers)


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus a shortcut (1x1 conv when the shape changes), then ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                          nn.BatchNorm2d(c_out))
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu1(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu2(y + self.shortcut(x))


class CifarResNet(nn.Module):
    """He et al. (2016)'s CIFAR ResNet: 6n+2 layers in three stages of width w, 2w, 4w."""

    def __init__(self, inp: ModelInput, depth: int, width: int) -> None:
        super().__init__()
        blocks = (depth - 2) // 6
        self.conv1 = nn.Conv2d(inp.channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        c = width
        for stage in (1, 2, 3):
            out = width * 2 ** (stage - 1)
            layers = []
            for b in range(blocks):
                layers.append(BasicBlock(c, out, 2 if stage > 1 and b == 0 else 1))
                c = out
            setattr(self, f"layer{stage}", nn.Sequential(*layers))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c, inp.num_classes)
        for mod in self.modules():
            if isinstance(mod, nn.Conv2d):
                nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.flatten(self.avgpool(x)))


@register_model("resnet", "CIFAR-style residual network with 6n+2 layers; options depth "
                "(20, 32, 44, 56, 110, ...) and width", defaults={"depth": 20, "width": 16})
def resnet(inp: ModelInput, depth: int, width: int) -> nn.Module:
    if depth < 8 or (depth - 2) % 6:
        raise UsageError(f"resnet depth must be 6n+2 (8, 14, 20, 32, 44, 56, 110, ...), "
                         f"got {depth}.")
    if width < 1:
        raise UsageError(f"resnet width must be at least 1, got {width}.")
    return CifarResNet(inp, depth, width)
