"""torchvision's detectors, built for a dataset's channels, classes and image size: Faster
R-CNN, RetinaNet, FCOS and SSDlite (registry family ``detect``: ``build_model(name, inp,
task="detect")``).

Each has ``inp.num_classes + 1`` outputs, 0 being the background, as torchvision's detectors
count; :func:`detection_loss` adds 1 to a dataset's 0-based labels and :func:`detection_outputs`
takes it off again.  The network takes a list of ``(C, H, W)`` float images in [0, 1] (the
helpers also take uint8 images or one ``(N, C, H, W)`` batch, see ``backbones.as_images``);
its transform normalises them and resizes each so that its
shorter side is ``min(inp.image_size)`` and its longer at most ``max(inp.image_size)`` (96-128
px canvases stay near their size instead of torchvision's 800 px).  Anchors suit objects of
16-128 px, such as the 20-56 px digits of ``digits-boxes``.

Faster R-CNN, RetinaNet and FCOS share one trunk (``backbone``: see :mod:`.backbones`) with a
feature pyramid on its stride-8/16/32 maps (``fpn_channels`` wide, 128 by default: half of
torchvision's, for CPU training); ``weights="pretrained"`` with
``backbone=efficientnet-lite0`` starts the trunk from the packaged ImageNet weights, and
``weights=FILE`` loads a state dict saved from the same model (shapes checked).  SSDlite is
torchvision's ``ssdlite320_mobilenet_v3_large`` with its transform and default boxes fitted
to the image size.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models.detection import (
    FCOS,
    FasterRCNN,
    RetinaNet,
    ssdlite320_mobilenet_v3_large,
)
from torchvision.models.detection.anchor_utils import AnchorGenerator, DefaultBoxGenerator
from torchvision.models.detection.ssd import SSD
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

from convscope.errors import ConvscopeError, UsageError
from convscope.models.backbones import (
    INPUT_MEAN,
    INPUT_STD,
    PACKAGED_BACKBONE,
    STAGES,
    as_images,
    feature_trunk,
    is_packaged,
    load_weights_file,
    register_network,
    usual_norm_momentum,
    wants_packaged,
)
from convscope.models.registry import ModelInput
from convscope.models.zoo import adapt_stem

#: the pyramid's channels by default: half of torchvision's 256, which made RetinaNet's and
#: FCOS's heads (four 3x3 convs at the pyramid's width, per level) most of a CPU step
PYRAMID_CHANNELS = 128
#: the largest side the transform resizes to (the boxes formats scale images to 1024 px)
MAX_SIDE = 1024


class Pyramid(nn.Module):
    """A trunk's maps at strides 8, 16, 32 through a feature pyramid (torchvision's
    ``BackboneWithFPN``, over a ``create_feature_extractor`` trunk): ``body``, ``fpn``."""

    def __init__(self, body: nn.Module, in_channels: list[int], out_channels: int,
                 extra: nn.Module):
        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork(in_channels, out_channels, extra_blocks=extra)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return self.fpn(self.body(x))


def _sizes(inp: ModelInput) -> dict:
    """The transform's settings: sides near the dataset's, its channels' statistics."""
    return {"min_size": min(min(inp.image_size), MAX_SIDE),
            "max_size": min(max(inp.image_size), MAX_SIDE),
            "image_mean": [INPUT_MEAN] * inp.channels, "image_std": [INPUT_STD] * inp.channels}


def _pyramid(inp: ModelInput, backbone: str, trainable_layers: int, pretrained: bool,
             fpn_channels: int, extra: nn.Module) -> Pyramid:
    if not 8 <= fpn_channels <= 1024:
        raise UsageError(f"`fpn_channels` must be 8 to 1024, got {fpn_channels}.")
    body, channels = feature_trunk(backbone, inp.channels, {8: "0", 16: "1", 32: "2"},
                                   pretrained, trainable_layers)
    return Pyramid(body, channels, fpn_channels, extra)


def _finish(model: nn.Module, name: str, inp: ModelInput, weights: str | None) -> nn.Module:
    # where the (possibly pretrained) trunk is: fine-tuning trains it at a lower rate
    model.trunk_name = "backbone.features" if name == "ssdlite" else "backbone.body"
    if weights and not is_packaged(weights):
        load_weights_file(model, name, weights, inp.channels)
    return model


@register_network("fasterrcnn", "Faster R-CNN (Ren et al. 2015): region proposals, then a box "
                "head per region; trunk + feature pyramid (torchvision)", "detect")
def fasterrcnn(inp: ModelInput, backbone: str = "mobilenet-v3-large",
               trainable_layers: int = STAGES, fpn_channels: int = PYRAMID_CHANNELS,
               weights: str | None = None) -> nn.Module:
    packaged = wants_packaged("fasterrcnn", backbone, weights)
    pyramid = _pyramid(inp, backbone, trainable_layers, packaged, fpn_channels,
                       LastLevelMaxPool())
    # one size per level (strides 8, 16, 32, 64), three shapes each: 16-128 px objects
    anchors = AnchorGenerator(((16,), (32,), (64,), (128,)), ((0.5, 1.0, 2.0),) * 4)
    model = FasterRCNN(
        pyramid, inp.num_classes + 1, rpn_anchor_generator=anchors,
        # a canvas holds a few objects: fewer proposals and sampled regions than COCO's
        rpn_pre_nms_top_n_train=600, rpn_post_nms_top_n_train=300,
        rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=100,
        rpn_batch_size_per_image=128, box_batch_size_per_image=128, **_sizes(inp))
    return _finish(model, "fasterrcnn", inp, weights)


def _five_levels(inp, backbone, trainable_layers, packaged, fpn_channels) -> Pyramid:
    """Strides 8 to 128: P3-P5 from the trunk, P6 and P7 from P5 (RetinaNet's, FCOS's)."""
    return _pyramid(inp, backbone, trainable_layers, packaged, fpn_channels,
                    LastLevelP6P7(fpn_channels, fpn_channels))


@register_network("retinanet", "RetinaNet (Lin et al. 2017): one stage, focal loss; trunk + "
                "feature pyramid (torchvision)", "detect")
def retinanet(inp: ModelInput, backbone: str = "mobilenet-v3-large",
              trainable_layers: int = STAGES, fpn_channels: int = PYRAMID_CHANNELS,
              weights: str | None = None) -> nn.Module:
    packaged = wants_packaged("retinanet", backbone, weights)
    pyramid = _five_levels(inp, backbone, trainable_layers, packaged, fpn_channels)
    # three scales an octave apart per level, 16 px at stride 8 (torchvision's: 32 at 8)
    sizes = tuple((s, int(s * 2 ** (1 / 3)), int(s * 2 ** (2 / 3))) for s in (16, 32, 64, 128, 256))
    anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
    model = RetinaNet(pyramid, inp.num_classes + 1, anchor_generator=anchors, **_sizes(inp))
    return _finish(model, "retinanet", inp, weights)


@register_network("fcos", "FCOS (Tian et al. 2019): anchor-free, one stage; trunk + feature "
                "pyramid (torchvision)", "detect")
def fcos(inp: ModelInput, backbone: str = "mobilenet-v3-large",
         trainable_layers: int = STAGES, fpn_channels: int = PYRAMID_CHANNELS,
         weights: str | None = None) -> nn.Module:
    packaged = wants_packaged("fcos", backbone, weights)
    if 8 <= fpn_channels <= 1024 and (fpn_channels % 32 or fpn_channels < 64):
        # one channel per group cannot be normalised on the 1x1 top level of a small image
        raise UsageError(f"fcos's head normalises its channels in 32 groups, so `fpn_channels` "
                         f"must be a multiple of 32 from 64 up, got {fpn_channels}.")
    pyramid = _five_levels(inp, backbone, trainable_layers, packaged, fpn_channels)
    # one point per location, sized by its stride, as torchvision's fcos_resnet50_fpn
    anchors = AnchorGenerator(((8,), (16,), (32,), (64,), (128,)), ((1.0,),) * 5)
    # score_thresh 0.05 as the other detectors' (torchvision's FCOS keeps only >= 0.2): COCO's
    # mAP counts low-scored boxes too, and predict's min_score filters what is shown
    model = FCOS(pyramid, inp.num_classes + 1, anchor_generator=anchors, score_thresh=0.05,
                 **_sizes(inp))
    return _finish(model, "fcos", inp, weights)


@register_network("ssdlite", "SSDlite (Sandler et al. 2018): one stage on MobileNetV3-Large "
                "(torchvision's ssdlite320_mobilenet_v3_large at the data's size)", "detect")
def ssdlite(inp: ModelInput, weights: str | None = None) -> nn.Module:
    if is_packaged(weights):
        raise UsageError(f"ssdlite has no packaged weights to start from (`weights={weights!r}`); "
                         "pass a state dict file as `weights`, or use fasterrcnn, retinanet or "
                         f"fcos with `backbone={PACKAGED_BACKBONE}`.")
    model: SSD = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None,
                                               num_classes=inp.num_classes + 1)
    adapt_stem(model.backbone, inp.channels, pretrained=False)
    usual_norm_momentum(model)
    h, w = (min(s, MAX_SIDE) for s in inp.image_size)
    sizes = _sizes(inp)
    model.transform = GeneralizedRCNNTransform(min(h, w), max(h, w), sizes["image_mean"],
                                               sizes["image_std"], size_divisible=1,
                                               fixed_size=(h, w))
    # six maps (strides 16 to 128 or more); default boxes from 10% to 80% of the image
    # instead of 20-95%, so 20 px objects on 128 px images have boxes of their size
    model.anchor_generator = DefaultBoxGenerator([[2, 3]] * 6, min_ratio=0.1, max_ratio=0.8)
    return _finish(model, "ssdlite", inp, weights)


# --------------------------------------------------------------------------- training helpers
def detection_losses(model: nn.Module, images, targets: Sequence[dict]) -> dict[str, torch.Tensor]:
    """torchvision's losses of a detector in training mode on ``images`` (see
    :func:`as_images`) with their ``targets``: per image ``boxes`` ``(N, 4)`` x0, y0, x1, y1
    in its pixels and ``labels`` ``(N,)`` 0-based (``AnnotatedSplit.target(i)``)."""
    if not model.training:
        raise ConvscopeError("the detector must be in training mode (`model.train()`) to "
                             "give its losses.")
    images = as_images(images)
    if len(targets) != len(images):
        raise ConvscopeError(f"`targets` holds {len(targets)} entries for {len(images)} "
                             "images; give one per image.")
    device = images[0].device if images else None
    wanted = [{"boxes": t["boxes"].to(device, torch.float32).reshape(-1, 4),
               "labels": t["labels"].to(device, torch.int64) + 1} for t in targets]
    return model(images, wanted)


def detection_loss(model: nn.Module, images, targets: Sequence[dict]) -> torch.Tensor:
    """The scalar a training step minimises: the sum of :func:`detection_losses`."""
    return sum(detection_losses(model, images, targets).values())


def detection_outputs(model: nn.Module, images) -> list[dict[str, torch.Tensor]]:
    """Per image, ``boxes`` ``(M, 4)`` in its pixels, ``scores`` ``(M,)`` and ``labels``
    ``(M,)`` 0-based (``metrics.evaluate_boxes`` takes them as they are), best first; the
    model runs in eval mode without gradients and is left in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            found = model(as_images(images))
    finally:
        model.train(was_training)
    out = []
    for d in found:
        keep = d["labels"] > 0  # a one-stage head may score the background class
        order = d["scores"][keep].argsort(descending=True)
        out.append({"boxes": d["boxes"][keep][order], "scores": d["scores"][keep][order],
                    "labels": d["labels"][keep][order] - 1})
    return out
