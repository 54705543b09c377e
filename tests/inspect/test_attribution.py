"""Attribution maps against independent oracles, on tiny models with fixed weights.

Occlusion against a brute-force loop, saliency against torch.autograd.grad, guided
backprop against a hand-written guided ReLU, Grad-CAM against its formula; and the
user's model is left exactly as it was.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from convscope.classifier import Classifier, class_index
from convscope.errors import UsageError
from convscope.inspect.attribution import (
    METHODS,
    baseline_input,
    explain,
    explain_many,
    list_methods,
)
from convscope.modelfile import ModelMeta


# --------------------------------------------------------------------------- tiny models
def fixed_(module: nn.Module, seed: int) -> nn.Module:
    """Deterministic weights of a comfortable size."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return module


class TinyResidual(nn.Module):
    """A ResNet-like net that, like torchvision's, applies ONE ReLU module several times.

    ``inplace=True, shared=True`` is torchvision's pattern; ``inplace=False, shared=False``
    is its twin with a separate, non-in-place ReLU at each call.
    """

    def __init__(self, channels: int = 1, classes: int = 3, inplace=True, shared=True):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.conv3 = nn.Conv2d(4, 4, 3, padding=1)
        self.relu = nn.ReLU(inplace=inplace)
        self.relu_b = self.relu if shared else nn.ReLU(inplace=inplace)
        self.relu_c = self.relu if shared else nn.ReLU(inplace=inplace)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(16, classes)

    def forward(self, x, relu=None):
        r1, r2, r3 = (relu, relu, relu) if relu else (self.relu, self.relu_b, self.relu_c)
        y = r1(self.conv1(x))
        out = self.conv2(y)
        out += y                      # torchvision's in-place residual add
        out = r2(out)
        out = r3(self.conv3(out))
        return self.fc(torch.flatten(self.pool(out), 1))


def classifier(net: nn.Module, channels=1, size=6, input_size=None, classes=3) -> Classifier:
    meta = ModelMeta(model="tiny", options={}, classes=[f"c{i}" for i in range(classes)],
                     channels=channels, image_size=[size, size],
                     input_size=[input_size or size] * 2, mean=[0.4] * channels,
                     std=[0.25] * channels)
    return Classifier(net, meta)


def images(n=2, channels=1, size=6, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8)


def tiny(channels=1, inplace=True, shared=True, seed=0) -> TinyResidual:
    return fixed_(TinyResidual(channels, inplace=inplace, shared=shared), seed).eval()


# --------------------------------------------------------------------------- occlusion
def brute_force_occlusion(clf, x, target, window, stride, baseline):
    """P(target) with the mask over each pixel, averaged over the masks covering it: one
    forward pass per mask, positions 0, stride, ... until the mask reaches the far edge."""
    z = clf.preprocess.normalize(x)
    n, _, h, w = z.shape
    total, count = torch.zeros(n, h, w), torch.zeros(n, h, w)
    ys = [i * stride for i in range(math.ceil((h - window) / stride) + 1)]
    xs = [i * stride for i in range(math.ceil((w - window) / stride) + 1)]
    for y0 in ys:
        for x0 in xs:
            masked = z.clone()
            masked[:, :, y0:y0 + window, x0:x0 + window] = \
                baseline[:, :, y0:y0 + window, x0:x0 + window]
            with torch.no_grad():
                p = torch.softmax(clf.model(clf.preprocess.resize(masked)), 1)[range(n), target]
            total[:, y0:y0 + window, x0:x0 + window] += p[:, None, None]
            count[:, y0:y0 + window, x0:x0 + window] += 1
    assert count.min() >= 1
    return total / count


@pytest.mark.parametrize("kind", ["zero", "mean", "blur"])
@pytest.mark.parametrize("per_eval", [1, None])
@pytest.mark.parametrize("channels,size,window,stride", [(1, 6, 3, 2), (3, 7, 2, 2),
                                                         (3, 5, 5, 1)])
def test_occlusion_equals_brute_force_loop(kind, per_eval, channels, size, window, stride):
    clf = classifier(tiny(channels), channels=channels, size=size)
    x = images(3, channels, size)
    a = explain(clf, x, "occlusion", window=window, stride=stride, baseline=kind,
                perturbations_per_eval=per_eval, target=1)
    z = clf.preprocess.normalize(x)
    expected = brute_force_occlusion(clf, x, 1, window, stride,
                                     baseline_input(kind, z, clf, sigma=window / 2))
    assert a.maps.shape == (3, size, size)
    torch.testing.assert_close(a.maps, expected, atol=1e-5, rtol=1e-5)
    # importance is the drop from the unmasked probability
    torch.testing.assert_close(a.importance, a.probs[:, 1, None, None] - expected,
                               atol=1e-5, rtol=1e-5)
    assert a.config.window == window and a.config.stride == stride


def test_occlusion_defaults_and_baselines():
    clf = classifier(tiny(), size=28)
    a = explain(clf, images(1, 1, 28), "occlusion")
    assert (a.config.window, a.config.stride) == (4, 2)   # about 1/8 of 28 px
    assert a.config.perturbations_per_eval == 169          # every mask in one batch
    a = explain(clf, images(4, 1, 28), "occlusion")
    assert a.config.perturbations_per_eval == 64           # 4 x 64 = 256 images a batch
    z = clf.preprocess.normalize(images(1, 1, 28))
    black = clf.preprocess.normalize(torch.zeros(1, 1, 28, 28))
    torch.testing.assert_close(baseline_input("zero", z, clf, 2.0), black)
    assert baseline_input("mean", z, clf, 2.0).abs().max() == 0
    blur = baseline_input("blur", z, clf, 2.0)
    assert blur.std() < z.std() and abs(blur.mean() - z.mean()) < 0.1


# --------------------------------------------------------------------------- gradients
def test_saliency_equals_autograd_through_the_resize():
    # 6x6 images fed to the network at 9x9: the resize is part of what is differentiated
    clf = classifier(tiny(3), channels=3, size=6, input_size=9)
    x = images(2, 3, 6)
    a = explain(clf, x, "saliency", target=2)
    z = clf.preprocess.normalize(x).requires_grad_(True)
    scores = clf.model(nn.functional.interpolate(z, size=(9, 9), mode="bilinear",
                                                 align_corners=False))
    (grad,) = torch.autograd.grad(scores[:, 2].sum(), z)
    torch.testing.assert_close(a.maps, grad.abs().amax(dim=1))
    assert a.maps.shape == (2, 6, 6) and a.targets.tolist() == [2, 2]


class GuidedReLU(torch.autograd.Function):
    """The oracle: ReLU forward; backward passes only positive gradients at positive inputs."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad.clamp(min=0) * (x > 0)


class Guided(nn.Module):
    def forward(self, x):
        return GuidedReLU.apply(x)


def test_guided_backprop_inplace_reused_relus_equal_the_separate_twin_and_the_oracle():
    user = tiny(inplace=True, shared=True)           # torchvision's pattern
    twin = tiny(inplace=False, shared=False)         # same weights, separate plain ReLUs
    assert user.relu is user.relu_b and twin.relu is not twin.relu_b
    x = images(3, 1, 6)
    a = explain(classifier(user), x, "guided-backprop", target=0)
    b = explain(classifier(twin), x, "guided-backprop", target=0)
    torch.testing.assert_close(a.gradients, b.gradients, atol=0, rtol=0)

    clf = classifier(twin)
    z = clf.preprocess.normalize(x).requires_grad_(True)
    (oracle,) = torch.autograd.grad(twin(z, relu=Guided())[:, 0].sum(), z)
    assert oracle.abs().sum() > 0
    torch.testing.assert_close(a.gradients, oracle)
    torch.testing.assert_close(a.maps, oracle.abs().amax(dim=1))
    # it differs from the plain gradient, or the test would prove nothing
    (plain,) = torch.autograd.grad(twin(z)[:, 0].sum(), z)
    assert not torch.allclose(plain, oracle)


def test_guided_backprop_of_a_neuron_defaults_to_its_most_active_position():
    net = tiny(inplace=True, shared=True)
    clf = classifier(net)
    x = images(2, 1, 6)
    a = explain(clf, x, "guided-backprop", layer="conv3", channel=2)
    z = clf.preprocess.normalize(x)
    with torch.no_grad():
        act = net.conv3(net.relu(net.conv2(net.relu(net.conv1(z))) + net.relu(net.conv1(z))))
    for i in range(2):
        y, xx = divmod(int(act[i, 2].flatten().argmax()), 6)
        assert a.neurons[i] == (2, y, xx)
        zi = z[i:i + 1].clone().requires_grad_(True)
        g = Guided()
        h = g(net.conv1(zi))
        out = net.conv3(g(net.conv2(h) + h))
        (oracle,) = torch.autograd.grad(out[0, 2, y, xx], zi)
        torch.testing.assert_close(a.gradients[i:i + 1], oracle)
    assert a.target_label(0).startswith("conv3[2, ")
    b = explain(clf, x, "guided-backprop", layer="conv3", channel=2, position=(1, 4))
    assert b.neurons == [(2, 1, 4), (2, 1, 4)]
    with pytest.raises(UsageError, match="outside layer conv3's 6x6 map"):
        explain(clf, x, "guided-backprop", layer="conv3", channel=2, position=(6, 0))
    with pytest.raises(UsageError, match="`channel` must be 0..3"):
        explain(clf, x, "guided-backprop", layer="conv3", channel=4)
    with pytest.raises(UsageError, match="needs `layer=L`"):
        explain(clf, x, "guided-backprop", channel=1)
    # one ReLU module applied three times has no single output to explain
    with pytest.raises(UsageError, match="layer relu is one module applied 3 times"):
        explain(clf, x, "guided-backprop", layer="relu", channel=0)
    with pytest.raises(UsageError, match="applied 3 times"):
        explain(clf, x, "gradcam", layer="relu")


def gradcam_oracle(net, z, target, layer_fn):
    """Selvaraju et al.: ReLU(sum_k mean(dS/dA_k) A_k), upsampled bilinearly."""
    acts = {}
    handle = layer_fn(net).register_forward_hook(lambda m, i, o: acts.update(a=o))
    try:
        score = net(z)[:, target].sum()
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(score, acts["a"])
    cam = (grad.mean(dim=(2, 3), keepdim=True) * acts["a"]).sum(1, keepdim=True).clamp(min=0)
    return nn.functional.interpolate(cam, size=z.shape[-2:], mode="bilinear",
                                     align_corners=False)[:, 0]


def test_gradcam_and_guided_gradcam_equal_their_formulas():
    net = fixed_(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True),
                               nn.MaxPool2d(2), nn.Conv2d(4, 5, 3, padding=1),
                               nn.ReLU(inplace=True), nn.Flatten(), nn.Linear(5 * 4 * 4, 3)),
                 seed=3).eval()
    clf = classifier(net, channels=3, size=8)
    x = images(2, 3, 8)
    z = clf.preprocess.normalize(x)
    a = explain(clf, x, "gradcam", target=1)
    assert a.config.layer == "4"   # the last layer with a spatial map: the final ReLU
    twin = fixed_(nn.Sequential(*[nn.ReLU() if isinstance(m, nn.ReLU) else m for m in net]), 3)
    oracle = gradcam_oracle(twin, z, 1, lambda n: n[4])
    assert oracle.abs().sum() > 0
    torch.testing.assert_close(a.maps, oracle)
    b = explain(clf, x, "gradcam", target=1, layer="0")
    torch.testing.assert_close(b.maps, gradcam_oracle(twin, z, 1, lambda n: n[0]))
    # guided Grad-CAM: guided backprop times the (bilinear) Grad-CAM map
    gg = explain(clf, x, "guided-gradcam", target=1)
    gb = explain(clf, x, "guided-backprop", target=1)
    torch.testing.assert_close(gg.gradients, gb.gradients * oracle[:, None])
    with pytest.raises(UsageError, match="spatial map"):
        explain(clf, x, "gradcam", layer="6")
    with pytest.raises(UsageError, match="unknown layer 'conv9'"):
        explain(clf, x, "gradcam", layer="conv9")


# --------------------------------------------------------------------------- the user's model
def snapshot(model: nn.Module) -> dict:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "modules": [(n, type(m).__name__, m.training, getattr(m, "inplace", None),
                     list(m._forward_hooks.values()), list(m._forward_pre_hooks.values()),
                     list(m._backward_hooks.values()), list(m._backward_pre_hooks.values()))
                    for n, m in model.named_modules()],
        "params": [(n, p.requires_grad, p.grad) for n, p in model.named_parameters()],
    }


def assert_same(before: dict, after: dict) -> None:
    assert before["modules"] == after["modules"]
    assert before["params"] == after["params"]
    for k, v in before["state"].items():
        assert torch.equal(v, after["state"][k]), k


def test_the_users_model_modules_and_hooks_are_unchanged_afterwards():
    net = tiny(inplace=True, shared=True)
    seen = []
    net.conv2.register_forward_hook(lambda m, i, o: seen.append(1))  # the user's own hook
    clf = classifier(net)
    before = snapshot(net)
    x = images(2, 1, 6)
    explain_many(clf, x, list_methods(), window=2)
    explain(clf, x, "guided-backprop", layer="conv2", channel=1)
    with pytest.raises(UsageError):   # failing half-way changes nothing either
        explain(clf, x, "guided-backprop", layer="conv3", channel=99)
    assert_same(before, snapshot(net))
    assert net.relu.inplace and net.relu is net.relu_b
    # the user's model still computes what it did
    z = clf.preprocess.normalize(x)
    torch.testing.assert_close(net(z), tiny()(z))


def test_torchvision_resnet_is_left_exactly_as_it_was():
    from convscope.loading import open_model

    clf = open_model("resnet18")
    before = snapshot(clf.model)
    x = images(1, 3, 224, seed=1)
    maps = explain_many(clf, x, ["guided-backprop", "gradcam", "guided-gradcam"])
    assert maps["gradcam"].config.layer == "layer4"
    assert all(m.maps.shape == (1, 224, 224) and m.maps.abs().sum() > 0 for m in maps.values())
    assert_same(before, snapshot(clf.model))
    assert clf.model.relu.inplace


# --------------------------------------------------------------------------- targets and options
def test_targets_by_name_index_or_prediction():
    clf = classifier(tiny())
    x = images(3, 1, 6)
    predicted = explain(clf, x, "saliency")
    assert predicted.targets.tolist() == predicted.probs.argmax(1).tolist()
    assert explain(clf, x, "saliency", target="c2").targets.tolist() == [2, 2, 2]
    assert explain(clf, x, "saliency", target=[0, 1, 2]).targets.tolist() == [0, 1, 2]
    assert predicted.numpy().dtype.name == "float32"
    assert explain(clf, x, "saliency", target="C1").targets.tolist() == [1, 1, 1]
    with pytest.raises(UsageError, match="unknown target class 'dog'.*c0, c1, c2.*0..2"):
        explain(clf, x, "saliency", target="dog")
    with pytest.raises(UsageError, match="unknown attribution method 'lime'"):
        explain(clf, x, "lime")
    with pytest.raises(UsageError, match="larger than the 6x6 image"):
        explain(clf, x, "occlusion", window=7)
    with pytest.raises(UsageError, match="unknown occlusion baseline 'grey'"):
        explain(clf, x, "occlusion", baseline="grey")


def test_class_lookup_by_name_any_case_or_index_and_did_you_mean():
    classes = ["cat", "dog", "Ship", "3"]
    assert [class_index(classes, t) for t in ("dog", "DOG", "ship", "sHiP", 1, "1")] == \
        [1, 1, 2, 2, 1, 1]
    assert class_index(classes, "3") == 3  # a name before an index
    assert class_index(classes, torch.tensor(2)) == 2
    with pytest.raises(UsageError) as err:
        class_index(classes, "Catt", "target class")
    message = str(err.value)
    assert message.startswith("unknown target class 'Catt' (did you mean 'cat'?); give a class "
                              "name (cat, dog, Ship, 3) or an index 0..3.")
    assert ". " not in message and "--" not in message  # one sentence, no CLI flag
    with pytest.raises(UsageError, match=r"unknown class '9'; .* index 0\.\.3\.$"):
        class_index(classes, 9)
    with pytest.raises(UsageError, match="several classes but for case"):
        class_index(["Cat", "cat"], "CAT")


def test_the_registry_is_the_list_of_methods():
    assert list_methods() == ["occlusion", "saliency", "guided-backprop", "gradcam",
                              "guided-gradcam"]
    assert all(m.summary and m.draw in ("probability", "heatmap", "gradient")
               for m in METHODS.values())
