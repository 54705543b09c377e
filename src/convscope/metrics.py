"""The field's standard scores of boxes and masks against an AnnotatedDataset's split.

Detection: COCO's mAP@[.5:.95], mAP@.5, mAP@.75 and per-class AP, computed by pycocotools
(the reference implementation, not a re-derivation) on the same COCO JSON that
:func:`coco_ground_truth` and :func:`coco_predictions` export, so anyone can check a number
with pycocotools itself.  Segmentation: mean IoU, pixel accuracy and per-class IoU and
accuracy from one confusion matrix, pixels marked 255 ignored.

Predictions, per image of the split and in its order:

* boxes: ``{"boxes": (M, 4) x0, y0, x1, y1 in the image's pixels, "scores": (M,),
  "labels": (M,) 0-based class indices}`` (torchvision's detectors give labels 1-based with
  0 as background: pass ``labels - 1``);
* masks: an ``(H, W)`` integer array of class indices at the image's size.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from convscope.data.annotated import IGNORE, AnnotatedDataset, AnnotatedSplit
from convscope.errors import ConvscopeError

#: COCO's IoU thresholds .5:.05:.95 and its 100 detections per image (pycocotools' defaults)
MAX_DETECTIONS = 100


def _split(dataset: AnnotatedDataset, split: str) -> AnnotatedSplit:
    if split not in ("train", "test"):
        raise ConvscopeError(f"`split` must be 'train' or 'test', got {split!r}.")
    return dataset.train if split == "train" else dataset.test


def _numpy(x, dtype) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


# --------------------------------------------------------------------------- COCO JSON

def coco_ground_truth(dataset: AnnotatedDataset, split: str = "test") -> dict:
    """A split's boxes as a COCO annotations document: image ids 1..N in the split's order,
    category ids 1..K for the classes in order, boxes as [x, y, width, height]."""
    if dataset.task != "detect":
        raise ConvscopeError(f"{dataset.name} holds masks, not boxes; score masks with "
                             "`evaluate_masks`.")
    s = _split(dataset, split)
    images, annotations = [], []
    for i, (image, boxes, labels) in enumerate(zip(s.images, s.boxes, s.labels), 1):
        images.append({"id": i, "file_name": s.files[i - 1], "height": int(image.shape[1]),
                       "width": int(image.shape[2])})
        for (x0, y0, x1, y1), label in zip(boxes.tolist(), labels.tolist()):
            annotations.append({"id": len(annotations) + 1, "image_id": i,
                                "category_id": label + 1, "bbox": [x0, y0, x1 - x0, y1 - y0],
                                "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
    return {"images": images, "annotations": annotations,
            "categories": [{"id": k + 1, "name": c} for k, c in enumerate(dataset.classes)]}


def coco_predictions(predictions: Sequence[dict], num_classes: int | None = None) -> list[dict]:
    """Per-image predictions as COCO's results list (image ids 1..N in order, category ids
    label + 1, boxes as [x, y, width, height])."""
    results = []
    for i, p in enumerate(predictions, 1):
        try:
            boxes = _numpy(p["boxes"], np.float64).reshape(-1, 4)
            scores = _numpy(p["scores"], np.float64).reshape(-1)
            labels = _numpy(p["labels"], np.int64).reshape(-1)
        except (KeyError, TypeError, ValueError):
            raise ConvscopeError(f"prediction {i - 1} must be a dict of boxes (M, 4), scores "
                                 "(M,) and labels (M,); check `predictions`.") from None
        if not len(boxes) == len(scores) == len(labels):
            raise ConvscopeError(f"prediction {i - 1} has {len(boxes)} boxes, {len(scores)} "
                                 f"scores and {len(labels)} labels; `predictions` needs one "
                                 "of each per box.")
        if len(labels) and num_classes is not None and (labels.min() < 0
                                                        or labels.max() >= num_classes):
            raise ConvscopeError(f"prediction {i - 1} has labels outside 0..{num_classes - 1}; "
                                 "`predictions` take 0-based class indices (torchvision's "
                                 "detectors give 1-based ones: subtract 1).")
        for (x0, y0, x1, y1), score, label in zip(boxes.tolist(), scores.tolist(),
                                                  labels.tolist()):
            results.append({"image_id": i, "category_id": label + 1,
                            "bbox": [x0, y0, x1 - x0, y1 - y0], "score": score})
    return results


# --------------------------------------------------------------------------- detection

def _pct(v: float | None) -> str:
    return "    -" if v is None else f"{100 * v:6.2f}"


def _per_class(classes: list[str], *columns: list[float | None]) -> list[str]:
    """One line per class: its name and each column as a percentage ("-" for None)."""
    width = max((len(c) for c in classes), default=5)
    return [f"  {c:<{width}}  " + "  ".join(_pct(v) for v in values)
            for c, *values in zip(classes, *columns)]


@dataclass
class DetectionEvaluation:
    """COCO box scores; an AP is None for a class without a ground-truth box in the split."""

    classes: list[str]
    images: int
    objects: int
    #: COCO's AP: the mean over IoU thresholds .5:.05:.95 and classes (mAP@[.5:.95])
    map: float | None
    map50: float | None
    map75: float | None
    #: per class, AP@[.5:.95] and AP@.5
    per_class: list[float | None]
    per_class50: list[float | None]

    def to_dict(self) -> dict:
        return {
            "images": self.images,
            "objects": self.objects,
            "map": self.map,
            "map50": self.map50,
            "map75": self.map75,
            "classes": list(self.classes),
            "per_class": dict(zip(self.classes, self.per_class)),
            "per_class50": dict(zip(self.classes, self.per_class50)),
        }

    def format(self) -> str:
        lines = [
            f"images      {self.images:,} ({self.objects:,} objects)",
            f"mAP         {_pct(self.map)}   (COCO: AP@[.5:.95])",
            f"mAP@.5      {_pct(self.map50)}",
            f"mAP@.75     {_pct(self.map75)}",
            "",
            "per-class AP@[.5:.95]  AP@.5",
        ]
        return "\n".join(lines + _per_class(self.classes, self.per_class, self.per_class50))


def evaluate_boxes(predictions: Sequence[dict], dataset: AnnotatedDataset,
                   split: str = "test") -> DetectionEvaluation:
    """COCO mAP of per-image ``predictions`` against ``dataset``'s ``split``, by pycocotools.

    At most :data:`MAX_DETECTIONS` boxes per image count (the highest scoring), as in COCO.

    >>> ds = load_dataset("fake-boxes")  # doctest: +SKIP
    >>> evaluate_boxes([{"boxes": b, "scores": torch.ones(len(b)), "labels": y}
    ...                 for b, y in zip(ds.test.boxes, ds.test.labels)], ds).map  # doctest: +SKIP
    1.0
    """
    from pycocotools.coco import COCO  # heavy optional dependency
    from pycocotools.cocoeval import COCOeval  # heavy optional dependency

    gt_doc = coco_ground_truth(dataset, split)
    if len(predictions) != len(gt_doc["images"]):
        raise ConvscopeError(f"`predictions` holds {len(predictions)} images but the {split} "
                             f"split has {len(gt_doc['images'])}; give one per image, in order.")
    results = coco_predictions(predictions, len(dataset.classes))
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints as it goes
        gt = COCO()
        gt.dataset = gt_doc
        gt.createIndex()
        if results:
            dt = gt.loadRes(results)
        else:  # loadRes refuses an empty list; no detection at all is an empty result set
            dt = COCO()
            dt.dataset = {**gt_doc, "annotations": []}
            dt.createIndex()
        coco_eval = COCOeval(gt, dt, iouType="bbox")
        coco_eval.params.maxDets = [1, 10, MAX_DETECTIONS]
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    # precision: (IoU thresholds, recall points, classes, area ranges, max detections);
    # area "all" and 100 detections, as stats[0] and stats[1] read it
    precision = coco_eval.eval["precision"][:, :, :, 0, -1]

    def ap(values: np.ndarray) -> float | None:
        values = values[values > -1]  # -1: no ground truth of that class
        return float(values.mean()) if values.size else None

    def stat(v: float) -> float | None:
        return None if v < 0 else float(v)

    return DetectionEvaluation(
        classes=list(dataset.classes),
        images=len(gt_doc["images"]),
        objects=len(gt_doc["annotations"]),
        map=stat(coco_eval.stats[0]),
        map50=stat(coco_eval.stats[1]),
        map75=stat(coco_eval.stats[2]),
        per_class=[ap(precision[:, :, k]) for k in range(len(dataset.classes))],
        per_class50=[ap(precision[0, :, k]) for k in range(len(dataset.classes))],
    )


# --------------------------------------------------------------------------- segmentation

@dataclass
class SegmentationEvaluation:
    """Mask scores from one confusion matrix; a class's IoU is None when it appears in
    neither the truth nor the predictions (it is left out of the mean)."""

    classes: list[str]
    images: int
    #: pixels scored (those not marked 255 in the truth)
    pixels: int
    miou: float | None
    pixel_accuracy: float | None
    per_class_iou: list[float | None]
    #: per class, the share of its true pixels predicted as it (None: no true pixel)
    per_class_accuracy: list[float | None]
    #: (K, K) pixel counts: rows are true classes, columns predictions
    confusion: np.ndarray

    def to_dict(self) -> dict:
        return {
            "images": self.images,
            "pixels": self.pixels,
            "miou": self.miou,
            "pixel_accuracy": self.pixel_accuracy,
            "classes": list(self.classes),
            "per_class_iou": dict(zip(self.classes, self.per_class_iou)),
            "per_class_accuracy": dict(zip(self.classes, self.per_class_accuracy)),
            "confusion": self.confusion.tolist(),
        }

    def format(self) -> str:
        lines = [
            f"images      {self.images:,} ({self.pixels:,} pixels scored)",
            f"mean IoU    {_pct(self.miou)}",
            f"pixel acc.  {_pct(self.pixel_accuracy)}",
            "",
            "per-class IoU  accuracy",
        ]
        return "\n".join(lines + _per_class(self.classes, self.per_class_iou,
                                             self.per_class_accuracy))


def confusion_matrix(predicted: torch.Tensor, true: torch.Tensor, num_classes: int
                     ) -> torch.Tensor:
    """(K, K) int64 pixel counts of (true, predicted) class pairs, pixels whose truth is
    255 left out.

    torch.bincount over ``K * true + predicted`` counts every pair exactly in one pass over
    tensors already in memory, image by image (their sizes differ); scikit-learn's
    ``confusion_matrix`` gives the same counts but first checks and converts every pixel's
    labels through NumPy, which is slower on millions of pixels and adds nothing here.
    """
    true, predicted = true.flatten().long(), predicted.flatten().long()
    keep = true != IGNORE
    pairs = num_classes * true[keep] + predicted[keep]
    return torch.bincount(pairs, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes)


def scores_from_confusion(confusion: np.ndarray, classes: list[str],
                          images: int = 0) -> SegmentationEvaluation:
    """Mean IoU, pixel accuracy and per-class IoU and accuracy from a (K, K) confusion
    matrix (rows true, columns predicted)."""
    c = np.asarray(confusion, dtype=np.int64)
    tp = np.diag(c).astype(np.float64)
    true, predicted = c.sum(1), c.sum(0)
    union = true + predicted - tp
    iou = [float(t / u) if u else None for t, u in zip(tp, union)]
    accuracy = [float(t / n) if n else None for t, n in zip(tp, true)]
    scored = [v for v in iou if v is not None]
    total = int(c.sum())
    return SegmentationEvaluation(
        classes=list(classes), images=images, pixels=total,
        miou=float(np.mean(scored)) if scored else None,
        pixel_accuracy=float(tp.sum() / total) if total else None,
        per_class_iou=iou, per_class_accuracy=accuracy, confusion=c)


def evaluate_masks(predictions, dataset: AnnotatedDataset,
                   split: str = "test") -> SegmentationEvaluation:
    """Mean IoU and pixel accuracy of per-image predicted masks (each ``(H, W)`` class
    indices at its image's size, or one ``(N, H, W)`` tensor when the sizes agree) against
    ``dataset``'s ``split``; true pixels marked 255 are not scored."""
    if dataset.task != "segment":
        raise ConvscopeError(f"{dataset.name} holds boxes, not masks; score boxes with "
                             "`evaluate_boxes`.")
    s = _split(dataset, split)
    if len(predictions) != len(s):
        raise ConvscopeError(f"`predictions` holds {len(predictions)} masks but the {split} "
                             f"split has {len(s)} images; give one per image, in order.")
    k = len(dataset.classes)
    confusion = torch.zeros(k, k, dtype=torch.int64)
    for i, (predicted, true) in enumerate(zip(predictions, s.masks)):
        predicted = torch.as_tensor(_numpy(predicted, np.int64))
        if tuple(predicted.shape) != tuple(true.shape):
            raise ConvscopeError(f"predicted mask {i} is {tuple(predicted.shape)} but its "
                                 f"image is {tuple(true.shape)}; `predictions` must be at each "
                                 "image's size.")
        if predicted.numel() and (predicted.min() < 0 or predicted.max() >= k):
            raise ConvscopeError(f"predicted mask {i} holds values outside 0..{k - 1}; "
                                 "`predictions` are class indices.")
        confusion += confusion_matrix(predicted, true, k)
    return scores_from_confusion(confusion.numpy(), dataset.classes, images=len(s))
