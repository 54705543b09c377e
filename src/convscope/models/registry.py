"""The one registry of models: the CLI, the API and model files name models here.

A model is named ``NAME`` or ``NAME:key=value,...`` (for example
``convnet:n=3,width=64`` or ``resnet:depth=32``); the options and their types
come from each entry's defaults, so the registry is the single source of truth.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from convscope.errors import UsageError, unknown_name


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
    #: "classic" (the lecture's own models), "ilsvrc" (torchvision) or "spec"
    family: str = "classic"
    #: smallest input side the network accepts; smaller images are upsampled to it
    min_input: int = 1
    #: takes pretrained weights through --weights
    pretrained: bool = False
    #: a free-form argument follows "name:" (spec:STRING) instead of key=value options
    free_arg: str | None = None
    #: check(options) validates options without building (e.g. a spec's syntax), so a bad
    #: name fails wherever it is parsed, before any data is loaded
    check: Callable[[dict], None] | None = None

    @property
    def usage(self) -> str:
        return f"{self.name}:{self.free_arg}" if self.free_arg else self.name

    def input_size(self, image_size: tuple[int, int]) -> tuple[int, int]:
        h, w = image_size
        return max(h, self.min_input), max(w, self.min_input)


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, summary: str, **kwargs):
    """Decorator adding a builder ``build(inp, **options)`` to the registry."""

    def decorate(build):
        _REGISTRY[name] = ModelEntry(name, summary, build, **kwargs)
        return build

    return decorate


def model_entries() -> list[ModelEntry]:
    return list(_REGISTRY.values())


def list_models() -> list[str]:
    return [e.usage for e in _REGISTRY.values()]


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


def parse_model_name(name: str) -> tuple[ModelEntry, dict]:
    """``"convnet:n=3,width=64"`` -> (entry, {"n": 3, "width": 64, ...defaults})."""
    if not isinstance(name, str) or not name:
        raise UsageError("a model name is required; choose one of: "
                         + ", ".join(list_models()) + ".")
    key, sep, arg = name.partition(":")
    entry = _REGISTRY.get(key)
    if entry is None:
        raise unknown_name("model", name, list_models())
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
                weights: str | None = None) -> nn.Module:
    """Build a registered model for the given input; ``options`` override the name's.

    ``weights`` (ILSVRC models only) is ``DEFAULT`` to download torchvision's
    ImageNet weights, or the path of a local state dict.

    >>> from convscope.models import build_model, ModelInput
    >>> net = build_model("convnet:m=2", ModelInput(1, 10, (28, 28)))
    """
    entry, parsed = parse_model_name(name)
    if options:
        parsed.update(options)
    if weights:
        if not entry.pretrained:
            raise UsageError(f"--weights applies to the ILSVRC models "
                             f"({', '.join(e.name for e in model_entries() if e.pretrained)}), "
                             f"not to {entry.name}.")
        parsed["weights"] = weights
    return entry.build(inp, **parsed)


def canonical_name(entry: ModelEntry, options: dict) -> str:
    """The name that rebuilds exactly this model, e.g. ``convnet:n=2,m=3``."""
    if entry.free_arg:
        return f"{entry.name}:{options[entry.free_arg.lower()]}"
    changed = {k: v for k, v in options.items() if entry.defaults.get(k) != v}
    if not changed:
        return entry.name
    return entry.name + ":" + ",".join(f"{k}={v}" for k, v in changed.items())
