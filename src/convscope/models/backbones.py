"""Small trunks for the detectors and segmenters: a classifier's convolutional stages, cut
where its feature maps reach strides 8, 16 and 32 by torchvision's feature-extraction
utilities (``create_feature_extractor``, which traces the network with torch.fx and keeps
only the layers those maps need, under their own names).

Three trunks, each small enough to train on two CPU cores: MobileNetV3-Large and ResNet-18
(torchvision's, random weights: nothing downloads) and EfficientNet-Lite0 (the pretrained
catalogue's, whose packaged ImageNet weights it carries with ``pretrained=True``).

Grey images: the trunk's first conv is rebuilt for the data's channels (``zoo.adapt_stem``);
pretrained RGB filters become their mean times 3, which is what a grey image repeated on
three channels would meet, without computing the repeat.  Every network here takes images
in [0, 1] and normalises them itself with :data:`INPUT_MEAN` / :data:`INPUT_STD` (TensorFlow's
EfficientNet-Lite statistics, (x - 127) / 128 on 0-255 pixels, on every channel).
"""

from __future__ import annotations

import inspect
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torchvision.models as tvm
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

from convscope.errors import ConvscopeError, UsageError
from convscope.models.pretrained import MBConv, lite_network
from convscope.models.registry import register_model
from convscope.models.zoo import PACKAGED, adapt_stem, fit_to_weights, read_state_dict

#: the input statistics of every detector and segmenter, on a 0-1 scale, per channel
INPUT_MEAN = 127 / 255
INPUT_STD = 128 / 255
#: a trunk's stages: strides 2, 4, 8, 16 and 32
STAGES = 5


def _by_index(prefix: str, starts: list[int], before: int = 0) -> Callable[[str], int]:
    """The stage of a parameter named ``prefix.N...``: where N falls among the stages'
    first indices; any other name (a stem) is stage ``before``."""
    def stage(name: str) -> int:
        head, _, rest = name.partition(".")
        if head != prefix:
            return before
        return bisect_right(starts, int(rest.partition(".")[0])) - 1
    return stage


def _resnet_stage(name: str) -> int:
    head = name.partition(".")[0]
    return int(head.removeprefix("layer")) if head.startswith("layer") else 0


@dataclass(frozen=True)
class Trunk:
    """One classifier network as a trunk: where its stride-4/8/16/32 maps are, their
    channels, and the stage (0-4) each parameter belongs to."""

    name: str
    #: pretrained -> the classifier network in training mode
    build: Callable[[bool], nn.Module]
    #: stride -> the layer whose output is the map at that stride
    nodes: dict[int, str]
    channels: dict[int, int]
    stage: Callable[[str], int]
    #: whether ``pretrained=True`` has packaged weights to load
    packaged: bool
    #: modules torch.fx calls as a whole instead of tracing into them
    leaves: tuple[type, ...] = ()


def _mobilenet(pretrained: bool) -> nn.Module:
    return tvm.mobilenet_v3_large(weights=None)


def _resnet18(pretrained: bool) -> nn.Module:
    return tvm.resnet18(weights=None)


TRUNKS: dict[str, Trunk] = {t.name: t for t in (
    Trunk("mobilenet-v3-large", _mobilenet,
          {4: "features.3", 8: "features.6", 16: "features.12", 32: "features.16"},
          {4: 24, 8: 40, 16: 112, 32: 960},
          _by_index("features", [0, 2, 4, 7, 13]), packaged=False),
    Trunk("resnet18", _resnet18, {4: "layer1", 8: "layer2", 16: "layer3", 32: "layer4"},
          {4: 64, 8: 128, 16: 256, 32: 512}, _resnet_stage, packaged=False),
    # the packaged network's blocks: stride 4 from block 1, 8 from 3, 16 from 5, 32 from 11
    Trunk("efficientnet-lite0", lambda pretrained: lite_network(0, packaged=pretrained),
          {4: "blocks.2", 8: "blocks.4", 16: "blocks.10", 32: "blocks.15"},
          {4: 24, 8: 40, 16: 112, 32: 320},
          _by_index("blocks", [0, 1, 3, 5, 11]), packaged=True, leaves=(MBConv,)),
)}
BACKBONES = tuple(TRUNKS)
#: the trunk whose packaged ImageNet weights ``weights="pretrained"`` loads
PACKAGED_BACKBONE = "efficientnet-lite0"


def check_backbone(backbone: str, trainable_layers: int) -> Trunk:
    if backbone not in TRUNKS:
        raise UsageError(f"`backbone` must be one of {', '.join(BACKBONES)}, got "
                         f"{backbone!r}.")
    if not 0 <= trainable_layers <= STAGES:
        raise UsageError(f"`trainable_layers` must be 0 to {STAGES} (the trunk's stages that "
                         f"train, counted from the top), got {trainable_layers}.")
    return TRUNKS[backbone]


def feature_trunk(backbone: str, channels: int, outputs: dict[int, str], pretrained: bool,
                  trainable_layers: int = STAGES) -> tuple[nn.Module, list[int]]:
    """The trunk ``backbone`` for ``channels``-channel images, returning an ordered dict
    ``{name: map}`` for each ``{stride: name}`` of ``outputs`` (strides 4, 8, 16, 32), and the
    maps' channels.  ``pretrained`` loads the packaged weights (EfficientNet-Lite0 only);
    the ``STAGES - trainable_layers`` lowest stages are frozen."""
    trunk = check_backbone(backbone, trainable_layers)
    net = adapt_stem(trunk.build(pretrained), channels, pretrained)
    body = create_feature_extractor(
        net, {trunk.nodes[s]: name for s, name in outputs.items()},
        tracer_kwargs={"leaf_modules": list(trunk.leaves)} if trunk.leaves else None)
    for name, p in body.named_parameters():
        if trunk.stage(name) < STAGES - trainable_layers:
            p.requires_grad_(False)
    usual_norm_momentum(body)
    return body, [trunk.channels[s] for s in outputs]


#: batch norm's running-statistics momentum here: PyTorch's default
NORM_MOMENTUM = 0.1


def usual_norm_momentum(module: nn.Module) -> nn.Module:
    """Batch norm back to PyTorch's momentum of 0.1.  torchvision's MobileNetV3 (and the
    SSDlite on it) use 0.01 / 0.03, tuned for ImageNet-length runs: after a few hundred
    steps from scratch the running statistics are still near their start, and the network
    in eval mode finds nothing although it trains well (measured: FCOS after one epoch on
    the digit canvases, mAP@.5 0.000 as built, 0.125 with the statistics re-estimated)."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = NORM_MOMENTUM
    return module


def is_packaged(weights: str | None) -> bool:
    return bool(weights) and weights.upper() in PACKAGED


def wants_packaged(name: str, backbone: str, weights: str | None) -> bool:
    """Whether ``weights`` asks for the packaged backbone, which only ``PACKAGED_BACKBONE``
    has (one sentence otherwise)."""
    if not is_packaged(weights):
        return False
    if backbone not in TRUNKS or not TRUNKS[backbone].packaged:
        raise UsageError(f"`weights={weights!r}` starts {name}'s trunk from packaged ImageNet "
                         f"weights, which only backbone {PACKAGED_BACKBONE} has (no package "
                         f"carries {backbone}'s); pass `backbone={PACKAGED_BACKBONE}`, or a "
                         "state dict file as `weights`.")
    return True


def load_weights_file(model: nn.Module, name: str, weights: str, channels: int) -> nn.Module:
    """Load a local state dict saved from the same model into ``model``, shapes checked
    (``zoo.fit_to_weights``: only the first conv may differ, as for weights of an RGB model
    on grey images, whose filters are then averaged as ``zoo.adapt_stem`` does)."""
    fit_to_weights(model, read_state_dict(weights), name, weights, head=False)
    return adapt_stem(model, channels, pretrained=True)


def as_images(images) -> list[torch.Tensor]:
    """``(C, H, W)`` float images in [0, 1]: from a list of images or an ``(N, C, H, W)``
    batch, uint8 (0-255) or float (0-1)."""
    if isinstance(images, torch.Tensor) and images.ndim == 3:
        images = [images]
    out = []
    for x in images:
        if not isinstance(x, torch.Tensor) or x.ndim != 3:
            raise ConvscopeError("`images` must be (C, H, W) tensors or one (N, C, H, W) "
                                 "batch.")
        out.append(x.float() / 255 if x.dtype == torch.uint8 else x)
    return out


def register_network(name: str, summary: str, family: str):
    """``register_model`` for a detector or segmenter: its options (``backbone``,
    ``trainable_layers``, ...) and their defaults are the builder's keyword arguments, and
    it takes ``weights``."""
    def decorate(build):
        params = inspect.signature(build).parameters
        defaults = {k: p.default for k, p in params.items()
                    if k != "weights" and p.default is not inspect.Parameter.empty}
        return register_model(name, summary, family=family, pretrained=True,
                              defaults=defaults)(build)
    return decorate
