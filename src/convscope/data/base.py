"""The in-memory image dataset every convscope job works on."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from convscope.errors import ConvscopeError

#: the one class of a folder of images without class folders: the views of a trained model
#: look at its images; there is nothing to learn or score, so no classifier trains on it
UNLABELLED = "unlabelled"


def is_unlabelled(classes) -> bool:
    return list(classes) == [UNLABELLED]


@dataclass
class ImageDataset:
    """Train and test splits held as uint8 tensors, decoded once.

    Images are ``(N, C, H, W)`` uint8; labels are ``(N,)`` int64 indices into
    ``classes``.  Keeping the decoded bytes in memory means epochs after the
    first never touch an image file again, and augmentation runs on tensors.
    """

    name: str
    classes: list[str]
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    #: natural photos get flip-and-crop augmentation by default; digits get none
    natural: bool = True
    #: human-readable remarks from loading (skipped files, where the split came from)
    notes: list[str] = field(default_factory=list)
    #: for datasets read from files: the file of each train / test image, relative to the root
    train_files: list[str] | None = None
    test_files: list[str] | None = None
    #: files that could not be read, with the reason
    skipped: dict[str, str] = field(default_factory=dict)
    _stats: tuple[list[float], list[float]] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            images, labels = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            if images.dtype != torch.uint8 or images.ndim != 4:
                raise ValueError(f"{split} images must be uint8 (N, C, H, W), got "
                                 f"{images.dtype} {tuple(images.shape)}")
            if len(images) != len(labels):
                raise ValueError(f"{split}: {len(images)} images but {len(labels)} labels")

    @property
    def channels(self) -> int:
        return int(self.train_images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.train_images.shape[2]), int(self.train_images.shape[3])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def normalization(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of the training images (of the test images when there
        are none: an unlabelled folder), in [0, 1] units."""
        if self._stats is None:
            x = self.train_images if len(self.train_images) else self.test_images
            if len(x) > 10_000:  # a fixed, evenly spaced subset is plenty for two moments
                x = x[torch.linspace(0, len(x) - 1, 10_000).long()]
            x = x.to(torch.float64) / 255.0
            mean = x.mean(dim=(0, 2, 3))
            std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
            self._stats = ([round(float(m), 6) for m in mean], [round(float(s), 6) for s in std])
        return self._stats

    def as_evaluation_split(self, split: str) -> ImageDataset:
        """The dataset with ``split`` ("test", "train" or "all") as its test images."""
        if split == "test":
            return self
        if split == "train":
            x, y, files = self.train_images, self.train_labels, self.train_files
        else:
            x = torch.cat([self.train_images, self.test_images])
            y = torch.cat([self.train_labels, self.test_labels])
            files = (self.train_files + self.test_files) if self.train_files is not None else None
        return replace(self, name=f"{self.name} ({split} images)", test_images=x, test_labels=y,
                       test_files=files)

    def describe(self) -> dict:
        """What a user needs to know about the dataset, as plain data."""
        mean, std = self.normalization()
        h, w = self.image_size
        return {
            "name": self.name,
            "train": len(self.train_labels),
            "test": len(self.test_labels),
            "classes": list(self.classes),
            "image_size": [h, w],
            "channels": self.channels,
            "mean": mean,
            "std": std,
            "augmentation": "flip+crop" if self.natural else "none",
            "notes": list(self.notes),
            "skipped": dict(self.skipped),
        }

    def format(self) -> str:
        d = self.describe()
        h, w = d["image_size"]
        counts = np.bincount(self.train_labels.numpy(), minlength=self.num_classes)
        lines = [
            f"dataset     {d['name']}",
            f"splits      train {d['train']:,} / test {d['test']:,}",
            f"images      {h}x{w}x{d['channels']} (HxWxC), uint8",
            f"classes     {self.num_classes}: {', '.join(self.classes[:20])}"
            + (" ..." if self.num_classes > 20 else ""),
            f"per class   {int(counts.min())}-{int(counts.max())} training images",
            f"normalize   mean {d['mean']}  std {d['std']}",
            f"augment     {d['augmentation']} (default for training)",
        ]
        lines += [f"note        {n}" for n in d["notes"]]
        return "\n".join(lines)


def resize_images(images: torch.Tensor, size: tuple[int, int], chunk: int = 4096) -> torch.Tensor:
    """Resize (N, C, H, W) uint8 images with antialiased bilinear interpolation."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    out = torch.empty((len(images), images.shape[1], *size), dtype=torch.uint8)
    for i in range(0, len(images), chunk):
        x = images[i : i + chunk].float()
        x = torch.nn.functional.interpolate(x, size=size, mode="bilinear", antialias=True,
                                            align_corners=False)
        out[i : i + chunk] = x.round().clamp(0, 255).to(torch.uint8)
    return out


def resized(ds: ImageDataset, size: int) -> ImageDataset:
    """The dataset with every image resized to size x size."""
    if ds.image_size == (size, size):
        return ds
    return replace(ds, train_images=resize_images(ds.train_images, (size, size)),
                   test_images=resize_images(ds.test_images, (size, size)), _stats=None,
                   notes=[*ds.notes, f"resized from {ds.image_size[0]}x{ds.image_size[1]} "
                          f"to {size}x{size}"])


def listing(skipped: dict[str, str], first: int = 20) -> str:
    """The first entries of a skip list as "file (reason); ...", and how many more."""
    listed = "; ".join(f"{f} ({r.rstrip('.')})" for f, r in list(skipped.items())[:first])
    more = len(skipped) - first
    return listed + (f"; and {more} more" if more > 0 else "")


class DataWarning(UserWarning):
    """Something about a dataset a user should know: a dropped class, a rebuilt cache."""


def split_sizes(n: int, test_size: int | float) -> tuple[int, int]:
    """(train, test) image counts of a split, as scikit-learn's ``train_test_split`` rounds."""
    if isinstance(test_size, float) and 0 < test_size < 1:
        return math.floor((1 - test_size) * n), math.ceil(test_size * n)
    return n - int(test_size), int(test_size)


def check_split(labels: np.ndarray, test_size: int | float, classes: list[str] | None = None,
                parameter: str = "holdout", folder: bool = False) -> None:
    """Refuse, in one sentence, a split that can't give every class an image on each side.

    A stratified split needs at least 2 images of every class and a test set of at
    least one image per class, leaving at least one per class for training.
    """
    counts = np.bincount(labels)
    present = np.flatnonzero(counts)
    k, n = len(present), len(labels)
    name = (lambda c: repr(classes[c])) if classes else (lambda c: f"{c}")
    if k and counts[present].min() < 2:
        few = [name(c) for c in present if counts[c] < 2]
        raise ConvscopeError(
            f"class {', '.join(few[:5])}{' ...' if len(few) > 5 else ''} has only 1 image, but a "
            f"split needs at least 2 images per class (one for training, one for testing); add "
            + ("images, give a test/ subfolder, or train on everything with `holdout=0`."
               if folder else "images or give the test images separately."))
    n_train, n_test = split_sizes(n, test_size)
    if n_test < k or n_train < k:
        if n < 2 * k:
            hint = f"the {n} images are too few for {k} classes"
        else:
            hint = f"give a count from {k} to {n - k}"
            lo, hi = math.ceil(k / n * 1000) / 1000, math.floor((1 - k / n) * 1000) / 1000
            if lo <= hi and all(min(split_sizes(n, f)) >= k for f in (lo, hi) if 0 < f < 1):
                hint += f", or a fraction from {lo:g} to {hi:g}"
        raise ConvscopeError(
            f"`{parameter}={test_size}` holds out {n_test} of {n} images, leaving {n_train} to "
            f"train on, but a stratified split needs at least one image per class on each side "
            f"({k} classes): {hint}.")


def stratified_split(labels: np.ndarray, test_size: int | float, seed: int,
                     classes: list[str] | None = None, parameter: str = "holdout",
                     folder: bool = False):
    """Indices (train, test) of a seeded split that keeps class proportions.

    Refused (:func:`check_split`) when a class has fewer than 2 images or either side
    would have fewer images than there are classes; a class that ends up with no
    training image is refused too.
    """
    from sklearn.model_selection import train_test_split  # heavy optional dependency

    check_split(labels, test_size, classes, parameter, folder)
    idx = np.arange(len(labels))
    train_idx, test_idx = train_test_split(
        idx, test_size=test_size, random_state=seed, stratify=labels
    )
    # scikit-learn rounds each class's share, so a tiny class can still end up on one side
    unseen = sorted(set(np.unique(labels)) - set(np.unique(labels[train_idx])))
    if unseen:
        names = ", ".join(repr(classes[c]) if classes else str(c) for c in unseen)
        raise ConvscopeError(f"`{parameter}={test_size}` leaves no training image of class "
                             f"{names}; hold out fewer images or add images of that class.")
    return np.sort(train_idx), np.sort(test_idx)


def from_arrays(
    name: str,
    images: np.ndarray,
    labels: np.ndarray,
    classes: list[str],
    *,
    test_size: int | float,
    natural: bool,
    seed: int = 0,
    notes: list[str] | None = None,
) -> ImageDataset:
    """An ImageDataset from (N, C, H, W) uint8 images, split with a fixed seed."""
    tr, te = stratified_split(labels, test_size, seed, classes)
    x = torch.from_numpy(np.ascontiguousarray(images))
    y = torch.from_numpy(labels.astype(np.int64))
    return ImageDataset(name, classes, x[tr], y[tr], x[te], y[te], natural=natural,
                        notes=notes or [])
