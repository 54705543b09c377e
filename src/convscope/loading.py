"""The one model layer: every command and the API open their models here.

:func:`open_model` turns what a user names into a model object of its task:

- a model object (a :class:`Classifier`, ...) is returned as it is;
- a convscope model file (``.safetensors``): its metadata names the task, whose opener
  reads it (``task`` is "classify" for every file convscope writes today);
- a name a task knows: torchvision's ImageNet classifiers (``resnet18``,
  ``torchvision:NAME``), with ``weights`` DEFAULT (download) or a local state dict;
- a registered model name or ``spec:...``: an architecture, which only ``untrained=True``
  opens (with random weights, for a layer table or ``info``); elsewhere the sentence says
  how to train it.

Every model object has ``task`` and ``describe()`` (task, labels, input size,
normalisation, provenance, licence: :class:`~convscope.modelfile.ModelDescription`).  A new
task plugs in with :func:`register_task`: its model object type, how it reads a model file
whose metadata names it, and which names it opens.

``open_network`` is what ``convscope summary``'s MODEL means: anything :func:`open_model` opens
(as its network and input volume), plus, only with ``trust_code=True`` (``--trust-code``),
because loading them runs code inside the file, a torch.export program (``.pt2``; the input
size it was exported with), whose entries ``torch.export.load`` unpickles (falling back to
``weights_only=False``), and a TorchScript archive (any other file read by
``torch.jit.load``; ``--input`` needed), converted with torch's TorchScript-to-export
converter, which runs the layers inline: the trace then finds each layer through the
weights its ops use.  Without ``trust_code`` nothing is unpickled and no code from a file
runs: such files are refused, before they are opened, with a sentence naming
``--trust-code``.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from convscope.classifier import (
    Classifier,
    load,
    pretrained_classifier,
    resolve_device,
    torchvision_classifier,
    untrained_classifier,
)
from convscope.errors import ConvscopeError, UsageError
from convscope.modelfile import program_kind, read_meta
from convscope.models import get_entry, list_models, model_entries, parse_model_name
from convscope.models.arithmetic import Volume
from convscope.models.pretrained import list_pretrained, pretrained_entry
from convscope.models.zoo import ZOO
from convscope.registries import adds_to
from convscope.scene.models import TASK_KINDS, MtcnnFaces, open_scene, scene_names
from convscope.scene.trained import (
    TRAINED,
    TrainedDetector,
    TrainedSegmenter,
    load_trained,
    untrained_annotator,
)

FILE_SUFFIXES = (".safetensors", ".pt", ".pt2", ".pth", ".ts")


# --------------------------------------------------------------------------- tasks
@dataclass(frozen=True)
class Task:
    """One task of the model layer: its model object type, how a model file of the task is
    read, and the names it opens (``open_name(text, weights, device)``, None when the name is
    not one of its own)."""

    name: str
    kind: type
    summary: str
    open_file: Callable
    open_name: Callable


TASKS: dict[str, Task] = {}


def register_task(name: str, kind: type, summary: str, open_name: Callable):
    """Decorate a task's file reader (``open_file(path, device)``) to add the task."""
    return adds_to(TASKS, lambda fn: Task(name, kind, summary, fn, open_name))


def _classifier_name(text: str, weights, device):
    """A classifier by name: the pretrained catalogue's, then torchvision's."""
    entry = pretrained_entry(text)
    if entry is not None and entry.task == "classify":
        return pretrained_classifier(entry, weights, device)
    if text.startswith("torchvision:"):
        return torchvision_classifier(text.split(":", 1)[1], weights, device)
    if text in ZOO:
        return torchvision_classifier(text, weights, device)
    return None


@register_task("classify", Classifier, "class scores for a whole image", _classifier_name)
def _open_classifier_file(path: Path, device) -> Classifier:
    return load(path, device)


def _scene_opener(task: str):
    """The names a scene task opens: the catalogue's networks of that task."""
    def open_name(text: str, weights, device):
        return open_scene(text, weights, device) if text in scene_names(task) else None
    return open_name


def _no_scene_files(task: str):
    def read(path: Path, device):
        raise ConvscopeError(f"{path} says it holds a {task} model, but convscope writes no "
                             f"{task} model files; open a packaged network by name "
                             f"({', '.join(scene_names(task))}).")
    return read


for _task, _summary, _read in (
        ("faces", "face boxes and landmarks in a photo", _no_scene_files("faces")),
        ("detect", "boxes, labels and scores of the objects in a photo", load_trained),
        ("pose", "the 17 COCO keypoints of a person", _no_scene_files("pose")),
        ("segment", "the class of every pixel of a photo (people, or your own classes)",
         load_trained)):
    register_task(_task, TASK_KINDS[_task], _summary, _scene_opener(_task))(_read)


def is_model_object(obj) -> bool:
    return any(isinstance(obj, t.kind) for t in TASKS.values())


def _checked(obj, task: str | None, what: str):
    if task is not None and obj.task != task:
        entry = TASKS.get(task)
        needs = f"{entry.name} model ({entry.summary})" if entry else f"{task} model"
        raise UsageError(f"{what} is a {obj.task} model, and this needs a {needs}.")
    return obj


def open_model(spec, weights: str | None = None, device: str | torch.device = "auto", *,
               task: str | None = None, untrained: bool = False,
               input: str | Volume | None = None, classes: int | None = None):
    """What MODEL means in every command and the API: a model object of its task.

    ``weights`` applies to networks opened by name (``DEFAULT`` downloads torchvision's
    ImageNet weights; a path reads a local state dict).  ``task`` ("classify", ...) refuses
    a model of another task in one sentence.  ``untrained=True`` also opens a registered
    model name or ``spec:...`` with random weights, for ``input`` (``"32x32x3"``; default
    224x224x3 for the ILSVRC nets, 32x32x3 otherwise) and ``classes`` (1000 / 10); on the
    ``meta`` device nothing is allocated.

    >>> clf = convscope.open_model("runs/demo/model.safetensors")          # doctest: +SKIP
    >>> clf = convscope.open_model("resnet18", weights="DEFAULT")          # doctest: +SKIP
    >>> convscope.open_model("convnet", untrained=True).describe().provenance
    'untrained: convnet built from its name, random weights'
    """
    if is_model_object(spec):
        if weights:
            raise UsageError("`weights` applies to a network opened by name (e.g. resnet18); "
                             "this model object already has its weights.")
        return _checked(spec, task, type(spec).__name__)
    if not isinstance(spec, (str, os.PathLike)):
        raise UsageError(f"expected a model object, a model file or a model name, not a "
                         f"{type(spec).__name__}.")
    text = str(spec)
    path = Path(os.path.expanduser(text))
    dev = resolve_device(device)
    if path.is_file():
        if weights:
            raise UsageError("`weights` applies to networks opened by name (e.g. resnet18), "
                             "not to model files, which carry their own weights.")
        if program_kind(path) is not None and path.suffix != ".safetensors":
            raise refuse_program(path)
        meta = read_meta(path)
        entry = TASKS.get(meta.task)
        if entry is None:
            raise ConvscopeError(f"{path} holds a {meta.task!r} model, a task this convscope "
                                 f"does not know ({', '.join(TASKS)}); upgrade convscope.")
        return _checked(entry.open_file(path, dev), task, str(path))
    # a size or class count of one's own builds the registry's adaptation of the network
    built = (_open_untrained(text, dev, input, classes)
             if untrained and not weights and (input or classes) else None)
    for entry in TASKS.values():
        built = built or entry.open_name(text, weights, dev)
    if built is None and untrained and not weights:
        built = _open_untrained(text, dev, input, classes)
    if built is not None:
        return _checked(built, task, text)
    entry = pretrained_entry(text)
    if entry is not None:  # a packaged network of a task no opener here takes
        raise UsageError(f"{text} is a {entry.task} network, not a model a view opens"
                         + ("; use it with `convscope style --fast`." if entry.task == "stylize"
                            else "."))
    key = text.split(":", 1)[0]
    other = next((e for e in model_entries() if e.name == key and e.task != "classify"), None)
    if other is not None:
        data = "digits-boxes" if other.task == "detect" else "digits-masks"
        raise ConvscopeError(
            f"{text} names an untrained {other.task} architecture, not a model; train it with "
            f"`convscope train --data {data} --model '{text}' --out DIR` (or your own "
            "labelled images) and pass DIR/model.safetensors.")
    if key in _registry_names():
        parse_model_name(text)  # a bad option is named first
        raise ConvscopeError(
            f"{text} names an untrained architecture, not a model; train it with `convscope "
            f"train --model '{text}' --out DIR` and pass DIR/model.safetensors (`convscope "
            f"summary '{text}'` shows its layers without training).")
    if ":" not in text and (path.suffix in FILE_SUFFIXES or os.sep in text):
        raise ConvscopeError(f"{text} does not exist; give a model file, a model name "
                             "(`convscope models`), spec:... or torchvision:NAME.")
    if untrained:
        raise UsageError(f"{text!r} is neither a file nor a model name; give a model file "
                         f"(.safetensors), one of {', '.join(list_models())}, or "
                         "torchvision:NAME.")
    raise UsageError(f"{text!r} is neither a file nor a model name; give a model file "
                     f"(.safetensors), a pretrained network ({', '.join(list_pretrained())}; "
                     "`convscope models --pretrained`) or a torchvision classifier (e.g. "
                     "resnet18, or torchvision:NAME).")


def _registry_names() -> set[str]:
    return set(list_models(None)) | {"spec"}


def _open_untrained(text: str, device: torch.device, input, classes):
    if text.startswith("torchvision:") or text.split(":", 1)[0] not in _registry_names():
        return None
    entry = get_entry(text.split(":", 1)[0])
    if entry.task in TRAINED:  # a detector or segmenter: 128 px canvases, 10 classes
        vol = _volume(input, Volume(128, 128, 3))
        # a detector's postprocessing (torch.nonzero) has no meta kernel: built for real
        dev = torch.device("cpu") if entry.task == "detect" and device.type == "meta" else device
        return untrained_annotator(text, entry.task, vol.depth, classes or 10,
                                   max(vol.height, vol.width), dev)
    ilsvrc = entry.family == "ilsvrc"
    vol = _volume(input, Volume(224, 224, 3) if ilsvrc else Volume(32, 32, 3))
    return untrained_classifier(text, vol.depth, classes or (1000 if ilsvrc else 10),
                                (vol.height, vol.width), device)


def as_classifier(model, weights: str | None = None, device="cpu") -> Classifier:
    """A Classifier, a model file or a torchvision name (what MODEL means in every view)."""
    return open_model(model, weights, device, task="classify")


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


def _volume(input: str | Volume | None, default: Volume | None) -> Volume | None:
    if input is None or isinstance(input, Volume):
        return input or default
    return Volume.parse(input, depth=default.depth if default else 3)


def _scene_network(model, input) -> OpenedNetwork:
    """A scene model's layer table: the PyTorch network inside it (MTCNN's last stage,
    O-Net, at its 48x48 input); the others run in OpenCV or LiteRT, which have no layers
    to trace."""
    net = model.network
    if isinstance(model, MtcnnFaces):
        return OpenedNetwork(net.onet, _volume(input, Volume(48, 48, 3)),
                             f"{model.name} (O-Net, its last stage)")
    raise UsageError(f"{model.name} runs in {'LiteRT' if hasattr(net, 'interpreter') else 'OpenCV'}"
                     ", not as a PyTorch network, so it has no layer table; `convscope info "
                     f"{model.name}` describes it.")


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
        f"convscope opens it only with `trust_code=True` (`convscope summary {path} "
        "--trust-code` shows its layers), so pass that if you made or trust the file.")


def open_network(target, input: str | Volume | None = None, classes: int | None = None,
                 device: str = "cpu", trust_code: bool = False,
                 weights: str | None = None) -> OpenedNetwork:
    """Anything ``convscope summary`` accepts, ready to trace (see the module docstring).

    ``input`` is a volume (``"32x32x3"``; ``"32x32"`` takes the depth from the model);
    ``classes`` sizes a model built by name.  Networks built from a name are built on
    ``device``: "meta" builds them without allocating or initialising weights, which is
    all a layer table needs.  ``trust_code=True`` allows ``.pt2`` and TorchScript files,
    whose loading runs code inside the file; without it they are refused unopened.

    >>> open_network("spec:CONV3-8-POOL2-FC", "16x16x1").module   # doctest: +SKIP
    """
    if isinstance(target, nn.Module):
        if input is None:
            raise UsageError("an nn.Module needs an input volume, e.g. input='32x32x3'.")
        return OpenedNetwork(target, _volume(input, None), type(target).__name__)
    path = Path(os.path.expanduser(str(target))) if isinstance(target, (str, os.PathLike)) else None
    if path is not None and path.is_file() and path.suffix != ".safetensors":
        if not trust_code:
            raise refuse_program(path)
        if path.suffix == ".pt2":
            return open_exported(path, _volume(input, None))
        return open_torchscript(path, _volume(input, None))
    model = open_model(target, weights, device, untrained=True, input=input,
                 classes=classes)
    if isinstance(model, (TrainedDetector, TrainedSegmenter)):
        side = model.meta.image_size
        name = model.name if path is None or not path.is_file() else f"{model.name} ({path})"
        return OpenedNetwork(model.model, _volume(input, Volume(side[1], side[0],
                                                                 model.channels)), name)
    if not isinstance(model, Classifier):
        return _scene_network(model, input)
    size, c = model.meta.input_size, model.channels
    if path is None:  # a model object
        name = model.meta.model
    elif path.is_file():
        name = f"{model.meta.model} ({path})"
    else:  # a name, as the user wrote it
        name = str(target)
    return OpenedNetwork(model.model, _volume(input, Volume(size[1], size[0], c)), name)


__all__ = ["TASKS", "OpenedNetwork", "Task", "as_classifier", "open_model", "open_network",
           "register_task"]
