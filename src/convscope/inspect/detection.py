"""Looking inside one detection: which pixels keep that box's score.

- **Occlusion**, black-box, for any detector (faces, objects; a PyTorch network or not):
  a grey square slides over the region around the box, the detector runs on every masked
  photo, and each pixel gets the fall of the box's score when it is hidden (captum's
  ``Occlusion``, with the detector wrapped as its forward function).  The box's score on
  a masked photo is the best score of a detection with the same label that overlaps the
  box by IoU >= 0.5, 0 when none does (the box is lost).
- **Grad-CAM** where the detector is a PyTorch network.  MTCNN: O-Net, its last stage,
  is run on the box's square crop at 48x48 as MTCNN runs it, and captum's ``LayerGradCam``
  weights its last 8x8 convolutional map by the gradient of the face log-odds; the map is
  laid back over the box.  A detector convscope trained (``TrainedDetector``): the network
  runs on the whole photo in eval mode with gradients on, and the target is the log-odds
  of the score of the detection it gives for the box (the same label, IoU >= 0.5, the best
  score: the box occlusion follows); ``LayerGradCam`` weights the trunk's last map
  (:func:`convscope.inspect.annotated.cam_layer`) by its gradient.

Nothing of the detector is changed: captum removes its hooks, the network's mode is
restored (:func:`convscope.inspect.hooks.model_mode`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import box_iou

from convscope.display import MosaicDisplay, draw
from convscope.errors import UsageError
from convscope.inspect.annotated import cam_layer, layer_grad_cam, resized
from convscope.inspect.hooks import model_mode
from convscope.options import nonneg_float, nonneg_int, option, positive_int
from convscope.progress import progress_bar
from convscope.scene.models import Detector, MtcnnFaces, read_photo, shrunk
from convscope.scene.trained import TrainedDetector, as_model_input

#: the box-explaining methods
BOX_METHODS = ("occlusion", "gradcam")
#: photos larger than this are explained downscaled (occlusion runs the detector per mask)
EXPLAIN_SIDE = 640
#: the overlap a detection on a masked photo needs to count as the same box
SAME_BOX_IOU = 0.5


@dataclass(frozen=True)
class BoxExplainConfig:
    """The options of one look inside a detection."""

    index: int | None = option(None, "look inside detection N (0 is the best): which pixels "
                                     "keep its score (drawn to --out)",
                               type=nonneg_int, metavar="N", flag="--explain")
    method: str = option("occlusion", "how: occlusion (any detector) or gradcam (PyTorch "
                                      "detectors: mtcnn and the detectors you train)",
                         choices=BOX_METHODS)
    window: int | None = option(None, "occlusion: side of the grey square (default: half the "
                                      "box's shorter side, enough to hide a part of the "
                                      "object)", type=positive_int, metavar="PX")
    stride: int | None = option(None, "occlusion: step between squares (default: a quarter "
                                      "of the window)", type=positive_int, metavar="PX")
    margin: float = option(0.5, "occlusion: how far round the box to look, in box sizes",
                           type=nonneg_float, metavar="F")


@dataclass
class BoxExplanation(MosaicDisplay):
    """Which pixels keep one detection's score: ``heat`` (H, W) float32 over the photo as
    explained (``image``, downscaled when large), positive where hiding a pixel lowers
    the score; ``box`` x0, y0, x1, y1 in the same pixels."""

    model: str
    method: str
    image: np.ndarray
    box: np.ndarray
    label: str
    score: float
    heat: np.ndarray
    settings: dict
    source: str = ""

    def inside_share(self) -> float:
        """The share of the positive map that falls inside the box."""
        pos = np.clip(self.heat, 0, None)
        total = float(pos.sum())
        if total <= 0:
            return 0.0
        x0, y0, x1, y1 = (int(round(v)) for v in self.box)
        return float(pos[y0:y1, x0:x1].sum()) / total

    def to_dict(self) -> dict:
        return {"image": self.source, "model": self.model, "method": self.method,
                "label": self.label, "score": round(self.score, 4),
                "box": np.round(self.box, 1).tolist(), "settings": self.settings,
                "inside_share": round(self.inside_share(), 4),
                "max": round(float(self.heat.max()), 4)}

    def render(self) -> np.ndarray:
        return draw("box_explanation_image", self)

    def save(self, path, config=None):
        return draw("save_image", self.render(), path, config)


def _matched_score(found, box: torch.Tensor, label: str) -> float:
    same = [i for i, lab in enumerate(found.labels) if lab == label]
    if not same:
        return 0.0
    iou = box_iou(box[None], torch.from_numpy(found.boxes[same]))[0].numpy()
    ok = iou >= SAME_BOX_IOU
    return float(found.scores[same][ok].max()) if ok.any() else 0.0


def explain_detection(model: Detector, image, config: BoxExplainConfig | None = None,
                      min_score: float | None = None, progress: bool = True) -> BoxExplanation:
    """Look inside detection ``config.index`` (0, the best, by default) of ``model`` on
    ``image``, as ``model.predict(image, min_score=min_score)`` lists them."""
    config = config or BoxExplainConfig()
    index = config.index or 0
    if config.method not in BOX_METHODS:
        raise UsageError(f"unknown `method` {config.method!r}; choose one of: "
                         f"{', '.join(BOX_METHODS)}.")
    photo = read_photo(image)
    small, _ = shrunk(photo, EXPLAIN_SIDE)
    found = model.predict([small], min_score=min_score)[0]
    if index >= len(found):
        raise UsageError(f"{model.name} found {len(found)} detection"
                         f"{'' if len(found) == 1 else 's'} in {photo.name or 'the image'}, "
                         f"so there is no detection {index} to explain; pass an `index` below "
                         f"{len(found)}" + (" or a lower `min_score`." if found.min_score else
                                            "."))
    box, label, score = found.boxes[index], found.labels[index], float(found.scores[index])
    if config.method == "gradcam" and isinstance(model, TrainedDetector):
        heat, settings = _gradcam_trained(model, small, box, label)
    elif config.method == "gradcam":
        heat, settings = _gradcam_mtcnn(model, small, box)
    else:
        heat, settings = _occlusion(model, small, box, label, config, progress)
    return BoxExplanation(model.name, config.method, small, box, label, score, heat,
                          settings, photo.name)


def _region(box: np.ndarray, margin: float, h: int, w: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    return (max(0, math.floor(x0 - margin * bw)), max(0, math.floor(y0 - margin * bh)),
            min(w, math.ceil(x1 + margin * bw)), min(h, math.ceil(y1 + margin * bh)))


def _occlusion(model: Detector, photo: np.ndarray, box: np.ndarray, label: str,
               config: BoxExplainConfig, progress: bool):
    from captum.attr import Occlusion  # heavy optional dependency

    h, w = photo.shape[:2]
    side = max(1.0, float(min(box[2] - box[0], box[3] - box[1])))
    window = config.window or max(4, round(side / 2))
    stride = config.stride or max(1, window // 4)
    if stride > window:
        raise UsageError(f"the stride ({stride}) is larger than the window ({window}), which "
                         "would leave pixels never hidden; pass a `stride` no larger than the "
                         "`window`.")
    x0, y0, x1, y1 = _region(box, config.margin, h, w)
    window = min(window, x1 - x0, y1 - y0)
    crop = torch.from_numpy(photo[y0:y1, x0:x1].copy()).permute(2, 0, 1).float()[None]
    masks = math.prod(math.ceil((s - window) / stride) + 1 for s in (y1 - y0, x1 - x0))
    target = torch.from_numpy(np.asarray(box, np.float32))
    grey = torch.full_like(crop, 127.0)
    bar = progress_bar(total=masks + 1, desc=f"occlusion of {label}", unit="mask",
                       leave=False, enable=progress)

    def score(x: torch.Tensor) -> torch.Tensor:  # (P, 3, h, w) masked crops -> (P,)
        bar.update(len(x))
        photos = []
        for crop_i in x:
            full = photo.copy()
            full[y0:y1, x0:x1] = crop_i.permute(1, 2, 0).round().clamp(0, 255).byte().numpy()
            photos.append(full)
        found = model.predict(photos, min_score=0.0 if model.score_kind == "probability"
                              else None)
        return torch.tensor([_matched_score(f, target, label) for f in found])

    with bar:
        drop = Occlusion(score).attribute(
            crop, sliding_window_shapes=(3, window, window), strides=(3, stride, stride),
            baselines=grey, perturbations_per_eval=max(1, getattr(model, "batch", 1)))
    heat = np.zeros((h, w), np.float32)
    heat[y0:y1, x0:x1] = drop[0, 0].numpy()
    return heat, {"window": window, "stride": stride, "masks": masks,
                  "region": [x0, y0, x1, y1], "baseline": "grey (127)"}


def _gradcam_mtcnn(model: Detector, photo: np.ndarray, box: np.ndarray):
    if not isinstance(model, MtcnnFaces):
        raise UsageError(f"Grad-CAM needs a PyTorch detector (mtcnn, or one you trained); "
                         f"{model.name} is not "
                         "one, so use `method` occlusion, which works for any detector.")
    from captum.attr import LayerAttribution, LayerGradCam  # heavy optional dependency

    onet = model.network.onet
    h, w = photo.shape[:2]
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0)  # the square crop MTCNN's last stage sees
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    sx0, sy0 = round(cx - side / 2), round(cy - side / 2)
    s = max(1, round(side))
    padded = np.zeros((s, s, 3), np.uint8)
    ax0, ay0, ax1, ay1 = max(0, sx0), max(0, sy0), min(w, sx0 + s), min(h, sy0 + s)
    padded[ay0 - sy0:ay1 - sy0, ax0 - sx0:ax1 - sx0] = photo[ay0:ay1, ax0:ax1]
    x = torch.from_numpy(padded).permute(2, 0, 1).float()[None].to(model.device)
    x = (torch.nn.functional.interpolate(x, size=(48, 48), mode="area") - 127.5) / 128.0

    logits: list[torch.Tensor] = []

    def face_log_odds(inp: torch.Tensor) -> torch.Tensor:
        # the face/not-face logits before O-Net's softmax, which saturates at 1.0 for a
        # clear face and would leave no gradient
        logits.clear()
        onet(inp)
        return (logits[0][:, 1] - logits[0][:, 0])[:, None]

    handle = onet.dense6_1.register_forward_hook(lambda m, i, out: logits.append(out))
    try:
        with model_mode(onet):
            cam = LayerGradCam(face_log_odds, onet.prelu3).attribute(
                x, target=0, relu_attributions=True)
            cam = LayerAttribution.interpolate(cam, (s, s), interpolate_mode="bilinear")
    finally:
        handle.remove()
    cam = cam[0, 0].detach().cpu().numpy()
    heat = np.zeros((h, w), np.float32)
    heat[ay0:ay1, ax0:ax1] = cam[ay0 - sy0:ay1 - sy0, ax0 - sx0:ax1 - sx0]
    return heat, {"layer": "onet.prelu3", "crop": [sx0, sy0, sx0 + s, sy0 + s],
                  "target": "face log-odds (O-Net's logits)"}


def box_target(model: TrainedDetector, box, label: str):
    """The function Grad-CAM differentiates for one box of a trained detector: ``f(x)``, x
    (N, C, H, W) floats in [0, 1], gives (N, 1) the log-odds of the score of the detection
    the network makes for the box on each image.

    torchvision's detectors keep, in eval mode, the graph from the input to each kept
    detection's score (the top-k, the suppression and the decoding only select), so the
    score of the same detection, found again as occlusion finds it (the same label, IoU
    >= 0.5 with the box, the best score), is a differentiable function of the pixels and
    of the trunk's map; it is what Grad-CAM of that box means.  The log-odds rather than
    the score: a confident score (a sigmoid, or FCOS's square root of two) saturates near
    1 and would leave no gradient; the log-odds rank the same and do not saturate.  An
    image on which the box is lost gives 0 with no gradient."""
    net = model.model
    wanted = torch.as_tensor(np.asarray(box, np.float32))[None]
    k = model.classes.index(label) + 1  # torchvision's labels: 0 is the background

    def log_odds(x: torch.Tensor) -> torch.Tensor:
        out = []
        for found in net(list(x)):
            same = found["labels"] == k
            boxes = found["boxes"].detach()
            iou = box_iou(wanted.to(boxes.device), boxes)[0]
            # the box itself counts even when it is degenerate (no area, so no IoU)
            alike = (boxes - wanted.to(boxes.device)).abs().amax(1) < 1e-3
            ok = same & ((iou >= SAME_BOX_IOU) | alike)
            if not bool(ok.any()):
                out.append(x.sum() * 0)
                continue
            s = found["scores"][ok].max().clamp(1e-6, 1 - 1e-6)
            out.append(torch.log(s) - torch.log1p(-s))
        return torch.stack(out)[:, None]

    return log_odds


def _gradcam_trained(model: TrainedDetector, photo: np.ndarray, box: np.ndarray, label: str):
    net = model.model
    h, w = photo.shape[:2]
    x = as_model_input(photo, model.channels).float()[None].to(model.device) / 255
    with torch.no_grad():  # where the transform puts the photo: resized, then padded
        batch, _ = net.transform([x[0]])
    (rh, rw), (ph, pw) = batch.image_sizes[0], batch.tensors.shape[-2:]
    cam = layer_grad_cam(box_target(model, box, label), net, x)
    # the map covers the padded, resized photo: cut the padding off, back to the photo
    full = resized(cam, (ph, pw))[:rh, :rw]
    heat = resized(torch.from_numpy(np.ascontiguousarray(full)), (h, w))
    return heat, {"layer": cam_layer(net)[2], "map": list(cam.shape),
                  "target": f"log-odds of the {label} detection's score"}


__all__ = ["BOX_METHODS", "BoxExplainConfig", "BoxExplanation", "box_target", "explain_detection"]
