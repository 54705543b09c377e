"""Nearest neighbours in feature and pixel space against brute force, with ties; features beat
pixels on MNIST; other-sized images are converted; errors."""

from __future__ import annotations

import pytest
import torch

import convscope
from convscope.errors import UsageError
from convscope.inspect.hooks import capture
from convscope.inspect.neighbors import knn, neighbors
from tests.inspect.conftest import wrap


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
    with pytest.raises(UsageError, match="`k=2000` is more than the 1,437 training images"):
        neighbors(digits_model, k=2000)
    with pytest.raises(UsageError, match="`queries=5000` is more than the 360 test images"):
        neighbors(digits_model, queries=5000)
    with pytest.raises(UsageError, match="unknown metric"):
        neighbors(digits_model, metric="manhattan")




def test_an_unlabelled_folder_finds_neighbours_among_its_own_images(tmp_path):
    """No training split to search: each photo's neighbours are the other photos, never
    itself, and no label agreement is claimed."""
    from tests.data.test_registry import _flat_photos

    clf = convscope.train("digits", model="linear", epochs=1, progress=False)
    root = _flat_photos(tmp_path / "photos", n=6)
    r = convscope.neighbors(clf, f"folder:{root}", queries=6, k=3, progress=False)
    assert not r.labelled and r.agreement == {"feature": None, "pixel": None}
    for found in (r.feature, r.pixel):
        assert found.indices.shape == (6, 3)
        assert not (found.indices == r.query_indices[:, None]).any()  # never the query itself
        assert (found.distances[:, :-1] <= found.distances[:, 1:] + 1e-6).all()  # nearest first
    assert r.render().ndim == 3
    with pytest.raises(UsageError, match="more than the 5 other images"):
        convscope.neighbors(clf, f"folder:{root}", queries=6, k=6, progress=False)
