"""Maximally activating patches: for each channel of a layer, the image regions that excite
it most over a whole dataset, each cut at the unit's receptive field (Girshick et al. 2014;
Zeiler & Fergus 2014).

No maintained library does this, so it is written here: one pass over the data keeps a
streaming top-k per channel (a (channels, k) buffer merged with each batch's best), never
all activations of a layer; each hit is cut from its image at the receptive field that
``receptive.py`` traces through the network, clipped at the borders.  Ties are broken by
image index, then position, so the answer is reproducible, and under torchrun each
process's candidates merge into exactly the single-process top-k.

>>> p = patches("runs/mnist3/model.safetensors", "mnist5k", layer="conv2_2")  # doctest: +SKIP
>>> h = p.hits[0][0]; h.image, (h.y, h.x), round(h.activation, 3), h.box     # doctest: +SKIP
(518, (6, 8), 2.748, (6, 10, 20, 24))
"""

from __future__ import annotations

import argparse
import math
from contextlib import closing
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from convscope import distributed
from convscope.display import MosaicDisplay, draw
from convscope.errors import UsageError, unknown_name
from convscope.evaluate import SPLITS
from convscope.inspect.features import iterate, model_images
from convscope.inspect.layers import choose_layer, traced_calls
from convscope.inspect.receptive import ReceptiveField, receptive_fields
from convscope.inspect.sources import image_set, split_option
from convscope.loading import as_classifier
from convscope.options import (
    INT_MAX,
    batch_option,
    count_or_all,
    layer_option,
    option,
    positive_int,
    seed_option,
)

#: channels drawn when none are named
DEFAULT_CHANNELS = 16
#: the key of an empty buffer slot: sorts after every real hit
EMPTY = torch.iinfo(torch.int64).max


def parse_channels(text: str) -> tuple[int, ...]:
    """``"0-15"``, ``"3,7,9"`` or ``"0-3,8"`` -> (0, 1, ...), in the order given."""
    out: list[int] = []
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        lo, sep, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise UsageError(f"`channels` takes numbers and ranges like 0-15 or 3,7,9; got "
                             f"{text!r}.") from None
        if b < a:
            raise UsageError(f"`channels` range {part} runs backwards; write {b}-{a}.")
        out += range(a, b + 1)
    if not out:
        raise UsageError("`channels` is empty; give numbers or ranges like 0-15.")
    return tuple(dict.fromkeys(out))


def channel_list(text: str) -> tuple[int, ...]:
    """``--channels`` (a value type): :func:`parse_channels`, a bad list exiting 2."""
    try:
        channels = parse_channels(text)
    except UsageError as exc:  # argparse says "argument --channels:" before the message
        raise argparse.ArgumentTypeError(str(exc).replace("`channels` ", "")) from None
    if max(channels, default=0) > INT_MAX:
        raise argparse.ArgumentTypeError(f"a channel is at most {INT_MAX:,}, got {text}")
    return channels


@dataclass(frozen=True)
class PatchesConfig:
    """The options of one ``patches`` job."""

    layer: str | None = layer_option("the layer (default: the last with a spatial map)")
    channels: tuple[int, ...] | None = option(None, "channels searched, e.g. 0-15 or 3,7,9 "
                                                    "(default: the first 16)",
                                              type=channel_list, metavar="LIST")
    top: int = option(9, "patches per channel", flag="--top-k", old=("--top",),
                      type=positive_int)
    split: str = split_option()
    n: int | None = option(None, "search a seeded sample of N images of the split", shown="all",
                           type=count_or_all, metavar="N|all")
    seed: int = seed_option()
    batch_size: int = batch_option()


# --------------------------------------------------------------------------- streaming top-k
class StreamingTopK:
    """The k largest activations of each channel seen so far and where they were.

    ``values`` (C, k) descending and ``keys`` (C, k), a key being
    ``image * H * W + y * W + x``: the order is activation descending, then image index,
    then position, a total order, so the top-k of any split of the data merged equals the
    top-k of the whole.
    """

    def __init__(self, channels: int, k: int, map_size: tuple[int, int]):
        self.k, self.map_size = k, map_size
        self.values = torch.full((channels, k), -math.inf)
        self.keys = torch.full((channels, k), EMPTY, dtype=torch.int64)

    def update(self, acts: torch.Tensor, indices: torch.Tensor) -> None:
        """Merge a batch: ``acts`` (B, C, H, W), ``indices`` (B,) ascending image indices."""
        c = acts.shape[1]
        hw = self.map_size[0] * self.map_size[1]
        v = acts.permute(1, 0, 2, 3).reshape(c, -1).float()                # (C, B*H*W)
        v = torch.nan_to_num(v, nan=-math.inf)
        keys = (indices[:, None] * hw + torch.arange(hw)).reshape(-1)       # (B*H*W,) ascending
        if v.shape[1] <= self.k:
            self.merge(v, keys.expand(c, -1))
            return
        # the batch's own top-k per channel, ties at the threshold taken in key order
        t = v.topk(self.k, dim=1).values[:, -1:]                            # (C, 1) k-th value
        keep = v > t
        eq = v == t
        need = self.k - keep.sum(1)                                         # (C,) tied places
        tied = (eq.sum(1) > need).nonzero()[:, 0]                           # rows with extra ties
        keep |= eq
        if len(tied):
            rank = eq[tied].cumsum(1, dtype=torch.int32)                    # (T, B*H*W)
            keep[tied] &= ~eq[tied] | (rank <= need[tied, None])
        rows, cols = keep.nonzero(as_tuple=True)                            # k per row, in order
        self.merge(v[rows, cols].view(c, self.k), keys[cols].view(c, self.k))

    def merge(self, values: torch.Tensor, keys: torch.Tensor) -> None:
        """Merge candidates ``values``/``keys`` (C, m) into the buffer."""
        self.values, self.keys = select(torch.cat([self.values, values], 1),
                                        torch.cat([self.keys, keys], 1), self.k)

    def gathered(self) -> StreamingTopK:
        """Every torchrun process's buffer merged, on every process (itself outside one)."""
        d = distributed.current()
        if not d.enabled:
            return self
        c = self.values.shape[0]
        values = d.gather_rows(self.values).view(-1, c, self.k).permute(1, 0, 2)
        keys = d.gather_rows(self.keys).view(-1, c, self.k).permute(1, 0, 2)
        out = StreamingTopK(c, self.k, self.map_size)
        out.merge(values.reshape(c, -1), keys.reshape(c, -1))
        return out

    def positions(self) -> torch.Tensor:
        """(C, k, 3) (image, y, x) of each buffered hit (-1 for empty slots)."""
        h, w = self.map_size
        k = self.keys.clamp_max(torch.iinfo(torch.int64).max - 1)
        out = torch.stack([k // (h * w), (k % (h * w)) // w, k % w], -1)
        return torch.where((self.keys == EMPTY)[..., None], -1, out)


def select(values: torch.Tensor, keys: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best of each row by (value descending, key ascending): two stable sorts."""
    order = keys.argsort(dim=1, stable=True)
    values, keys = values.gather(1, order), keys.gather(1, order)
    order = values.argsort(dim=1, descending=True, stable=True)[:, :k]
    return values.gather(1, order), keys.gather(1, order)


def as_nchw(act: torch.Tensor, axes: tuple[int, int] | None) -> torch.Tensor:
    """A layer's output as (B, C, H, W): channels-last maps permuted, vectors as 1x1 maps."""
    if act.ndim == 2:
        return act[:, :, None, None]
    if act.ndim == 4:
        return act.permute(0, 3, 1, 2) if axes == (1, 2) else act
    raise UsageError(f"a layer output of shape {tuple(act.shape[1:])} is neither maps nor a "
                     "vector; choose another layer.")


# --------------------------------------------------------------------------- boxes
def _axis_to_image(a: int, b: int, inp: int, img: int) -> tuple[int, int]:
    """Rows [a, b) of the network input -> the image rows bilinear resizing read them from
    (each input row reads two neighbouring image rows); unclipped."""
    if inp == img:
        return a, b
    r = img / inp
    return math.floor((a + 0.5) * r - 0.5), math.floor((b - 0.5) * r - 0.5) + 2


def image_box(rf: ReceptiveField, y: int, x: int, image_size: tuple[int, int],
              clip: bool = True) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of unit (y, x)'s field on the image at the model's image
    size (the network input may be a resized copy), clipped to it unless ``clip`` is False."""
    top, left, bottom, right = rf.unclipped_box(y, x)
    (ih, iw), (h, w) = rf.input_size, image_size
    top, bottom = _axis_to_image(top, bottom, ih, h)
    left, right = _axis_to_image(left, right, iw, w)
    if clip:
        top, left, bottom, right = max(top, 0), max(left, 0), min(bottom, h), min(right, w)
    return top, left, bottom, right


# --------------------------------------------------------------------------- results
@dataclass
class Hit:
    """One of a channel's top activations: where, how strong, and the patch's box."""

    channel: int
    image: int                    # position in the split searched
    y: int
    x: int                        # the unit in the layer's map
    activation: float
    box: tuple[int, int, int, int]  # (top, left, bottom, right) on the image, clipped
    row: int                      # position among the images searched (for the pixels)

    def to_dict(self) -> dict:
        return {"image": self.image, "y": self.y, "x": self.x,
                "activation": self.activation, "box": list(self.box)}


@dataclass
class Patches(MosaicDisplay):
    """The top patches of each channel of a layer."""

    config: PatchesConfig          # resolved: layer, channels, n
    data: str
    field: ReceptiveField
    image_size: tuple[int, int]
    hits: list[list[Hit]]          # per channel, strongest first
    images: object                 # the images searched at the model's size: [row] -> (C, H, W)

    @property
    def values(self) -> torch.Tensor:
        """(channels, top) activations, NaN where a channel has fewer hits."""
        out = torch.full((len(self.hits), self.config.top), math.nan)
        for i, hits in enumerate(self.hits):
            out[i, : len(hits)] = torch.tensor([h.activation for h in hits])
        return out

    def crop(self, hit: Hit) -> torch.Tensor:
        """The patch: (C, h, w) uint8 pixels of the unit's field, clipped at the borders."""
        top, left, bottom, right = hit.box
        return self.images[hit.row][:, top:bottom, left:right]

    def tile(self, hit: Hit) -> tuple[torch.Tensor, torch.Tensor]:
        """The patch on a canvas of the field's size (at most the image's), placed where the
        field lies, so that a field clipped by a border shows it: (C, fh, fw) uint8 and a
        (fh, fw) bool mask of the pixels inside the image."""
        t, lft, b, r = image_box(self.field, hit.y, hit.x, self.image_size, clip=False)
        h, w = self.image_size
        fh, fw = min(b - t, h), min(r - lft, w)
        patch = self.crop(hit)
        oy = fh - patch.shape[1] if t < 0 else 0
        ox = fw - patch.shape[2] if lft < 0 else 0
        canvas = torch.zeros((patch.shape[0], fh, fw), dtype=torch.uint8)
        mask = torch.zeros((fh, fw), dtype=torch.bool)
        canvas[:, oy:oy + patch.shape[1], ox:ox + patch.shape[2]] = patch
        mask[oy:oy + patch.shape[1], ox:ox + patch.shape[2]] = True
        return canvas, mask

    def render(self) -> np.ndarray:
        """One row per channel of its top patches, as (H, W, 3) uint8."""
        return draw("patches_image", self)

    def to_dict(self) -> dict:
        return {"config": asdict(self.config), "data": self.data,
                "receptive_field": self.field.to_dict(), "image_size": list(self.image_size),
                "channels": [{"channel": c, "hits": [h.to_dict() for h in hits]}
                             for c, hits in zip(self.config.channels, self.hits)]}


# --------------------------------------------------------------------------- the job
def patches(model, data=None, config: PatchesConfig | None = None, *, progress: bool = False,
            data_root=None, image_size: int | None = None, weights: str | None = None,
            **options) -> Patches:
    """The ``top`` most activating patches of each of ``channels`` of ``layer``.

    ``model``: a Classifier, model file or torchvision name; ``data``: a dataset name (None:
    the model's own), an ImageDataset, or images.
    """
    clf = as_classifier(model, weights)
    config = replace(config or PatchesConfig(), **options)
    _check(config)
    calls = traced_calls(clf)
    layer = choose_layer(clf, config.layer, "patches", calls)
    field = receptive_fields(clf).get(layer)
    shape = next((c.output_shape for c in reversed(calls) if c.name == layer), None)
    if field is None or shape is None:
        raise UsageError(f"layer {layer} does not output a tensor in the forward pass; "
                         "choose another (`convscope layers MODEL`).")
    count, map_size = _layout(shape, field.axes, layer)
    channels = _channels(config.channels, count, layer)
    found = image_set(clf, data, config.split, n=config.n, seed=config.seed,
                      data_root=data_root, image_size=image_size, progress=progress)
    images = model_images(clf, found.images)

    # ---- one pass, a streaming top-k per channel
    topk = StreamingTopK(len(channels), config.top, map_size)
    with closing(iterate(clf, images, [layer], batch_size=config.batch_size,
                         progress=progress, desc="patches")) as batches:
        for idx, acts in batches:
            a = as_nchw(acts[layer], field.axes)                     # (B, C, H, W)
            topk.update(a[:, list(channels)], idx)
    topk = topk.gathered()

    # ---- hits with their boxes
    pos = topk.positions()
    hits = [[Hit(int(c), int(found.indices[pos[i, j, 0]]), int(pos[i, j, 1]),
                 int(pos[i, j, 2]), float(topk.values[i, j]),
                 image_box(field, int(pos[i, j, 1]), int(pos[i, j, 2]), clf.image_size),
                 int(pos[i, j, 0]))
             for j in range(config.top) if pos[i, j, 0] >= 0]
            for i, c in enumerate(channels)]
    config = replace(config, layer=layer, channels=tuple(channels), n=len(found.images))
    return Patches(config, found.name, field, clf.image_size, hits, images)


def _channels(wanted: tuple[int, ...] | None, count: int, layer: str) -> tuple[int, ...]:
    if wanted is None:
        return tuple(range(min(DEFAULT_CHANNELS, count)))
    bad = [c for c in wanted if not 0 <= c < count]
    if bad:
        raise UsageError(f"`channels` {bad[0]} is out of range: layer {layer} has {count} "
                         f"channels (0-{count - 1}).")
    return tuple(wanted)


def _layout(shape: tuple[int, ...], axes, layer: str) -> tuple[int, tuple[int, int]]:
    """(channels, (H, W)) of a layer's output shape (without the batch dim)."""
    if len(shape) == 1:
        return shape[0], (1, 1)
    if len(shape) == 3:
        return (shape[2], shape[:2]) if axes == (1, 2) else (shape[0], shape[1:])
    raise UsageError(f"layer {layer}'s output of shape {tuple(shape)} is neither maps nor a "
                     "vector; choose another layer.")


def _check(config: PatchesConfig) -> None:
    if config.split not in SPLITS:
        raise unknown_name("split", config.split, list(SPLITS))
    if config.top < 1 or config.batch_size < 1 or (config.n is not None and config.n < 1):
        raise UsageError("`top`, `n` and `batch_size` must be at least 1.")
    if config.channels is not None and not config.channels:
        raise UsageError("`channels` is empty; give numbers or ranges like 0-15.")
