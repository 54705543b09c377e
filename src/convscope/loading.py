"""Open any network for inspection: model files of three kinds, registered names, specs.

``open_network`` is what ``convscope summary``'s MODEL means:

- a convscope model file (``.safetensors``; its own input size);
- only with ``trust_code=True`` (``--trust-code``), because loading them runs code inside
  the file: a torch.export program (``.pt2``; the input size it was exported with), whose
  entries ``torch.export.load`` unpickles (falling back to ``weights_only=False``), and a
  TorchScript archive (any other file read by ``torch.jit.load``; ``--input`` needed),
  converted with torch's TorchScript-to-export converter, which runs the layers inline:
  the trace then finds each layer through the weights its ops use;
- a registered model name or ``spec:...``, built for an input volume and a class count;
- ``torchvision:NAME``, any of torchvision's classifiers.

Without ``trust_code`` nothing is unpickled and no code from a file runs: such files are
refused, before they are opened, with a sentence naming ``--trust-code``.
"""

from __future__ import annotations

import logging
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torchvision.models as tvm
from torch import nn

from convscope.classifier import Classifier, load
from convscope.errors import ConvscopeError, UsageError
from convscope.modelfile import program_kind
from convscope.models import ModelInput, build_model, list_models, parse_model_name
from convscope.models.arithmetic import Volume
from convscope.models.zoo import ZOO, _constructor

FILE_SUFFIXES = (".safetensors", ".pt", ".pt2", ".pth", ".ts")


@dataclass
class OpenedNetwork:
    """A network ready to trace: the module, its input volume, what it is, and the original
    class names of layers whose modules lost them (an exported program's)."""

    module: nn.Module
    input: Volume
    name: str
    types: dict[str, str] = field(default_factory=dict)


@contextmanager
def _quiet_export():
    """torch's export machinery warns a lot about its internals; not the user's business."""
    loggers = [logging.getLogger(n) for n in ("torch._export", "torch.export", "torch._dynamo")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _export_input(ep) -> Volume | None:
    """The (1, C, H, W) example input an exported program was traced with."""
    user = set(ep.graph_signature.user_inputs)
    for node in ep.graph.nodes:
        if node.op == "placeholder" and node.name in user:
            val = node.meta.get("val")
            if val is not None and len(val.shape) == 4:
                return Volume.from_chw(tuple(int(s) for s in val.shape[1:]))
    return None


def _export_types(ep) -> dict[str, str]:
    """{layer name: original class name} from an exported program's module stacks."""
    types = {}
    for node in ep.graph.nodes:
        for path, cls in (node.meta.get("nn_module_stack") or {}).values():
            types.setdefault(path, str(getattr(cls, "__name__", cls)).rsplit(".", 1)[-1])
    return types


def _restore_parameters(net: nn.Module, names: list[str]) -> None:
    """The TorchScript converter turns parameters into buffers; make them parameters again
    so that they are counted as such (running statistics stay buffers)."""
    for name in names:
        owner, _, attr = name.rpartition(".")
        module = net.get_submodule(owner)
        tensor = module._buffers.pop(attr, None)
        if tensor is not None:
            module.register_parameter(attr, nn.Parameter(tensor, requires_grad=False))


def open_exported(path: Path, input: Volume | None) -> OpenedNetwork:
    """A torch.export ``.pt2`` as hookable modules with the original names."""
    try:
        with _quiet_export():
            ep = torch.export.load(str(path))
            net = torch.export.unflatten(ep)
    except Exception as exc:  # noqa: BLE001 - any failure means "not a readable .pt2"
        raise ConvscopeError(f"{path} is not a readable torch.export program "
                             f"({str(exc).splitlines()[0][:160]}).") from None
    vol = input or _export_input(ep)
    if vol is None:
        raise UsageError(f"{path} does not say its input size; pass it as `input` (WxHxD).")
    return OpenedNetwork(net, vol, str(path), _export_types(ep))


def open_torchscript(path: Path, input: Volume | None) -> OpenedNetwork:
    """A TorchScript archive, converted to hookable modules (jit.load never unpickles)."""
    try:
        with _quiet_export():
            script = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - jit.load reads only TorchScript archives
        raise ConvscopeError(
            f"{path} is neither a convscope model file, a torch.export .pt2 nor a TorchScript "
            f"archive ({str(exc).splitlines()[0][:120]}); convscope never unpickles modules, "
            "so save one with torch.export.save(torch.export.export(model, (x,)), "
            "'model.pt2').") from None
    if input is None:
        raise UsageError(f"{path} is TorchScript, which does not record its input size; pass "
                         "it as `input` (WxHxD).")
    # TorchScript -> an exported program
    from torch._export.converter import TS2EPConverter  # heavy optional dependency

    x = torch.zeros(1, input.depth, input.height, input.width)
    try:
        with _quiet_export():
            ep = TS2EPConverter(script, (x,)).convert()
            net = torch.export.unflatten(ep)
    except Exception as exc:  # noqa: BLE001 - the converter fails in many ways on odd code
        raise ConvscopeError(f"could not convert the TorchScript in {path} for tracing "
                             f"({str(exc).splitlines()[0][:160]}); save the model with "
                             "torch.export.save instead.") from None
    _restore_parameters(net, [name for name, _ in script.named_parameters()])
    types = {name: m.original_name for name, m in script.named_modules()
             if getattr(m, "original_name", "")}
    return OpenedNetwork(net, input, str(path), {**_export_types(ep), **types})


def torchvision_network(name: str) -> nn.Module:
    """torchvision's ImageNet classifier ``name`` with random weights."""
    if name not in tvm.list_models(module=tvm):
        raise ConvscopeError(f"unknown torchvision model {name!r}; choose one of: "
                             f"{', '.join(tvm.list_models(module=tvm))}.")
    return _constructor(name)() if name in ZOO else tvm.get_model(name, weights=None)


def _volume(input: str | Volume | None, default: Volume | None) -> Volume | None:
    if input is None or isinstance(input, Volume):
        return input or default
    return Volume.parse(input, depth=default.depth if default else 3)


def _by_name(text: str, input, classes: int | None, device: str) -> OpenedNetwork:
    if text.startswith("torchvision:"):
        with torch.device(device):
            net = torchvision_network(text.split(":", 1)[1])
        return OpenedNetwork(net, _volume(input, Volume(224, 224, 3)), text)
    try:
        entry, _options = parse_model_name(text)
    except UsageError as exc:
        if ":" in text or not str(exc).startswith("unknown model"):
            raise
        raise UsageError(f"{text!r} is neither a file nor a model name; give a model file "
                         f"(.safetensors; .pt2 or TorchScript with `trust_code=True`), one of {', '.join(list_models())}, "
                         "or torchvision:NAME.") from None
    ilsvrc = entry.family == "ilsvrc"
    vol = _volume(input, Volume(224, 224, 3) if ilsvrc else Volume(32, 32, 3))
    k = classes or (1000 if ilsvrc else 10)
    with torch.device(device):
        net = build_model(text, ModelInput(vol.depth, k, (vol.height, vol.width)))
    return OpenedNetwork(net, vol, text)


def refuse_program(path: Path) -> ConvscopeError:
    """The sentence for a .pt2 or TorchScript file opened without trust_code."""
    kind = program_kind(path)
    if kind is None:
        return ConvscopeError(
            f"{path} is not a convscope .safetensors model file; .pt2 (torch.export) and "
            "TorchScript programs run code inside the file when loaded, so convscope opens "
            "them only with `trust_code=True`.")
    if kind == "pickle":
        return ConvscopeError(
            f"{path} is a Python pickle (torch.save), and convscope never unpickles files "
            "because that can run code; save the model with torch.export.save, or train a "
            "convscope model file.")
    return ConvscopeError(
        f"{path} looks like a {kind} program, which runs code inside the file when loaded; "
        "convscope opens it only with `trust_code=True`, so pass that "
        "if you made or trust the file.")


def open_network(target, input: str | Volume | None = None, classes: int | None = None,
                 device: str = "cpu", trust_code: bool = False) -> OpenedNetwork:
    """Anything ``convscope summary`` accepts, ready to trace (see the module docstring).

    ``input`` is a volume (``"32x32x3"``; ``"32x32"`` takes the depth from the model);
    ``classes`` sizes a model built by name.  Networks built from a name are built on
    ``device``: "meta" builds them without allocating or initialising weights, which is
    all a layer table needs.  ``trust_code=True`` allows ``.pt2`` and TorchScript files,
    whose loading runs code inside the file; without it they are refused unopened.

    >>> open_network("spec:CONV3-8-POOL2-FC", "16x16x1").module   # doctest: +SKIP
    """
    if isinstance(target, Classifier):
        size, c = target.meta.input_size, target.channels
        return OpenedNetwork(target.model, _volume(input, Volume(size[1], size[0], c)),
                             target.meta.model)
    if isinstance(target, nn.Module):
        if input is None:
            raise UsageError("an nn.Module needs an input volume, e.g. input='32x32x3'.")
        return OpenedNetwork(target, _volume(input, None), type(target).__name__)
    text = str(target)
    path = Path(os.path.expanduser(text))
    if path.is_file():
        if path.suffix == ".safetensors":
            opened = open_network(load(path), input, classes)
            opened.name = f"{opened.name} ({path})"
            return opened
        if not trust_code:
            raise refuse_program(path)
        if path.suffix == ".pt2":
            return open_exported(path, _volume(input, None))
        return open_torchscript(path, _volume(input, None))
    if ":" not in text and (path.suffix in FILE_SUFFIXES or os.sep in text):
        raise ConvscopeError(f"{text} does not exist; give a model file, a model name "
                             "(`convscope models`), spec:... or torchvision:NAME.")
    return _by_name(text, input, classes, device)


__all__ = ["OpenedNetwork", "open_network", "torchvision_network"]
