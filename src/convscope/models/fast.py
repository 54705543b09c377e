"""``fastnet``: the network of convscope's fast CIFAR recipe.

Designed from the published airbench ideas (Keller Jordan, 2024), written here:
a 2x2 convolution initialised to whiten image patches (from the training data),
then three blocks of conv - maxpool - BN - GELU - conv - BN - GELU at widths
64/256/256, a global max pool and a linear head.  At 32x32 it costs about
0.24 GFLOP per forward pass.  Convolutions start as identity maps on their first
channels (an implicit residual), batch-norm scales are frozen at 1, and the head's
output is divided by its width.
"""

from __future__ import annotations

import torch
from torch import nn

from convscope.errors import UsageError
from convscope.models.registry import ModelInput, register_model


class Conv(nn.Conv2d):
    """3x3 'same' convolution, initialised as an identity on its first in_channels outputs."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(c_in, c_out, 3, padding="same", bias=False)
        with torch.no_grad():
            nn.init.dirac_(self.weight[: min(c_in, c_out)])


class BatchNorm(nn.BatchNorm2d):
    """Batch norm with a frozen unit scale and a short memory for its running statistics."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, eps=1e-12, momentum=0.4)
        self.weight.requires_grad_(False)


class ConvGroup(nn.Module):
    def __init__(self, c_in: int, c_out: int, pool: bool) -> None:
        super().__init__()
        self.conv1 = Conv(c_in, c_out)
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()
        self.norm1 = BatchNorm(c_out)
        self.act1 = nn.GELU()
        self.conv2 = Conv(c_out, c_out)
        self.norm2 = BatchNorm(c_out)
        self.act2 = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.norm1(self.pool(self.conv1(x))))
        return self.act2(self.norm2(self.conv2(x)))


class FastNet(nn.Module):
    def __init__(self, inp: ModelInput, widths: tuple[int, int, int], whiten: int) -> None:
        super().__init__()
        c = inp.channels
        self.whiten = nn.Conv2d(c, 2 * c * whiten * whiten, whiten, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)  # set from the data, never trained
        self.act = nn.GELU()
        size = min(inp.image_size) - whiten + 1
        groups, c_in = [], self.whiten.out_channels
        for w in widths:
            groups.append(ConvGroup(c_in, w, pool=size >= 2))
            size = size // 2 if size >= 2 else size
            c_in = w
        self.block1, self.block2, self.block3 = groups
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.flatten = nn.Flatten()
        self.head = nn.Linear(c_in, inp.num_classes, bias=False)
        with torch.no_grad():
            self.head.weight /= self.head.weight.std()

    @torch.no_grad()
    def init_from_data(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the first layer to whiten the (normalised) images' k x k patches: each filter
        is an eigenvector of the patch covariance over sqrt(eigenvalue), paired with its
        negative so that GELU keeps both signs."""
        k = self.whiten.kernel_size[0]
        c = images.shape[1]
        patches = images.float().unfold(2, k, 1).unfold(3, k, 1)  # (N, C, H', W', k, k)
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * k * k).double()
        cov = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(cov)
        filters = eigenvectors.T.reshape(-1, c, k, k) / torch.sqrt(eigenvalues + eps).view(-1, 1, 1, 1)
        self.whiten.weight.copy_(torch.cat([filters, -filters]).to(self.whiten.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.whiten(x))
        x = self.block3(self.block2(self.block1(x)))
        x = self.flatten(self.pool(x))
        return self.head(x) / x.shape[-1]


@register_model("fastnet", "the fast recipe's network: a 2x2 whitening conv, then three "
                "conv-pool-BN-GELU blocks (airbench-style); options width1, width2, width3, "
                "whiten", defaults={"width1": 64, "width2": 256, "width3": 256, "whiten": 2})
def fastnet(inp: ModelInput, width1: int, width2: int, width3: int, whiten: int) -> nn.Module:
    if min(width1, width2, width3) < 1 or whiten < 1 or whiten > min(inp.image_size):
        raise UsageError("fastnet needs widths >= 1 and 1 <= whiten <= the image size.")
    return FastNet(inp, (width1, width2, width3), whiten)
