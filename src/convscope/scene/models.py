"""The scene models: a face detector, an object detector, a pose network and a person
mask, each a model object of its task in the one model layer
(:func:`convscope.loading.open_model` opens them by their catalogue names).

Every one takes photos as any image input convscope reads (a path, bytes, PIL, numpy or a
tensor; grayscale, RGBA and 16-bit are converted, above the pixel limit refused), feeds its
network at the network's own size and gives its findings in the photo's own pixels.
A photo whose longer side is above ``max_side`` is looked at downscaled (boxes are still
given in the photo's pixels).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from convscope.classifier import resolve_device
from convscope.errors import ImageError, UsageError
from convscope.images import max_pixels, to_pil
from convscope.modelfile import ModelDescription
from convscope.models.coco import COCO_CLASSES, KEYPOINTS, SKELETON
from convscope.models.pretrained import Pretrained, pretrained_entry
from convscope.registries import adds_to
from convscope.scene.results import Detections, PersonMask, Poses

#: photos larger than this (longer side, px) are looked at downscaled
MAX_SIDE = 1600


@dataclass
class Photo:
    """One photo as the scene models read it: (H, W, 3) uint8 RGB and its name."""

    array: np.ndarray
    name: str

    @property
    def size(self) -> tuple[int, int]:
        return self.array.shape[0], self.array.shape[1]


def read_photo(source, name: str | None = None) -> Photo:
    """Any image input as an RGB photo (one sentence from convscope.images when it cannot
    be read)."""
    if isinstance(source, Photo):
        return source
    if (isinstance(source, np.ndarray) and source.dtype == np.uint8 and source.ndim == 3
            and source.shape[2] == 3):  # already what the networks read: no copy through PIL
        h, w = source.shape[:2]
        if h * w > max_pixels():
            raise ImageError(f"the image is {w}x{h} = {w * h:,} pixels, above the limit of "
                             f"{max_pixels():,}; shrink it or raise CONVSCOPE_MAX_PIXELS.",
                             "too_large")
        return Photo(np.ascontiguousarray(source), name or "")
    img = to_pil(source).convert("RGB")
    if name is None:
        name = str(source) if isinstance(source, (str, os.PathLike)) else ""
    return Photo(np.asarray(img), name)


def as_photos(images) -> list[Photo]:
    """One image or a list of them as photos."""
    if isinstance(images, (list, tuple)):
        return [read_photo(i) for i in images]
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return [read_photo(i) for i in images]
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        return [read_photo(i) for i in images]
    return [read_photo(images)]


def shrunk(photo: Photo, max_side: int) -> tuple[np.ndarray, float]:
    """The photo with its longer side at most ``max_side``, and the factor back to the
    photo's pixels."""
    h, w = photo.size
    if max(h, w) <= max_side:
        return photo.array, 1.0
    s = max_side / max(h, w)
    small = Image.fromarray(photo.array).resize((max(1, round(w * s)), max(1, round(h * s))),
                                                Image.BILINEAR)
    return np.asarray(small), max(h, w) / max_side


def letterbox(array: np.ndarray, side: int) -> tuple[np.ndarray, float, int, int]:
    """The photo scaled to fit a ``side`` x ``side`` square, centred on black (as
    MediaPipe and MoveNet feed their networks), with the scale and the top-left offset
    that map network pixels back: ``photo = (net - (left, top)) / scale``."""
    import cv2  # heavy optional dependency (the networks fed this way need it installed)

    h, w = array.shape[:2]
    scale = side / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    out = np.zeros((side, side, 3), np.uint8)
    top, left = (side - nh) // 2, (side - nw) // 2
    # bilinear, as MediaPipe's and MoveNet's own image-to-tensor steps resize
    out[top:top + nh, left:left + nw] = cv2.resize(array, (nw, nh),
                                                   interpolation=cv2.INTER_LINEAR)
    return out, scale, top, left


class SceneModel:
    """A packaged scene network as a model object: ``task``, ``describe()`` and
    ``predict(images)`` (one result per photo)."""

    task = ""
    #: what a result's labels or keypoints are called
    label_names: tuple[str, ...] = ()
    #: the default of ``min_score``
    default_min_score = 0.5

    def __init__(self, entry: Pretrained, network, device: torch.device | str = "cpu"):
        self.entry = entry
        self.network = network
        self.device = resolve_device(device)

    @property
    def name(self) -> str:
        return self.entry.name

    def describe(self) -> ModelDescription:
        e = self.entry
        return ModelDescription(task=self.task, name=e.name, labels=tuple(self.label_names),
                                channels=3, image_size=tuple(e.input_size),
                                input_size=tuple(e.input_size), mean=tuple(e.mean),
                                std=tuple(e.std), provenance=e.provenance, licence=e.licence)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, task={self.task!r})"

    def _min(self, min_score: float | None) -> float:
        if min_score is None:
            return self.default_min_score
        if not 0 <= min_score <= 1:
            raise UsageError(f"`min_score` must be between 0 and 1, got {min_score}.")
        return float(min_score)


# --------------------------------------------------------------------------- detectors
class Detector(SceneModel):
    """Boxes with labels and scores (and landmarks where the network gives them)."""

    keypoint_names: tuple[str, ...] = ()
    score_kind = "probability"
    #: photos per network call where the network takes a batch (1: one at a time)
    batch = 1

    def _detect(self, arrays: list[np.ndarray], min_score: float) -> list[tuple]:
        """(boxes, scores, labels, keypoints) per array, in the arrays' pixels."""
        raise NotImplementedError

    def predict(self, images, min_score: float | None = None,
                max_side: int = MAX_SIDE) -> list[Detections]:
        """What the detector finds in each photo, best first, above ``min_score``."""
        photos = as_photos(images)
        threshold = self._min(min_score)
        arrays = [shrunk(p, max_side) for p in photos]
        found: list[tuple] = []
        for start in range(0, len(arrays), self.batch):
            found += self._detect_grouped([a for a, _ in arrays[start:start + self.batch]],
                                          threshold)
        return [self._result(p, f, factor, threshold)
                for p, f, (_, factor) in zip(photos, found, arrays)]

    def _detect_grouped(self, arrays: list[np.ndarray], min_score: float) -> list[tuple]:
        """``_detect`` on each group of photos of one size (one batch each)."""
        groups: dict[tuple, list[int]] = {}
        for i, a in enumerate(arrays):
            groups.setdefault(a.shape, []).append(i)
        out: list = [None] * len(arrays)
        for idx in groups.values():
            for i, f in zip(idx, self._detect([arrays[i] for i in idx], min_score)):
                out[i] = f
        return out

    def __call__(self, image, **options) -> Detections:
        return self.predict([image], **options)[0]

    def _result(self, photo: Photo, found: tuple, factor: float, min_score: float):
        boxes, scores, labels, points = found
        order = np.argsort(-np.asarray(scores, dtype=np.float32), kind="stable")
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)[order] * factor
        h, w = photo.size
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        k = len(self.keypoint_names)
        points = np.asarray(points, np.float32).reshape(len(order), k, 2)[order] * factor
        return Detections(self.task, self.name, photo.array, boxes,
                          np.asarray(scores, np.float32)[order],
                          tuple(labels[i] for i in order), points, self.keypoint_names,
                          min_score, self.score_kind, photo.name)


def _empty(k: int) -> tuple:
    return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), [], np.zeros((0, k, 2))


class MtcnnFaces(Detector):
    """MTCNN (facenet-pytorch): a pyramid of 12-px P-Net windows, refined by R-Net and
    O-Net, with five landmarks; photos of one size go through it as one batch."""

    task = "faces"
    label_names = ("face",)
    keypoint_names = ("right eye", "left eye", "nose", "right mouth corner",
                      "left mouth corner")
    default_min_score = 0.9
    batch = 16

    def __init__(self, entry, network, device="cpu"):
        super().__init__(entry, network, device)
        network.to(self.device)
        network.device = self.device

    def _detect(self, arrays, min_score):
        with torch.no_grad():
            boxes, probs, points = self.network.detect(np.stack(arrays), landmarks=True)
        out = []
        for b, p, q in zip(boxes, probs, points):
            if b is None:
                out.append(_empty(5))
                continue
            b, p, q = (np.asarray(x, np.float32) for x in (b, p, q))
            keep = p >= min_score
            out.append((b[keep], p[keep], ["face"] * int(keep.sum()), q[keep]))
        return out


#: BlazeFace full range: one 48x48 grid of anchors, one per cell (MediaPipe's graph)
_BLAZE_SIDE, _BLAZE_GRID = 192, 48


class BlazeFaces(Detector):
    """BlazeFace, full range (MediaPipe's TFLite file).  The anchors, the box decoding and
    the weighted non-maximum suppression follow MediaPipe's face-detection graph; they are
    written here because no maintained library decodes BlazeFace outside MediaPipe's own
    Python API, which does not import with current protobuf."""

    task = "faces"
    label_names = ("face",)
    keypoint_names = ("right eye", "left eye", "nose tip", "mouth", "right ear", "left ear")
    default_min_score = 0.6  # MediaPipe's own for the full-range model
    iou = 0.3

    def __init__(self, entry, network, device="cpu"):
        super().__init__(entry, network, device)
        ys, xs = np.mgrid[0:_BLAZE_GRID, 0:_BLAZE_GRID]
        self.anchors = (np.stack([xs, ys], -1).reshape(-1, 2).astype(np.float32) + 0.5) \
            / _BLAZE_GRID

    def _detect(self, arrays, min_score):
        return [self._one(a, min_score) for a in arrays]

    def _one(self, array, min_score):
        fed, scale, top, left = letterbox(array, _BLAZE_SIDE)
        x = (fed.astype(np.float32) / 127.5 - 1.0)[None]
        outs = self.network.run(x)
        raw, logits = sorted((o[0] for o in outs), key=lambda o: -o.shape[-1])
        scores = 1 / (1 + np.exp(-np.clip(logits[:, 0], -80, 80)))
        keep = np.nonzero(scores >= min_score)[0]
        if len(keep) == 0:
            return _empty(6)
        raw, scores = raw[keep] / _BLAZE_SIDE, scores[keep]
        centre = raw[:, :2] + self.anchors[keep]
        half = raw[:, 2:4] / 2
        boxes = np.concatenate([centre - half, centre + half], 1)
        points = raw[:, 4:16].reshape(-1, 6, 2) + self.anchors[keep][:, None, :]
        boxes, scores, points = _weighted_nms(boxes, scores, points, self.iou)
        offset = np.array([left, top], np.float32)
        boxes = (boxes * _BLAZE_SIDE - np.tile(offset, 2)) / scale
        points = (points * _BLAZE_SIDE - offset) / scale
        return boxes, scores, ["face"] * len(scores), points


def _weighted_nms(boxes, scores, points, iou):
    """MediaPipe's WEIGHTED suppression: each kept detection is the score-weighted mean of
    the boxes and landmarks that overlap it by more than ``iou``.  The suppression is
    OpenCV's ``NMSBoxes`` (torchvision's ``nms`` costs about 1 ms a photo here in torch's
    per-call overhead, a third of BlazeFace's own time); the weighting is plain numpy."""
    import cv2  # heavy optional dependency

    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1)
    keep = np.asarray(cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), 0.0, iou),
                      dtype=np.int64).reshape(-1)
    kept = boxes[keep]
    lo = np.maximum(kept[:, None, :2], boxes[None, :, :2])
    hi = np.minimum(kept[:, None, 2:], boxes[None, :, 2:])
    inter = np.clip(hi - lo, 0, None).prod(-1)
    area = (boxes[:, 2:] - boxes[:, :2]).clip(0, None).prod(-1)
    overlap = inter / np.maximum(area[keep][:, None] + area[None, :] - inter, 1e-12) > iou
    overlap[np.arange(len(keep)), keep] = True  # a box always overlaps itself
    w = overlap * scores[None, :]  # (kept, all)
    total = w.sum(1, keepdims=True)
    out_b = (w @ boxes) / total
    out_p = np.einsum("ka,apc->kpc", w, points) / total[:, :, None]
    return out_b.astype(np.float32), scores[keep], out_p.astype(np.float32)


class CascadeFaces(Detector):
    """OpenCV's Haar cascade (Viola-Jones): a sliding window over a scale pyramid of the
    equalised grey photo; a face is kept where five or more windows agree.  Its score is
    the last stage's margin (how far past the stage's threshold), not a probability."""

    task = "faces"
    label_names = ("face",)
    default_min_score = 0.0
    score_kind = "stage margin"

    def _detect(self, arrays, min_score):
        import cv2  # heavy optional dependency

        out = []
        for a in arrays:
            grey = cv2.equalizeHist(cv2.cvtColor(a, cv2.COLOR_RGB2GRAY))
            side = max(24, min(a.shape[:2]) // 40)
            rects, _, weights = self.network.detectMultiScale3(
                grey, scaleFactor=1.1, minNeighbors=5, minSize=(side, side),
                outputRejectLevels=True)
            if len(rects) == 0:
                out.append(_empty(0))
                continue
            r = np.asarray(rects, np.float32).reshape(-1, 4)
            s = np.asarray(weights, np.float32).reshape(-1)
            keep = s >= min_score
            boxes = np.concatenate([r[:, :2], r[:, :2] + r[:, 2:]], 1)[keep]
            out.append((boxes, s[keep], ["face"] * int(keep.sum()), np.zeros((len(boxes), 0, 2))))
        return out

    def _min(self, min_score):
        if min_score is not None and min_score < 0:
            raise UsageError(f"`min_score` must be at least 0, got {min_score}.")
        return self.default_min_score if min_score is None else float(min_score)


class SsdObjects(Detector):
    """SSD-MobileNetV2 on COCO, run by OpenCV's dnn module; the photo is resized to
    300x300 (the graph normalises it itself); photos of one size go through as one
    batch."""

    task = "detect"
    label_names = tuple(COCO_CLASSES.values())
    default_min_score = 0.5
    batch = 16

    def _detect(self, arrays, min_score):
        import cv2  # heavy optional dependency

        blob = cv2.dnn.blobFromImages(arrays, size=(300, 300), swapRB=False)
        self.network.setInput(blob)
        rows = self.network.forward().reshape(-1, 7)
        out = []
        for i, a in enumerate(arrays):
            h, w = a.shape[:2]
            r = rows[(rows[:, 0] == i) & (rows[:, 2] >= min_score)]
            r = r[np.isin(r[:, 1].astype(int), list(COCO_CLASSES))]
            boxes = r[:, 3:7] * np.array([w, h, w, h], np.float32)
            out.append((boxes, r[:, 2], [COCO_CLASSES[int(c)] for c in r[:, 1]],
                        np.zeros((len(r), 0, 2))))
        return out


# --------------------------------------------------------------------------- pose
class MoveNetPose(SceneModel):
    """MoveNet Lightning: one person's 17 COCO keypoints from a 192x192 letterboxed
    photo."""

    task = "pose"
    label_names = KEYPOINTS
    default_min_score = 0.3

    def predict(self, images, min_score: float | None = None) -> list[Poses]:
        threshold = self._min(min_score)
        out = []
        for photo in as_photos(images):
            side = self.entry.input_size[0]
            fed, scale, top, left = letterbox(photo.array, side)
            y_x_s = self.network.run(fed[None].astype(self.network.input_dtype))[0]
            y_x_s = y_x_s.reshape(-1, len(KEYPOINTS), 3)
            pts = (y_x_s[:, :, [1, 0]] * side - np.array([left, top], np.float32)) / scale
            out.append(Poses(self.name, photo.array, pts.astype(np.float32),
                             y_x_s[:, :, 2].astype(np.float32), KEYPOINTS, SKELETON,
                             threshold, photo.name))
        return out

    def __call__(self, image, **options) -> Poses:
        return self.predict([image], **options)[0]


# --------------------------------------------------------------------------- person mask
class Segmenter(SceneModel):
    """A model object of the task "segment": ``predict(images)`` gives one mask per photo
    (the packaged person mask, or a segmenter trained on a user's masks)."""

    task = "segment"


class SelfieMask(Segmenter):
    """MediaPipe's selfie segmentation: the probability that each pixel is a person, from
    a 256x256 letterboxed photo, brought back to the photo's size."""

    task = "segment"
    label_names = ("background", "person")
    default_min_score = 0.5

    #: photos per network call (its graph takes a batch)
    batch = 8

    def predict(self, images, threshold: float | None = None) -> list[PersonMask]:
        t = self._min(threshold)
        photos = as_photos(images)
        side = self.entry.input_size[0]
        out = []
        for start in range(0, len(photos), self.batch):
            chunk = photos[start:start + self.batch]
            fed = [letterbox(p.array, side) for p in chunk]
            x = np.stack([f[0] for f in fed]).astype(np.float32) / 255.0
            probs = self.network.run(x)[0][..., 0]
            for photo, (_, scale, top, left), prob in zip(chunk, fed, probs):
                out.append(PersonMask(self.name, photo.array,
                                      _back_to_photo(prob, photo.size, scale, top, left), t,
                                      photo.name))
        return out

    def __call__(self, image, **options) -> PersonMask:
        return self.predict([image], **options)[0]


def _back_to_photo(prob: np.ndarray, size: tuple[int, int], scale: float, top: int,
                   left: int) -> np.ndarray:
    """A letterboxed network map cut to the photo's part and resized to the photo."""
    import cv2  # heavy optional dependency

    h, w = size
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    inner = np.ascontiguousarray(prob[top:top + nh, left:left + nw], dtype=np.float32)
    return np.clip(cv2.resize(inner, (w, h), interpolation=cv2.INTER_LINEAR), 0, 1)


# --------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class SceneKind:
    """How a catalogue network becomes a model object: its class."""

    name: str
    kind: Callable[..., SceneModel]


#: catalogue name -> its model object's class
SCENE: dict[str, SceneKind] = {}


def register_scene(name: str):
    """Decorate a SceneModel class as the model object of catalogue network ``name``."""
    return adds_to(SCENE, lambda cls: SceneKind(name, cls))


for _name, _cls in (("mtcnn", MtcnnFaces), ("blazeface", BlazeFaces),
                    ("haar-cascade", CascadeFaces), ("ssd-mobilenet-v2", SsdObjects),
                    ("movenet-lightning", MoveNetPose),
                    ("selfie-segmentation", SelfieMask)):
    register_scene(_name)(_cls)

#: the model object types, one per task (what loading.register_task names)
TASK_KINDS = {"faces": Detector, "detect": Detector, "pose": MoveNetPose,
              "segment": Segmenter}


def scene_names(task: str | None = None) -> list[str]:
    """The catalogue names of the scene networks (of one task)."""
    return [n for n in SCENE if task is None or pretrained_entry(n).task == task]


def open_scene(name: str, weights: str | None = None,
               device: torch.device | str = "cpu") -> SceneModel | None:
    """The scene network ``name`` as its model object, or None for a name that is not
    one; one sentence with the install command when its package is missing."""
    if name not in SCENE:
        return None
    entry = pretrained_entry(name)
    if weights:
        raise UsageError(f"{name} carries its own weights; leave out `weights`.")
    network = entry.open()
    if isinstance(network, torch.nn.Module):
        network.eval()
    return SCENE[name].kind(entry, network, device)


__all__ = ["SCENE", "BlazeFaces", "CascadeFaces", "Detector", "MoveNetPose", "MtcnnFaces",
           "Photo", "SceneModel", "Segmenter", "SelfieMask", "SsdObjects", "as_photos",
           "detect", "faces", "open_scene", "pose", "read_photo", "register_scene",
           "scene_names", "segment"]




# --------------------------------------------------------------------------- the Python API
_OPENED: dict[tuple[str, str], SceneModel] = {}
_OPENING = threading.Lock()


def cached_scene(name: str, task: str, device="cpu") -> SceneModel:
    """The scene network ``name`` of ``task``, opened once per process and device."""
    if name not in scene_names(task):
        raise UsageError(f"{name!r} is not a {task} network; choose one of: "
                         f"{', '.join(scene_names(task))}.")
    key = (name, str(resolve_device(device)))
    with _OPENING:
        if key not in _OPENED:
            _OPENED[key] = open_scene(name, device=device)
        return _OPENED[key]


def faces(images, detector: str = "mtcnn", *, min_score: float | None = None,
          max_side: int = MAX_SIDE, device="cpu") -> list[Detections]:
    """The faces in each photo (boxes, scores, landmarks):
    ``convscope.faces("group.jpg")[0].boxes``."""
    return cached_scene(detector, "faces", device).predict(images, min_score=min_score,
                                                      max_side=max_side)


def detect(images, detector: str = "ssd-mobilenet-v2", *, min_score: float | None = None,
           max_side: int = MAX_SIDE, device="cpu") -> list[Detections]:
    """The COCO objects in each photo: ``convscope.detect("kitchen.jpg")[0].counts()``."""
    return cached_scene(detector, "detect", device).predict(images, min_score=min_score,
                                                       max_side=max_side)


def pose(images, model: str = "movenet-lightning", *, min_score: float | None = None,
         device="cpu") -> list[Poses]:
    """The 17 COCO keypoints of the person in each photo:
    ``convscope.pose("runner.jpg")[0].point("nose")``."""
    return cached_scene(model, "pose", device).predict(images, min_score=min_score)


def segment(images, model: str = "selfie-segmentation", *, threshold: float | None = None,
            device="cpu") -> list[PersonMask]:
    """The person mask of each photo: ``convscope.segment("me.jpg")[0].mask``."""
    return cached_scene(model, "segment", device).predict(images, threshold=threshold)
