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
