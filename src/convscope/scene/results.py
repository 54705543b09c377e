"""What the scene models find in one photo, as dataclasses of arrays.

Coordinates are pixels of the photo as it was given (x to the right, y down), whatever
size the network was fed.  Each result draws itself (``render()``, through ``render/``)
and says itself as JSON (``to_dict()``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from convscope.display import MosaicDisplay, draw


def _rounded(a: np.ndarray, digits: int = 1) -> list:
    return np.round(np.asarray(a, dtype=np.float64), digits).tolist()


@dataclass
class Detections(MosaicDisplay):
    """The boxes one detector found in one photo, best first.

    ``boxes`` (N, 4) float32 x0, y0, x1, y1; ``scores`` (N,); ``labels`` N names;
    ``keypoints`` (N, K, 2) float32 x, y (K = 0 for a detector without landmarks), named by
    ``keypoint_names``.  ``score_kind`` says what a score is ("probability", or a cascade's
    "stage margin")."""

    task: str  # "faces" or "detect"
    model: str
    image: np.ndarray  # (H, W, 3) uint8 RGB: the photo
    boxes: np.ndarray
    scores: np.ndarray
    labels: tuple[str, ...]
    keypoints: np.ndarray
    keypoint_names: tuple[str, ...] = ()
    min_score: float = 0.0
    score_kind: str = "probability"
    source: str = ""

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of the photo."""
        return self.image.shape[0], self.image.shape[1]

    def counts(self) -> dict[str, int]:
        """How many of each label, most first."""
        return dict(Counter(self.labels).most_common())

    def to_dict(self) -> dict:
        h, w = self.size
        found = []
        for i in range(len(self)):
            item = {"label": self.labels[i], "score": round(float(self.scores[i]), 4),
                    "box": _rounded(self.boxes[i])}
            if self.keypoint_names:
                item["keypoints"] = {n: _rounded(p) for n, p in
                                     zip(self.keypoint_names, self.keypoints[i])}
            found.append(item)
        return {"image": self.source, "width": w, "height": h, "model": self.model,
                "task": self.task, "min_score": self.min_score, "score": self.score_kind,
                "count": len(self), "detections": found}

    def render(self) -> np.ndarray:
        """The photo with each box, its label and score, and its landmarks drawn."""
        return draw("detections_image", self)

    def save(self, path, config=None):
        return draw("save_image", self.render(), path, config)


@dataclass
class Poses(MosaicDisplay):
    """The keypoints of the people in one photo: ``keypoints`` (P, K, 2) float32 x, y and
    ``scores`` (P, K) (how sure the network is that each point is where it says); a point
    under ``min_score`` is left out of the drawing and reported as not visible."""

    model: str
    image: np.ndarray
    keypoints: np.ndarray
    scores: np.ndarray
    names: tuple[str, ...]
    skeleton: tuple[tuple[int, int], ...]
    min_score: float = 0.3
    source: str = ""

    def __len__(self) -> int:
        return len(self.keypoints)

    def point(self, name: str, person: int = 0) -> tuple[float, float, float]:
        """(x, y, score) of the keypoint called ``name`` ("nose", "left eye", ...)."""
        k = self.names.index(name)
        x, y = self.keypoints[person, k]
        return float(x), float(y), float(self.scores[person, k])

    def to_dict(self) -> dict:
        h, w = self.image.shape[:2]
        people = [{"keypoints": {n: {"x": round(float(p[0]), 1), "y": round(float(p[1]), 1),
                                     "score": round(float(s), 4),
                                     "visible": bool(s >= self.min_score)}
                                 for n, p, s in zip(self.names, pts, sc)},
                   "score": round(float(np.mean(sc)), 4)}
                  for pts, sc in zip(self.keypoints, self.scores)]
        return {"image": self.source, "width": w, "height": h, "model": self.model,
                "task": "pose", "min_score": self.min_score, "people": people}

    def render(self) -> np.ndarray:
        return draw("poses_image", self)

    def save(self, path, config=None):
        return draw("save_image", self.render(), path, config)


@dataclass
class PersonMask(MosaicDisplay):
    """Where the people are in one photo: ``probability`` (H, W) float32 in [0, 1] per
    pixel of the photo; ``mask`` is it at ``threshold``."""

    model: str
    image: np.ndarray
    probability: np.ndarray
    threshold: float = 0.5
    source: str = ""

    @property
    def mask(self) -> np.ndarray:
        return self.probability >= self.threshold

    @property
    def coverage(self) -> float:
        """The fraction of the photo's pixels in the mask."""
        return float(self.mask.mean())

    def mask_image(self) -> np.ndarray:
        """The mask as an (H, W) uint8 picture: 255 person, 0 background."""
        return (self.mask * 255).astype(np.uint8)

    def to_dict(self) -> dict:
        h, w = self.probability.shape
        return {"image": self.source, "width": w, "height": h, "model": self.model,
                "task": "segment", "threshold": self.threshold,
                "coverage": round(self.coverage, 4),
                "bbox": _mask_box(self.mask)}

    def render(self) -> np.ndarray:
        """The photo with the mask tinted over it and its outline drawn."""
        return draw("mask_image", self)

    def save(self, path, config=None):
        return draw("save_image", self.render(), path, config)

    def save_mask(self, path, config=None):
        return draw("save_image", self.mask_image(), path, config)


def _mask_box(mask: np.ndarray) -> list[int] | None:
    """x0, y0, x1, y1 (exclusive) around the mask, or None when it is empty."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return None
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


@dataclass(frozen=True)
class Concept:
    """One thing the alt text names: its words, how many, which model said so and how
    sure it was (the highest score among them)."""

    name: str
    count: int
    source: str
    score: float
    words: str

    def to_dict(self) -> dict:
        return {"name": self.name, "count": self.count, "source": self.source,
                "score": round(self.score, 4), "words": self.words}


@dataclass
class AltText(MosaicDisplay):
    """The automatic alt text of one photo (Facebook's "Image may contain: ..."), the
    concepts it was built from, and what each model found."""

    text: str
    concepts: list[Concept]
    faces: Detections | None = None
    objects: Detections | None = None
    top: list[tuple[str, float]] = field(default_factory=list)
    thresholds: dict[str, float] = field(default_factory=dict)
    source: str = ""

    def __str__(self) -> str:
        return self.text

    def render(self) -> np.ndarray:
        """The photo with every face and object box, the alt text above it."""
        image = self.faces.image if self.faces is not None else self.objects.image
        return draw("scene_image", image, faces=self.faces, objects=self.objects,
                    text=self.text)

    def to_dict(self) -> dict:
        return {"image": self.source, "text": self.text,
                "concepts": [c.to_dict() for c in self.concepts],
                "thresholds": self.thresholds,
                "imagenet_top": [{"label": lab, "probability": round(p, 4)}
                                 for lab, p in self.top]}


@dataclass
class ClassMask(MosaicDisplay):
    """The class of every pixel of one photo, from a segmenter trained on a user's masks:
    ``labels`` (H, W) uint8 indices into ``classes`` at the photo's size, and ``confidence``
    (H, W) float32, the winning class's probability."""

    model: str
    image: np.ndarray
    labels: np.ndarray
    confidence: np.ndarray
    classes: tuple[str, ...]
    source: str = ""

    def shares(self) -> dict[str, float]:
        """Each class present and the share of the photo's pixels it covers, most first."""
        counts = np.bincount(self.labels.ravel(), minlength=len(self.classes))
        total = max(int(counts.sum()), 1)
        order = np.argsort(-counts, kind="stable")
        return {self.classes[k]: float(counts[k] / total) for k in order if counts[k]}

    def mask_image(self) -> np.ndarray:
        """The class indices as an (H, W) uint8 picture (Pascal VOC's indexed PNG, palette
        added when saved with :meth:`save_mask`)."""
        return np.asarray(self.labels, dtype=np.uint8)

    def to_dict(self) -> dict:
        h, w = self.labels.shape
        return {"image": self.source, "width": w, "height": h, "model": self.model,
                "task": "segment", "classes": list(self.classes),
                "shares": {k: round(v, 4) for k, v in self.shares().items()},
                "boxes": {self.classes[k]: _mask_box(self.labels == k)
                          for k in np.unique(self.labels) if k < len(self.classes)}}

    def render(self) -> np.ndarray:
        """The photo with each class's pixels tinted in its colour and a legend above."""
        return draw("class_mask_image", self)

    def save(self, path, config=None):
        return draw("save_image", self.render(), path, config)

    def save_mask(self, path, config=None):
        """The mask as an indexed PNG (one palette colour per class, as Pascal VOC's), which
        ``masks:`` datasets read back."""
        return draw("save_image", draw("indexed_mask", self.mask_image(), len(self.classes)),
                    path, config)
