"""torchvision's segmenters, built for a dataset's channels, classes and image size: FCN,
DeepLabV3 and LR-ASPP (registry family ``segment``: ``build_model(name, inp,
task="segment")``).

Each is torchvision's model class (``FCN``, ``DeepLabV3``, ``LRASPP``) with its heads, over a
small trunk (``backbone``: see :mod:`.backbones`) cut by torchvision's feature-extraction
utilities, so its layers keep torchvision's names (``backbone.*``, ``classifier.*``,
``aux_classifier.*``).  The heads read the trunk's stride-16 map (FCN, DeepLabV3; the
stride-8 one for the auxiliary head, with ``aux=true``) or its stride-8 and stride-16 maps
(LR-ASPP), and the scores are upsampled to the input's size: ``{"out": (N, K, H, W)}`` (and
``"aux"``), K the dataset's classes (the background one of them), the loss ignoring 255.

Like the detectors, a segmenter takes images in [0, 1] and normalises them itself
(``backbones.INPUT_MEAN`` / ``INPUT_STD`` in non-persistent buffers, so a state dict is
torchvision's).  ``weights="pretrained"`` with ``backbone=efficientnet-lite0`` starts the
trunk from the packaged ImageNet weights; ``weights=FILE`` loads a state dict saved from the
same model (shapes checked).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.segmentation import FCN, LRASPP, DeepLabV3
from torchvision.models.segmentation.deeplabv3 import DeepLabHead
from torchvision.models.segmentation.fcn import FCNHead

from convscope.errors import ConvscopeError, UsageError
from convscope.models.backbones import (
    INPUT_MEAN,
    INPUT_STD,
    STAGES,
    as_images,
    feature_trunk,
    load_weights_file,
    register_network,
    wants_packaged,
)
from convscope.models.registry import ModelInput

#: the mask value no loss counts (Pascal VOC's outlines, ``data.annotated.IGNORE``)
IGNORE = 255
#: the auxiliary head's share of the loss (torchvision's segmentation reference)
AUX_WEIGHT = 0.5
#: DeepLabV3's atrous rates on the stride-16 map of a 96-128 px image (8x8): torchvision's
#: (12, 24, 36) suit 513 px crops and would read only padding here
ATROUS_RATES = (2, 4, 6)


class _Normalising:
    """Mixed in before a torchvision segmenter: its forward on ``(x - mean) / std``."""

    def normalising(self, channels: int):
        self.register_buffer("mean", torch.full((1, channels, 1, 1), INPUT_MEAN),
                             persistent=False)
        self.register_buffer("std", torch.full((1, channels, 1, 1), INPUT_STD),
                             persistent=False)
        return self

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return super().forward((x - self.mean) / self.std)


class SegmentFCN(_Normalising, FCN):
    """torchvision's FCN, taking images in [0, 1]."""


class SegmentDeepLabV3(_Normalising, DeepLabV3):
    """torchvision's DeepLabV3, taking images in [0, 1]."""


class SegmentLRASPP(_Normalising, LRASPP):
    """torchvision's LR-ASPP, taking images in [0, 1]."""


def _finish(model, name: str, inp: ModelInput, weights: str | None,
            packaged: bool) -> nn.Module:
    model.normalising(inp.channels)
    model.trunk_name = "backbone"  # where the (possibly pretrained) trunk is
    if weights and not packaged:
        load_weights_file(model, name, weights, inp.channels)
    return model


def _heads(cls, name: str, head, inp: ModelInput, backbone: str, trainable_layers: int,
           aux: bool, weights: str | None) -> nn.Module:
    packaged = wants_packaged(name, backbone, weights)
    outputs = {16: "out", 8: "aux"} if aux else {16: "out"}
    body, channels = feature_trunk(backbone, inp.channels, outputs, packaged, trainable_layers)
    model = cls(body, head(channels[0], inp.num_classes),
                FCNHead(channels[1], inp.num_classes) if aux else None)
    return _finish(model, name, inp, weights, packaged)


@register_network("fcn", "FCN (Long et al. 2015): a conv head on the trunk's stride-16 map, "
                "upsampled (torchvision)", "segment")
def fcn(inp: ModelInput, backbone: str = "mobilenet-v3-large", trainable_layers: int = STAGES,
        aux: bool = False, weights: str | None = None) -> nn.Module:
    return _heads(SegmentFCN, "fcn", FCNHead, inp, backbone, trainable_layers, aux, weights)


@register_network("deeplabv3", "DeepLabV3 (Chen et al. 2017): atrous spatial pyramid pooling "
                "on the trunk's stride-16 map (torchvision)", "segment")
def deeplabv3(inp: ModelInput, backbone: str = "mobilenet-v3-large",
              trainable_layers: int = STAGES, aux: bool = False,
              weights: str | None = None) -> nn.Module:
    def head(channels, classes):
        return DeepLabHead(channels, classes, atrous_rates=ATROUS_RATES)
    return _heads(SegmentDeepLabV3, "deeplabv3", head, inp, backbone, trainable_layers, aux,
                  weights)


@register_network("lraspp", "LR-ASPP (Howard et al. 2019): a light head on the trunk's "
                "stride-16 map with a low-level branch at stride 4 (low_stride; torchvision's: "
                "8)", "segment")
def lraspp(inp: ModelInput, backbone: str = "mobilenet-v3-large",
           trainable_layers: int = STAGES, low_stride: int = 4,
           weights: str | None = None) -> nn.Module:
    # the low-level branch (a 1x1 classifier) on the stride-4 map rather than torchvision's
    # stride 8: digit strokes are 2-6 px wide and stride-8 scores cannot draw them (mIoU
    # 0.69 vs 0.82 on digits-masks after the same 2 epochs, at about the same step time)
    if low_stride not in (4, 8):
        raise UsageError(f"`low_stride` must be 4 or 8, got {low_stride}.")
    packaged = wants_packaged("lraspp", backbone, weights)
    body, (low, high) = feature_trunk(backbone, inp.channels, {low_stride: "low", 16: "high"},
                                      packaged, trainable_layers)
    model = SegmentLRASPP(body, low, high, inp.num_classes)
    return _finish(model, "lraspp", inp, weights, packaged)


# --------------------------------------------------------------------------- training helpers
def _batch(images) -> torch.Tensor:
    images = as_images(images)
    sizes = {tuple(x.shape) for x in images}
    if len(sizes) != 1:
        raise ConvscopeError(f"`images` must share one size to form a batch, got "
                             f"{len(sizes)} sizes; pad or resize them first.")
    return torch.stack(images)


def segmentation_loss(model: nn.Module, images, masks) -> torch.Tensor:
    """Cross-entropy of ``model``'s scores on ``images`` (one size; see
    ``detection.as_images``) against ``masks`` (``(N, H, W)`` class indices, 255 ignored),
    plus :data:`AUX_WEIGHT` times the auxiliary head's when it has one."""
    out = model(_batch(images))
    masks = torch.as_tensor(masks) if not isinstance(masks, torch.Tensor) else masks
    if masks.ndim == 2:
        masks = masks[None]
    if tuple(masks.shape) != (out["out"].shape[0], *out["out"].shape[2:]):
        raise ConvscopeError(f"`masks` is {tuple(masks.shape)} but the images are "
                             f"{tuple(out['out'].shape[:1] + out['out'].shape[2:])}; give one "
                             "(H, W) mask per image, at its size.")
    return mask_loss(out, masks)


def mask_loss(out: dict[str, torch.Tensor], masks: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of a segmenter's output dict against ``(N, H, W)`` class indices, 255
    ignored, plus :data:`AUX_WEIGHT` times the auxiliary head's when it has one."""
    target = masks.to(out["out"].device, torch.int64)
    loss = F.cross_entropy(out["out"], target, ignore_index=IGNORE)
    if "aux" in out:
        loss = loss + AUX_WEIGHT * F.cross_entropy(out["aux"], target, ignore_index=IGNORE)
    return loss


def segmentation_outputs(model: nn.Module, images) -> torch.Tensor:
    """``(N, H, W)`` int64 class indices, each pixel's best class (``metrics.evaluate_masks``
    takes them as they are); the model runs in eval mode without gradients and is left in
    the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model(_batch(images))["out"].argmax(1)
    finally:
        model.train(was_training)
