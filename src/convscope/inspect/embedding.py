"""CNN codes in 2-D: t-SNE (openTSNE) or PCA (scikit-learn) of a layer's features, drawn as
a scatter coloured by class and as a thumbnail map, the images snapped onto a grid laid out
by the embedding (the classic "t-SNE grid of CNN codes").

>>> e = embed("runs/mnist3/model.safetensors", "mnist5k", method="tsne", n=1000)  # doctest: +SKIP
>>> e.coords.shape, e.features.shape                                             # doctest: +SKIP
((1000, 2), torch.Size([1000, 128]))
>>> round(e.trustworthiness(), 3)                                                 # doctest: +SKIP
0.995
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from convscope.data.base import resize_images
from convscope.display import MosaicDisplay, draw
from convscope.errors import UsageError, unknown_name
from convscope.evaluate import SPLITS
from convscope.inspect.features import REDUCTIONS, extract, model_images, reduction_option
from convscope.inspect.layers import choose_layer
from convscope.inspect.sources import image_set, split_option
from convscope.loading import as_classifier
from convscope.options import (
    batch_option,
    count_or_all,
    int_in,
    layer_option,
    nonneg_int,
    option,
    positive_float,
    positive_int,
    seed_option,
)
from convscope.progress import progress_bar

EMBED_METHODS = ("tsne", "pca")
#: the thumbnail map is at most this many images a side (1,600 tiles)
MAX_GRID = 40
#: openTSNE's early exaggeration phase, before ``iterations`` more
EARLY_ITERATIONS = 250
#: trustworthiness is measured with this many neighbours, for at most TRUST_MAX points
TRUST_K = 5
TRUST_MAX = 5000


_threads = int_in(-1, 4096, name="jobs")


def jobs(text: str) -> int:
    """t-SNE threads (a value type): -1 for every core, or a count."""
    value = _threads(text)
    if value == 0:
        raise argparse.ArgumentTypeError("0 threads cannot run; give -1 (every core) or a count")
    return value


@dataclass(frozen=True)
class EmbedConfig:
    """The options of one ``embed`` job."""

    layer: str | None = layer_option("the feature layer (default: the one feeding the "
                                     "classifier, the lecture's FC7)")
    method: str = option("tsne", "openTSNE's t-SNE or scikit-learn's PCA", choices=EMBED_METHODS)
    n: int | None = option(2000, "images embedded, a seeded sample of the split (all: every "
                                 "one)", type=count_or_all, metavar="N|all")
    split: str = split_option()
    reduction: str = reduction_option()
    perplexity: float = option(30.0, "t-SNE: the effective number of neighbours each point "
                                     "keeps (lowered for tiny sets)", type=positive_float)
    iterations: int = option(500, "t-SNE: optimisation steps after the 250 of early "
                                  "exaggeration", flag="--steps", old=("--iterations",),
                             type=positive_int)
    pca_dims: int = option(50, "t-SNE: reduce the features to this many dimensions with PCA "
                               "first, 0: never", type=nonneg_int)
    grid: int | None = option(None, "thumbnail map side in images (default: as many as fill "
                                    "it, at most 40)", type=positive_int)
    seed: int = seed_option("sample and t-SNE seed")
    n_jobs: int = option(1, "t-SNE threads, -1: every core", flag="--jobs", type=jobs)
    batch_size: int = batch_option()


@dataclass
class Embedding(MosaicDisplay):
    """2-D coordinates of images' features, with everything needed to draw them."""

    config: EmbedConfig      # resolved: layer, n, split, grid
    data: str
    classes: list[str] | None
    indices: torch.Tensor          # (N,) positions in the split
    labels: torch.Tensor | None    # (N,)
    images: torch.Tensor           # (N, C, H, W) uint8, for thumbnails
    features: torch.Tensor         # (N, D) the layer's features
    coords: np.ndarray             # (N, 2) float32

    def grid_cells(self, side: int | None = None) -> np.ndarray:
        """(G, G) image positions (-1: empty cell) of the thumbnail map: row 0 at the top,
        as in the scatter; see :func:`snap_to_grid`."""
        return snap_to_grid(self.coords, side or self.config.grid)

    def trustworthiness(self, k: int = 5) -> float:
        """scikit-learn's trustworthiness of the 2-D layout: 1 when the k nearest neighbours
        of every point in 2-D are also near it in feature space."""
        from sklearn.manifold import trustworthiness  # heavy optional dependency

        return float(trustworthiness(self.features.numpy(), self.coords, n_neighbors=k))

    def trust(self, k: int = TRUST_K) -> float | None:
        """:meth:`trustworthiness`, or None where it is not measured: it needs more than 2k
        points, and its (N, N) distances cost too much above :data:`TRUST_MAX` points."""
        n = len(self.coords)
        return self.trustworthiness(k) if 2 * k < n <= TRUST_MAX else None

    def render(self) -> np.ndarray:
        """Scatter coloured by class beside the thumbnail map, (H, W, 3) uint8."""
        return draw("embedding_image", self)

    def to_dict(self) -> dict:
        out = {"config": asdict(self.config), "data": self.data,
               "indices": self.indices.tolist(),
               "coords": np.round(self.coords.astype(np.float64), 5).tolist(),
               "trustworthiness": self.trust(), "trustworthiness_k": TRUST_K}
        if self.labels is not None:
            out["labels"] = [self.classes[int(i)] for i in self.labels]
        return out


# --------------------------------------------------------------------------- 2-D
def to_2d(features: np.ndarray, config: EmbedConfig, progress: bool = False) -> np.ndarray:
    """(N, D) features -> (N, 2) coordinates by openTSNE's t-SNE or scikit-learn's PCA."""
    from sklearn.decomposition import PCA  # heavy optional dependency

    if config.method == "pca":
        return PCA(n_components=2, random_state=config.seed).fit_transform(features).astype(
            np.float32)
    from openTSNE import TSNE  # heavy optional dependency

    if 0 < config.pca_dims < min(features.shape):  # fewer dims first: faster neighbours
        features = PCA(n_components=config.pca_dims,
                       random_state=config.seed).fit_transform(features)
    every = 10
    total = EARLY_ITERATIONS + config.iterations
    with progress_bar(total=total, desc="t-SNE", unit="step", enable=progress) as bar:
        def tick(_iteration, _error, _embedding) -> bool:
            bar.update(every)
            return False  # keep going

        tsne = TSNE(n_components=2, perplexity=min(config.perplexity, (len(features) - 1) / 3),
                    n_iter=config.iterations, early_exaggeration_iter=EARLY_ITERATIONS,
                    random_state=config.seed, n_jobs=config.n_jobs, callbacks=tick,
                    callbacks_every_iters=every, verbose=False)
        coords = tsne.fit(np.ascontiguousarray(features, dtype=np.float64))
    return np.asarray(coords, dtype=np.float32)


def snap_to_grid(coords: np.ndarray, side: int) -> np.ndarray:
    """Snap points onto a side x side grid: every cell gets one image, as close to it as an
    optimal one-to-one assignment allows (scipy's linear_sum_assignment of squared
    distances, the layout stretched to fill the square).  Returns (side, side) point
    positions, row 0 at the top (largest y), -1 where there are fewer points than cells."""
    from scipy.optimize import linear_sum_assignment  # heavy optional dependency

    lo, hi = coords.min(0), coords.max(0)
    unit = (coords - lo) / np.where(hi > lo, hi - lo, 1)                   # (N, 2) in [0, 1]
    centres = (np.stack(np.meshgrid(np.arange(side), np.arange(side), indexing="ij"), -1)
               .reshape(-1, 2) + 0.5) / side                              # (G*G, 2) (row, col)
    cell_xy = np.stack([centres[:, 1], 1 - centres[:, 0]], 1)              # (G*G, 2) (x, y)
    cost = ((cell_xy[:, None, :] - unit[None, :, :]) ** 2).sum(-1)        # (G*G, N)
    cells, points = linear_sum_assignment(cost)
    grid = np.full(side * side, -1, dtype=np.int64)
    grid[cells] = points
    return grid.reshape(side, side)


def default_grid(n: int) -> int:
    return max(1, min(MAX_GRID, math.isqrt(n)))


# --------------------------------------------------------------------------- the job
def embed(model, data=None, config: EmbedConfig | None = None, *, labels=None,
          progress: bool = False, data_root=None, image_size: int | None = None,
          weights: str | None = None, **options) -> Embedding:
    """The 2-D embedding of ``n`` images' features at ``layer``.

    ``model``: a Classifier, model file or torchvision name; ``data``: a dataset name (None:
    the model's own), an ImageDataset, or images (with optional ``labels``).
    """
    clf = as_classifier(model, weights)
    config = replace(config or EmbedConfig(), **options)
    _check(config)
    images = image_set(clf, data, config.split, n=config.n, seed=config.seed, labels=labels,
                       data_root=data_root, image_size=image_size, progress=progress)
    if len(images.images) < (4 if config.method == "tsne" else 2):
        raise UsageError(f"{config.method} needs more images than the "
                         f"{len(images.images)} of {images.name}.")
    layer = choose_layer(clf, config.layer, "embed")
    feats = extract(clf, model_images(clf, images.images), [layer], reduction=config.reduction,
                    batch_size=config.batch_size, progress=progress)[layer].flatten(1)
    coords = to_2d(feats.double().numpy(), config, progress)
    config = replace(config, layer=layer, n=len(feats),
                     grid=config.grid or default_grid(len(feats)))
    return Embedding(config, images.name, images.classes, images.indices, images.labels,
                     images.images, feats, coords)


def _check(config: EmbedConfig) -> None:
    if config.method not in EMBED_METHODS:
        raise unknown_name("embedding method", config.method, list(EMBED_METHODS))
    if config.split not in SPLITS:
        raise unknown_name("split", config.split, list(SPLITS))
    if config.reduction not in REDUCTIONS[1:]:
        raise unknown_name("reduction", config.reduction, list(REDUCTIONS[1:]))
    if config.perplexity <= 0 or config.iterations < 1 or config.pca_dims < 0:
        raise UsageError("`perplexity` must be above 0, `iterations` at least 1 and "
                         "`pca_dims` at least 0.")
    if (config.grid is not None and config.grid < 1) or config.batch_size < 1:
        raise UsageError("`grid` and `batch_size` must be at least 1.")


# --------------------------------------------------------------------------- TensorBoard
def sprite_size(n: int, image_side: int) -> int:
    """Thumbnail side for TensorBoard's sprite: at most 32 px, and the whole sprite (a
    square of ceil(sqrt(n)) thumbnails a side) within its 8192 px limit."""
    return max(1, min(image_side, 32, 8192 // math.ceil(math.sqrt(n))))


def write_projector(e: Embedding, directory: str | os.PathLike) -> Path:
    """TensorBoard embedding-projector files in ``directory``: the features and the 2-D
    coordinates (two embeddings), each with labels and a sprite of thumbnails; open with
    ``tensorboard --logdir DIR`` (Projector tab).  Written by torch's SummaryWriter."""
    from torch.utils.tensorboard import SummaryWriter  # heavy optional dependency


    side = sprite_size(len(e.images), min(e.images.shape[-2:]))
    thumbs = resize_images(e.images, (side, side))
    if thumbs.shape[1] == 1:
        thumbs = thumbs.expand(-1, 3, -1, -1)
    sprite = thumbs.float() / 255                                   # (N, 3, s, s) in [0, 1]
    names = ([e.classes[int(i)] for i in e.labels] if e.labels is not None
             else ["?"] * len(e.indices))
    metadata = [[name, str(int(i))] for name, i in zip(names, e.indices)]
    directory = Path(directory)
    with SummaryWriter(log_dir=str(directory)) as w:
        w.add_embedding(e.features, metadata=metadata, label_img=sprite,
                        tag=e.config.layer.replace("/", "_"), metadata_header=["label", "index"])
        w.add_embedding(torch.from_numpy(e.coords), metadata=metadata, label_img=sprite,
                        tag=e.config.method, metadata_header=["label", "index"])
    return directory
