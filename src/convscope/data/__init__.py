"""Datasets by name: ``load_dataset("mnist5k")``, ``load_dataset("folder:/my/images")``.

Importing this package registers the built-in datasets.
"""

from convscope.data import builtin, downloads, folder  # noqa: F401  (registration)
from convscope.data.base import DataWarning, ImageDataset, from_arrays
from convscope.data.registry import (
    dataset_entries,
    list_datasets,
    load_dataset,
    parse_dataset_name,
    register_dataset,
)

__all__ = [
    "DataWarning",
    "ImageDataset",
    "dataset_entries",
    "from_arrays",
    "list_datasets",
    "load_dataset",
    "parse_dataset_name",
    "register_dataset",
]
