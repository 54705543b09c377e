"""DeepDream: amplify whatever a layer already sees in an image (Mordvintsev et al. 2015).

The lecture's recipe: forward to a layer, set the layer's gradient equal to its
activation, backprop to the image, update; that maximises sum_i f_i(I)^2.  It runs on
the one loop of :mod:`convscope.inspect.synthesis.core` with the ``layer_l2``
objective and the classic extras:

* octaves: start on the image shrunk ``octave_scale`` times per octave, and carry the
  detail dreamt at each scale up to the next, so patterns grow at several sizes;
* jitter: roll the image by up to ``jitter`` pixels before each step;
* gradient normalisation: each step moves pixels by ``lr`` times the gradient over its
  mean magnitude, so one step size suits every layer and model.

The image keeps its own size (the network runs fully convolutionally up to the
layer and stops there), and the output is a valid image of the input's size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from convscope.display import MosaicDisplay
from convscope.errors import UsageError
from convscope.images import load_image
from convscope.inspect.hooks import capture, default_conv_layer, model_mode, trace_layers
from convscope.inspect.synthesis.core import (
    ascend,
    forward,
    layer_calls,
    model_center,
)
from convscope.inspect.synthesis.objectives import Context, layer_l2
from convscope.inspect.synthesis.param import pixel_image
from convscope.inspect.synthesis.transforms import jitter
from convscope.options import (
    finite_float,
    layer_option,
    nonneg_float,
    nonneg_int,
    option,
    positive_int,
    seed_option,
)
from convscope.progress import progress_bar


@dataclass(frozen=True)
class DreamConfig:
    """Every setting of a DeepDream job."""

    layer: str | None = layer_option("layer to amplify (default: the last layer with a "
                                     "spatial map)")
    octaves: int = option(4, "scales", type=positive_int)
    octave_scale: float = option(1.4, "size ratio between octaves", type=finite_float,
                                 metavar="S")
    steps: int = option(10, "steps per octave", type=positive_int)
    lr: float = option(0.01, "pixels move LR x the normalised gradient per step, in [0, 1] "
                             "units", type=nonneg_float)
    jitter: int = option(32, "random roll in pixels", type=nonneg_int, metavar="PX")
    max_size: int | None = option(None, "shrink the image so its longer side is at most PX",
                                  type=positive_int, metavar="PX")
    min_size: int = 16  # octaves whose shorter side would fall below this are skipped
    seed: int = seed_option("random seed")

    def check(self) -> None:
        if self.octaves < 1 or self.steps < 1 or self.octave_scale < 1 or self.lr <= 0:
            raise UsageError("octaves and steps must be at least 1, octave_scale at least 1 "
                             "and lr above 0.")
        if self.jitter < 0 or (self.max_size is not None and self.max_size < 1):
            raise UsageError("jitter must be >= 0 and max_size at least 1.")


@dataclass
class DreamResult(MosaicDisplay):
    """The dreamt image, and Σf² at the layer before and after, on the full-size image."""

    image: torch.Tensor  # (C, H, W) float in [0, 1]
    layer: str
    energy_before: float
    energy_after: float
    sizes: list[tuple[int, int]] = field(default_factory=list)  # (H, W) of each octave run
    config: dict = field(default_factory=dict)

    def pil(self) -> Image.Image:
        arr = (self.image * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
        return Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)

    def render(self) -> np.ndarray:
        """The dreamt image as (H, W, C) uint8 (C is 1 or 3), what the PNG holds."""
        return (self.image * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()

    @property
    def gain(self) -> float:
        """How many times Σf² grew."""
        return self.energy_after / max(self.energy_before, 1e-12)


def octave_sizes(h: int, w: int, octaves: int, scale: float, min_size: int) -> list[tuple[int, int]]:
    """(H, W) of each octave, smallest first, ending at (h, w); none below min_size
    (unless the image itself is smaller)."""
    floor = min(min_size, h, w)
    sizes = []
    for i in reversed(range(octaves)):
        s = (round(h / scale**i), round(w / scale**i))
        if min(s) >= floor:
            sizes.append(s)
    return sizes


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


@torch.no_grad()
def layer_energy(clf, image: torch.Tensor, layer: str) -> float:
    """Σ f_i² at ``layer`` for a (1, C, H, W) image in [0, 1], at the image's own size."""
    image = image.to(clf.device)
    with model_mode(clf.model), capture(clf.model, layer_calls(clf, [layer]), stop=True) as acts:
        forward(clf, image, acts, resize=False)
        return float(layer_l2(layer)(Context(image, None, acts)).sum())


def read_dream_image(clf, image, max_size: int | None) -> torch.Tensor:
    """Any image input as (1, C, H, W) in [0, 1] with the model's channels, at its own size
    (shrunk to ``max_size`` on the longer side when asked)."""
    x = torch.from_numpy(load_image(image, None, clf.channels)).float()[None] / 255
    h, w = x.shape[-2:]
    if max_size and max(h, w) > max_size:
        k = max_size / max(h, w)
        x = _resize(x, (max(1, round(h * k)), max(1, round(w * k))))
    return x


def dream(clf, image, config: DreamConfig | None = None, progress=True,
          on_frame: Callable[[int, torch.Tensor], None] | None = None) -> DreamResult:
    """DeepDream ``image`` (a path, PIL image, array or tensor) at ``config.layer``.

    ``on_frame(i, image)`` sees the (C, H, W) image after every step, resized to the
    full size, to watch the features grow.

    >>> res = dream(clf, "photo.jpg", DreamConfig(layer="conv2_2"))   # doctest: +SKIP
    >>> res.pil().save("dream.png"); res.gain                          # doctest: +SKIP
    """
    cfg = dataclasses.replace(config or DreamConfig())
    cfg.check()
    base = read_dream_image(clf, image, cfg.max_size).to(clf.device)  # (1, C, H, W)
    h, w = base.shape[-2:]
    if cfg.layer is None:
        hh, ww = clf.image_size
        cfg = dataclasses.replace(cfg, layer=default_conv_layer(trace_layers(
            clf.model, clf.preprocess(torch.zeros(1, clf.channels, hh, ww, device=clf.device)))))
    objective = layer_l2(cfg.layer)
    before = layer_energy(clf, base, cfg.layer)
    sizes = octave_sizes(h, w, cfg.octaves, cfg.octave_scale, cfg.min_size)
    gen = torch.Generator().manual_seed(cfg.seed)
    center = model_center(clf)
    detail = torch.zeros_like(_resize(base, sizes[0]))
    bar = progress_bar(total=len(sizes) * cfg.steps, desc=f"dream {cfg.layer}", unit="step",
                       enable=bool(progress))
    frame = 0

    def show(_step, img):
        nonlocal frame
        on_frame(frame, _resize(img, (h, w))[0].clamp(0, 1).cpu())
        frame += 1

    try:
        for size in sizes:
            # the image at this octave, plus the detail dreamt so far (scaled up)
            shrunk = _resize(base, size)
            start = (shrunk + _resize(detail, size)).clamp(0, 1)
            param = pixel_image(start.shape, center=center, init=start, device=clf.device)
            res = ascend(clf, objective, param, steps=cfg.steps, lr=cfg.lr, optimizer="normalized",
                         transforms=[jitter(cfg.jitter)], generator=gen, resize=False,
                         progress=bar, on_step=show if on_frame else None)
            detail = res.images.to(clf.device) - shrunk
    finally:
        bar.close()
    out = res.images.to(clf.device)  # the last octave is the full size
    after = layer_energy(clf, out, cfg.layer)
    return DreamResult(image=out[0].cpu(), layer=cfg.layer, energy_before=before,
                       energy_after=after, sizes=sizes, config=dataclasses.asdict(cfg))
