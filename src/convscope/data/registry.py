"""The one registry of datasets: the CLI, the API and the docs read their choices here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from convscope.data.base import ImageDataset, resized
from convscope.errors import UsageError
from convscope.registries import adds_to, look_up


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    summary: str
    #: loader(arg, data_root=..., image_size=..., progress=...) -> ImageDataset
    loader: Callable[..., ImageDataset]
    #: what follows "name:" (e.g. "PATH" for folder:PATH); None if nothing may follow
    arg: str | None = None
    arg_required: bool = False

    @property
    def usage(self) -> str:
        if self.arg is None:
            return self.name
        return f"{self.name}:{self.arg}" if self.arg_required else f"{self.name}[:{self.arg}]"


_REGISTRY: dict[str, DatasetEntry] = {}


def register_dataset(name: str, summary: str, arg: str | None = None, arg_required: bool = False):
    """Decorator adding a loader to the registry under ``name``."""

    return adds_to(_REGISTRY, lambda loader: DatasetEntry(name, summary, loader, arg, arg_required))


def dataset_entries() -> list[DatasetEntry]:
    return list(_REGISTRY.values())


def list_datasets() -> list[str]:
    """The accepted dataset names, as a user would type them (``folder:PATH`` etc.)."""
    return [e.usage for e in _REGISTRY.values()]


def parse_dataset_name(name: str) -> tuple[DatasetEntry, str | None]:
    """Split ``"folder:/some/path"`` into its registry entry and argument."""
    entry, key, sep, arg = look_up(_REGISTRY, "dataset", name, list_datasets())
    if sep and entry.arg is None:
        raise UsageError(f"dataset {key!r} takes no argument after ':'; use just {key!r}.")
    if entry.arg_required and not arg:
        raise UsageError(f"dataset {key!r} needs an argument: {entry.usage}.")
    return entry, (arg or None)


def load_dataset(
    name: str,
    *,
    data_root: str | Path | None = None,
    image_size: int | None = None,
    holdout: float | None = None,
    progress: bool = True,
) -> ImageDataset:
    """Load a dataset by name.

    ``holdout`` (folder datasets without a test/ subfolder) is the test split: a
    fraction below 1, a number of images, or 0 to train on everything.

    >>> ds = load_dataset("digits")
    >>> ds.image_size, ds.channels, len(ds.classes)
    ((8, 8), 1, 10)
    """
    entry, arg = parse_dataset_name(name)
    if image_size is not None and not 1 <= int(image_size) <= 4096:
        raise UsageError(f"`image_size` must be between 1 and 4096, got {image_size}.")
    kwargs = {"data_root": data_root, "image_size": image_size, "progress": progress}
    if holdout is not None:
        if entry.name != "folder":
            raise UsageError(f"`holdout` applies to folder datasets; {entry.name} has a fixed "
                             "test split.")
        if holdout < 0:
            raise UsageError(f"`holdout` must be >= 0, got {holdout}.")
        kwargs["holdout"] = holdout
    ds = entry.loader(arg, **kwargs)
    return resized(ds, int(image_size)) if image_size else ds
