"""torchvision's ILSVRC networks, adapted to any dataset's classes and channels.

Adapting is generic, not keyed on names: the first ``Conv2d`` is rebuilt for the
dataset's channels (pretrained filters are averaged over RGB) and the last
``Linear`` for its classes.  Inputs smaller than a network accepts are upsampled
by the preprocessing (see ``ModelEntry.min_input``), so the network itself stays
torchvision's, with torchvision's layer names.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
import torchvision.models as tvm
from safetensors.torch import load_file
from torch import nn

from convscope.errors import ConvscopeError, UsageError
from convscope.models.registry import ModelInput, register_model

#: ``--weights`` values that mean "the network's own pretrained weights": torchvision's
#: download for the ILSVRC models, the packaged file for the pretrained catalogue's
PACKAGED = ("DEFAULT", "PRETRAINED")

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

# name: (summary, smallest input side torchvision's network accepts, measured)
ZOO = {
    "alexnet": ("AlexNet (Krizhevsky et al. 2012), the ILSVRC 2012 winner", 63),
    "vgg16": ("VGG-16 (Simonyan & Zisserman 2014), 16 layers of 3x3 convs", 32),
    "googlenet": ("GoogLeNet / Inception v1 (Szegedy et al. 2014), ILSVRC 2014 winner", 15),
    "resnet18": ("ResNet-18 (He et al. 2015), ImageNet layout", 1),
    "resnet50": ("ResNet-50 (He et al. 2015), bottleneck blocks, ILSVRC 2015 winner", 1),
    "resnet101": ("ResNet-101 (He et al. 2015)", 1),
    "densenet121": ("DenseNet-121 (Huang et al. 2017)", 29),
}


def _constructor(name: str):
    ctor = getattr(tvm, name)
    if name == "googlenet":  # no auxiliary heads; our normalisation, not torchvision's remap
        return lambda: ctor(weights=None, aux_logits=False, init_weights=True,
                            transform_input=False)
    if name.startswith("resnet"):  # each residual branch starts as identity: deep nets train
        return lambda: ctor(weights=None, zero_init_residual=True)
    return lambda: ctor(weights=None)


def torchvision_names() -> list[str]:
    """Every classifier torchvision builds (``torchvision:NAME``)."""
    return tvm.list_models(module=tvm)


def torchvision_network(name: str) -> nn.Module:
    """torchvision's ImageNet classifier ``name`` with random weights, built as the zoo
    builds it (the one constructor of ``torchvision:NAME`` everywhere)."""
    if name not in torchvision_names():
        raise ConvscopeError(f"unknown torchvision model {name!r}; choose one of: "
                             f"{', '.join(torchvision_names())}.")
    return _constructor(name)() if name in ZOO else tvm.get_model(name, weights=None)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a .safetensors file, or from .pt/.pth read with weights_only=True."""
    path = Path(path)
    if not path.is_file():
        raise ConvscopeError(f"weights file {path} does not exist; pass `weights=\"DEFAULT\"` to "
                             "download torchvision's, or the path of a local state dict.")
    try:
        if path.suffix == ".safetensors":
            sd = load_file(str(path))
        else:  # never unpickle arbitrary objects
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure here means "not a usable weights file"
        raise ConvscopeError(f"{path} is not a readable state dict ({str(exc)[:160]}); save "
                             "weights with torch.save(model.state_dict(), path).") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ConvscopeError(f"{path} does not hold a state dict of tensors.")
    return sd


def download_state_dict(name: str, weights: str) -> dict[str, torch.Tensor]:
    """torchvision's pretrained weights (``DEFAULT`` or an enum name like IMAGENET1K_V1)."""
    enum = tvm.get_model_weights(name)
    try:
        w = enum.DEFAULT if weights.upper() in PACKAGED else enum[weights]
    except KeyError:
        valid = ", ".join(["DEFAULT", *enum.__members__])
        raise UsageError(f"unknown weights {weights!r} for {name}; choose one of: {valid}, "
                         "or a file path.") from None
    try:
        return w.get_state_dict(progress=True)
    except Exception as exc:  # noqa: BLE001 - urllib/ssl/socket errors all mean "offline"
        raise ConvscopeError(
            f"could not download the {name} {w.name} weights ({str(exc)[:120]}); when offline, "
            "pass a state dict saved on this machine as `weights`."
        ) from None


def _first(model: nn.Module, kind: type) -> tuple[str, nn.Module]:
    return next((n, m) for n, m in model.named_modules() if isinstance(m, kind))


def _last(model: nn.Module, kind: type) -> tuple[str, nn.Module]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, kind)][-1]


def head_layer(model: nn.Module) -> tuple[str, nn.Module]:
    """The name and module of ``model``'s head: its last Linear."""
    return _last(model, nn.Linear)


def _with_in_channels(conv: nn.Conv2d, channels: int) -> nn.Conv2d:
    """A copy of ``conv`` taking ``channels`` inputs, freshly initialised: a copy keeps the
    conv's own class and padding (EfficientNet's static "same" padding lives in a Conv2d
    subclass); only its input channels change."""
    new = copy.deepcopy(conv)
    new.in_channels = channels
    new.weight = nn.Parameter(conv.weight.new_empty(
        conv.out_channels, channels // conv.groups, *conv.kernel_size))
    new.reset_parameters()
    return new


def adapt_stem(model: nn.Module, channels: int, pretrained: bool) -> nn.Module:
    """Rebuild ``model``'s first conv for ``channels`` inputs; pretrained filters become
    their mean over the old input channels times old/new channels, so a grey image meets
    the RGB filters as that grey repeated on every channel would."""
    name, conv = _first(model, nn.Conv2d)
    if conv.in_channels != channels:
        new = _with_in_channels(conv, channels)
        if pretrained:  # keep the learned filters: their mean over the old input channels
            with torch.no_grad():
                mean = conv.weight.mean(dim=1, keepdim=True)
                new.weight.copy_(mean.expand_as(new.weight) * conv.in_channels / channels)
                if conv.bias is not None:
                    new.bias.copy_(conv.bias)
        model.set_submodule(name, new)
    return model


def adapt(model: nn.Module, inp: ModelInput, pretrained: bool) -> nn.Module:
    """Rebuild the first conv for ``inp.channels`` and the last Linear for its classes."""
    adapt_stem(model, inp.channels, pretrained)
    name, fc = _last(model, nn.Linear)
    if fc.out_features != inp.num_classes:
        model.set_submodule(name, nn.Linear(fc.in_features, inp.num_classes))
    return model


def freeze_backbone(model: nn.Module) -> str:
    """Stop gradients everywhere but the last Linear (the head), for a linear probe on the
    network's features; returns the head's name.  :func:`keep_frozen` keeps the frozen part
    in eval mode while the head trains."""
    head, fc = head_layer(model)
    for p in model.parameters():
        p.requires_grad_(False)
    for p in fc.parameters():
        p.requires_grad_(True)
    return head


def keep_frozen(model: nn.Module, head: str) -> None:
    """After ``model.train()``: every module but ``head`` back in eval mode, so that a
    frozen backbone's batch-norm statistics and dropout stay as they were."""
    for name, module in model.named_modules():
        if name != head:
            module.train(False)


def keep_norm_statistics(model: nn.Module) -> None:
    """After ``model.train()``: batch-norm layers back in eval mode, so that fine-tuning on a
    small folder keeps the pretrained running statistics (their scale and shift still train).
    A few steps at a small batch would otherwise replace them with noisy ones that the test
    images then meet (Keras's transfer-learning guide gives the same advice)."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.train(False)


def _mismatches(model: nn.Module, sd: dict) -> tuple[list[str], list[str]]:
    """(tensors of ``sd`` whose shapes differ from ``model``'s, as "name [got] vs [needed]";
    the model's tensors that ``sd`` lacks).  Keys ``sd`` has beyond the model's are ignored
    (e.g. GoogLeNet's auxiliary heads)."""
    own = model.state_dict()
    wrong = [k for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    missing = [k for k in own if k not in sd]
    return wrong, missing


def _shape_list(model: nn.Module, sd: dict, keys: list[str]) -> str:
    own = model.state_dict()
    shown = [f"{k} {list(sd[k].shape)} (needs {list(own[k].shape)})" for k in keys[:4]]
    return ", ".join(shown) + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")


def fit_to_weights(model: nn.Module, sd: dict, name: str, weights: str,
                   head: bool = True) -> list[str]:
    """Load ``sd`` into torchvision's ``model``; when only its stem (first conv) and head
    (last Linear; with ``head=False``, as for a detector or segmenter, the stem alone)
    differ in shape, rebuild those to the weights' shapes first and return their names.
    Any other difference is a ConvscopeError naming the tensors and both shapes."""
    stem, conv = _first(model, nn.Conv2d)
    last, fc = _last(model, nn.Linear) if head else ("", None)
    ends = {f"{stem}.weight", f"{stem}.bias"}
    if fc is not None:
        ends |= {f"{last}.weight", f"{last}.bias"}
    wrong, missing = _mismatches(model, sd)
    if missing:
        listed = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4
                                          else "")
        raise ConvscopeError(f"the weights in {weights} do not fit {name}: they lack "
                             f"{listed}; pass a state dict saved from {name}.")
    if set(wrong) - ends:
        raise ConvscopeError(f"the weights in {weights} do not fit {name}: "
                             f"{_shape_list(model, sd, [k for k in wrong if k not in ends])}; "
                             f"pass a state dict saved from {name}.")
    rebuilt = []
    w = sd.get(f"{stem}.weight")
    if f"{stem}.weight" in wrong and w is not None and w.ndim == 4 and w.shape[0] == conv.out_channels:
        model.set_submodule(stem, _with_in_channels(conv, w.shape[1] * conv.groups))
        rebuilt.append(stem)
    w = sd.get(f"{last}.weight")
    if fc is not None and f"{last}.weight" in wrong and w is not None and w.ndim == 2 \
            and w.shape[1] == fc.in_features:
        model.set_submodule(last, nn.Linear(fc.in_features, w.shape[0], fc.bias is not None))
        rebuilt.append(last)
    wrong, _ = _mismatches(model, sd)
    if wrong:
        raise ConvscopeError(f"the weights in {weights} do not fit {name}: "
                             f"{_shape_list(model, sd, wrong)}; pass a state dict saved from "
                             f"{name}.")
    model.load_state_dict(sd, strict=False)
    return rebuilt


def build_zoo(name: str, inp: ModelInput, weights: str | None = None) -> nn.Module:
    model = _constructor(name)()
    if not weights:
        return adapt(model, inp, pretrained=False)
    is_file = Path(weights).suffix in (".pt", ".pth", ".safetensors", ".bin") or Path(weights).exists()
    sd = read_state_dict(weights) if is_file else download_state_dict(name, weights)
    # ImageNet-shaped weights, or weights already adapted to some dataset (e.g. a fine-tuned
    # model's with another class count or channels): load them, then adapt to this dataset
    # keeping what was learned (the head is rebuilt when the class counts differ)
    fit_to_weights(model, sd, name, weights)
    return adapt(model, inp, pretrained=True)


def _register(name: str, summary: str, min_input: int) -> None:
    def build(inp: ModelInput, weights: str | None = None) -> nn.Module:
        return build_zoo(name, inp, weights)

    register_model(name, f"{summary} (torchvision)", family="ilsvrc", min_input=min_input,
                   pretrained=True)(build)


for _name, (_summary, _min) in ZOO.items():
    _register(_name, _summary, _min)
