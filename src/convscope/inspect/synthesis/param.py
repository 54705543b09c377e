"""Image parameterisations: the tensors the optimiser moves, and how they become an image.

Like lucent's, each returns ``(params, image_fn)`` (an :class:`ImageParam` unpacks to
that pair); ``image_fn()`` gives a ``(B, C, H, W)`` image in [0, 1] for any channel
count, so grayscale and RGB models work alike (lucent's assume RGB and fail otherwise).

* :func:`pixel_image`: the pixels themselves, stored as the offset from the model's
  mean image, so that "start from zeros" means the mean image, the zero of the
  network's input (Simonyan et al. 2014), and an L2 penalty pulls towards it.
* :func:`fourier_image`: a scaled Fourier spectrum with decorrelated colour, through a
  sigmoid (Olah et al. 2017, lucid/lucent's ``fft_image`` and ``to_valid_rgb``),
  which spreads the update over all frequencies instead of the highest ones.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

Shape = tuple[int, int, int, int]  # (B, C, H, W)


class ImageParam:
    """``(params, image_fn)`` plus ``project_()``, which keeps the image valid after a step."""

    kind = "custom"

    def __init__(self, params: list[torch.Tensor], image_fn: Callable[[], torch.Tensor]):
        self.params = params
        self.image_fn = image_fn

    def __iter__(self):  # params, image_fn = pixel_image(...)
        return iter((self.params, self.image_fn))

    def image(self) -> torch.Tensor:
        """(B, C, H, W) in [0, 1]."""
        return self.image_fn()

    def project_(self) -> None:
        """Bring the parameters back to a valid image after an update (nothing by default)."""


class PixelParam(ImageParam):
    """Pixels as an offset from ``center`` (the mean image), clipped to valid pixels."""

    kind = "pixel"

    def __init__(self, offset: torch.Tensor, center: torch.Tensor):
        self.offset = offset  # (B, C, H, W), the image minus the mean image
        self.center = center  # (1, C, 1, 1) in [0, 1]
        super().__init__([offset], lambda: self.center + self.offset)

    @torch.no_grad()
    def project_(self) -> None:
        self.offset.copy_(torch.minimum(torch.maximum(self.offset, -self.center), 1 - self.center))

    @torch.no_grad()
    def set_image_(self, image: torch.Tensor) -> None:
        """Replace the pixels, e.g. after a blur (Yosinski's regularisers edit pixels)."""
        self.offset.copy_(image - self.center)
        self.project_()


def pixel_image(shape: Shape, center: torch.Tensor | None = None, init: torch.Tensor | None = None,
                sd: float = 0.0, generator: torch.Generator | None = None,
                device: str | torch.device = "cpu") -> PixelParam:
    """Pixels in [0, 1]: ``init`` (a (B, C, H, W) image) or the mean image, plus N(0, sd) noise.

    >>> params, image_fn = pixel_image((1, 3, 32, 32), center=torch.full((1, 3, 1, 1), 0.5))
    >>> image_fn().shape
    torch.Size([1, 3, 32, 32])
    """
    b, c, h, w = shape
    center = (torch.full((1, c, 1, 1), 0.5) if center is None else center).to(device).float()
    start = center.expand(b, c, h, w) if init is None else init.to(device).float()
    offset = start - center
    if sd:
        offset = offset + sd * torch.randn(shape, generator=generator).to(device)
    param = PixelParam(offset.clone().requires_grad_(True), center)
    param.project_()
    return param


# ----------------------------------------------------------------- Fourier, decorrelated colour
#: Square root of ImageNet's colour covariance (lucid's ``color_correlation_svd_sqrt``): a
#: fixed natural-image prior, used for three-channel images only.
_COLOR_SQRT = np.array([[0.26, 0.09, 0.02],
                        [0.27, 0.00, -0.05],
                        [0.27, -0.09, 0.03]], dtype=np.float32)
_COLOR = torch.from_numpy(_COLOR_SQRT / np.linalg.norm(_COLOR_SQRT, axis=0).max())


def _frequencies(h: int, w: int) -> torch.Tensor:
    """|f| of every coefficient of a real 2-D FFT of an h x w image, (h, w // 2 + 1)."""
    fy = torch.fft.fftfreq(h)[:, None]
    fx = torch.fft.rfftfreq(w)[None, :]
    return (fx * fx + fy * fy).sqrt()


def decorrelate_colors(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in decorrelated colour space -> RGB; other channel counts pass through."""
    if x.shape[1] != 3:
        return x
    return torch.einsum("bchw,dc->bdhw", x, _COLOR.to(x.device))


def fourier_image(shape: Shape, sd: float = 0.01, decay_power: float = 1.0,
                  decorrelate: bool = True, generator: torch.Generator | None = None,
                  device: str | torch.device = "cpu") -> ImageParam:
    """A spectrum scaled by 1/|f|^decay_power, inverse-FFT'd, colour-decorrelated, sigmoided.

    >>> params, image_fn = fourier_image((2, 1, 28, 28))   # grayscale works too
    >>> float(image_fn().min()) > 0
    True
    """
    b, c, h, w = shape
    freqs = _frequencies(h, w)
    scale = (1.0 / freqs.clamp(min=1.0 / max(h, w)) ** decay_power).to(device)  # (h, w//2+1)
    spectrum = (sd * torch.randn((b, c, *freqs.shape, 2), generator=generator)).to(device)
    spectrum.requires_grad_(True)

    def image_fn() -> torch.Tensor:
        coeffs = torch.view_as_complex(spectrum) * scale
        x = torch.fft.irfft2(coeffs, s=(h, w), norm="ortho") / 4.0  # lucid's "magic" 4
        if decorrelate:
            x = decorrelate_colors(x)
        return torch.sigmoid(x)

    param = ImageParam([spectrum], image_fn)
    param.kind = "fourier"
    return param


#: parameterisations by name (the choices of ``VisualizeConfig.param`` and ``--param``)
PARAMS = {"pixel": pixel_image, "fourier": fourier_image}
