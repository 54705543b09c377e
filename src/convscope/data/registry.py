"""The one registry of datasets: the CLI, the API and the docs read their choices here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from convscope.data.annotated import TASKS, AnnotatedDataset
from convscope.data.base import ImageDataset, resized
from convscope.errors import UsageError
from convscope.registries import adds_to, look_up


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    summary: str
    #: loader(arg, data_root=..., image_size=..., progress=...) -> ImageDataset, or an
    #: AnnotatedDataset for the tasks "detect" and "segment"
    loader: Callable[..., ImageDataset | AnnotatedDataset]
    #: what follows "name:" (e.g. "PATH" for folder:PATH); None if nothing may follow
    arg: str | None = None
    arg_required: bool = False
    #: what a model learns from it: "classify" (an ImageDataset), "detect" or "segment"
    task: str = "classify"
    #: whether the loader takes ``holdout`` (a user's files without a split of their own)
    holdout: bool = False

    @property
    def usage(self) -> str:
        if self.arg is None:
            return self.name
        return f"{self.name}:{self.arg}" if self.arg_required else f"{self.name}[:{self.arg}]"


_REGISTRY: dict[str, DatasetEntry] = {}


def register_dataset(name: str, summary: str, arg: str | None = None, arg_required: bool = False,
                     task: str = "classify", holdout: bool = False):
    """Decorator adding a loader to the registry under ``name``; ``task`` is what its data
    teaches ("classify": the loader returns an ImageDataset; "detect", "segment": an
    AnnotatedDataset), ``holdout`` whether the loader takes ``holdout``."""
    if task not in ("classify", *TASKS):
        raise ValueError(f"dataset task must be classify, detect or segment, got {task!r}")
    return adds_to(_REGISTRY, lambda loader: DatasetEntry(name, summary, loader, arg,
                                                          arg_required, task, holdout))


def dataset_entries(task: str | None = None) -> list[DatasetEntry]:
    """The registry's entries grouped by task (classify, detect, segment), in the order
    they were registered within each; those of one ``task`` when given."""
    order = ("classify", *TASKS)
    return sorted((e for e in _REGISTRY.values() if task is None or e.task == task),
                  key=lambda e: order.index(e.task))


def list_datasets(task: str | None = None) -> list[str]:
    """The accepted dataset names, as a user would type them (``folder:PATH`` etc.), those of
    one ``task`` ("classify", "detect", "segment") when given."""
    return [e.usage for e in dataset_entries(task)]


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
    task: str | None = None,
) -> ImageDataset | AnnotatedDataset:
    """Load a dataset by name.

    ``holdout`` (a user's files without a split of their own: ``folder:``, ``coco:``, ...) is
    the test split: a fraction below 1, a number of images, or 0 to train on everything.
    ``task`` ("classify", "detect", "segment"), when given, refuses a dataset of another task
    in one sentence. A boxes or masks dataset keeps every image at its own size, so
    ``image_size`` applies to classification datasets only.

    >>> ds = load_dataset("digits")
    >>> ds.image_size, ds.channels, len(ds.classes)
    ((8, 8), 1, 10)
    """
    entry, arg = parse_dataset_name(name)
    if task is not None and entry.task != task:
        raise UsageError(f"dataset {entry.name!r} is for the task {entry.task!r}, not {task!r}; "
                         f"choose one of: {', '.join(list_datasets(task)) or 'none'}.")
    if image_size is not None and entry.task != "classify":
        raise UsageError(f"`image_size` applies to classification datasets; {entry.name} keeps "
                         "each image at its own size with its boxes or masks.")
    if image_size is not None and not 1 <= int(image_size) <= 4096:
        raise UsageError(f"`image_size` must be between 1 and 4096, got {image_size}.")
    kwargs = {"data_root": data_root, "image_size": image_size, "progress": progress}
    if holdout is not None:
        if not entry.holdout:
            raise UsageError(f"`holdout` applies to datasets read from your files; "
                             f"{entry.name} has a fixed test split.")
        if holdout < 0:
            raise UsageError(f"`holdout` must be >= 0, got {holdout}.")
        kwargs["holdout"] = holdout
    ds = entry.loader(arg, **kwargs)
    return resized(ds, int(image_size)) if image_size else ds
