"""The perceptual controls of Gatys et al. 2017, "Controlling Perceptual Factors in Neural
Style Transfer": colour, space and scale.

No maintained library offers these, so they are written here by hand; colour-space
conversions come from scikit-image.

* Colour (section 5): ``luminance`` transfers style on the luminance channel only, after
  matching the style's luminance mean and spread to the content's, and puts the content's
  chroma back (:func:`match_luminance`, :func:`recombine`); ``histogram`` first transforms the
  style image's colours linearly so that their mean and covariance equal the content's
  (:func:`match_color`, the Image-Analogies variant of the paper's eq. 7).
* Space (section 4): a mask image splits the output into regions, one style each; style
  statistics of a region are guided Gram matrices, the guide being the region's mask
  resized to each layer (:func:`read_mask`, :func:`layer_guides`).
* Scale (section 6): coarse-to-fine optimisation over an image pyramid
  (:func:`pyramid_sizes`), and style Gram matrices taken per layer from different images
  (fine layers from one, coarse from another; see ``StyleConfig.fine_style``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from convscope.errors import ConvscopeError
from convscope.images import to_pil

#: smallest share of the mask a colour must cover to be a region
MIN_REGION = 0.01


# --------------------------------------------------------------------------- colour
def rgb_to_yuv(image: torch.Tensor) -> torch.Tensor:
    """(C=3, H, W) RGB in [0, 1] -> (3, H, W) YUV (skimage's BT.601 matrix)."""
    from skimage.color import rgb2yuv  # heavy optional dependency

    arr = rgb2yuv(image.permute(1, 2, 0).double().cpu().numpy())
    return torch.from_numpy(arr).permute(2, 0, 1).float()


def yuv_to_rgb(image: torch.Tensor) -> torch.Tensor:
    """(3, H, W) YUV -> (3, H, W) RGB, clipped to [0, 1]."""
    from skimage.color import yuv2rgb  # heavy optional dependency

    arr = yuv2rgb(image.permute(1, 2, 0).double().cpu().numpy())
    return torch.from_numpy(arr).permute(2, 0, 1).float().clamp(0, 1)


def luminance(image: torch.Tensor) -> torch.Tensor:
    """(3, H, W) RGB -> (1, H, W) Y; a one-channel image is already luminance."""
    return image if image.shape[0] == 1 else rgb_to_yuv(image)[:1]


def match_luminance(style_y: torch.Tensor, content_y: torch.Tensor) -> torch.Tensor:
    """The style's luminance shifted and scaled to the content's mean and standard deviation
    (Gatys 2017, eq. 6: L_s' = σ_c/σ_s (L_s − μ_s) + μ_c)."""
    s_mean, s_std = style_y.mean(), style_y.std().clamp_min(1e-6)
    return ((style_y - s_mean) * content_y.std() / s_std + content_y.mean()).clamp(0, 1)


def recombine(y: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """A luminance (1, H, W) with the content's chroma (UV) -> RGB (3, H, W)."""
    if content.shape[0] == 1:
        return y.clamp(0, 1)
    yuv = rgb_to_yuv(content)
    return yuv_to_rgb(torch.cat([y.cpu(), yuv[1:]]))


def _sqrtm(cov: np.ndarray, inverse: bool = False) -> np.ndarray:
    """Symmetric (inverse) square root of a covariance matrix, by eigendecomposition."""
    vals, vecs = np.linalg.eigh(cov)
    vals = np.clip(vals, 1e-8, None) ** (-0.5 if inverse else 0.5)
    return (vecs * vals) @ vecs.T


def match_color(style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The style image (3, H, W) with its colours moved linearly, x' = A x + b, so that their
    mean and covariance equal the content's: A = Σ_c^½ Σ_s^-½, b = μ_c − A μ_s (Gatys 2017,
    section 5.1, "colour histogram matching" with the Image Analogies transform)."""
    if style.shape[0] == 1 or content.shape[0] == 1:
        return style
    s = style.reshape(3, -1).double().numpy()
    c = content.reshape(3, -1).double().numpy()
    mu_s, mu_c = s.mean(1, keepdims=True), c.mean(1, keepdims=True)
    a = _sqrtm(np.cov(c)) @ _sqrtm(np.cov(s), inverse=True)
    out = a @ (s - mu_s) + mu_c
    return torch.from_numpy(out).float().reshape(style.shape).clamp(0, 1)


def chroma_distance(image: torch.Tensor, content: torch.Tensor) -> float:
    """Mean absolute difference of the UV channels of two (3, H, W) RGB images."""
    return float((rgb_to_yuv(image)[1:] - rgb_to_yuv(content)[1:]).abs().mean())


# --------------------------------------------------------------------------- space
def read_mask(source, size: tuple[int, int], regions: int) -> torch.Tensor:
    """A mask image as (R, H, W) soft region maps that sum to one at every pixel.

    The image's ``regions`` most frequent colours define the regions (each must cover at
    least 1% of the mask), ordered by their
    luminance, darkest first (black is region 0); every pixel belongs to the nearest of
    them, so anti-aliased edges or JPEG noise don't create regions.  The maps are resized to
    ``size`` (H, W) by area averaging, so region borders are soft.
    """
    img = to_pil(source)
    arr = np.asarray(img.convert("RGB"), dtype=np.int64).reshape(-1, 3)
    colours, counts = np.unique(arr, axis=0, return_counts=True)
    big = counts >= MIN_REGION * len(arr)  # edge pixels and noise are not regions
    if big.sum() < regions:
        raise ConvscopeError(f"the mask has {big.sum()} colour(s) covering {MIN_REGION:.0%} of it "
                             f"or more, but {regions} styles were given; paint one flat colour "
                             "per style (black, white, ...).")
    top = colours[np.argsort(-counts, kind="stable")[:regions]]
    top = top[np.argsort(top @ np.array([299, 587, 114]), kind="stable")]  # darkest first
    nearest = ((arr[:, None, :] - top[None]) ** 2).sum(-1).argmin(1)  # (H·W,)
    h, w = img.size[1], img.size[0]
    onehot = torch.from_numpy(np.eye(regions, dtype=np.float32)[nearest]).T.reshape(regions, h, w)
    small = min(h / size[0], w / size[1]) >= 1
    maps = F.interpolate(onehot[None], size=size, mode="area" if small else "bilinear",
                         align_corners=None if small else False)[0]
    return maps / maps.sum(0, keepdim=True).clamp_min(1e-8)


def layer_guides(masks: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """(R, H, W) region maps resized to a layer's (h, w) by area averaging -> (R, 1, h, w).

    This is the paper's simplest guidance channel (resizing the mask to each layer); it
    needs no knowledge of the network's architecture.
    """
    return F.adaptive_avg_pool2d(masks[:, None], shape)


# --------------------------------------------------------------------------- scale
def pyramid_sizes(size: int, scales: int, smallest: int = 16) -> list[int]:
    """Longer-side sizes of a coarse-to-fine run: halving from ``size``, coarsest first.

    >>> pyramid_sizes(256, 3)
    [64, 128, 256]
    """
    sizes = [max(smallest, round(size / 2 ** k)) for k in range(scales)]
    return sorted(set(sizes) | {size})
