"""The fast recipe: whitening, Muon, recipe resolution, alternating flip, TTA, a smoke run."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

import convscope
from convscope.classifier import Classifier
from convscope.errors import ConvscopeError
from convscope.modelfile import ModelMeta
from convscope.models import ModelInput, build_model
from convscope.train import TrainConfig
from convscope.train.optim import Muon, newton_schulz


def test_whitening_init_decorrelates_patches():
    torch.manual_seed(0)
    net = build_model("fastnet", ModelInput(3, 10, (16, 16)))
    mix = torch.tensor([[1.0, 0.8, 0.1], [0.0, 1.0, 0.9], [0.2, 0.0, 1.0]])
    x = torch.einsum("oc,nchw->nohw", mix, torch.randn(64, 3, 16, 16))  # correlated colours
    net.init_from_data(x)
    half = net.whiten.out_channels // 2
    y = net.whiten(x)[:, :half] - net.whiten.bias[:half, None, None]  # (N, 12, 15, 15)
    feats = y.permute(0, 2, 3, 1).reshape(-1, half).double()
    cov = feats.T @ feats / len(feats)
    assert torch.allclose(cov, torch.eye(half, dtype=torch.float64), atol=0.02)
    assert torch.equal(net.whiten.weight[half:], -net.whiten.weight[:half])


def test_newton_schulz_orthogonalises():
    torch.manual_seed(0)
    g = torch.randn(16, 40)
    s = torch.linalg.svdvals(newton_schulz(g))
    assert s.min() > 0.5 and s.max() < 1.5  # all singular values pulled towards 1


def test_muon_keeps_filter_norm_and_steps_sgd_groups():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(8, 4, 3, 3))
    b = torch.nn.Parameter(torch.ones(5))
    opt = Muon([{"params": [w], "lr": 0.1, "momentum": 0.0, "orthogonalize": True},
                {"params": [b], "lr": 0.5, "momentum": 0.0, "weight_decay": 0.0}])
    w.grad, b.grad = torch.randn_like(w), torch.full_like(b, 2.0)
    before = w.detach().clone()
    opt.step()
    assert torch.allclose(b, torch.full_like(b, 0.0))  # plain SGD: 1 - 0.5 * 2
    scaled = before * (8 ** 0.5 / before.norm())
    update = newton_schulz(w.grad.reshape(8, -1)).view_as(w)
    assert torch.allclose(w, scaled - 0.1 * update, atol=1e-5)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_schedules_warm_up_decay_to_zero_and_stay_there(schedule):
    from convscope.train.optim import warmup_decay

    f = warmup_decay(TrainConfig(epochs=2, warmup_epochs=0.5, schedule=schedule), 10)
    # linear from 1% of the peak (issue 18: the first steps of a deep net are its riskiest)
    assert [f(s) for s in range(5)] == pytest.approx([0.01 + 0.99 * s / 5 for s in range(5)])
    assert f(5) == pytest.approx(1.0) and f(20) == pytest.approx(0.0, abs=1e-12)
    assert f(21) == f(100) == f(20)  # never negative (or rising) past the end
    assert f(12) == pytest.approx(8 / 15 if schedule == "linear" else 0.5 * (1 + math.cos(
        math.pi * 7 / 15)))


def test_recipe_defaults_and_explicit_options():
    fast = TrainConfig(recipe="fast").resolve()
    assert (fast.model, fast.optimizer, fast.epochs, fast.tta) == ("fastnet", "muon", 10, 2)
    assert fast.augment == "altflip-translate" and fast.label_smoothing == 0.2
    mine = TrainConfig(recipe="fast", epochs=4, model="convnet", tta=0).resolve()
    assert (mine.epochs, mine.model, mine.tta) == (4, "convnet", 0)
    assert "epochs" not in mine.resolved["from_recipe"]
    default = TrainConfig().resolve()
    assert (default.model, default.optimizer, default.lr) == ("convnet", "sgd", 0.05)
    with pytest.raises(convscope.ConvscopeError, match="unknown recipe 'turbo'"):
        TrainConfig(recipe="turbo").resolve()


def test_alternating_flip_shows_each_image_both_ways(tmp_path):
    from convscope.data import load_dataset
    from convscope.train.loop import Trainer

    ds = load_dataset("fake:size=8,n=40,test=8,classes=2")
    tr = Trainer(ds, TrainConfig(data=ds.name, recipe="fast", epochs=2), progress=False,
                 log=lambda _m: None)
    bits = tr.flip_bits
    assert 0.2 < bits.float().mean() < 0.8
    epoch1, epoch2 = bits ^ (1 % 2 == 0), bits ^ (2 % 2 == 0)
    assert torch.equal(epoch1, ~epoch2)
    assert tr.batch == 32  # the recipe's 2000 capped at max(32, n // 10)


def test_tta_levels_average_views():
    torch.manual_seed(0)
    net = build_model("linear", ModelInput(1, 3, (4, 4))).eval()
    meta = ModelMeta(model="linear", options={}, classes=list("abc"), channels=1,
                     image_size=[4, 4], input_size=[4, 4], mean=[0.0], std=[1 / 255])
    clf = Classifier(net, meta)
    x = torch.randint(0, 255, (2, 1, 4, 4), dtype=torch.uint8)
    xf = x.float()
    plain = clf.logits(x)
    assert torch.allclose(plain, net(xf), atol=1e-4)
    assert torch.allclose(clf.logits(x, tta=1), 0.5 * (net(xf) + net(xf.flip(-1))), atol=1e-4)
    p = torch.nn.functional.pad(xf, (1, 1, 1, 1), mode="reflect")

    def m(t):
        return 0.5 * (net(t) + net(t.flip(-1)))

    want = 0.5 * m(xf) + 0.25 * (m(p[..., :4, :4]) + m(p[..., 2:, 2:]))
    assert torch.allclose(clf.logits(x, tta=2), want, atol=1e-4)
    assert clf.meta == meta and clf.meta.tta == 0  # the argument steers; meta is untouched
    own = Classifier(net, dataclasses.replace(meta, tta=2))  # the model's level by default
    assert torch.allclose(own.logits(x), want, atol=1e-4)
    assert torch.allclose(own.logits(x, tta=0), plain, atol=1e-4)
    assert torch.allclose(own.logits(x, tta=False), plain, atol=1e-4)
    with pytest.raises(ConvscopeError, match="tta must be 0, 1, 2 or None"):
        own.logits(x, tta=3)


def test_evaluating_with_tta_leaves_the_models_metadata_alone():
    """Issue 14: test-time augmentation is an argument of predict/evaluate; the trainer used
    to switch ``clf.meta.tta`` on and off around its evaluations."""
    torch.manual_seed(0)
    net = build_model("linear", ModelInput(1, 3, (4, 4))).eval()
    meta = ModelMeta(model="linear", options={}, classes=list("abc"), channels=1,
                     image_size=[4, 4], input_size=[4, 4], mean=[0.0], std=[1 / 255])
    clf = Classifier(net, meta)
    before = dataclasses.replace(meta)
    x = torch.randint(0, 255, (12, 1, 4, 4), dtype=torch.uint8)
    y = torch.arange(12) % 3
    plain, mirrored = clf.evaluate(x, y), clf.evaluate(x, y, tta=2)
    assert clf.meta is meta and meta == before and meta.tta == 0
    want = (clf.logits(x, tta=2).argmax(1) == y).float().mean().item()
    assert mirrored.top1 == pytest.approx(want)
    assert plain.top1 == pytest.approx((clf.logits(x).argmax(1) == y).float().mean().item())
    assert clf.predict(x, tta=1).shape == (12,) and clf.meta == before
    with pytest.raises(dataclasses.FrozenInstanceError):
        clf.meta.tta = 2


@pytest.mark.shared_data
def test_fast_recipe_learns_in_one_epoch_on_5k_real_images(cifar_tar, tmp_path):
    """The regression guard: 1 epoch on 5,000 CIFAR-10 JPEGs learns (> 35%; chance 10%)."""
    ds = convscope.load_dataset(f"folder:{cifar_tar}", holdout=5000, progress=False)
    keep = torch.cat([torch.nonzero(ds.train_labels == c)[:500, 0] for c in range(10)])
    ds.train_images, ds.train_labels = ds.train_images[keep], ds.train_labels[keep]
    ds.test_images, ds.test_labels = ds.test_images[:1000], ds.test_labels[:1000]
    from convscope.train import fit

    clf = fit(ds, TrainConfig(data=ds.name, recipe="fast", epochs=1, out=str(tmp_path)),
              progress=False, log=lambda _m: None)
    row = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert row["tta"] == 2 and clf.meta.tta == 2
    assert row["test_acc"] > 0.35, row
