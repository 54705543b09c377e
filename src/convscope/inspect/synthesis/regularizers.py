"""Natural-image regularisers: penalties inside the objective, and operators between steps.

* Penalties are subtracted from the objective: :class:`L2Decay` is Simonyan et al.
  (2014)'s lambda * ||I||^2 (I measured from the mean image), :class:`TotalVariation`
  the smoothness prior of Mahendran & Vedaldi (2015).  Both are means over pixels, so
  one weight suits every image size.
* Operators edit the pixels after each update, as in Yosinski et al. (2015), "Understanding
  Neural Networks Through Deep Visualization": :class:`GaussianBlur` every k steps,
  :class:`ClipNorm` (zero the pixels of smallest norm) and :class:`ClipContribution`
  (zero the pixels whose linearised contribution |x . grad| is smallest).  They need
  the pixel parameterisation.
"""

from __future__ import annotations

import math

import torch
from torchvision.transforms.v2 import functional as TF

from convscope.errors import UsageError
from convscope.inspect.synthesis.param import ImageParam, PixelParam


class Regularizer:
    """A penalty ``penalty(image) -> (B,)``, subtracted from the objective, and/or an
    operator ``apply_(param, grad, step)`` run after each update."""

    def penalty(self, image: torch.Tensor, center: torch.Tensor) -> torch.Tensor | None:
        return None

    def apply_(self, param: ImageParam, grad: torch.Tensor, step: int) -> None:
        return None

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


# ----------------------------------------------------------------- measures
def l2_norm(image: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    """Mean squared distance from the mean image, per image: (B,)."""
    return (image - center).pow(2).flatten(1).mean(1)


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels (anisotropic TV), per image: (B,)."""
    dy = (image[..., 1:, :] - image[..., :-1, :]).abs().flatten(1).mean(1)
    dx = (image[..., :, 1:] - image[..., :, :-1]).abs().flatten(1).mean(1)
    return dy + dx


def high_frequency_energy(image: torch.Tensor, cutoff: float = 0.25) -> torch.Tensor:
    """The share of spectral energy above ``cutoff`` cycles/pixel (mean removed), per image."""
    x = image - image.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.rfft2(x).abs().pow(2).sum(1)  # (B, H, W//2+1)
    h, w = image.shape[-2:]
    f = (torch.fft.fftfreq(h)[:, None] ** 2 + torch.fft.rfftfreq(w)[None, :] ** 2).sqrt()
    high = power[:, f > cutoff].sum(1)
    return high / power.flatten(1).sum(1).clamp(min=1e-12)


# ----------------------------------------------------------------- penalties
class L2Decay(Regularizer):
    """Penalise ``weight * mean((I - mean image)^2)``: the lecture's lambda * ||I||^2."""

    def __init__(self, weight: float):
        self.weight = float(weight)

    def penalty(self, image, center):
        return self.weight * l2_norm(image, center)


class TotalVariation(Regularizer):
    """Penalise ``weight * TV(I)``, favouring piecewise-smooth images."""

    def __init__(self, weight: float):
        self.weight = float(weight)

    def penalty(self, image, center):
        return self.weight * total_variation(image)


# ----------------------------------------------------------------- Yosinski's operators
def _pixels(param: ImageParam) -> PixelParam:
    if not isinstance(param, PixelParam):
        raise UsageError("blur and pixel clipping edit pixels; use them with the pixel "
                         "parameterisation (param='pixel').")
    return param


def _zero_below(param: PixelParam, score: torch.Tensor, pct: float) -> None:
    """Set the pixels whose score (B, H, W) is below the pct-th percentile to the mean image."""
    flat = score.flatten(1)
    cut = torch.quantile(flat, pct / 100.0, dim=1, keepdim=True)  # (B, 1)
    keep = (flat >= cut).view_as(score).unsqueeze(1)  # (B, 1, H, W)
    param.offset.mul_(keep)


class GaussianBlur(Regularizer):
    """Blur the pixels with a Gaussian of width ``sigma`` every ``every`` steps."""

    def __init__(self, sigma: float, every: int = 4):
        self.sigma = float(sigma)
        self.every = max(1, int(every))

    @torch.no_grad()
    def apply_(self, param, grad, step):
        p = _pixels(param)
        if self.sigma <= 0 or (step + 1) % self.every:
            return
        p.set_image_(gaussian_blur(p.image(), self.sigma))


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """torchvision's Gaussian blur with a kernel of about 3 sigma each side, fitted to the image."""
    h, w = image.shape[-2:]
    k = 2 * math.ceil(3 * sigma) + 1
    k = max(1, min(k, 2 * (min(h, w) // 2) - 1))  # reflect padding needs k // 2 < side
    return TF.gaussian_blur(image, kernel_size=[k, k], sigma=[sigma, sigma])


class _PercentileClip(Regularizer):
    """Zero the ``pct`` percent of pixels with the lowest ``score`` (B, H, W)."""

    def __init__(self, pct: float):
        self.pct = float(pct)

    def score(self, p: PixelParam, grad: torch.Tensor | None) -> torch.Tensor | None:
        raise NotImplementedError

    @torch.no_grad()
    def apply_(self, param, grad, step):
        p = _pixels(param)
        score = self.score(p, grad) if self.pct > 0 else None
        if score is not None:
            _zero_below(p, score, self.pct)


class ClipNorm(_PercentileClip):
    """Zero the ``pct`` percent of pixels with the smallest norm across channels."""

    def score(self, p, grad):
        return p.offset.norm(dim=1)


class ClipContribution(_PercentileClip):
    """Zero the ``pct`` percent of pixels contributing least to the objective, measured as
    |sum_c x_c * dObjective/dx_c| (the first-order change if the pixel were the mean)."""

    def score(self, p, grad):
        return None if grad is None else (p.offset * grad).sum(1).abs()
