"""Maximally activating patches: the true top-k, boxes that are gradient footprints, resized and
channels-last layers, shards merged as in one pass, errors that leave no hook."""

from __future__ import annotations

import pytest
import torch

from convscope import distributed
from convscope.errors import UsageError
from convscope.inspect.hooks import capture
from convscope.inspect.patches import (
    StreamingTopK,
    _axis_to_image,
    image_box,
    parse_channels,
    patches,
)
from tests.inspect.conftest import wrap
from tests.inspect.test_hooks import hook_count
from tests.inspect.test_receptive import Functional, averaging_copy, footprints


def test_parse_channels():
    assert parse_channels("0-3,8,2") == (0, 1, 2, 3, 8)
    with pytest.raises(UsageError, match="runs backwards"):
        parse_channels("5-2")
    with pytest.raises(UsageError, match="numbers and ranges"):
        parse_channels("a-b")


def brute_force(clf, images, layer, channels, k):
    """Every activation of every image, sorted (activation desc, image, y, x)."""
    with capture(clf.model, [layer]) as acts, torch.no_grad():
        clf.model(clf.preprocess(images))
    a = acts[layer]                                            # (N, C, H, W)
    out = []
    for c in channels:
        entries = [(-float(a[n, c, y, x]), n, y, x) for n in range(a.shape[0])
                   for y in range(a.shape[2]) for x in range(a.shape[3])]
        out.append([(n, y, x, -v) for v, n, y, x in sorted(entries)[:k]])
    return out


def test_patches_are_the_true_top_k_and_recompute_from_their_crops(mnist, mnist_data):
    images = mnist_data.test_images[:60]
    p = patches(mnist, images, layer="conv2_2", channels=(0, 5, 63), top=5, batch_size=16)
    expected = brute_force(mnist, images, "conv2_2", (0, 5, 63), 5)
    for hits, want in zip(p.hits, expected):
        assert [(h.image, h.y, h.x) for h in hits] == [w[:3] for w in want]
        assert [h.activation for h in hits] == pytest.approx([w[3] for w in want], abs=1e-5)
    # each activation comes back from its crop alone: noise everywhere else
    g = torch.Generator().manual_seed(0)
    for hits in p.hits:
        for h in hits:
            top, left, bottom, right = h.box
            x = torch.randint(0, 256, (1, 1, 28, 28), dtype=torch.uint8, generator=g)
            x[0, :, top:bottom, left:right] = p.crop(h)
            with capture(mnist.model, ["conv2_2"]) as acts, torch.no_grad():
                mnist.model(mnist.preprocess(x))
            assert float(acts["conv2_2"][0, h.channel, h.y, h.x]) == pytest.approx(
                h.activation, abs=1e-4)
    assert hook_count(mnist.model) == 0


def test_patch_boxes_are_gradient_footprints(mnist):
    rf = patches(mnist, torch.zeros(2, 1, 28, 28, dtype=torch.uint8), layer="pool2",
                 channels=(0,), top=1).field
    units = [(0, 0), (3, 3), (6, 6), (0, 6)]
    measured = footprints(averaging_copy(mnist.model), "pool2", (1, 28, 28), units)
    for (y, x), got in zip(units, measured):
        assert image_box(rf, y, x, (28, 28)) == got


def test_upsampled_input_boxes_follow_the_bilinear_resize():
    # a 10 px image resized to a 23 px network input: rows [a, b) of the input read image
    # rows footprint(a, b), measured with autograd through the same interpolation
    for a, b in [(0, 1), (0, 5), (7, 12), (20, 23), (11, 12)]:
        img = torch.rand(1, 1, 10, 1, dtype=torch.float64, requires_grad=True)
        up = torch.nn.functional.interpolate(img, size=(23, 1), mode="bilinear",
                                             align_corners=False)
        (grad,) = torch.autograd.grad(up[0, 0, a:b].sum(), img)
        rows = grad[0, 0, :, 0].nonzero()[:, 0]
        lo, hi = _axis_to_image(a, b, 23, 10)
        assert (max(lo, 0), min(hi, 10)) == (int(rows.min()), int(rows.max()) + 1), (a, b)


def test_patches_on_an_upsampled_channels_last_layer():
    torch.manual_seed(0)
    clf = wrap(Functional(), channels=1, image=12, net_input=20)
    images = torch.randint(0, 256, (6, 1, 12, 12), dtype=torch.uint8)
    p = patches(clf, images, layer="mix", top=3)             # (B, H, W, C): channels last
    assert p.field.axes == (1, 2) and p.config.channels == (0, 1)
    with capture(clf.model, ["mix"]) as acts, torch.no_grad():
        clf.model(clf.preprocess(images))
    a = acts["mix"]                                          # (6, h, w, 2)
    for c, hits in enumerate(p.hits):
        best = a[..., c].flatten().topk(3).values
        assert [h.activation for h in hits] == pytest.approx(best.tolist(), abs=1e-5)
        h = hits[0]
        assert float(a[h.image, h.y, h.x, c]) == pytest.approx(h.activation, abs=1e-6)
        assert all(0 <= v <= 12 for v in h.box)


def split_topk(acts: torch.Tensor, cut: int, k: int) -> tuple[StreamingTopK, StreamingTopK]:
    """Two processes' buffers: images [0, cut) and [cut, N), batches of 3."""
    parts = []
    for lo, hi in ((0, cut), (cut, len(acts))):
        t = StreamingTopK(acts.shape[1], k, tuple(acts.shape[-2:]))
        for i in range(lo, hi, 3):
            j = min(i + 3, hi)
            t.update(acts[i:j], torch.arange(i, j))
        parts.append(t)
    return parts[0], parts[1]


class TwoProcesses:
    """distributed.current() of rank 0 in a 2-process job whose other rank holds ``other``."""

    enabled, rank, world, is_main = True, 0, 2, True

    def __init__(self, other: StreamingTopK):
        self.other = other

    def gather_rows(self, t: torch.Tensor) -> torch.Tensor:
        theirs = self.other.values if t.dtype.is_floating_point else self.other.keys
        return torch.cat([t, theirs])


def test_streaming_top_k_merges_shards_into_the_single_pass(monkeypatch):
    g = torch.Generator().manual_seed(0)
    acts = torch.randn(11, 4, 3, 3, generator=g).relu()     # many exact ties at 0
    acts[:, 3] = 0                                          # a dead channel: all ties
    acts[5, 1, 1, 1] = acts[9, 1, 0, 2] = 10.0              # a tie at the top
    single = StreamingTopK(4, 7, (3, 3))
    for i in range(0, 11, 4):
        single.update(acts[i:i + 4], torch.arange(i, min(i + 4, 11)))
    # brute force: (activation desc, image, y, x)
    for c in range(4):
        order = sorted((-float(acts[n, c, y, x]), n * 9 + y * 3 + x) for n in range(11)
                       for y in range(3) for x in range(3))[:7]
        assert single.keys[c].tolist() == [key for _, key in order]
    assert single.positions()[1, :2].tolist() == [[5, 1, 1], [9, 0, 2]]
    assert single.keys[3].tolist() == list(range(7))        # dead: the first positions
    for cut in (0, 4, 6, 11):
        a, b = split_topk(acts, cut, 7)
        monkeypatch.setattr(distributed, "current", lambda b=b: TwoProcesses(b))
        merged = a.gathered()
        assert torch.equal(merged.keys, single.keys) and torch.equal(merged.values,
                                                                     single.values)


def test_patches_errors_and_hooks_after_a_failure(mnist, monkeypatch):
    images = torch.zeros(4, 1, 28, 28, dtype=torch.uint8)
    with pytest.raises(UsageError, match="`channels` 64 is out of range: layer conv2_2 has 64 "
                                         r"channels \(0-63\)"):
        patches(mnist, images, layer="conv2_2", channels=(3, 64))
    with pytest.raises(UsageError, match="unknown layer 'conv7'.*conv1_1, bn1_1"):
        patches(mnist, images, layer="conv7")

    def broken(self, acts, indices):
        raise RuntimeError("boom")

    monkeypatch.setattr(StreamingTopK, "update", broken)
    with pytest.raises(RuntimeError, match="boom"):
        patches(mnist, images, layer="conv2_2")
    assert hook_count(mnist.model) == 0 and not mnist.model.training
