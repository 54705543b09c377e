"""The trunks under the detectors and segmenters: maps at strides 8/16/32, grey stems,
frozen stages, options checked."""

from __future__ import annotations

import pytest
import torch

from convscope.errors import UsageError
from convscope.models import ModelInput, build_model
from convscope.models.backbones import BACKBONES, feature_trunk
from convscope.models.pretrained import PRETRAINED


@pytest.mark.parametrize("backbone", BACKBONES)
def test_each_trunk_gives_maps_at_strides_8_16_32(backbone):
    if backbone == "efficientnet-lite0" and not PRETRAINED[backbone].installed:
        pytest.skip("efficientnet-lite0's packages are not installed")
    body, channels = feature_trunk(backbone, 1, {8: "a", 16: "b", 32: "c"}, False)
    out = body.eval()(torch.rand(1, 1, 64, 96))
    assert list(out) == ["a", "b", "c"]
    assert [tuple(v.shape) for v in out.values()] == [
        (1, c, 64 // s, 96 // s) for c, s in zip(channels, (8, 16, 32))]


def test_trainable_layers_freeze_the_lowest_stages():
    body, _ = feature_trunk("resnet18", 3, {32: "out"}, False, trainable_layers=2)
    trains = {n.partition(".")[0] for n, p in body.named_parameters() if p.requires_grad}
    assert trains == {"layer3", "layer4"}
    body, _ = feature_trunk("mobilenet-v3-large", 3, {32: "out"}, False, trainable_layers=0)
    assert not any(p.requires_grad for p in body.parameters())


def test_bad_options_are_one_sentence():
    inp = ModelInput(3, 2, (64, 64))
    with pytest.raises(UsageError, match=r"^`backbone` must be one of mobilenet-v3-large, "
                                         r"resnet18, efficientnet-lite0, got 'vgg'\.$"):
        build_model("fcos:backbone=vgg", inp, task="detect")
    with pytest.raises(UsageError, match=r"^`trainable_layers` must be 0 to 5"):
        build_model("fcn:trainable_layers=9", inp, task="segment")
