"""Gradient ascent: objectives, parameterisations, transforms, regularisers, the loop.

Small seeded models on the CPU; autograd and hand-computed values are the oracles.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from convscope.classifier import Classifier
from convscope.errors import UsageError
from convscope.inspect.hooks import capture
from convscope.inspect.synthesis import (
    VisualizeConfig,
    ascend,
    channel_images,
    class_images,
    class_index,
    visualize,
)
from convscope.inspect.synthesis import objectives as obj
from convscope.inspect.synthesis import regularizers as regs
from convscope.inspect.synthesis import transforms as tf
from convscope.inspect.synthesis.core import model_center
from convscope.inspect.synthesis.param import fourier_image, pixel_image
from convscope.modelfile import ModelMeta
from convscope.models import ModelInput, build_model


def tiny(channels: int = 3, size: int = 16, classes: int = 4, seed: int = 0) -> Classifier:
    """A seeded, untrained convnet wrapped as a Classifier (mean 0.4, std 0.25)."""
    torch.manual_seed(seed)
    net = build_model("convnet:width=4,fc=16", ModelInput(channels, classes, (size, size)))
    meta = ModelMeta(model="convnet", options={"width": 4, "fc": 16},
                     classes=[f"c{i}" for i in range(classes)], channels=channels,
                     image_size=[size, size], input_size=[size, size], mean=[0.4] * channels,
                     std=[0.25] * channels)
    return Classifier(net, meta)


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               for m in model.modules())


def model_state(model: nn.Module):
    return ([(n, p.requires_grad, p.grad) for n, p in model.named_parameters()],
            [m.training for m in model.modules()], hook_count(model))


# ----------------------------------------------------------------- objectives
def test_objectives_pick_units_and_compose():
    a = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)  # (B, C, H, W)
    fc = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    ctx = obj.Context(image=torch.zeros(2, 1, 2, 2), logits=fc, acts={"conv": a, "fc": fc})
    assert obj.class_logit(2)(ctx).tolist() == [3.0, 6.0]
    assert obj.class_logit([0, 1])(ctx).tolist() == [1.0, 5.0]  # one class per image
    assert obj.channel("conv", 1)(ctx).tolist() == [5.5, 17.5]  # mean of 4..7 and 16..19
    assert obj.channel("fc", 1)(ctx).tolist() == [2.0, 5.0]  # a unit of a (B, K) layer
    assert obj.neuron("conv", 2, 0, 1)(ctx).tolist() == [9.0, 21.0]
    assert obj.neuron("conv", 0)(ctx).tolist() == [3.0, 15.0]  # centre (1, 1) by default
    assert obj.layer_l2("fc")(ctx).tolist() == [14.0, 77.0]  # sum of squares
    lse = torch.log(torch.exp(torch.tensor([1.0, 2.0, 3.0])).sum())  # log-sum-exp of row 0
    assert obj.class_logprob(0)(ctx).tolist() == pytest.approx([1 - lse.item(), 4 - lse.item() - 3])
    combo = obj.class_logit(2) + 2 * obj.channel("fc", 0) - obj.neuron("conv", 0) / 3 + 1
    assert combo(ctx).tolist() == pytest.approx([3 + 2 - 1 + 1, 6 + 8 - 5 + 1])
    assert combo.layers == ("fc", "conv") and combo.needs_logits
    assert not (obj.channel("fc", 0) - obj.layer_l2("conv")).needs_logits
    assert sum([obj.channel("fc", 0), obj.channel("fc", 1)])(ctx).tolist() == [3.0, 9.0]
    with pytest.raises(UsageError, match="out of range"):
        obj.channel("conv", 3)(ctx)
    with pytest.raises(UsageError, match="3 units were given for a batch of 2"):
        obj.class_logit([0, 1, 2])(ctx)
    with pytest.raises(UsageError, match="outside conv's 2x2 map"):
        obj.neuron("conv", 0, 5, 0)(ctx)


def test_layer_l2_gradient_is_the_lectures_gradient_equal_to_activation():
    """d(sum f^2)/dI equals backprop with the layer's gradient set to 2 f (autograd oracle)."""
    clf = tiny()
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    with capture(clf.model, ["relu2_1"], detach=False) as acts:
        clf.model(x)
    f = acts["relu2_1"]
    ours = torch.autograd.grad(obj.layer_l2("relu2_1")(obj.Context(x, None, acts)).sum(), x,
                               retain_graph=True)[0]
    lecture = torch.autograd.grad(f, x, grad_outputs=2 * f.detach())[0]
    assert torch.allclose(ours, lecture, atol=1e-6)


# ----------------------------------------------------------------- parameterisations
def test_pixel_image_starts_at_the_mean_and_stays_valid():
    center = torch.tensor([0.2, 0.5, 0.9]).view(1, 3, 1, 1)
    params, image_fn = p = pixel_image((2, 3, 5, 5), center=center)
    assert torch.equal(image_fn(), center.expand(2, 3, 5, 5))  # "zeros" = the mean image
    assert params[0].requires_grad and not params[0].any()
    with torch.no_grad():
        params[0].add_(torch.linspace(-2, 2, 150).view(2, 3, 5, 5))
    p.project_()
    img = image_fn()
    assert img.min() >= 0 and img.max() <= 1 and img.min() == 0 and img.max() == 1


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_fourier_image_any_channel_count(channels):
    gen = torch.Generator().manual_seed(0)
    params, image_fn = fourier_image((2, channels, 15, 20), sd=0.5, generator=gen)
    img = image_fn()
    assert img.shape == (2, channels, 15, 20) and 0 < img.min() and img.max() < 1
    # gradients reach the spectrum, every frequency of it
    g = torch.autograd.grad(img[:, :, 3, 4].sum(), params)[0]
    assert g.shape == params[0].shape and (g != 0).float().mean() > 0.9


def test_fourier_decorrelation_mixes_colour_only_for_rgb():
    gen = torch.Generator().manual_seed(1)
    p3 = fourier_image((1, 3, 8, 8), sd=1.0, generator=gen)
    p3n = fourier_image((1, 3, 8, 8), decorrelate=False)
    p3n.params[0].data.copy_(p3.params[0].data)
    assert not torch.allclose(p3.image(), p3n.image())
    p1 = fourier_image((1, 1, 8, 8), sd=1.0, generator=gen)
    p1n = fourier_image((1, 1, 8, 8), decorrelate=False)
    p1n.params[0].data.copy_(p1.params[0].data)
    assert torch.equal(p1.image(), p1n.image())


# ----------------------------------------------------------------- transforms
def test_transforms_are_exact_and_differentiable():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 8, 8, requires_grad=True)
    y = tf.jitter(3)(x, gen)
    assert any(torch.equal(y, torch.roll(x, (dy, dx), (-2, -1)))
               for dy in range(-3, 4) for dx in range(-3, 4))
    assert torch.allclose(tf.scale(1.0, 1.0)(x, gen), x, atol=1e-6)
    assert torch.allclose(tf.rotate(0.0)(x, gen), x, atol=1e-6)
    rot = tf._affine(x, 90.0, 1.0)  # a quarter turn maps pixel centres onto pixel centres
    assert torch.allclose(rot, torch.rot90(x, 1, (-2, -1)), atol=1e-5) or \
        torch.allclose(rot, torch.rot90(x, -1, (-2, -1)), atol=1e-5)
    rows = torch.rand(1, 1, 8, 1).expand(1, 1, 8, 8)  # varies down the image only
    zoomed = tf._affine(rows, 0.0, 2.0)  # 2x about the centre: row 4 samples row 3.75
    assert torch.allclose(zoomed[..., 4, :], 0.25 * rows[..., 3, :] + 0.75 * rows[..., 4, :],
                          atol=1e-5)
    z = tf.standard((8, 8), jitter_frac=0.25, scale_frac=0.1, rotate_deg=10)(x, gen)
    assert z.shape == x.shape
    (g,) = torch.autograd.grad(z.sum(), x)
    assert g.abs().sum() > 0


def test_transforms_use_only_their_generator():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    t = tf.standard((16, 16), 0.1, 0.1, 10)
    a = t(torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(5)),
          torch.Generator().manual_seed(7))
    b = t(torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(5)),
          torch.Generator().manual_seed(7))
    assert torch.equal(a, b) and torch.equal(torch.random.get_rng_state(), before)


# ----------------------------------------------------------------- regulariser measures and operators
def test_measures_hand_computed():
    img = torch.zeros(1, 1, 3, 3)
    img[0, 0, 1, 1] = 1.0
    # |dy| differences: 6 entries, two of them 1; |dx| likewise
    assert regs.total_variation(img).item() == pytest.approx(2 / 6 + 2 / 6)
    assert regs.l2_norm(img, torch.zeros(1, 1, 1, 1)).item() == pytest.approx(1 / 9)
    smooth = torch.cos(torch.arange(16) * 2 * torch.pi / 16).view(1, 1, 1, 16).expand(1, 1, 16, 16)
    checker = (torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2
    assert regs.high_frequency_energy(smooth) < 1e-6  # all at 1/16 cycles per pixel
    assert regs.high_frequency_energy(checker.float().view(1, 1, 16, 16)) > 0.95


def test_clip_operators_zero_the_right_pixels():
    values = torch.tensor([[[[0.1, 0.2, 0.3, 0.4, 0.5], [0.6, 0.7, 0.8, 0.9, 1.0]]]])
    p = pixel_image((1, 1, 2, 5), center=torch.zeros(1, 1, 1, 1), init=values)
    regs.ClipNorm(30).apply_(p, None, 0)  # the 3 smallest of 10 go to the mean image
    assert p.image().flatten().tolist() == pytest.approx([0, 0, 0, .4, .5, .6, .7, .8, .9, 1])
    p = pixel_image((1, 1, 2, 5), center=torch.zeros(1, 1, 1, 1), init=values)
    grad = torch.tensor([[[[9.0, 9, 9, 0.1, 9], [9, 9, 9, 9, 0.01]]]])
    regs.ClipContribution(20).apply_(p, grad, 0)  # |x * g|: 0.04 and 0.01 are the smallest
    assert p.image().flatten().tolist() == pytest.approx([.1, .2, .3, 0, .5, .6, .7, .8, .9, 0])
    with pytest.raises(UsageError, match="pixel parameterisation"):
        regs.ClipNorm(10).apply_(fourier_image((1, 1, 4, 4)), None, 0)


def test_blur_acts_every_k_steps_and_keeps_the_mean():
    gen = torch.Generator().manual_seed(0)
    p = pixel_image((1, 3, 12, 12), center=torch.full((1, 3, 1, 1), 0.5), sd=0.2, generator=gen)
    blur = regs.GaussianBlur(1.0, every=3)
    before = p.image().clone()
    blur.apply_(p, None, 0)
    blur.apply_(p, None, 1)
    assert torch.equal(p.image(), before)  # steps 1 and 2: untouched
    blur.apply_(p, None, 2)
    after = p.image()
    assert regs.high_frequency_energy(after) < 0.5 * regs.high_frequency_energy(before)
    assert after.mean().item() == pytest.approx(before.mean().item(), abs=0.01)


# ----------------------------------------------------------------- the loop
def run_channel(clf, **cfg):
    config = VisualizeConfig(**{"preset": "yosinski", "steps": 40, **cfg})
    return visualize(clf, obj.channel("relu2_1", 1), n=2, config=config, progress=False)


def test_objective_rises_and_the_model_is_left_as_it_was():
    clf = tiny()
    clf.model.train()
    clf.model.bn1_1.eval()  # a mixed state, which must come back exactly
    clf.model.conv1_1.weight.requires_grad_(False)
    before = model_state(clf.model)
    res = run_channel(clf, steps=60)
    start, end = res.objective[0], res.objective[-1]
    assert (end > 20 * start.abs().clamp(min=1e-4)).all(), (start, end)  # about x100 here
    assert model_state(clf.model) == before  # hooks, requires_grad, .grad, train/eval modes
    assert res.images.shape == (2, 3, 16, 16)
    assert res.images.min() >= 0 and res.images.max() <= 1


def test_a_failing_run_still_cleans_up():
    clf = tiny()
    before = model_state(clf.model)
    with pytest.raises(UsageError, match="out of range"):
        visualize(clf, obj.channel("relu2_1", 99), config=VisualizeConfig(steps=3),
                  progress=False)
    assert model_state(clf.model) == before


def test_same_seed_same_image_other_seed_other_image():
    clf = tiny()
    for preset in ("simonyan", "yosinski", "fourier", "mahendran"):
        a = run_channel(clf, preset=preset, steps=8, seed=3).images
        b = run_channel(clf, preset=preset, steps=8, seed=3).images
        c = run_channel(clf, preset=preset, steps=8, seed=4).images
        assert torch.equal(a, b), preset
        assert preset == "simonyan" or not torch.equal(a, c)  # simonyan has no randomness


@pytest.mark.parametrize("reg,measure,field,value", [
    ("tv", lambda im, c: regs.total_variation(im), "tv", 0.5),
    ("l2", regs.l2_norm, "l2", 20.0),
    ("blur", lambda im, c: regs.high_frequency_energy(im), "blur_sigma", 1.0),
])
def test_each_regulariser_does_its_job(reg, measure, field, value):
    """The same run with and without one regulariser: its measure drops clearly."""
    clf = tiny()
    base = dict(preset="simonyan", steps=40, lr=0.05, l2=0.0, init_sd=0.05, blur_every=2)
    without = run_channel(clf, **base).images
    with_reg = run_channel(clf, **{**base, field: value}).images
    center = model_center(clf)
    m0, m1 = measure(without, center).mean(), measure(with_reg, center).mean()
    assert m1 < 0.7 * m0, (reg, float(m0), float(m1))


def test_grayscale_odd_sizes_and_the_pieces_by_hand():
    clf = tiny(channels=1, size=11)
    gen = torch.Generator().manual_seed(0)
    p = fourier_image((3, 1, 11, 11), generator=gen)
    objective = obj.class_logit([0, 1, 2]) + 10 * obj.channel("relu1_1", [0, 1, 2])
    res = ascend(clf, objective, p, steps=30, lr=0.1,
                 transforms=[tf.jitter(1), tf.rotate(5)],
                 regularizers=[regs.L2Decay(0.1), regs.TotalVariation(0.1)], generator=gen,
                 progress=False)
    assert res.images.shape == (3, 1, 11, 11)
    assert (res.objective[-1] > 1.5 * res.objective[0]).all()
    assert [im.mode for im in res.pil()] == ["L"] * 3


def test_class_names_indices_and_batches():
    clf = tiny()
    assert class_index(clf, "c2") == 2 and class_index(clf, "C3") == 3 and class_index(clf, 1) == 1
    with pytest.raises(UsageError, match="unknown class 'cow'.*c0, c1, c2, c3"):
        class_index(clf, "cow")
    # batches of 2 give the same images as one batch of 4: each image is optimised alone
    cfg = dict(preset="simonyan", steps=5)
    one = class_images(clf, [0, 1, 2, 3], VisualizeConfig(**cfg), progress=False)
    two = class_images(clf, ["c0", "c1", 2, "3"], VisualizeConfig(**cfg, batch_size=2),
                       progress=False)
    assert one.labels == two.labels == ["c0", "c1", "c2", "c3"]
    assert torch.allclose(one.images, two.images, atol=1e-5)
    assert one.config["l2"] == 3.0 and one.config["param"] == "pixel"


def test_neuron_and_channel_images_and_bad_choices():
    clf = tiny()
    res = channel_images(clf, "conv2_1", [0, 1], neuron=(2, 3),
                         config=VisualizeConfig(steps=5), progress=False)
    assert res.labels == ["conv2_1:0@2,3", "conv2_1:1@2,3"]
    with pytest.raises(UsageError, match="unknown layer 'nope'"):
        channel_images(clf, "nope", [0], config=VisualizeConfig(steps=2), progress=False)
    # the default preset: one rule, by the model's channels
    assert VisualizeConfig().resolved(tiny(channels=1)).preset == "mahendran"
    assert VisualizeConfig().resolved(tiny(channels=3)).preset == "fourier"
    assert VisualizeConfig().resolved().preset == "fourier"
    assert VisualizeConfig("yosinski").resolved(tiny(channels=1)).preset == "yosinski"
    gray = class_images(tiny(channels=1), [0], VisualizeConfig(steps=2), progress=False)
    assert gray.config["preset"] == "mahendran" and gray.config["tv"] == 5.0
    with pytest.raises(UsageError, match="unknown preset 'lucent'"):
        VisualizeConfig("lucent").resolved()
    with pytest.raises(UsageError, match="pixel, not fourier"):
        VisualizeConfig("fourier", blur_sigma=1.0).resolved()


def test_torchvision_model_reused_relu_and_early_stop():
    """torchvision's BasicBlock calls one ReLU twice: the objective sees the second call, as
    ``capture`` does, and the pass stops there (an image size the head could not take)."""
    from convscope.inspect.synthesis.core import forward, layer_calls
    from convscope.loading import open_model

    clf = open_model("resnet18")
    calls = layer_calls(clf, ["layer1.0.relu"])
    assert calls["layer1.0.relu"] == 2
    x = torch.rand(1, 3, 40, 56)
    with capture(clf.model, ["layer1.0.relu"]) as ref:
        clf.model(clf.preprocess(x * 255))
    with capture(clf.model, calls, detach=False, stop=True) as acts:
        assert forward(clf, x, acts, resize=True) is None  # stopped before the head
    assert torch.allclose(acts["layer1.0.relu"], ref["layer1.0.relu"])
    assert hook_count(clf.model) == 0


# ----------------------------------------------------------------- the judge
class FixedLogits(nn.Module):
    """A judge whose outputs we set: row i of ``table`` for the i-th image, whatever it shows."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.register_buffer("table", table)

    def forward(self, x):
        return self.table[: len(x)]


def fixed_judge(classes: list[str], table: torch.Tensor) -> Classifier:
    meta = ModelMeta(model="fixed", options={}, classes=classes, channels=1, image_size=[5, 5],
                     input_size=[5, 5], mean=[0.5], std=[0.5])
    return Classifier(FixedLogits(table), meta)


def test_judge_agreement_hand_computed():
    """Three class images judged by a model with known outputs, its classes in another order
    and at another size and channel count than the model's: probabilities by name, top-1,
    agreement 2/3 and mean probability (0.6 + 0.25 + 0.6) / 3."""
    from convscope.inspect.synthesis import judge_images

    clf = tiny(classes=3)  # classes c0, c1, c2; 16x16 RGB
    # judge classes in the order c2, c0, c1; wanted p over (c0, c1, c2) per image:
    # (0.6, 0.3, 0.1) -> c0 agrees; (0.25, 0.25, 0.5) -> top-1 c2, not c1; (0.1, 0.3, 0.6) -> c2
    p = torch.tensor([[0.6, 0.3, 0.1], [0.25, 0.25, 0.5], [0.1, 0.3, 0.6]])
    judge = fixed_judge(["c2", "c0", "c1"], p[:, [2, 0, 1]].log() + 7.0)
    res = class_images(clf, ["c0", "c1", "c2"], VisualizeConfig("simonyan", steps=3),
                       progress=False, judge=judge, judge_name="fixed judge")
    j = res.judgement
    assert j.targets == ["c0", "c1", "c2"] and j.judge == "fixed judge"
    assert j.probability == pytest.approx([0.6, 0.25, 0.6], abs=1e-6)
    assert j.top1 == ["c0", "c2", "c2"] and j.agrees == [True, False, True]
    assert j.rate == pytest.approx(2 / 3) and j.mean_probability == pytest.approx(1.45 / 3)
    assert j.as_dict() == {"judge": "fixed judge", "agreement": pytest.approx(2 / 3),
                           "mean_probability": pytest.approx(1.45 / 3)}
    assert "agrees on 2/3 class images (67%), mean judge p=0.483" in j.summary()
    # the same verdict straight from the images
    again = judge_images(judge, res.uint8(), res.labels)
    assert again.probability == pytest.approx(j.probability) and again.top1 == j.top1
    assert class_images(clf, ["c0"], VisualizeConfig(steps=2), progress=False).judgement is None


def test_a_judge_without_the_class_is_refused_before_the_ascent(monkeypatch):
    import importlib

    vis = importlib.import_module("convscope.inspect.synthesis.visualize")

    def no_ascent(*args, **kwargs):
        raise AssertionError("the ascent ran before the judge was checked")

    monkeypatch.setattr(vis, "ascend", no_ascent)
    judge = fixed_judge(["c0", "c1"], torch.zeros(3, 2))
    with pytest.raises(UsageError, match="the judge model has no class 'c2'"):
        class_images(tiny(classes=3), ["c0", "c2"], VisualizeConfig(steps=2), progress=False,
                     judge=judge)
