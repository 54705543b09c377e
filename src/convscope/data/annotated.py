"""The in-memory dataset of boxes and masks: what detectors and segmenters learn from.

Images keep their own sizes, so a split holds a list of ``(C, H, W)`` uint8 tensors rather
than one batch.  Per image, a detection dataset holds boxes ``(N, 4)`` float32
``x0, y0, x1, y1`` in pixels of that image (x1, y1 exclusive: a box covering pixel columns
2..5 is ``x0 = 2, x1 = 6``) and labels ``(N,)`` int64, 0-based indices into ``classes``.
torchvision's detectors (Faster R-CNN, RetinaNet, FCOS, SSD) take 1-based labels with 0 as
the background: whoever trains one passes ``labels + 1`` and ``num_classes = len(classes) + 1``.

A segmentation dataset holds one ``(H, W)`` uint8 mask per image, each pixel a class index
(the background is a class of its own, usually index 0, as in Pascal VOC) or
:data:`IGNORE` (255: a pixel no loss or score counts, such as VOC's object outlines).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

from convscope.text import count

#: what an AnnotatedDataset teaches: boxes or masks
TASKS = ("detect", "segment")
#: the mask value of a pixel that neither training nor scoring counts (Pascal VOC's)
IGNORE = 255


@dataclass
class AnnotatedSplit:
    """One split: images at their own sizes, with their boxes and labels and/or masks."""

    images: list[torch.Tensor]
    #: the file of each image, relative to the dataset's root (generated sets: a made-up name)
    files: list[str]
    #: per image, (N, 4) float32 x0, y0, x1, y1 in pixels; None when the dataset has no boxes
    boxes: list[torch.Tensor] | None = None
    #: per image, (N,) int64 indices into the dataset's classes; None with boxes None
    labels: list[torch.Tensor] | None = None
    #: per image, (H, W) uint8 class indices with 255 ignored; None when it has no masks
    masks: list[torch.Tensor] | None = None

    def __post_init__(self) -> None:
        n = len(self.images)
        if len(self.files) != n:
            raise ValueError(f"{n} images but {len(self.files)} file names")
        if (self.boxes is None) != (self.labels is None):
            raise ValueError("boxes and labels come together")
        for i, image in enumerate(self.images):
            if image.dtype != torch.uint8 or image.ndim != 3:
                raise ValueError(f"image {i} must be uint8 (C, H, W), got {image.dtype} "
                                 f"{tuple(image.shape)}")
        if self.boxes is not None:
            if not len(self.boxes) == len(self.labels) == n:
                raise ValueError(f"{n} images but {len(self.boxes)} box sets")
            for i, (b, y) in enumerate(zip(self.boxes, self.labels)):
                if b.dtype != torch.float32 or b.ndim != 2 or b.shape[1] != 4:
                    raise ValueError(f"boxes of image {i} must be float32 (N, 4), got "
                                     f"{b.dtype} {tuple(b.shape)}")
                if y.dtype != torch.int64 or y.shape != (len(b),):
                    raise ValueError(f"labels of image {i} must be int64 ({len(b)},)")
        if self.masks is not None:
            if len(self.masks) != n:
                raise ValueError(f"{n} images but {len(self.masks)} masks")
            for i, (image, m) in enumerate(zip(self.images, self.masks)):
                if m.dtype != torch.uint8 or tuple(m.shape) != tuple(image.shape[1:]):
                    raise ValueError(f"mask {i} must be uint8 {tuple(image.shape[1:])}, got "
                                     f"{m.dtype} {tuple(m.shape)}")

    def __len__(self) -> int:
        return len(self.images)

    def target(self, i: int) -> dict[str, torch.Tensor]:
        """Image ``i``'s annotations as torchvision's detection references take them:
        ``boxes``, ``labels`` (0-based here: add 1 for torchvision's detectors) and/or
        ``masks``."""
        out = {}
        if self.boxes is not None:
            out["boxes"], out["labels"] = self.boxes[i], self.labels[i]
        if self.masks is not None:
            out["masks"] = self.masks[i]
        return out

    def subset(self, rows) -> AnnotatedSplit:
        """The split's images at ``rows`` (indices), with their annotations."""
        rows = [int(r) for r in rows]

        def pick(xs):
            return None if xs is None else [xs[r] for r in rows]
        return AnnotatedSplit([self.images[r] for r in rows], [self.files[r] for r in rows],
                              pick(self.boxes), pick(self.labels), pick(self.masks))

    def __add__(self, other: AnnotatedSplit) -> AnnotatedSplit:
        def join(a, b):
            return None if a is None or b is None else list(a) + list(b)
        return AnnotatedSplit(self.images + other.images, self.files + other.files,
                              join(self.boxes, other.boxes), join(self.labels, other.labels),
                              join(self.masks, other.masks))

    def objects(self) -> int:
        return sum(len(b) for b in self.boxes) if self.boxes is not None else 0


@dataclass
class AnnotatedDataset:
    """Train and test splits of images with boxes (``task="detect"``) or masks
    (``task="segment"``), decoded once.

    ``skipped`` lists every bad annotation with its reason and what was done about it: a
    box clipped to the image, or an annotation or image left out.
    """

    name: str
    task: str
    classes: list[str]
    train: AnnotatedSplit
    test: AnnotatedSplit
    #: human-readable remarks from loading (the layout, where the split came from)
    notes: list[str] = field(default_factory=list)
    #: "file" or "file: what" -> reason, for every annotation or image not taken as it was
    skipped: dict[str, str] = field(default_factory=dict)
    #: natural photos get flip augmentation by default; digits get none
    natural: bool = True

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        for split in (self.train, self.test):
            if self.task == "detect" and split.boxes is None:
                raise ValueError("a detection dataset needs boxes")
            if self.task == "segment" and split.masks is None:
                raise ValueError("a segmentation dataset needs masks")
            for y in split.labels or []:
                if len(y) and (y.min() < 0 or y.max() >= len(self.classes)):
                    raise ValueError(f"labels must index the {len(self.classes)} classes")
        channels = {int(x.shape[0]) for s in (self.train, self.test) for x in s.images}
        if len(channels) > 1:
            raise ValueError(f"every image needs the same channels, got {sorted(channels)}")

    def as_evaluation_split(self, split: str) -> AnnotatedDataset:
        """The dataset with ``split`` ("test", "train" or "all") as its test images."""
        if split == "test":
            return self
        part = self.train if split == "train" else self.train + self.test
        return replace(self, name=f"{self.name} ({split} images)", test=part)

    @property
    def channels(self) -> int:
        images = self.train.images or self.test.images
        return int(images[0].shape[0]) if images else 3

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def normalization(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of the training images' pixels, in [0, 1] units."""
        images = self.train.images or self.test.images
        total = torch.zeros(self.channels, dtype=torch.float64)
        squares = torch.zeros(self.channels, dtype=torch.float64)
        n = 0
        for x in images:
            x = x.to(torch.float64).flatten(1) / 255.0
            total += x.sum(1)
            squares += (x * x).sum(1)
            n += x.shape[1]
        mean = total / max(n, 1)
        std = (squares / max(n, 1) - mean * mean).clamp_min(1e-6).sqrt().clamp_min(1e-3)
        return [round(float(m), 6) for m in mean], [round(float(s), 6) for s in std]

    def class_counts(self, split: str = "train") -> np.ndarray:
        """Objects per class (detect) or pixels per class (segment) in one split."""
        s = self.train if split == "train" else self.test
        if self.task == "detect":
            labels = torch.cat(s.labels) if s.labels else torch.zeros(0, dtype=torch.int64)
            return np.bincount(labels.numpy(), minlength=self.num_classes)
        counts = torch.zeros(self.num_classes, dtype=torch.int64)
        for m in s.masks:
            v = m.flatten().long()
            counts += torch.bincount(v[v < self.num_classes], minlength=self.num_classes)
        return counts.numpy()

    def describe(self) -> dict:
        """What a user needs to know about the dataset, as plain data."""
        sizes = [tuple(x.shape[1:]) for s in (self.train, self.test) for x in s.images]
        mean, std = self.normalization()
        return {
            "name": self.name,
            "task": self.task,
            "train": len(self.train),
            "test": len(self.test),
            "classes": list(self.classes),
            "objects": {"train": self.train.objects(), "test": self.test.objects()}
            if self.task == "detect" else None,
            "image_sizes": {"min": list(min(sizes)), "max": list(max(sizes))} if sizes else None,
            "channels": self.channels,
            "mean": mean,
            "std": std,
            "notes": list(self.notes),
            "skipped": dict(self.skipped),
        }

    def format(self) -> str:
        d = self.describe()
        what = "objects" if self.task == "detect" else "pixels"
        counts = self.class_counts()
        lines = [
            f"dataset     {d['name']}",
            f"task        {self.task} ({'boxes' if self.task == 'detect' else 'masks'})",
            f"splits      train {d['train']:,} / test {d['test']:,} images",
        ]
        if d["objects"]:
            lines.append(f"objects     train {d['objects']['train']:,} / test "
                         f"{d['objects']['test']:,}")
        if d["image_sizes"]:
            (h0, w0), (h1, w1) = d["image_sizes"]["min"], d["image_sizes"]["max"]
            lines.append(f"images      {h0}x{w0} to {h1}x{w1} (HxW), {d['channels']} "
                         "channel(s), uint8")
        lines += [
            f"classes     {self.num_classes}: {', '.join(self.classes[:20])}"
            + (" ..." if self.num_classes > 20 else ""),
            f"per class   {int(counts.min()) if len(counts) else 0}-"
            f"{int(counts.max()) if len(counts) else 0} training {what}",
            f"normalize   mean {d['mean']}  std {d['std']}",
        ]
        lines += [f"note        {n}" for n in d["notes"]]
        if self.skipped:
            listed = count(len(self.skipped), "annotation or image", "annotations or images")
            lines.append(f"skipped     {listed} (each with its reason in `skipped`)")
        return "\n".join(lines)


def seeded_split(n: int, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test) of a fixed-seed random split of ``n`` images; ``holdout`` is a
    fraction below 1 or a number of images (0: no test split).

    Not stratified: an image holds objects of several classes, so there is no one label to
    keep in proportion.
    """
    n_test = int(holdout) if holdout >= 1 else int(np.ceil(holdout * n))
    n_test = min(n_test, n)
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_test:]), np.sort(order[:n_test])
