"""Hooks are undone, and the default layers are the right ones on real architectures."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from convscope.classifier import open_model
from convscope.errors import UsageError
from convscope.inspect.hooks import (
    capture,
    default_conv_layer,
    default_feature_layer,
    get_layer,
    trace_layers,
)
from convscope.models import ModelInput, build_model


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               for m in model.modules())


def test_capture_records_and_removes_hooks_even_on_error():
    net = build_model("convnet:width=4", ModelInput(1, 10, (8, 8))).eval()
    x = torch.randn(2, 1, 8, 8)
    with capture(net, ["conv1_1", "fc1"]) as acts:
        net(x)
    assert acts["conv1_1"].shape == (2, 4, 8, 8) and acts["fc1"].shape == (2, 128)
    assert torch.allclose(acts["conv1_1"], net.conv1_1(x))
    assert hook_count(net) == 0
    with pytest.raises(RuntimeError), capture(net, ["conv1_1"]):
        net(torch.randn(2, 3, 8, 8))  # wrong channels: fails inside the block
    assert hook_count(net) == 0


def test_unknown_layer_lists_valid_names():
    net = build_model("mlp", ModelInput(1, 10, (8, 8)))
    with pytest.raises(UsageError, match="unknown layer 'fc7'.*fc1, relu1, classifier"):
        get_layer(net, "fc7")


@pytest.mark.parametrize("spec,feature,conv", [
    ("resnet18", "avgpool", "layer4"),
    ("vgg16", "classifier.4", "avgpool"),
    ("alexnet", "classifier.5", "avgpool"),
    ("densenet121", "features", "features"),
])
def test_default_layers_on_torchvision(spec, feature, conv):
    clf = open_model(spec)
    x = clf.preprocess(torch.zeros(1, 3, 224, 224, dtype=torch.uint8))
    calls = trace_layers(clf.model, x)
    assert default_feature_layer(calls) == feature
    assert default_conv_layer(calls) == conv
    assert hook_count(clf.model) == 0
    assert len(clf.classes) == 1000 and clf.classes[0] == "tench"


def test_default_layers_on_our_models():
    net = build_model("convnet", ModelInput(1, 10, (28, 28)))
    calls = trace_layers(net, torch.zeros(1, 1, 28, 28))
    assert default_feature_layer(calls) == "fc1_relu"  # the lecture's FC7 code
    assert default_conv_layer(calls) == "pool2"
    net = build_model("resnet", ModelInput(3, 10, (32, 32)))
    calls = trace_layers(net, torch.zeros(1, 3, 32, 32))
    assert default_feature_layer(calls) == "flatten"  # the pooled 64-d code
    assert default_conv_layer(calls) == "layer3"
    assert net.training  # trace_layers restores the mode it found
