"""The "look inside" views through the Python API: layers, filters, activations, neighbours,
embeddings and maximally activating patches, against brute force, autograd and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import convscope
from convscope import distributed
from convscope.classifier import Classifier, open_model
from convscope.errors import UsageError
from convscope.inspect.embedding import (
    EmbedConfig,
    embed,
    snap_to_grid,
    sprite_size,
    to_2d,
    write_projector,
)
from convscope.inspect.filters import activations, filters
from convscope.inspect.hooks import capture
from convscope.inspect.layers import list_layers
from convscope.inspect.neighbors import knn, neighbors
from convscope.inspect.patches import (
    StreamingTopK,
    _axis_to_image,
    image_box,
    parse_channels,
    patches,
)
from convscope.modelfile import ModelMeta
from tests.test_hooks import hook_count
from tests.test_receptive import Functional, averaging_copy, footprints


def wrap(model: nn.Module, channels: int, image: int, net_input: int | None = None,
         classes: int = 2) -> Classifier:
    """Any module as a Classifier (its input resized from ``image`` to ``net_input``)."""
    meta = ModelMeta(model="custom", options={}, classes=[str(i) for i in range(classes)],
                     channels=channels, image_size=[image, image],
                     input_size=[net_input or image] * 2, mean=[0.5] * channels,
                     std=[0.25] * channels)
    return Classifier(model.eval(), meta)


@pytest.fixture(scope="module")
def mnist(mnist_model):
    return convscope.load(mnist_model)


@pytest.fixture(scope="module")
def mnist_data():
    return convscope.load_dataset("mnist5k")


# ----------------------------------------------------------------- layers
def test_layers_name_shapes_and_defaults(mnist):
    table = list_layers(mnist)
    rows = {r.name: r for r in table.layers}
    assert rows["conv1_1"].output_shape == (32, 28, 28) and rows["pool2"].output_shape == (64, 7, 7)
    assert rows["fc1_relu"].output_shape == (128,) and rows["classifier"].calls == 1
    assert table.defaults == {"filters": "conv1_1", "activations": "relu1_1",
                              "neighbors": "fc1_relu", "embed": "fc1_relu", "patches": "pool2"}
    text = table.format()
    assert "pool2       MaxPool2d    7x7x64" in text and "neighbors, embed" in text


def test_layers_of_torchvision_nets():
    r18 = list_layers("resnet18")
    assert r18.defaults == {"filters": "conv1", "activations": "relu", "neighbors": "avgpool",
                            "embed": "avgpool", "patches": "layer4"}
    rows = {r.name: r for r in r18.layers}
    assert rows["layer1.0.relu"].calls == 2        # one ReLU module applied twice per block
    assert rows["layer4"].output_shape == (512, 7, 7)
    alex = list_layers("alexnet").defaults
    assert (alex["filters"], alex["activations"], alex["neighbors"]) == (
        "features.0", "features.1", "classifier.5")


# ----------------------------------------------------------------- filters and activations
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


# ----------------------------------------------------------------- neighbours
def test_knn_against_brute_force_with_ties():
    g = torch.Generator().manual_seed(0)
    q, db = torch.randn(7, 5, generator=g), torch.randn(50, 5, generator=g)
    db[30] = db[4]                                     # a tie: the lower index comes first
    q[2] = db[4]
    d, i = knn(q, db, k=6, chunk=8)
    full = torch.cdist(q.double(), db.double())
    assert torch.allclose(d.double(), full.sort(dim=1).values[:, :6], atol=1e-4)
    assert i[2, :2].tolist() == [4, 30]
    assert torch.equal(i, knn(q, db, k=6, chunk=1000)[1])
    cos_d, cos_i = knn(q, db, k=3, metric="cosine")
    sim = torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(db, dim=1).T
    assert torch.equal(cos_i[[0, 1, 3]], sim.topk(3, dim=1).indices[[0, 1, 3]])
    pixels = torch.randint(0, 256, (20, 1, 4, 4), dtype=torch.uint8, generator=g)
    pd, pi = knn(pixels[:3], pixels, k=1)              # each image is its own nearest
    assert pi[:, 0].tolist() == [0, 1, 2] and torch.allclose(pd, torch.zeros(3, 1), atol=1e-3)


def test_features_beat_pixels_on_mnist(mnist, mnist_data):
    r = neighbors(mnist, mnist_data, k=5, queries=300)
    agree = r.agreement
    assert r.config.layer == "fc1_relu" and r.feature.indices.shape == (300, 5)
    assert agree["feature"] >= 0.95 and agree["feature"] >= agree["pixel"] + 0.04, agree
    # the reported labels and distances are the training images' own
    i = r.feature.indices[0, 0]
    assert r.feature.labels[0, 0] == mnist_data.train_labels[i]
    d = (r.query_images[0].float() / 255 - mnist_data.train_images[r.pixel.indices[0, 0]]
         .float() / 255).norm()
    assert r.pixel.distances[0, 0] == pytest.approx(float(d), abs=1e-4)
    js = r.to_dict()
    assert js["queries"][0]["feature"]["labels"][0] == mnist_data.classes[int(r.feature.labels[0, 0])]


def test_images_of_another_size_and_channels_are_converted():
    from convscope.inspect.features import ModelImages, model_images
    from convscope.models import ModelInput, build_model

    torch.manual_seed(0)
    clf = wrap(build_model("convnet:width=4,fc=8", ModelInput(3, 10, (16, 16))), channels=3,
               image=16, classes=10)
    ds = convscope.load_dataset("digits")                      # 8x8 grayscale
    view = model_images(clf, ds.test_images)
    assert isinstance(view, ModelImages) and len(view) == len(ds.test_images)
    assert view[3:5].shape == (2, 3, 16, 16)
    assert torch.equal(view[3:5], clf.as_batch(ds.test_images[3:5]))
    r = neighbors(clf, ds, k=2, queries=10)
    q, i = r.query_indices[4], r.feature.indices[4, 0]
    x = clf.as_batch(torch.stack([ds.test_images[q], ds.train_images[i]]))
    with capture(clf.model, ["fc1_relu"]) as acts, torch.no_grad():
        clf.model(clf.preprocess(x))
    f = acts["fc1_relu"]
    assert float(r.feature.distances[4, 0]) == pytest.approx(float((f[0] - f[1]).norm()),
                                                             abs=1e-4)


def test_neighbors_errors(digits_model):
    with pytest.raises(UsageError, match="--top-k 2000 is more than the 1,437 training images"):
        neighbors(digits_model, k=2000)
    with pytest.raises(UsageError, match="--n 5000 is more than the 360 test images"):
        neighbors(digits_model, queries=5000)
    with pytest.raises(UsageError, match="unknown metric"):
        neighbors(digits_model, metric="manhattan")


# ----------------------------------------------------------------- embedding
def test_tsne_of_mnist_features_is_trustworthy(mnist, mnist_data):
    e = embed(mnist, mnist_data, n=1000, iterations=250)
    assert e.coords.shape == (1000, 2) and e.features.shape == (1000, 128)
    assert e.config.layer == "fc1_relu" and e.config.grid == 31
    assert e.trustworthiness(5) >= 0.9
    cells = e.grid_cells()
    assert cells.shape == (31, 31) and len(set(cells.ravel())) == 31 * 31 and cells.min() >= 0


def test_pca_is_scikit_learns():
    from sklearn.decomposition import PCA

    x = np.random.default_rng(0).normal(size=(40, 6)) * [5, 3, 1, 1, 1, 1]
    ours = to_2d(x, EmbedConfig(method="pca"))
    ref = PCA(2, random_state=0).fit_transform(x)
    assert np.allclose(np.abs(ours), np.abs(ref), atol=1e-5)


def test_snap_to_grid_puts_points_on_their_own_cells():
    side = 3
    rows, cols = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    pts = np.stack([cols.ravel(), side - 1 - rows.ravel()], 1).astype(float)  # (x, y)
    perm = np.random.default_rng(1).permutation(len(pts))
    cells = snap_to_grid(pts[perm], side)
    assert np.array_equal(perm[cells], np.arange(9).reshape(3, 3))    # row 0 is the top
    sparse = snap_to_grid(pts[:4], 3)
    assert (sparse >= 0).sum() == 4 and sorted(sparse[sparse >= 0]) == [0, 1, 2, 3]


def test_tensorboard_projector_files(digits_model, tmp_path):
    e = embed(digits_model, n=30, method="pca")
    write_projector(e, tmp_path)
    vectors = (tmp_path / "00000" / e.config.layer / "tensors.tsv").read_text().splitlines()
    assert len(vectors) == 30 and len(vectors[0].split("\t")) == e.features.shape[1]
    meta = (tmp_path / "00000" / "pca" / "metadata.tsv").read_text().splitlines()
    labels = [e.classes[int(i)] for i in e.labels]
    assert meta[0] == "label\tindex" and meta[1] == f"{labels[0]}\t{int(e.indices[0])}"
    from PIL import Image

    sprite = Image.open(tmp_path / "00000" / "pca" / "sprite.png")
    assert sprite.size == (6 * 8, 6 * 8)                  # ceil(sqrt(30)) thumbnails of 8 px
    assert "sprite" in (tmp_path / "projector_config.pbtxt").read_text()
    assert sprite_size(10_000, 224) == 32 and sprite_size(1_000_000, 32) == 8


# ----------------------------------------------------------------- patches
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
    with pytest.raises(UsageError, match="--channels 64 is out of range: layer conv2_2 has 64 "
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
