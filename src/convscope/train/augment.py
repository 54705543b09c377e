"""Batched augmentation on tensors: no per-image Python in the training loop.

Random numbers are drawn for the whole (global) batch and then cut to the part this
process holds, so a data-parallel run augments every image exactly as a single
process would.
"""

from __future__ import annotations

import torch


def random_flip(x: torch.Tensor, g: torch.Generator, total: int | None = None,
                part: slice = slice(None)) -> torch.Tensor:
    """Mirror a random half of the (B, C, H, W) batch left-right."""
    flip = (torch.rand(total or len(x), generator=g, device="cpu") < 0.5)[part]
    return torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)


def random_crop(x: torch.Tensor, pad: int, g: torch.Generator, total: int | None = None,
                part: slice = slice(None)) -> torch.Tensor:
    """Pad by ``pad`` (reflect) and cut a random same-size window from each image."""
    if pad <= 0:
        return x
    b, _, h, w = x.shape
    mode = "reflect" if pad < min(h, w) else "replicate"
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode=mode)
    dy = torch.randint(0, 2 * pad + 1, (total or b,), generator=g)[part].to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (total or b,), generator=g)[part].to(x.device)
    rows = (torch.arange(h, device=x.device)[None] + dy[:, None])  # (B, H)
    cols = (torch.arange(w, device=x.device)[None] + dx[:, None])  # (B, W)
    bidx = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[bidx, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous(memory_format=torch.contiguous_format)


def alternating_flip(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror the images whose ``flip`` bit is set.  The trainer gives each image a fixed
    random bit and inverts all bits every other epoch, so each image is seen both ways
    in any two consecutive epochs (more diverse than independent coin flips)."""
    return torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)


def resolve_augment(augment: str, natural: bool) -> str:
    if augment == "auto":
        return "flip-crop" if natural else "none"
    return augment


def augment_batch(x: torch.Tensor, augment: str, g: torch.Generator, total: int | None = None,
                  part: slice = slice(None)) -> torch.Tensor:
    """Apply the named augmentation (none, flip, crop, flip-crop) to a float batch.

    ``x`` is the ``part`` of a batch of ``total`` images (all of it by default).
    ``altflip-translate`` translates by up to 2 px here; its flip is applied by the
    trainer, which knows the image indices and the epoch (``alternating_flip``).
    """
    if augment in ("flip", "flip-crop"):
        x = random_flip(x, g, total, part)
    if augment in ("crop", "flip-crop"):
        x = random_crop(x, max(1, min(x.shape[-2:]) // 8), g, total, part)
    if augment == "altflip-translate":
        x = random_crop(x, min(2, min(x.shape[-2:]) - 1), g, total, part)
    return x
