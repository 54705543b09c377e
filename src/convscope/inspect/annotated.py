"""Looking inside a detector or segmenter convscope trained, on labelled images.

- :func:`worst_detections`: a :class:`~convscope.scene.trained.TrainedDetector`'s false
  positives with the highest scores and the objects it missed on a boxes dataset's split.
  Detections at ``min_score`` or more are matched to the truth as COCO matches them: by
  score, best first, each to the unmatched true box of its class it overlaps most at IoU
  ``iou`` (0.5) or more; a detection left over is a false positive, a true box left over
  is missed.  Each says why, from what overlaps it (a duplicate, the wrong class, a box
  badly placed, the background; a score below ``min_score``, ...).
- :func:`worst_masks`: a :class:`~convscope.scene.trained.TrainedSegmenter`'s test images
  with the lowest IoU (per image: the mean over the classes in its truth or prediction).
- :func:`explain_mask_class`: which pixels make a segmenter call pixels one class: Grad-CAM
  (captum's ``LayerGradCam`` on the trunk's last map, target the sum of the class's logits
  over the pixels predicted as it) or occlusion (captum's ``Occlusion``, target the mean
  probability of the class over those pixels).
- :func:`cam_layer`: the module whose input or output is the trunk's last map, where
  Grad-CAM reads a torchvision detector or segmenter (``inspect/detection.py`` uses it for
  one box).

Nothing of the model is changed: captum removes its hooks, the network's mode is restored
(:func:`convscope.inspect.hooks.model_mode`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torchvision.ops import box_iou

from convscope.classifier import class_index
from convscope.data.annotated import IGNORE
from convscope.display import MosaicDisplay, draw
from convscope.errors import UsageError
from convscope.inspect.hooks import model_mode
from convscope.options import option, positive_int
from convscope.progress import progress_bar
from convscope.scene.models import read_photo, shrunk
from convscope.scene.trained import (
    TrainedDetector,
    TrainedSegmenter,
    as_model_input,
    check_data,
)

#: the overlap at which a detection finds a true box (COCO's mAP@.5)
MATCH_IOU = 0.5
#: below this overlap a box is somewhere else altogether ("background", "not found")
NEAR_IOU = 0.1
#: the methods that explain one mask class
MASK_METHODS = ("gradcam", "occlusion")
#: photos larger than this are explained downscaled (occlusion runs the network per mask)
EXPLAIN_SIDE = 640


# --------------------------------------------------------------------------- Grad-CAM's layer
def cam_layer(network: nn.Module) -> tuple[nn.Module, bool, str]:
    """``(module, its_input, name)``: where Grad-CAM reads the trunk's last map of a
    torchvision detector or segmenter convscope builds.  The trunk is a feature extractor
    returning a dict of maps, which captum cannot hook, so the map is taken where the next
    module reads it: the feature pyramid's lateral 1x1 conv on the stride-32 map (Faster
    R-CNN, RetinaNet, FCOS; ``its_input`` True), SSDlite's last trunk block (its output),
    the head of FCN and DeepLabV3 (its input, the stride-16 map) and LR-ASPP's high branch
    (``classifier.cbr``, its input)."""
    backbone = getattr(network, "backbone", None)
    fpn = getattr(backbone, "fpn", None)
    if fpn is not None:
        return fpn.inner_blocks[-1], True, "backbone.body (stride 32, as the pyramid reads it)"
    features = getattr(backbone, "features", None)
    if isinstance(features, nn.Sequential) and hasattr(network, "anchor_generator"):
        return features[-1], False, "backbone.features (the trunk's last block)"
    head = getattr(network, "classifier", None)
    if hasattr(head, "cbr"):
        return head.cbr, True, "backbone 'high' (stride 16, as LR-ASPP's head reads it)"
    if head is not None:
        return head, True, "backbone 'out' (stride 16, as the head reads it)"
    raise UsageError(f"Grad-CAM knows the trunks of convscope's detectors and segmenters, not "
                     f"a {type(network).__name__}; use `method` occlusion.")


def layer_grad_cam(forward, network: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """captum's ``LayerGradCam`` of ``forward(x) -> (N, 1)`` on the trunk's last map of
    ``network`` (:func:`cam_layer`), ReLU'd: (h, w) on that map's grid, detached."""
    from captum.attr import LayerGradCam  # heavy optional dependency

    layer, its_input, _ = cam_layer(network)
    with model_mode(network):
        cam = LayerGradCam(forward, layer).attribute(
            x, target=0, relu_attributions=True, attribute_to_layer_input=its_input)
    return cam[0, 0].detach().float().cpu()


def resized(heat: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """A coarse map bilinearly resized to ``size`` (H, W)."""
    out = nn.functional.interpolate(heat[None, None], size=size, mode="bilinear",
                                    align_corners=False)
    return out[0, 0].numpy().astype(np.float32)


# --------------------------------------------------------------------------- worst detections
@dataclass(frozen=True)
class BoxMistake:
    """A false positive (``kind`` "false positive": the detection's ``box``, ``label`` and
    ``score``) or a missed object (``kind`` "missed": the true ``box`` and ``label``, and
    ``score`` the best score of a detection of its class on it, 0 when none); ``other``
    the nearest box of the other side (truth for a detection, a detection for a truth)
    as ``(box, label, score, iou)`` or None; ``why`` in words."""

    kind: str
    image: int
    file: str
    box: tuple[float, float, float, float]
    label: str
    score: float
    why: str
    other: tuple | None = None

    def to_dict(self) -> dict:
        d = {"kind": self.kind, "image": self.image, "file": self.file,
             "box": [round(v, 1) for v in self.box], "label": self.label,
             "score": round(self.score, 4), "why": self.why}
        if self.other is not None:
            box, label, score, iou = self.other
            d["nearest"] = {"box": [round(v, 1) for v in box], "label": label,
                            "score": None if score is None else round(score, 4),
                            "iou": round(iou, 3)}
        return d


@dataclass
class WorstDetections(MosaicDisplay):
    """A detector's worst detections on one split: ``false_positives`` (highest score
    first) and ``missed`` (largest first), with the counts they come from."""

    model: str
    data: str
    split: str
    min_score: float
    iou: float
    false_positives: list[BoxMistake]
    missed: list[BoxMistake]
    detections: int
    objects: int
    found: int
    images: list = field(repr=False, default_factory=list)  # the split's (C, H, W) uint8

    def to_dict(self) -> dict:
        return {"model": self.model, "data": self.data, "split": self.split,
                "min_score": self.min_score, "iou": self.iou, "detections": self.detections,
                "objects": self.objects, "found": self.found,
                "false_positive_count": self.detections - self.found,
                "missed_count": self.objects - self.found,
                "false_positives": [m.to_dict() for m in self.false_positives],
                "missed": [m.to_dict() for m in self.missed]}

    def format(self) -> str:
        lines = [f"{self.found} of {self.objects} objects found at score >= {self.min_score:g} "
                 f"(IoU >= {self.iou:g}); {self.detections - self.found} of "
                 f"{self.detections} detections are false positives"]
        for title, items in (("false positives, highest score first", self.false_positives),
                             ("missed objects, largest first", self.missed)):
            lines.append(f"\n{title}:" if items else f"\nno {title.split(',')[0]}")
            for m in items:
                box = ", ".join(f"{v:.0f}" for v in m.box)
                lines.append(f"  #{m.image} {m.file}: {m.label} {m.score:.2f} [{box}]: {m.why}")
        return "\n".join(lines)

    def render(self) -> np.ndarray:
        return draw("worst_detections_image", self)

    def save(self, path, config=None):
        return draw("save_image", self.render(), path, config)


def _split(dataset, split: str):
    if split not in ("test", "train"):
        raise UsageError(f"`split` must be test or train, not {split!r}.")
    return dataset.test if split == "test" else dataset.train


def _check(model, dataset, task: str) -> None:
    kind = TrainedDetector if task == "detect" else TrainedSegmenter
    if not isinstance(model, kind):
        raise UsageError(f"{getattr(model, 'name', type(model).__name__)} is not a "
                         f"{'detector' if task == 'detect' else 'segmenter'} convscope "
                         f"trained; pass one (a model file of task {task}).")
    check_data(model, dataset)


def _why_false(box, label, truths, truth_labels, taken, names, iou_thr) -> tuple[str, tuple | None]:
    """Why a detection matched nothing, and the true box nearest it."""
    if not len(truths):
        return "background: the image has no object", None
    iou = box_iou(box[None], truths)[0]
    j = int(iou.argmax())
    other = (tuple(truths[j].tolist()), names[int(truth_labels[j])], None, float(iou[j]))
    same = truth_labels == label
    if bool((same & (iou >= iou_thr) & taken).any()):
        return "duplicate: a better detection already found this object", other
    wrong = (~same) & (iou >= iou_thr)
    if bool(wrong.any()):
        k = int(iou.masked_fill(~wrong, -1).argmax())
        return f"wrong class: the object there is {names[int(truth_labels[k])]}", other
    near = float(iou.masked_fill(~same, 0).max()) if bool(same.any()) else 0.0
    if near >= NEAR_IOU:
        return f"badly placed: IoU {near:.2f} with a true {names[int(label)]}", other
    return "background: no object there", other


def _why_missed(box, label, out, min_score, iou_thr, names) -> tuple[str, float, tuple | None]:
    """Why a true box was missed, the best score of its class on it, the nearest detection."""
    boxes, scores, labels = out["boxes"], out["scores"], out["labels"]
    if not len(boxes):
        return "not found: no detection in the image", 0.0, None
    iou = box_iou(box[None], boxes)[0]
    j = int(iou.argmax())
    other = (tuple(boxes[j].tolist()), names[int(labels[j])], float(scores[j]), float(iou[j]))
    same = (labels == label) & (iou >= iou_thr)
    best = float(scores[same].max()) if bool(same.any()) else 0.0
    if bool(same.any()) and best < min_score:
        # 0.496 shown as "0.50 < 0.5" would contradict itself: digits until it reads below
        shown = next(f"{best:.{d}f}" for d in (2, 3, 4, 6) if float(f"{best:.{d}f}") < min_score
                     or d == 6)
        return f"scored too low: {shown} < {min_score:g}", best, other
    if bool(same.any()):
        return "taken: its detection was matched to a neighbouring object", best, other
    wrong = (labels != label) & (iou >= iou_thr) & (scores >= min_score)
    if bool(wrong.any()):
        k = int(scores.masked_fill(~wrong, -1).argmax())
        return (f"wrong class: detected as {names[int(labels[k])]} {float(scores[k]):.2f}",
                best, other)
    near = float(iou.masked_fill(labels != label, 0).max())
    if near >= NEAR_IOU:
        return f"badly placed: best IoU {near:.2f}", best, other
    return "not found", best, other


def match_detections(out: dict, truths: torch.Tensor, truth_labels: torch.Tensor,
                     min_score: float, iou_thr: float = MATCH_IOU):
    """COCO's greedy matching on one image: ``(kept, matched_truth)``, the indices of the
    detections at ``min_score`` or more (best first) and for each the true box it found
    (-1: a false positive)."""
    kept = torch.nonzero(out["scores"] >= min_score)[:, 0]
    kept = kept[out["scores"][kept].argsort(descending=True, stable=True)]
    taken = torch.zeros(len(truths), dtype=torch.bool)
    matched = []
    iou = (box_iou(out["boxes"][kept], truths) if len(truths) and len(kept)
           else torch.zeros(len(kept), len(truths)))
    for r, d in enumerate(kept):
        ok = (truth_labels == out["labels"][d]) & ~taken & (iou[r] >= iou_thr)
        if bool(ok.any()):
            j = int(iou[r].masked_fill(~ok, -1).argmax())
            taken[j] = True
            matched.append(j)
        else:
            matched.append(-1)
    return kept, torch.tensor(matched, dtype=torch.long)


def worst_detections(model: TrainedDetector, dataset, split: str = "test", n: int = 12,
                     min_score: float | None = None, iou: float = MATCH_IOU,
                     batch_size: int = 8) -> WorstDetections:
    """The ``n`` false positives with the highest scores and the ``n`` largest missed
    objects of ``model`` on ``dataset``'s ``split`` (see the module's docstring)."""
    _check(model, dataset, "detect")
    if n < 1:
        raise UsageError(f"`n` must be at least 1, got {n}.")
    if not 0 < iou <= 1:
        raise UsageError(f"`iou` must be above 0 and at most 1, got {iou}.")
    min_score = model.default_min_score if min_score is None else float(min_score)
    s = _split(dataset, split)
    outputs = model.outputs(s.images, batch_size)
    names = model.classes
    false, missed = [], []
    detections = found = objects = 0
    for i, out in enumerate(outputs):
        truths, labels = s.boxes[i].float(), s.labels[i]
        kept, matched = match_detections(out, truths, labels, min_score, iou)
        detections += len(kept)
        objects += len(truths)
        found += int((matched >= 0).sum())
        taken = torch.zeros(len(truths), dtype=torch.bool)
        taken[matched[matched >= 0]] = True
        for d, j in zip(kept.tolist(), matched.tolist()):
            if j >= 0:
                continue
            box = out["boxes"][d]
            why, other = _why_false(box, out["labels"][d], truths, labels, taken, names, iou)
            false.append(BoxMistake("false positive", i, s.files[i], tuple(box.tolist()),
                                    names[int(out["labels"][d])], float(out["scores"][d]), why,
                                    other))
        for j in torch.nonzero(~taken)[:, 0].tolist():
            why, best, other = _why_missed(truths[j], labels[j], out, min_score, iou, names)
            missed.append(BoxMistake("missed", i, s.files[i], tuple(truths[j].tolist()),
                                     names[int(labels[j])], best, why, other))
    false.sort(key=lambda m: -m.score)
    missed.sort(key=lambda m: -(m.box[2] - m.box[0]) * (m.box[3] - m.box[1]))
    return WorstDetections(model.name, dataset.name, split, min_score, iou, false[:n],
                           missed[:n], detections, objects, found, list(s.images))


# --------------------------------------------------------------------------- worst masks
@dataclass(frozen=True)
class MaskMistake:
    """One image's score: ``iou`` the mean IoU over the classes in its truth or prediction
    (255 not counted), ``accuracy`` its pixel accuracy, ``per_class`` each such class's
    IoU."""

    image: int
    file: str
    iou: float
    accuracy: float
    per_class: dict

    def to_dict(self) -> dict:
        return {"image": self.image, "file": self.file, "iou": round(self.iou, 4),
                "pixel_accuracy": round(self.accuracy, 4),
                "per_class": {k: round(v, 4) for k, v in self.per_class.items()}}


@dataclass
class WorstMasks(MosaicDisplay):
    """A segmenter's images with the lowest IoU, worst first, each with its truth and
    prediction (``truths``, ``predictions``: (H, W) class indices)."""

    model: str
    data: str
    split: str
    classes: tuple
    worst: list[MaskMistake]
    mean_iou: float
    images: list = field(repr=False, default_factory=list)
    truths: list = field(repr=False, default_factory=list)
    predictions: list = field(repr=False, default_factory=list)

    def to_dict(self) -> dict:
        return {"model": self.model, "data": self.data, "split": self.split,
                "mean_image_iou": round(self.mean_iou, 4),
                "worst": [m.to_dict() for m in self.worst]}

    def format(self) -> str:
        lines = [f"mean of the per-image IoU: {self.mean_iou:.3f}; the "
                 f"{len(self.worst)} worst images:"]
        for m in self.worst:
            classes = ", ".join(f"{k} {v:.2f}" for k, v in m.per_class.items())
            lines.append(f"  #{m.image} {m.file}: IoU {m.iou:.3f}, pixel accuracy "
                         f"{m.accuracy:.3f} ({classes})")
        return "\n".join(lines)

    def render(self) -> np.ndarray:
        return draw("worst_masks_image", self)

    def save(self, path, config=None):
        return draw("save_image", self.render(), path, config)


def image_iou(truth: torch.Tensor, pred: torch.Tensor, classes) -> tuple[float, float, dict]:
    """One image's mean IoU over the classes in its truth or prediction, its pixel accuracy
    and each such class's IoU (pixels marked 255 not counted)."""
    valid = truth != IGNORE
    t, p = truth[valid].long(), pred[valid].long()
    if not len(t):
        return 1.0, 1.0, {}
    per = {}
    for k in torch.unique(torch.cat([t, p])).tolist():
        if k >= len(classes):
            continue
        inter = int(((t == k) & (p == k)).sum())
        union = int(((t == k) | (p == k)).sum())
        per[classes[k]] = inter / union if union else 1.0
    acc = float((t == p).float().mean())
    return (sum(per.values()) / len(per) if per else 1.0), acc, per


def worst_masks(model: TrainedSegmenter, dataset, split: str = "test",
                n: int = 8) -> WorstMasks:
    """The ``n`` images of ``dataset``'s ``split`` on which ``model``'s masks have the
    lowest IoU, worst first."""
    _check(model, dataset, "segment")
    if n < 1:
        raise UsageError(f"`n` must be at least 1, got {n}.")
    s = _split(dataset, split)
    preds = model.outputs(s.images)
    scored = []
    for i, (truth, pred) in enumerate(zip(s.masks, preds)):
        iou, acc, per = image_iou(truth, pred, model.classes)
        scored.append(MaskMistake(i, s.files[i], iou, acc, per))
    mean = sum(m.iou for m in scored) / max(1, len(scored))
    scored.sort(key=lambda m: (m.iou, m.image))
    worst = scored[:n]
    return WorstMasks(model.name, dataset.name, split, tuple(model.classes), worst, mean,
                      [s.images[m.image] for m in worst], [s.masks[m.image] for m in worst],
                      [preds[m.image] for m in worst])


# --------------------------------------------------------------------------- one mask class
@dataclass(frozen=True)
class MaskExplainConfig:
    """The options of one look inside a segmenter's class."""

    target: str | None = option(None, "the class to explain, by name or index (default: the "
                                      "commonest class predicted other than the first, "
                                      "the background)", metavar="CLASS")
    method: str = option("gradcam", "gradcam or occlusion", choices=MASK_METHODS)
    window: int | None = option(None, "occlusion: side of the grey square (default: a "
                                      "quarter of the image's shorter side)",
                                type=positive_int, metavar="PX")
    stride: int | None = option(None, "occlusion: step between squares (default: half the "
                                      "window)", type=positive_int, metavar="PX")


@dataclass
class MaskExplanation(MosaicDisplay):
    """Which pixels make ``model`` call the pixels of ``mask`` (H, W) bool ``label``:
    ``heat`` (H, W) float32 over ``image`` (the photo, downscaled when large), positive
    where the evidence is; ``score`` the mean probability of the class over its pixels."""

    model: str
    method: str
    image: np.ndarray
    mask: np.ndarray
    label: str
    score: float
    heat: np.ndarray
    settings: dict
    source: str = ""

    def inside_share(self) -> float:
        """The share of the positive map on the class's pixels."""
        pos = np.clip(self.heat, 0, None)
        total = float(pos.sum())
        return float(pos[self.mask].sum()) / total if total > 0 else 0.0

    def to_dict(self) -> dict:
        return {"image": self.source, "model": self.model, "method": self.method,
                "label": self.label, "score": round(self.score, 4),
                "pixels": int(self.mask.sum()), "settings": self.settings,
                "inside_share": round(self.inside_share(), 4),
                "max": round(float(self.heat.max()), 4)}

    def render(self) -> np.ndarray:
        return draw("mask_explanation_image", self)

    def save(self, path, config=None):
        return draw("save_image", self.render(), path, config)


def _network_input(model: TrainedSegmenter, image: torch.Tensor) -> torch.Tensor:
    """(1, C, h, w) float in [0, 1] as ``TrainedSegmenter.probabilities`` feeds the network
    (scaled so that the longer side is at most the model's image size)."""
    h, w = image.shape[1:]
    scale = min(1.0, max(model.meta.image_size) / max(h, w))
    x = image.to(model.device).float()[None] / 255
    if scale < 1:
        x = nn.functional.interpolate(x, size=(max(1, round(h * scale)), max(1, round(w * scale))),
                                      mode="bilinear", antialias=True, align_corners=False)
    return x


def explain_mask_class(model: TrainedSegmenter, image, config: MaskExplainConfig | None = None,
                       progress: bool = True) -> MaskExplanation:
    """Which pixels make ``model`` call pixels class ``config.target`` in ``image`` (a
    photo, as ``model.predict`` reads it)."""
    config = config or MaskExplainConfig()
    if not isinstance(model, TrainedSegmenter):
        raise UsageError(f"{getattr(model, 'name', type(model).__name__)} is not a segmenter "
                         "convscope trained; explain a mask class of one (a model file of task "
                         "segment).")
    if config.method not in MASK_METHODS:
        raise UsageError(f"unknown `method` {config.method!r} for a mask class; choose one of: "
                         f"{', '.join(MASK_METHODS)}.")
    photo = read_photo(image)
    small, _ = shrunk(photo, EXPLAIN_SIDE)
    pixels = as_model_input(small, model.channels)
    probs = model.probabilities(pixels)
    pred = probs.argmax(0)
    if config.target is None:
        counts = torch.bincount(pred.ravel(), minlength=len(model.classes))
        counts[0] = 0
        k = int(counts.argmax()) if int(counts.max()) else 0
    else:
        k = class_index(model.classes, config.target, "target")
    mask = pred == k
    if not bool(mask.any()):
        shown = [model.classes[c] for c in torch.unique(pred).tolist()]
        raise UsageError(f"{model.name} calls no pixel of {photo.name or 'the image'} "
                         f"{model.classes[k]}, so there is nothing to explain; pass a `target` "
                         f"it predicts there: {', '.join(shown)}.")
    score = float(probs[k][mask].mean())
    h, w = pred.shape
    net = model.model
    x = _network_input(model, pixels)
    if config.method == "gradcam":
        small_mask = mask.to(model.device)

        def class_logits(inp: torch.Tensor) -> torch.Tensor:
            # the sum of class k's logits over the pixels predicted as k (at the photo's size)
            logits = net(inp)["out"]
            if logits.shape[-2:] != (h, w):
                logits = nn.functional.interpolate(logits, size=(h, w), mode="bilinear",
                                                   align_corners=False)
            return (logits[:, k] * small_mask).sum((1, 2))[:, None]

        cam = layer_grad_cam(class_logits, net, x)
        heat = resized(cam, (h, w))
        settings = {"layer": cam_layer(net)[2], "map": list(cam.shape),
                    "target": f"sum of {model.classes[k]}'s logits over its {int(mask.sum())} "
                              "predicted pixels"}
    else:
        heat, settings = _mask_occlusion(model, x, mask, k, (h, w), config, progress)
    return MaskExplanation(model.name, config.method, small, mask.numpy(), model.classes[k],
                           score, heat, settings, photo.name)


def _mask_occlusion(model: TrainedSegmenter, x: torch.Tensor, mask: torch.Tensor, k: int,
                    size: tuple[int, int], config: MaskExplainConfig, progress: bool):
    from captum.attr import Occlusion  # heavy optional dependency

    net = model.model
    xh, xw = x.shape[-2:]
    window = min(config.window or max(2, round(min(xh, xw) / 4)), xh, xw)
    stride = config.stride or max(1, window // 2)
    if stride > window:
        raise UsageError(f"the stride ({stride}) is larger than the window ({window}), which "
                         "would leave pixels never hidden; pass a `stride` no larger than the "
                         "`window`.")
    on = mask.to(x.device)
    masks = math.prod(math.ceil((s - window) / stride) + 1 for s in (xh, xw))
    bar = progress_bar(total=masks + 1, desc=f"occlusion of {model.classes[k]}", unit="mask",
                       leave=False, enable=progress)

    def mean_probability(inp: torch.Tensor) -> torch.Tensor:
        # class k's mean probability over the pixels predicted as k on the unhidden image
        bar.update(len(inp))
        logits = net(inp)["out"]
        if logits.shape[-2:] != size:
            logits = nn.functional.interpolate(logits, size=size, mode="bilinear",
                                               align_corners=False)
        return (logits.softmax(1)[:, k] * on).sum((1, 2)) / on.sum()

    with bar, model_mode(net), torch.no_grad():
        drop = Occlusion(mean_probability).attribute(
            x, sliding_window_shapes=(x.shape[1], window, window),
            strides=(x.shape[1], stride, stride), baselines=127 / 255,
            perturbations_per_eval=8)
    heat = resized(drop[0, 0].float().cpu(), size)
    return heat, {"window": window, "stride": stride, "masks": masks,
                  "baseline": "grey (127)",
                  "target": f"mean probability of {model.classes[k]} over its "
                            f"{int(mask.sum())} predicted pixels"}


__all__ = ["BoxMistake", "MASK_METHODS", "MaskExplainConfig", "MaskExplanation",
           "MaskMistake", "WorstDetections", "WorstMasks", "cam_layer", "explain_mask_class",
           "image_iou", "layer_grad_cam", "match_detections", "worst_detections", "worst_masks"]
