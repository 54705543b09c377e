"""Hooks are undone, and the default layers are the right ones on real architectures."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from convscope.errors import UsageError
from convscope.inspect.hooks import (
    capture,
    default_conv_layer,
    default_feature_layer,
    get_layer,
    model_mode,
    trace_layers,
)
from convscope.loading import open_model
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


class Counting(nn.Module):
    """Counts its forward calls: proof that a layer ran, or did not."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x * 2


def test_capture_with_stop_skips_every_later_layer():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(inplace=True), Counting(), Counting())
    x = torch.randn(1, 1, 6, 6)
    with capture(net, ["1"], stop=True) as acts:
        assert acts.run(net, x) is None  # stopped: no logits
    assert net[2].calls == 0 and net[3].calls == 0
    assert torch.equal(acts["1"], torch.relu(net[0](x)))
    with capture(net, ["2"], stop=True):
        net(x)  # a plain call: the block ends at the stop, quietly
        raise AssertionError("not reached")
    assert (net[2].calls, net[3].calls) == (1, 0)
    with capture(net, ["2"]) as acts:  # without stop the whole pass runs
        assert acts.run(net, x).shape == (1, 2, 4, 4)
    assert (net[2].calls, net[3].calls) == (2, 1)
    assert hook_count(net) == 0


def test_capture_stops_after_a_reused_modules_last_call():
    relu = nn.ReLU()
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), relu, nn.Conv2d(2, 2, 3, padding=1),
                        relu, Counting())
    x = torch.randn(1, 1, 5, 5)
    with capture(net, {"1": 2}, stop=True) as acts:
        assert acts.run(net, x) is None
    assert net[4].calls == 0 and acts.seen["1"] == 2
    assert torch.equal(acts["1"], torch.relu(net[2](torch.relu(net[0](x)))))  # the last call


def test_capture_detaches_or_keeps_the_graph_and_clones_on_request():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(inplace=True))
    x = torch.randn(1, 1, 5, 5, requires_grad=True)
    with capture(net, ["0"]) as acts:
        net(x)
    assert not acts["0"].requires_grad and acts["0"].grad_fn is None
    assert (acts["0"] >= 0).all()  # detached, not copied: the in-place ReLU overwrote it
    with capture(net, ["0"], detach=False, clone=True) as acts:
        net(x)
    assert acts["0"].requires_grad and (acts["0"] < 0).any()  # a copy, before the ReLU
    (grad,) = torch.autograd.grad(acts["0"].sum(), x)
    assert grad.abs().sum() > 0  # gradients flow back to the input through the capture


def test_capture_removes_hooks_when_the_block_fails():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), Counting())
    with pytest.raises(ValueError, match="boom"), capture(net, ["0", "1"], stop=True) as acts:
        acts.run(net, torch.randn(1, 1, 5, 5))
        raise ValueError("boom")
    assert hook_count(net) == 0
    with pytest.raises(UsageError, match="unknown layer 'nope'"), capture(net, ["0", "nope"]):
        pass  # hooks placed before the bad name are removed too
    assert hook_count(net) == 0


def test_model_mode_restores_each_submodules_own_flag():
    net = build_model("convnet:width=4", ModelInput(1, 10, (8, 8)))
    net.train()
    net.bn1_1.eval()  # a mixed state: a training model with one frozen batch norm
    before = [m.training for m in net.modules()]
    with model_mode(net):
        assert not any(m.training for m in net.modules())
    assert [m.training for m in net.modules()] == before
    net.eval()
    net.fc1.train()
    before = [m.training for m in net.modules()]
    with pytest.raises(RuntimeError, match="fails"), model_mode(net, training=True):
        assert all(m.training for m in net.modules())
        raise RuntimeError("fails")
    assert [m.training for m in net.modules()] == before


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
