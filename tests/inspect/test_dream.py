"""DeepDream: sum f^2 grows by a large factor, the image keeps its size and stays valid."""

from __future__ import annotations

import pytest
import torch

from convscope.errors import ConvscopeError, UsageError
from convscope.inspect.dream import DreamConfig, dream, layer_energy, octave_sizes
from convscope.inspect.synthesis.objectives import Context, layer_l2
from tests.inspect.test_synthesis import hook_count, model_state, tiny


def photo(h: int = 37, w: int = 53, channels: int = 3) -> torch.Tensor:
    """A smooth seeded test picture, (C, H, W) in [0, 1]."""
    g = torch.Generator().manual_seed(0)
    low = torch.rand(1, channels, 5, 7, generator=g)
    return torch.nn.functional.interpolate(low, size=(h, w), mode="bicubic").clamp(0, 1)[0]


def test_octave_sizes_end_at_the_image_and_skip_tiny_ones():
    assert octave_sizes(100, 140, 3, 2.0, 16) == [(25, 35), (50, 70), (100, 140)]
    assert octave_sizes(40, 40, 4, 1.4, 16) == [(20, 20), (29, 29), (40, 40)]  # 15 px skipped
    assert octave_sizes(8, 8, 3, 1.4, 16) == [(8, 8)]  # smaller than min_size: one octave


def test_dream_amplifies_the_layer_and_keeps_a_valid_image():
    clf = tiny()
    before_state = model_state(clf.model)
    frames = []
    img = photo()
    res = dream(clf, img, DreamConfig(layer="relu2_1", octaves=3, steps=10, lr=0.02, jitter=8),
                progress=False, on_frame=lambda i, x: frames.append((i, tuple(x.shape))))
    assert res.image.shape == img.shape and res.image.dtype == torch.float32
    assert res.image.min() >= 0 and res.image.max() <= 1
    assert res.pil().size == (53, 37) and res.pil().mode == "RGB"
    assert res.gain > 10, (res.energy_before, res.energy_after)
    # the reported energies are sum f^2 recomputed at full size (the input is read as 8-bit)
    read = (img * 255).round()[None] / 255
    assert res.energy_before == pytest.approx(layer_energy(clf, read, "relu2_1"), rel=1e-5)
    assert res.energy_after == pytest.approx(layer_energy(clf, res.image[None], "relu2_1"),
                                             rel=1e-5)
    assert [i for i, _ in frames] == list(range(30)) and {s for _, s in frames} == {(3, 37, 53)}
    assert res.sizes == [(19, 27), (26, 38), (37, 53)]
    assert model_state(clf.model) == before_state


def test_layer_energy_is_sum_of_squares():
    clf = tiny()
    x = photo(16, 16)[None]
    with torch.no_grad():
        f = clf.model.relu1_1(clf.model.bn1_1(clf.model.conv1_1((x - 0.4) / 0.25)))
    assert layer_energy(clf, x, "relu1_1") == pytest.approx(float(f.pow(2).sum()), rel=1e-5)
    ctx = Context(x, None, {"relu1_1": f})
    assert float(layer_l2("relu1_1")(ctx)) == pytest.approx(float(f.pow(2).sum()), rel=1e-5)


def test_dream_is_reproducible_grayscale_and_any_size():
    clf = tiny(channels=1)
    cfg = DreamConfig(layer="relu1_2", octaves=2, steps=4, jitter=4, seed=7)
    img = photo(70, 23, channels=3)  # RGB input into a grayscale model: converted
    a = dream(clf, img, cfg, progress=False)
    b = dream(clf, img, cfg, progress=False)
    assert torch.equal(a.image, b.image) and a.image.shape == (1, 70, 23)
    c = dream(clf, img, DreamConfig(**{**cfg.__dict__, "seed": 8}), progress=False)
    assert not torch.equal(a.image, c.image)
    big = dream(clf, photo(64, 96), DreamConfig(layer="relu1_1", octaves=1, steps=1,
                                                max_size=48), progress=False)
    assert big.image.shape == (1, 32, 48)


def test_dream_default_layer_and_errors():
    clf = tiny()
    res = dream(clf, photo(20, 20), DreamConfig(octaves=1, steps=2), progress=False)
    assert res.layer == "pool2" and res.config["layer"] == "pool2"
    with pytest.raises(UsageError, match="unknown layer 'fc9'"):
        dream(clf, photo(), DreamConfig(layer="fc9"), progress=False)
    with pytest.raises(UsageError, match="octave_scale"):
        dream(clf, photo(), DreamConfig(octave_scale=0.5), progress=False)
    # the fully connected head cannot run on another size: one sentence, hooks gone
    with pytest.raises(ConvscopeError, match="cannot run on a 37x53 image"):
        dream(clf, photo(), DreamConfig(layer="fc1", octaves=1, steps=1), progress=False)
    assert hook_count(clf.model) == 0
