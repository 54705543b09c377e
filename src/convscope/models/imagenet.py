"""The 1,000 ILSVRC-2012 classes: short names in output order, and the synonyms the
ILSVRC list gives for each ("tabby, tabby cat")."""

from __future__ import annotations

import functools
import importlib.util

import torchvision.models as tvm


@functools.cache
def imagenet_classes() -> tuple[str, ...]:
    """The short name of each ImageNet-1k output, in order (torchvision's list)."""
    return tuple(tvm.ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


@functools.cache
def imagenet_synonyms() -> tuple[tuple[str, ...], ...]:
    """Every name the ILSVRC synset list gives each class, in output order (from timm's
    copy of the list, ``timm.data.ImageNetInfo``); the short names alone when timm is not
    installed."""
    names = imagenet_classes()
    if importlib.util.find_spec("timm") is None:
        return tuple((n,) for n in names)
    from timm.data import ImageNetInfo  # heavy optional dependency (imports torch's data stack)

    info = ImageNetInfo()
    return tuple(tuple(dict.fromkeys([names[i], *(s.strip() for s in
                                                  info.index_to_description(i).split(","))]))
                 for i in range(len(names)))
