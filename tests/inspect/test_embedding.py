"""t-SNE and PCA maps: trustworthiness, scikit-learn's PCA, grid snapping, TensorBoard's
projector files."""

from __future__ import annotations

import numpy as np

from convscope.inspect.embedding import (
    EmbedConfig,
    embed,
    snap_to_grid,
    sprite_size,
    to_2d,
    write_projector,
)


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


