"""CIFAR-10 and MNIST through torchvision's loaders: downloaded when online,
read from ``--data-root`` when a copy exists, and a clear error otherwise."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import CIFAR10, MNIST
from torchvision.datasets.mnist import read_image_file, read_label_file
from torchvision.datasets.utils import extract_archive

from convscope.data.base import ImageDataset
from convscope.data.builtin import DIGIT_CLASSES
from convscope.data.registry import register_dataset
from convscope.errors import ConvscopeError


def default_data_root() -> Path:
    base = os.environ.get("CONVSCOPE_DATA") or Path.home() / ".cache" / "convscope" / "data"
    return Path(base)


def _offline_error(what: str, root: Path, exc: BaseException, how: str) -> ConvscopeError:
    reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
    return ConvscopeError(
        f"{what} is not in {root} and could not be downloaded ({reason}); {how}"
    )


@register_dataset("cifar10", "CIFAR-10 through torchvision, 32x32x3, 50,000/10,000; "
                  "downloads when online, or --data-root DIR holding cifar-10-batches-py")
def load_cifar10(arg, *, data_root=None, progress=True, **_) -> ImageDataset:
    root = Path(data_root) if data_root else default_data_root()
    if root.name == "cifar-10-batches-py":  # the user pointed at the extracted folder itself
        root = root.parent
    present = (root / "cifar-10-batches-py").is_dir()
    try:
        splits = [CIFAR10(str(root), train=t, download=not present) for t in (True, False)]
    except (OSError, RuntimeError, ValueError) as exc:
        if present:
            raise ConvscopeError(f"the CIFAR-10 copy in {root / 'cifar-10-batches-py'} is "
                                 f"incomplete or corrupt ({exc}); extract "
                                 "cifar-10-python.tar.gz there again.") from None
        raise _offline_error(
            "CIFAR-10", root, exc,
            "download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html, "
            "extract it, and pass the folder holding cifar-10-batches-py as `data_root`.",
        ) from None
    tr, te = splits

    def tensors(ds):
        x = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
        return x, torch.tensor(ds.targets, dtype=torch.int64)

    (xtr, ytr), (xte, yte) = tensors(tr), tensors(te)
    return ImageDataset("cifar10", list(tr.classes), xtr, ytr, xte, yte, natural=True)


MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find_mnist_raw(root: Path) -> Path | None:
    """The folder holding MNIST's idx files: root, root/raw or root/MNIST/raw."""
    for cand in (root, root / "raw", root / "MNIST" / "raw"):
        if all((cand / f).is_file() or (cand / f"{f}.gz").is_file()
               for pair in MNIST_FILES.values() for f in pair):
            return cand
    return None


@register_dataset("mnist", "the full MNIST through torchvision, 28x28x1, 60,000/10,000; "
                  "downloads when online, or --data-root DIR holding the idx files")
def load_mnist(arg, *, data_root=None, progress=True, **_) -> ImageDataset:
    root = Path(data_root) if data_root else default_data_root()
    raw = _find_mnist_raw(root)
    if raw is None:
        try:  # torchvision downloads into root/MNIST/raw
            MNIST(str(root), train=True, download=True)
        except (OSError, RuntimeError, ValueError) as exc:
            raise _offline_error(
                "MNIST", root, exc,
                "download the four idx files (train-images-idx3-ubyte.gz etc.) from "
                "https://ossci-datasets.s3.amazonaws.com/mnist/ and pass the folder holding "
                "them as `data_root`, or use the offline dataset mnist5k.",
            ) from None
        raw = _find_mnist_raw(root)
        if raw is None:
            raise ConvscopeError(f"MNIST was downloaded but its files are not in {root}; "
                                 "remove that folder and try again.")

    def read(split):
        images, labels = (raw / f for f in MNIST_FILES[split])
        if not images.is_file():  # only the .gz files are there: unpack them once
            for f in MNIST_FILES[split]:
                extract_archive(str(raw / f"{f}.gz"), str(raw))
        try:
            x = read_image_file(str(images)).unsqueeze(1).contiguous()
            y = read_label_file(str(labels)).long()
        except (OSError, RuntimeError, ValueError, AssertionError) as exc:
            raise ConvscopeError(f"the MNIST files in {raw} are corrupt ({exc}); "
                                 "download them again.") from None
        return x, y

    (xtr, ytr), (xte, yte) = read("train"), read("test")
    return ImageDataset("mnist", DIGIT_CLASSES, xtr, ytr, xte, yte, natural=False)
