"""Nearest neighbours of test images among the training images, in feature space (the code
just before the classifier, the lecture's "FC7") and in pixel space, side by side.

The label agreement of each space (the share of a query's k neighbours with the query's
label) says in one number why features beat pixels.

>>> r = neighbors("runs/mnist3/model.safetensors", "mnist5k", k=5, queries=1000)  # doctest: +SKIP
>>> r.agreement                                                      # doctest: +SKIP
{'feature': 0.974, 'pixel': 0.897}
>>> r.feature.indices.shape                                          # doctest: +SKIP
torch.Size([1000, 5])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from convscope.data.base import is_unlabelled
from convscope.display import MosaicDisplay, draw
from convscope.errors import UsageError, unknown_name
from convscope.inspect.features import REDUCTIONS, extract, model_images, reduction_option
from convscope.inspect.layers import choose_layer
from convscope.inspect.sources import open_dataset, sample
from convscope.loading import as_classifier
from convscope.options import batch_option, layer_option, option, positive_int, seed_option

METRICS = ("l2", "cosine")


@dataclass(frozen=True)
class NeighborsConfig:
    """The options of one ``neighbors`` job."""

    layer: str | None = layer_option("the feature layer (default: the one feeding the "
                                     "classifier, the lecture's FC7)")
    k: int = option(5, "neighbours found for each query", flag="--top-k", old=("--k",),
                    type=positive_int)
    queries: int = option(100, "test images used as queries, a seeded sample (the agreement is "
                               "over all of them)", flag="--n", old=("--queries",),
                          type=positive_int)
    show: int = option(8, "queries drawn in the figure (the first ones)", type=positive_int)
    metric: str = option("l2", "distance", choices=METRICS)
    reduction: str = reduction_option()
    database: int | None = option(None, "search a seeded sample of N training images "
                                        "(default: all)", type=positive_int, metavar="N")
    seed: int = seed_option("which queries")
    batch_size: int = batch_option()


@dataclass
class Knn:
    """The k nearest database images of each query, nearest first."""

    indices: torch.Tensor    # (Q, k) positions in the training split
    distances: torch.Tensor  # (Q, k)
    labels: torch.Tensor     # (Q, k) their labels

    def agreement(self, query_labels: torch.Tensor) -> float:
        """Share of the neighbours with their query's label, over every query."""
        return float((self.labels == query_labels[:, None]).double().mean())


@dataclass
class Neighbours(MosaicDisplay):
    """Feature-space and pixel-space neighbours of the same queries."""

    config: NeighborsConfig   # resolved: layer, database size
    data: str
    classes: list[str]
    query_indices: torch.Tensor   # (Q,) positions in the test split
    query_labels: torch.Tensor    # (Q,)
    query_images: torch.Tensor    # (Q, C, H, W) uint8
    #: (N, C, H, W) uint8: the training split, or an unlabelled folder's own images
    database_images: torch.Tensor
    feature: Knn
    pixel: Knn

    @property
    def labelled(self) -> bool:
        """False for an unlabelled folder: its neighbours have no label to agree on."""
        return not is_unlabelled(self.classes)

    @property
    def agreement(self) -> dict[str, float | None]:
        if not self.labelled:
            return {"feature": None, "pixel": None}
        return {"feature": self.feature.agreement(self.query_labels),
                "pixel": self.pixel.agreement(self.query_labels)}

    def render(self) -> np.ndarray:
        """The figure: one row per shown query, feature-space neighbours beside pixel-space
        ones (green border: same label as the query, red: another), as (H, W, 3) uint8."""
        return draw("neighbors_image", self)

    def to_dict(self) -> dict:
        def space(knn: Knn, q: int) -> dict:
            return {"indices": knn.indices[q].tolist(),
                    "distances": [round(float(d), 6) for d in knn.distances[q]],
                    "labels": [self.classes[int(i)] for i in knn.labels[q]]}

        return {"config": asdict(self.config), "data": self.data,
                "agreement": self.agreement,
                "queries": [{"index": int(self.query_indices[q]),
                             "label": self.classes[int(self.query_labels[q])],
                             "feature": space(self.feature, q), "pixel": space(self.pixel, q)}
                            for q in range(len(self.query_indices))]}


# --------------------------------------------------------------------------- search
def _rows(x: torch.Tensor, metric: str) -> torch.Tensor:
    """Rows as float vectors (uint8 pixels scaled to [0, 1]); unit length for cosine."""
    x = x.flatten(1).float() / (255 if x.dtype == torch.uint8 else 1)
    return torch.nn.functional.normalize(x, dim=1) if metric == "cosine" else x


def knn(queries: torch.Tensor, database: torch.Tensor, k: int, metric: str = "l2",
        chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """``(distances, indices)``, each (Q, k), of the k nearest database rows of each query,
    nearest first; ties go to the lower index, so the answer is reproducible.

    Rows may be any shape (flattened) and uint8 (read as pixels in [0, 1]); the database
    is converted ``chunk`` rows at a time, so a large pixel database never exists as
    floats all at once.  ``l2`` is the Euclidean distance, ``cosine`` 1 - cos.
    """
    if metric not in METRICS:
        raise unknown_name("metric", metric, list(METRICS))
    q = _rows(queries, metric)                                           # (Q, D)
    best_d = torch.empty(len(q), 0)
    best_i = torch.empty(len(q), 0, dtype=torch.long)
    for start in range(0, len(database), chunk):
        x = _rows(database[start:start + chunk], metric)                 # (c, D)
        if metric == "cosine":
            d = (1 - q @ x.T).clamp_min(0)
        else:
            d = (q.square().sum(1, keepdim=True) + x.square().sum(1) - 2 * q @ x.T)
            d = d.clamp_min(0).sqrt()                                    # (Q, c)
        idx = torch.arange(start, start + len(x)).expand(len(q), -1)
        # candidates stay in index order, so a stable sort breaks ties by index
        d, idx = torch.cat([best_d, d], 1), torch.cat([best_i, idx], 1)
        order = d.argsort(dim=1, stable=True)[:, :k]
        best_d, best_i = d.gather(1, order), idx.gather(1, order)
    return best_d, best_i


def neighbors(model, data=None, config: NeighborsConfig | None = None, *, progress: bool = False,
              data_root=None, image_size: int | None = None, weights: str | None = None,
              **options) -> Neighbours:
    """Neighbours of seeded test images among the training images, in feature and pixel
    space.

    ``model``: a Classifier, model file or torchvision name; ``data``: a dataset name (None:
    the model's own) or an ImageDataset (queries from its test split, the database its
    training split).  Pixel space is the dataset's own images; feature space is ``layer``'s
    output for the images converted to the model's size and channels, both extracted in
    one pass.
    """
    clf = as_classifier(model, weights)
    config = replace(config or NeighborsConfig(), **options)
    _check(config)
    ds, _own = open_dataset(clf, data, data_root=data_root, image_size=image_size,
                            progress=progress)
    layer = choose_layer(clf, config.layer, "neighbors")
    qidx = _pick(len(ds.test_images), config.queries, config.seed, "queries",
                 f"test images of {ds.name}")
    # an unlabelled folder has no training images: the neighbours are among its own images
    own = len(ds.train_images) == 0
    pool, pool_labels = ((ds.test_images, ds.test_labels) if own
                         else (ds.train_images, ds.train_labels))
    didx = sample(len(pool), config.database, config.seed)
    db_images, db_labels = pool[didx], pool_labels[didx]
    searched = len(db_images) - own  # a query is never its own neighbour
    if config.k > searched:
        raise UsageError(f"`k={config.k}` is more than the {searched:,} "
                         f"{'other images' if own else 'training images'} searched in "
                         f"{ds.name}; pass `k={max(searched, 1)}` or less.")
    q_images, q_labels = ds.test_images[qidx], ds.test_labels[qidx]

    # ---- one pass: queries and database together
    both = model_images(clf, torch.cat([q_images, db_images]))
    feats = extract(clf, both, [layer], reduction=config.reduction,
                    batch_size=config.batch_size, progress=progress)[layer].flatten(1)

    # ---- the two searches
    k = config.k + own
    fd, fi = knn(feats[: len(qidx)], feats[len(qidx):], k, config.metric)
    pd, pi = knn(q_images, db_images, k, config.metric)
    if own:
        (fd, fi), (pd, pi) = (_others(d, i, didx, qidx, config.k) for d, i in ((fd, fi), (pd, pi)))
    config = replace(config, layer=layer, database=len(db_images), queries=len(qidx))
    return Neighbours(config, ds.name, list(ds.classes), qidx, q_labels, q_images,
                      pool, Knn(didx[fi], fd, db_labels[fi]),
                      Knn(didx[pi], pd, db_labels[pi]))


def _others(dist: torch.Tensor, index: torch.Tensor, didx: torch.Tensor, qidx: torch.Tensor,
            k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest of ``k + 1`` found, less each query itself (searched among the
    images the queries come from)."""
    is_self = didx[index] == qidx[:, None]
    order = torch.argsort(is_self.to(torch.int8), dim=1, stable=True)[:, :k]
    return dist.gather(1, order), index.gather(1, order)


def _pick(total: int, n: int, seed: int, option: str, what: str) -> torch.Tensor:
    if n > total:
        raise UsageError(f"`{option}={n}` is more than the {total:,} {what}; pass "
                         f"`{option}={total}` or less.")
    return sample(total, n, seed)


def _check(config: NeighborsConfig) -> None:
    if config.metric not in METRICS:
        raise unknown_name("metric", config.metric, list(METRICS))
    if config.reduction not in REDUCTIONS[1:]:
        raise unknown_name("reduction", config.reduction, list(REDUCTIONS[1:]))
    for key in ("k", "queries", "show", "batch_size"):
        if getattr(config, key) < 1:
            raise UsageError(f"`{key}` must be at least 1, got {getattr(config, key)}.")
    if config.database is not None and config.database < 1:
        raise UsageError(f"`database` must be at least 1, got {config.database}.")
