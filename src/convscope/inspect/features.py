"""Feature extraction: the one pass over a dataset that every "look inside" view uses.

It runs batched, in eval mode under ``no_grad``, with hooks that are removed when it
ends; callers ask for every layer they need at once, so a command reads its data
once.  Under torchrun each process handles a contiguous share of the images and
the results are gathered back in order, so the output equals a single process's.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from convscope import distributed
from convscope.classifier import Classifier
from convscope.inspect.hooks import capture, get_layer, model_mode
from convscope.options import option
from convscope.progress import progress_bar

REDUCTIONS = ("none", "flatten", "avg")


class ModelImages:
    """A dataset's uint8 ``(N, C, H, W)`` images seen at a model's size and channels.

    Slicing converts only the slice (``Classifier.as_batch``: resize, centre crop,
    gray <-> RGB), so 10,000 28x28 digits can go through a 224x224 RGB network without
    holding 10,000 converted copies.  :func:`iterate` takes it like a tensor.
    """

    def __init__(self, clf: Classifier, images: torch.Tensor):
        self.clf, self.images = clf, images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index) -> torch.Tensor:
        """``[i]`` -> (C, H, W); a slice -> (n, C, H, W), converted."""
        if isinstance(index, int):
            return self.clf.as_batch(self.images[index : index + 1])[0]
        part = self.images[index]
        if len(part) == 0:
            return torch.empty((0, self.clf.channels, *self.clf.image_size), dtype=torch.uint8)
        return self.clf.as_batch(part)


def model_images(clf: Classifier, images: torch.Tensor) -> torch.Tensor | ModelImages:
    """``images`` as they are when they fit the model, else converted slice by slice."""
    fits = (images.dtype == torch.uint8 and images.ndim == 4 and images.shape[1] == clf.channels
            and tuple(images.shape[-2:]) == clf.image_size)
    return images if fits else ModelImages(clf, images)


def iterate(clf: Classifier, images: torch.Tensor, layers: list[str], *, batch_size: int = 256,
            progress: bool = True, desc: str = "features",
            shard: bool = True) -> Iterator[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
    """Yield ``(indices, {layer: activations})`` batch by batch, activations on the CPU.

    ``images`` are uint8 ``(N, C, H, W)`` at the model's image size (or a
    :class:`ModelImages` view that converts them batch by batch).  With ``shard``
    (the default) a torchrun process sees only its share of the batches; ``indices``
    are always positions in the full ``images``, so streaming consumers can merge
    shares.
    """
    for name in layers:
        get_layer(clf.model, name)  # unknown names fail before any work
    d = distributed.current()
    start, stop = 0, len(images)
    if shard:  # whole batches per process, so every batch is the one a single process runs
        batches = d.part(-(-len(images) // batch_size))
        start, stop = batches.start * batch_size, min(batches.stop * batch_size, len(images))
    with model_mode(clf.model), capture(clf.model, layers) as acts, torch.no_grad(), \
            progress_bar(total=stop - start, desc=desc, unit="img",
                         enable=progress and d.is_main) as bar:
        for i in range(start, stop, batch_size):
            j = min(i + batch_size, stop)
            clf.model(clf.preprocess(images[i:j].to(clf.device)))
            yield torch.arange(i, j), {k: v.float().cpu() for k, v in acts.items()}
            bar.update(j - i)


def reduce(act: torch.Tensor, how: str) -> torch.Tensor:
    """(N, C, H, W) maps as they are ("none"), flattened, or averaged over space ("avg")."""
    if act.ndim <= 2 or how == "none":
        return act
    if how == "avg":
        return act.mean(dim=tuple(range(2, act.ndim)))
    return act.flatten(1)


def extract(clf: Classifier, images: torch.Tensor, layers: list[str], *, reduction: str = "none",
            batch_size: int = 256, progress: bool = True) -> dict[str, torch.Tensor]:
    """Every requested layer's activations for every image, ``{layer: (N, ...)}``.

    >>> feats = extract(clf, ds.test_images, ["fc1_relu"])  # doctest: +SKIP
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}")
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    for _idx, acts in iterate(clf, images, layers, batch_size=batch_size, progress=progress):
        for name in layers:
            parts[name].append(reduce(acts[name], reduction))
    d = distributed.current()
    out = {}
    for name in layers:
        local = torch.cat(parts[name]) if parts[name] else torch.empty(0)
        out[name] = d.gather_rows(local)
    return out


def reduction_option():
    """The ``reduction`` field of a view over a layer's features."""
    return option("flatten", "a spatial layer as one vector: flatten, or avg over positions",
                  choices=("flatten", "avg"))
