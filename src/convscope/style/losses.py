"""The losses of neural style transfer (Gatys et al. 2016), written so that each one is a
few lines of tensor algebra that a test can recompute by hand.

Notation of the paper: a layer has N filters and M = H·W positions; its responses are the
(N, M) matrix F.  With the Gram matrix normalised by M,

    gram(F) = F Fᵀ / M                                   (N, N)
    style layer loss  E = ¼ · mean((G − A)²)             = Gatys eq. 4 exactly,
                                                           1/(4 N² M²) Σ (FFᵀ − PPᵀ)²
    content loss      ½ · mean((F − P)²)                 Gatys eq. 1, ½ Σ (F − P)², taken as
                                                           a mean so it doesn't grow with size
    total variation   mean((∂x I)²) + mean((∂y I)²)      squared neighbour differences

The guided Gram matrix of the 2017 paper (spatial control) weights each position by a
guidance map T, normalised by the guide's energy so that T ≡ 1 gives back ``gram``:

    guided_gram(F, T) = (F·T)(F·T)ᵀ / Σ T²
"""

from __future__ import annotations

import torch


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """(B, N, H, W) responses -> (B, N, N) Gram matrices F Fᵀ / (H·W).

    >>> gram_matrix(torch.ones(1, 2, 3, 3))
    tensor([[[1., 1.],
             [1., 1.]]])
    """
    b, n, h, w = features.shape
    f = features.reshape(b, n, h * w)
    return f @ f.transpose(1, 2) / (h * w)


def guided_gram_matrix(features: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
    """Gram matrices of ``features`` (B, N, H, W) weighted by ``guide`` (B or 1, 1, H, W).

    Each position counts with weight T²; the result is divided by Σ T², so a guide of ones
    equals :func:`gram_matrix` and the value is a per-position average inside the region.
    """
    b, n, h, w = features.shape
    f = (features * guide).reshape(b, n, h * w)
    energy = guide.pow(2).reshape(guide.shape[0], -1).sum(dim=1).clamp_min(1e-8)  # (B or 1,)
    return f @ f.transpose(1, 2) / energy.view(-1, 1, 1)


def style_layer_loss(gram: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Gatys' E_l: ¼ · mean over the N² entries of (G − A)², for normalised Gram matrices."""
    return 0.25 * (gram - target).pow(2).mean()


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """½ · mean((F − P)²): Gatys' content loss averaged over the N·M responses."""
    return 0.5 * (features - target).pow(2).mean()


def tv_loss(image: torch.Tensor) -> torch.Tensor:
    """Total variation of (B, C, H, W) images: mean squared difference of vertical plus
    horizontal neighbours (0 for a constant image)."""
    dy = image[:, :, 1:, :] - image[:, :, :-1, :]
    dx = image[:, :, :, 1:] - image[:, :, :, :-1]
    return dy.pow(2).mean() + dx.pow(2).mean()
