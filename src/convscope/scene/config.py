"""The options of the scene jobs, each declared once (see :mod:`convscope.options`)."""

from __future__ import annotations

from dataclasses import dataclass

from convscope.options import fraction, nonneg_float, option, positive_int
from convscope.scene.models import MAX_SIDE


@dataclass(frozen=True)
class DetectConfig:
    """The options of ``faces`` and ``detect``."""

    min_score: float | None = option(
        None, "keep detections scored at least this (default: the detector's own: mtcnn 0.9, "
              "blazeface 0.6, ssd-mobilenet-v2 0.5 and a detector you trained 0.5; "
              "haar-cascade's scores are stage margins, 0 keeps all)", type=nonneg_float,
        metavar="S")
    max_side: int = option(MAX_SIDE, "photos with a longer side than this are looked at "
                                     "downscaled (boxes stay in the photo's pixels)",
                           type=positive_int, metavar="PX")


@dataclass(frozen=True)
class PoseConfig:
    """The options of ``pose``."""

    min_score: float = option(0.3, "a keypoint scored at least this is drawn and called "
                                   "visible", type=fraction, metavar="S")


@dataclass(frozen=True)
class SegmentConfig:
    """The options of ``segment``."""

    threshold: float = option(0.5, "a pixel is in the person mask at this probability (a "
                                   "segmenter you trained gives each pixel its likeliest "
                                   "class)", type=fraction, metavar="P")
