"""Feed-forward style transfer: the packaged ONNX networks, one pass per image."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data
import torch
from torch.nn import functional as F

from convscope.errors import UsageError
from convscope.render.figures import read_config
from convscope.style.fast import FAST_STYLES, fast_stylize, open_fast, style_weights
from tests.conftest import call_cli


@pytest.fixture(scope="module")
def nets():
    return open_fast()


def _gray(img: np.ndarray, side: int = 32) -> np.ndarray:
    t = torch.from_numpy(img).permute(2, 0, 1).float().mean(0, keepdim=True)[None]
    return F.interpolate(t, size=(side, side), mode="area").flatten().numpy()


def test_style_weights_read_a_number_or_a_mix():
    one = style_weights("7")
    assert one.shape == (FAST_STYLES,) and one[7] == 1 and one.sum() == 1
    mix = style_weights("3:1,12:3")
    assert mix[3] == pytest.approx(0.25) and mix[12] == pytest.approx(0.75)
    assert style_weights("painting.jpg") is None and style_weights("sample:ihc") is None
    for bad, said in [("26", "0-25"), ("3:x", "not a number"), ("3:0", "add up to 0"),
                      ("3:-1", "at least 0")]:
        with pytest.raises(UsageError, match=said):
            style_weights(bad)


def test_a_fixed_style_is_one_pass_of_the_packaged_network(nets):
    """The oracle is the network run directly on the same input with the one-hot weights."""
    photo = skimage.data.chelsea()
    r = fast_stylize(photo, "7", size=128, nets=nets)
    assert r.image.shape[1] == 128 and r.image.dtype == np.uint8
    from convscope.style.transfer import read_rgb

    x = read_rgb(photo, 128)
    direct = nets.run("multistyle26", x[None].numpy(), style_weights("7"))
    direct = F.interpolate(torch.from_numpy(direct), size=tuple(x.shape[1:]), mode="bilinear")
    expected = (np.clip(direct[0].permute(1, 2, 0).numpy(), 0, 1) * 255 + 0.5).astype(np.uint8)
    assert np.abs(r.image.astype(int) - expected.astype(int)).max() <= 1
    assert r.config.mode == "fixed"


def test_styles_repaint_the_photo_and_keep_what_it_shows(nets):
    photo = skimage.data.chelsea()
    a = fast_stylize(photo, "7", size=160, nets=nets).image
    b = fast_stylize(photo, "16", size=160, nets=nets).image
    c = fast_stylize(photo, "sample:ihc", size=160, nets=nets)
    assert c.config.mode == "image" and c.image.shape == a.shape
    base = _gray(np.asarray(fast_stylize(photo, "7", 160, nets).image))  # deterministic
    assert np.array_equal(base, _gray(a))
    # a new look: the styles differ from each other and from the photo's colours ...
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 20
    from convscope.style.transfer import read_rgb

    original = (read_rgb(photo, 160).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    assert np.abs(c.image.astype(int) - original.astype(int)).mean() > 10
    # ... and the same picture: its coarse layout correlates with the photo's
    for styled in (a, b, c.image):
        assert np.corrcoef(_gray(styled), _gray(original))[0, 1] > 0.3


def test_style_fast_on_the_command_line(tmp_path):
    listed = call_cli("style", "--fast").stdout
    assert f"{FAST_STYLES} fixed styles" in listed and "--fast 3:0.5,12:0.5" in listed
    out = tmp_path / "cat.png"
    proc = call_cli("style", "sample:chelsea", "--fast", "7", "--size", "96", "--out", out)
    assert "fixed style 7" in proc.stdout and out.exists()
    config = read_config(out)
    assert config["style"] == "7" and config["mode"] == "fixed" and config["size"] == 96
    bad = call_cli("style", "--fast", "40", "--out", tmp_path / "x.png", check=2)
    assert "0-25" in bad.stderr and "Traceback" not in bad.stderr
    two = call_cli("style", "a.png", "b.png", "--fast", "7", "--out", tmp_path / "y.png",
                   check=2)
    assert "one CONTENT image" in two.stderr


# --------------------------------------------------------------------------- vgg16-hed
def test_the_packaged_vgg16_reads_the_keras_file_as_rgb():
    """The oracle: the file's first kernel (HWIO, BGR input) correlated by hand with the BGR
    image equals our first convolution on the RGB image."""
    import h5py

    from convscope.models.pretrained import _hed_file, pretrained_entry

    net = pretrained_entry("vgg16-hed").open()
    rgb = torch.rand(1, 3, 9, 9, generator=torch.Generator().manual_seed(0))
    with h5py.File(_hed_file(), "r") as f:
        kernel = f["block1/layers/conv2d/vars/0"][()]  # (3, 3, 3 in BGR, 64)
        bias = f["block1/layers/conv2d/vars/1"][()]
    bgr = rgb[0].flip(0).numpy()  # (3, 9, 9), BGR
    padded = np.pad(bgr, ((0, 0), (1, 1), (1, 1)))
    by_hand = np.zeros((64, 9, 9), np.float32)
    for y in range(9):
        for x in range(9):
            patch = padded[:, y:y + 3, x:x + 3].transpose(1, 2, 0)  # (3, 3, C) as HWI
            by_hand[:, y, x] = np.tensordot(patch, kernel, axes=3) + bias
    with torch.no_grad():
        ours = net.features[0](rgb)[0].numpy()
    assert np.allclose(ours, by_hand, atol=1e-4)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in net.modules()) == 13


def test_style_uses_the_packaged_vgg16_when_vgg19_is_absent(monkeypatch):
    from convscope.style import backbone as bb
    from convscope.style import stylize

    monkeypatch.setattr(bb, "cached_weights", lambda name: None)  # no VGG-19 on the machine
    r = stylize("sample:chelsea", "sample:ihc", size=48, steps=12, progress=False)
    assert r.config.backbone_used.startswith("vgg16-hed (ImageNet-initialised VGG-16")
    assert any("packaged VGG-16" in n for n in r.config.notices)
    assert r.config.content_layer == "features.20"  # relu4_2, named as torchvision names it
    assert r.final_loss < r.start_loss / 3


def test_a_packaged_classifier_is_a_style_backbone_with_its_own_weights():
    from convscope.style import open_backbone

    bb = open_backbone("efficientnet-lite0")
    assert bb.name == "efficientnet-lite0 (packaged ImageNet weights)" and bb.notice is None
    assert bb.content_layer and len(bb.style_layers) >= 3
    assert bb.mean == pytest.approx((127 / 255,) * 3)
    with pytest.raises(UsageError, match="carries its own weights"):
        open_backbone("vgg16-hed", weights="DEFAULT")
