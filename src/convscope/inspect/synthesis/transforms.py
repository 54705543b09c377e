"""Random, differentiable transforms applied to the image before each forward pass.

An image that still excites the network after being shifted, scaled and rotated
a little cannot rely on single-pixel noise, which is what makes transformation
robustness a strong natural-image prior (Mordvintsev et al. 2015, Olah et al. 2017).

A transform is ``t(image, generator) -> image`` on ``(B, C, H, W)``, keeping the size;
the explicit generator makes runs reproducible without touching torch's global seed.
Join them with :func:`compose`.

Sizes are the caller's choice: :func:`standard` scales them to the image, because
lucent's fixed defaults (pad 12, jitter 8, +-10%, +-10 degrees), made for 224-pixel
ImageNet inputs, wreck a 32-pixel CIFAR image and give blurry results there.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _uniform(lo: float, hi: float, gen: torch.Generator) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen))


def jitter(d: int) -> Transform:
    """Roll the image by up to ``d`` pixels in each direction (wrapping round, as in
    DeepDream, so that nothing is lost and the size stays)."""
    def t(x, gen):
        if d < 1:
            return x
        dy, dx = (int(v) for v in torch.randint(-d, d + 1, (2,), generator=gen))
        return torch.roll(x, shifts=(dy, dx), dims=(-2, -1))

    return t


def _affine(x: torch.Tensor, angle_deg: float, scale: float) -> torch.Tensor:
    """Rotate and zoom about the centre with bilinear sampling and mirrored borders.

    Written here rather than with torchvision's ``affine``, which fills the borders
    with a constant colour that the optimisation would then paint around.
    """
    a = math.radians(angle_deg)
    cos, sin = math.cos(a) / scale, math.sin(a) / scale
    theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=x.dtype, device=x.device)
    grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def scale(lo: float, hi: float) -> Transform:
    """Zoom by a random factor in [lo, hi] about the centre, keeping the size."""
    return lambda x, gen: _affine(x, 0.0, _uniform(lo, hi, gen))


def rotate(degrees: float) -> Transform:
    """Rotate by a random angle in [-degrees, degrees] about the centre."""
    return lambda x, gen: _affine(x, _uniform(-degrees, degrees, gen), 1.0)


def compose(*transforms: Transform) -> Transform:
    """Apply the transforms left to right."""
    def t(x, gen):
        for f in transforms:
            x = f(x, gen)
        return x

    return t


def standard(size: tuple[int, int], jitter_frac: float = 0.0, scale_frac: float = 0.0,
             rotate_deg: float = 0.0) -> Transform:
    """Jitter, scale, rotate, jitter again, with shifts as a fraction of the image side.

    >>> t = standard((32, 32), jitter_frac=1 / 16, scale_frac=0.05, rotate_deg=5)
    """
    d = round(jitter_frac * min(size))
    parts: list[Transform] = []
    if d:
        parts.append(jitter(d))
    if scale_frac:
        parts.append(scale(1 - scale_frac, 1 + scale_frac))
    if rotate_deg:
        parts.append(rotate(rotate_deg))
    if d and (scale_frac or rotate_deg):
        parts.append(jitter(max(1, d // 2)))
    return compose(*parts)
