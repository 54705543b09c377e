"""Detectors and segmenters trained by convscope on a user's labelled images: the model
objects of the tasks "detect" and "segment" that a model file opens.

A :class:`TrainedDetector` is a :class:`~convscope.scene.models.Detector` like the packaged
SSD, so ``convscope detect --detector runs/boxes/model.safetensors``, its pictures, its JSON
and the occlusion of one box work on it unchanged; a :class:`TrainedSegmenter` is a
:class:`~convscope.scene.models.Segmenter` giving a :class:`ClassMask` per photo.  Both also
score a dataset (``evaluate``) and write their model file (``save``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from convscope.classifier import rebuild, resolve_device
from convscope.errors import ConvscopeError, UsageError
from convscope.metrics import evaluate_boxes, evaluate_masks
from convscope.modelfile import (
    ModelDescription,
    ModelMeta,
    load_weights,
    read_meta,
    save_model,
    with_versions,
)
from convscope.models import ModelInput, build_model, canonical_name, get_entry, parse_model_name
from convscope.models.backbones import INPUT_MEAN, INPUT_STD
from convscope.models.detection import detection_outputs
from convscope.scene.models import MAX_SIDE, Detector, Segmenter, as_photos, shrunk
from convscope.scene.results import ClassMask


def as_model_input(array: np.ndarray, channels: int) -> torch.Tensor:
    """An (H, W, 3) uint8 RGB photo as the (C, H, W) uint8 tensor a model of ``channels``
    channels reads (ITU-R 601 luma for one channel, as Pillow's "L")."""
    x = torch.tensor(np.asarray(array, dtype=np.uint8)).permute(2, 0, 1)  # a copy: writable
    if channels == 1:
        grey = (x.float() * torch.tensor([0.299, 0.587, 0.114])[:, None, None]).sum(0)
        return grey.round().clamp(0, 255).to(torch.uint8)[None]
    return x


class _Trained:
    """What the trained detector and segmenter share: the network, its metadata, the
    device, the self-description and the model file."""

    def _setup(self, model: nn.Module, meta: ModelMeta, device) -> None:
        self.model = self.network = model
        self.meta = meta
        self.device = resolve_device(device)
        self.label_names = tuple(meta.classes)
        self.model.to(self.device).eval()

    @property
    def name(self) -> str:
        """The network with the options that differ from its defaults (``fcos:
        backbone=resnet18``)."""
        return canonical_name(get_entry(self.meta.model), self.meta.options)

    @property
    def classes(self) -> list[str]:
        return list(self.meta.classes)

    @property
    def channels(self) -> int:
        return int(self.meta.channels)

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.meta.image_size)  # type: ignore[return-value]

    def describe(self) -> ModelDescription:
        return self.meta.describe()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.meta.model}, {len(self.classes)} classes, "
                f"{self.meta.image_size[0]} px, on {self.device})")

    def to(self, device):
        self.device = resolve_device(device)
        self.model.to(self.device)
        return self

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model file (weights and metadata) atomically."""
        self.meta = with_versions(self.meta)
        return save_model(self.model, self.meta, path)

    def _inputs(self, images) -> list[torch.Tensor]:
        """Tensors as the network reads them: a split's uint8 (C, H, W) images as they are,
        anything else as photos converted to the model's channels."""
        if isinstance(images, (list, tuple)) and images and all(
                isinstance(x, torch.Tensor) and x.ndim == 3 and x.dtype == torch.uint8
                and x.shape[0] == self.channels for x in images):
            return list(images)
        return [as_model_input(p.array, self.channels) for p in as_photos(images)]


class TrainedDetector(_Trained, Detector):
    """A torchvision detector convscope trained: boxes, class names and scores.

    >>> det = convscope.open_model("runs/boxes/model.safetensors")   # doctest: +SKIP
    >>> det.predict("bench.jpg", min_score=0.5)[0].counts()        # doctest: +SKIP
    """

    task = "detect"
    default_min_score = 0.5
    batch = 8

    def __init__(self, model: nn.Module, meta: ModelMeta, device="cpu"):
        self._setup(model, meta, device)

    def outputs(self, images, batch_size: int = 8) -> list[dict[str, torch.Tensor]]:
        """Everything the network keeps per image (``boxes`` in its pixels, ``scores``,
        ``labels`` 0-based), best first, on the CPU: what ``metrics.evaluate_boxes`` scores."""
        xs = self._inputs(images)
        out = []
        for i in range(0, len(xs), batch_size):
            found = detection_outputs(self.model, [x.to(self.device) for x in xs[i:i + batch_size]])
            out += [{k: v.cpu() for k, v in d.items()} for d in found]
        for j, d in enumerate(out):
            if not all(torch.isfinite(v).all() for v in d.values()):
                raise ConvscopeError(f"the detector gave NaN or infinite boxes or scores for "
                                     f"image {j + 1}; its weights overflow or are corrupt: "
                                     "retrain it or use an earlier checkpoint.")
        return out

    def _detect(self, arrays, min_score):
        out = []
        for d in self.outputs([as_model_input(a, self.channels) for a in arrays]):
            keep = d["scores"] >= min_score
            out.append((d["boxes"][keep].numpy(), d["scores"][keep].numpy(),
                        [self.classes[int(k)] for k in d["labels"][keep]],
                        np.zeros((int(keep.sum()), 0, 2), np.float32)))
        return out

    def evaluate(self, dataset, split: str = "test", batch_size: int = 8):
        """COCO mAP (pycocotools) on a boxes dataset's split."""
        check_data(self, dataset)
        s = dataset.test if split == "test" else dataset.train
        return evaluate_boxes(self.outputs(s.images, batch_size), dataset, split)


class TrainedSegmenter(_Trained, Segmenter):
    """A torchvision segmenter convscope trained: the class of every pixel.

    >>> seg = convscope.open_model("runs/masks/model.safetensors")   # doctest: +SKIP
    >>> seg("road.jpg").shares()                                   # doctest: +SKIP
    """

    task = "segment"

    def __init__(self, model: nn.Module, meta: ModelMeta, device="cpu"):
        self._setup(model, meta, device)

    def probabilities(self, image: torch.Tensor) -> torch.Tensor:
        """(K, H, W) class probabilities of one uint8 (C, H, W) image at its own size (the
        network reads it scaled so that its longer side is the model's image size)."""
        h, w = image.shape[1:]
        side = max(self.meta.image_size)
        scale = min(1.0, side / max(h, w))
        x = image.to(self.device).float()[None] / 255
        if scale < 1:
            x = nn.functional.interpolate(x, size=(max(1, round(h * scale)),
                                                   max(1, round(w * scale))),
                                          mode="bilinear", antialias=True, align_corners=False)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                logits = self.model(x)["out"]
        finally:
            self.model.train(was_training)
        if logits.shape[-2:] != (h, w):
            logits = nn.functional.interpolate(logits, size=(h, w), mode="bilinear",
                                               align_corners=False)
        p = logits[0].float().softmax(0).cpu()
        if not torch.isfinite(p).all():
            raise ConvscopeError("the segmenter gave NaN or infinite scores; its weights "
                                 "overflow or are corrupt: retrain it or use an earlier "
                                 "checkpoint.")
        return p

    def outputs(self, images) -> list[torch.Tensor]:
        """Per image, (H, W) int64 class indices at its size: what ``evaluate_masks`` scores."""
        return [self.probabilities(x).argmax(0) for x in self._inputs(images)]

    def predict(self, images, max_side: int = MAX_SIDE) -> list[ClassMask]:
        """The class of every pixel of each photo (photos above ``max_side`` are looked at
        downscaled, the mask given at the photo's size)."""
        out = []
        for photo in as_photos(images):
            array, factor = shrunk(photo, max_side)
            p = self.probabilities(as_model_input(array, self.channels))
            if factor != 1:
                h, w = photo.size
                p = nn.functional.interpolate(p[None], size=(h, w), mode="bilinear",
                                              align_corners=False)[0]
            conf, labels = p.max(0)
            out.append(ClassMask(self.name, photo.array, labels.numpy().astype(np.uint8),
                                 conf.numpy(), tuple(self.classes), photo.name))
        return out

    def __call__(self, image, **options) -> ClassMask:
        return self.predict([image], **options)[0]

    def evaluate(self, dataset, split: str = "test"):
        """Mean IoU and pixel accuracy on a masks dataset's split (255 not scored)."""
        check_data(self, dataset)
        s = dataset.test if split == "test" else dataset.train
        return evaluate_masks(self.outputs(s.images), dataset, split)


def check_data(model, dataset) -> None:
    """Refuse, in one sentence, data a trained detector or segmenter cannot be scored or
    looked at on: another task's, other classes, other channels."""
    if getattr(dataset, "task", None) != model.task:
        raise UsageError(f"{getattr(dataset, 'name', 'the data')} holds no "
                         f"{'boxes' if model.task == 'detect' else 'masks'}; pass a "
                         f"{model.task} dataset as `data`.")
    if list(dataset.classes) != model.classes:
        raise UsageError(f"{dataset.name}'s classes ({', '.join(dataset.classes[:6])}) are "
                         f"not the model's ({', '.join(model.classes[:6])}); pass data "
                         "labelled with its classes.")
    if dataset.channels != model.channels:
        raise UsageError(f"{dataset.name} has {dataset.channels}-channel images and the "
                         f"model reads {model.channels}; pass images like those it was "
                         "trained on.")


#: the model object of each task a model file may name
TRAINED = {"detect": TrainedDetector, "segment": TrainedSegmenter}


def annotator_meta(name: str, task: str, classes: list[str], channels: int, side: int,
                   dataset: str = "", **fields) -> ModelMeta:
    """The metadata of a detector or segmenter ``name`` (with options) for ``classes`` and
    images whose longer side the network reads at ``side`` px; its networks normalise
    their [0, 1] input themselves, with the statistics recorded here."""
    entry, options = parse_model_name(name, task)
    return ModelMeta(model=entry.name, options=options, classes=list(classes),
                     channels=channels, image_size=[side, side], input_size=[side, side],
                     mean=[INPUT_MEAN] * channels, std=[INPUT_STD] * channels,
                     dataset=dataset, task=task, **fields)


def untrained_annotator(name: str, task: str, channels: int, classes: int, side: int,
                        device="cpu"):
    """A detector or segmenter built from its name with random weights (what a layer table
    or ``info`` describes); on the ``meta`` device nothing is allocated."""
    names = [str(i) for i in range(classes)]
    meta = annotator_meta(name, task, names, channels, side,
                          provenance=f"untrained: {name.split(':')[0]} built from its name, "
                                     "random weights", licence="random weights: no terms")
    inp = ModelInput(channels, classes, (side, side))
    target = resolve_device(device)
    if target.type == "meta":
        with target:
            model = build_model(name, inp, task=task)
    else:
        model = build_model(name, inp, task=task)
    return TRAINED[task](model, meta, target)


def load_trained(path: str | os.PathLike, device="cpu"):
    """A detector or segmenter model file as its model object."""
    meta = read_meta(path)
    if meta.task not in TRAINED:
        raise ConvscopeError(f"{path} holds a {meta.task} model, not a detector or segmenter.")
    model = rebuild(meta, str(path))
    load_weights(model, path)
    if resolve_device(device).type == "meta" and meta.task == "detect":
        device = "cpu"  # a detector's postprocessing (torch.nonzero) has no meta kernel
    return TRAINED[meta.task](model, meta, device)


__all__ = ["TRAINED", "TrainedDetector", "TrainedSegmenter", "annotator_meta", "check_data",
           "load_trained", "untrained_annotator"]
