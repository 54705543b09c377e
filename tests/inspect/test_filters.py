"""First-layer filters (each colour filter on its own range, linear templates) and activations
(the layer output, for images of any size), against the forward pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import convscope
from convscope.errors import UsageError
from convscope.inspect.filters import activations, filters
from convscope.loading import open_model
from tests.inspect.test_hooks import hook_count


def test_colour_filters_are_each_scaled_to_their_own_range():
    clf = open_model("resnet18")
    f = filters(clf)
    assert f.layer == "conv1" and f.colour and f.weights.shape == (64, 3, 7, 7)
    t = f.tiles()                                            # (64, 7, 7, 3)
    assert t.shape == (64, 7, 7, 3)
    assert np.allclose(t.reshape(64, -1).min(1), 0) and np.allclose(t.reshape(64, -1).max(1), 1)
    w = clf.model.conv1.weight[5].detach().permute(1, 2, 0).double().numpy()
    assert np.allclose(t[5], (w - w.min()) / (w.max() - w.min()), atol=1e-6)
    # higher layers: gray tiles, one per input channel, 0 at mid-grey, capped
    g = filters(clf, layer="layer1.0.conv1", max_filters=10, max_channels=4)
    assert not g.colour and g.tiles().shape == (10, 4, 3, 3)
    w = clf.model.layer1[0].conv1.weight[3, :4].detach().double()
    m = clf.model.layer1[0].conv1.weight[3, :4].detach().abs().max().double()
    assert np.allclose(g.tiles()[3], (0.5 + 0.5 * w / m).numpy(), atol=1e-6)
    with pytest.raises(UsageError, match="no filters to draw"):
        filters(clf, layer="layer1")
    with pytest.raises(UsageError, match="unknown layer 'conv9'.*conv1, bn1, relu"):
        filters(clf, layer="conv9")


def test_gray_first_layer_and_linear_templates(digits_model):
    f = filters(digits_model)
    assert (f.layer, f.colour, f.config.mode) == ("conv1_1", False, "gray")
    assert f.weights.shape == (8, 1, 3, 3)
    lin = convscope.train("digits", model="linear", epochs=1, progress=False, verbose=False)
    t = filters(lin)
    assert t.templates and t.layer == "classifier" and t.weights.shape == (10, 1, 8, 8)
    assert torch.equal(t.weights[2].flatten(), lin.model.classifier.weight[2].detach())


def test_activations_are_the_layer_output_and_images_are_converted(mnist, mnist_data):
    x = mnist_data.test_images[:1]                             # (1, 1, 28, 28) uint8
    a = activations(mnist, x)
    assert a.layer == "relu1_1" and a.maps.shape == (32, 28, 28)
    m = mnist.model
    expected = torch.relu(m.bn1_1(m.conv1_1(mnist.preprocess(x))))[0]
    assert torch.allclose(a.maps, expected, atol=1e-5)
    rgb = x[0].expand(3, -1, -1).permute(1, 2, 0).numpy()      # the same digit as RGB
    assert torch.allclose(activations(mnist, rgb).maps, a.maps, atol=1e-5)
    vec = activations(mnist, x, layer="fc1_relu")
    assert vec.maps.shape == (128, 1, 1)
    assert hook_count(mnist.model) == 0




def test_bad_values_name_the_parameter_not_a_flag(digits_model):
    with pytest.raises(UsageError, match=r"^`max_maps` must be at least 1, got 0\.$"):
        activations(digits_model, torch.zeros(1, 8, 8, dtype=torch.uint8), max_maps=0)
    with pytest.raises(UsageError, match="`max_filters`, `max_channels` and `zoom`"):
        filters(digits_model, max_filters=0)
    with pytest.raises(UsageError, match='use `mode="gray"`') as caught:
        filters(digits_model, mode="colour")
    assert "--" not in str(caught.value)
