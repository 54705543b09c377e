"""Which images a "look inside" view reads: a dataset by name (the model's own by default),
an :class:`ImageDataset`, or a batch of images."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from convscope.classifier import Classifier
from convscope.data import ImageDataset
from convscope.errors import UsageError
from convscope.evaluate import SPLITS, dataset_for_model, resolve_split
from convscope.options import option


@dataclass
class ImageSet:
    """Images (at the dataset's own size), their labels, and where they came from."""

    name: str                     # e.g. "mnist5k (test images)"
    images: torch.Tensor          # (N, C, H, W) uint8
    labels: torch.Tensor | None   # (N,) class indices, None for unlabelled images
    classes: list[str] | None
    indices: torch.Tensor         # (N,) positions in the split they were picked from


def open_dataset(clf: Classifier, data, *, data_root=None, image_size: int | None = None,
                 progress: bool = True) -> tuple[ImageDataset, bool]:
    """``(dataset, own)`` for a name (None: the model's own data) or an ImageDataset."""
    if isinstance(data, ImageDataset):
        return data, data.name == clf.meta.dataset
    if data is not None and not isinstance(data, str):
        raise UsageError(f"expected a dataset name or an ImageDataset, not a "
                         f"{type(data).__name__}.")
    return dataset_for_model(clf, data, data_root=data_root, image_size=image_size,
                             fit_folder=False, progress=progress)


def sample(total: int, n: int | None, seed: int) -> torch.Tensor:
    """Sorted positions of a seeded sample of ``n`` of ``total`` items (all when n is None
    or at least total)."""
    if n is None or n >= total:
        return torch.arange(total)
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(total, generator=g)[:n].sort().values


def image_set(clf: Classifier, data=None, split: str = "auto", *, n: int | None = None,
              seed: int = 0, labels=None, data_root=None, image_size: int | None = None,
              progress: bool = True) -> ImageSet:
    """The images a view looks at.

    ``data`` is a dataset name (None: the model's own), an ImageDataset (``split``: auto =
    the test images of the model's own data, every image of any other), or images that
    :meth:`Classifier.as_batch` reads, with optional ``labels``.  ``n`` takes a seeded
    sample.
    """
    if data is None or isinstance(data, (str, ImageDataset)):
        ds, own = open_dataset(clf, data, data_root=data_root, image_size=image_size,
                               progress=progress)
        chosen = resolve_split(split, own)
        ev = ds.as_evaluation_split(chosen)
        images, labels, classes = ev.test_images, ev.test_labels, ds.classes
        name = f"{ds.name} ({chosen} images)"
    else:
        images = data if isinstance(data, torch.Tensor) and data.ndim == 4 and \
            data.dtype == torch.uint8 else clf.as_batch(data)
        labels = None if labels is None else torch.as_tensor(labels).long()
        classes, name = (clf.classes if labels is not None else None), "images"
        if labels is not None and len(labels) != len(images):
            raise UsageError(f"{len(images)} images but {len(labels)} labels.")
    if len(images) == 0:
        raise UsageError(f"{name} has no images.")
    if n is not None and n < 1:
        raise UsageError(f"the number of images must be at least 1, got {n}.")
    pick = sample(len(images), n, seed)
    if len(pick) < len(images):
        images = images[pick]
        labels = None if labels is None else labels[pick]
    return ImageSet(name, images, labels, classes, pick)


def split_option():
    """The ``split`` field of a view over a dataset's images."""
    return option("auto", "auto: the test images of the model's own data, every image of any "
                          "other", choices=SPLITS)
