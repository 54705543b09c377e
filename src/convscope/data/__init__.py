"""Datasets by name: ``load_dataset("mnist5k")``, ``load_dataset("folder:/my/images")``,
and boxes and masks: ``load_dataset("coco:/my/boxes")``, ``load_dataset("digits-masks")``.

Importing this package registers the built-in datasets.
"""

from convscope.data import builtin, canvases, downloads, folder, formats  # noqa: F401
from convscope.data.annotated import IGNORE, AnnotatedDataset, AnnotatedSplit
from convscope.data.base import DataWarning, ImageDataset, from_arrays
from convscope.data.registry import (
    dataset_entries,
    list_datasets,
    load_dataset,
    parse_dataset_name,
    register_dataset,
)

__all__ = [
    "IGNORE",
    "AnnotatedDataset",
    "AnnotatedSplit",
    "DataWarning",
    "ImageDataset",
    "dataset_entries",
    "from_arrays",
    "list_datasets",
    "load_dataset",
    "parse_dataset_name",
    "register_dataset",
]
