"""``StyleConfig``: the one config of a style-transfer job; its resolved values are embedded
in the output PNG (``convscope.render.figures.read_config`` reads them back)."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field

from convscope.errors import UsageError
from convscope.options import nonneg_float, option, positive_int, seed_option

OPTIMIZERS = ("lbfgs", "adam")
INITS = ("content", "noise", "style")
PRESERVE = ("luminance", "histogram")


def float_list(text: str) -> list[float]:
    """Numbers separated by commas (a value type)."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected finite numbers (no nan or inf), got {text!r}")
    return values


def name_list(text: str) -> list[str]:
    """Names separated by commas (a value type)."""
    return [v.strip() for v in text.split(",") if v.strip()]


@dataclass(frozen=True)
class StyleConfig:
    """Options of one style transfer; defaults are the ones ``convscope style`` uses.

    Images are paths, ``sample:NAME`` (photos bundled with scikit-image) or, from Python,
    arrays; the config keeps a description of each.
    """

    content: str = "sample:chelsea"
    styles: list[str] = field(default_factory=lambda: ["sample:ihc"])
    style_mix: list[float] | None = option(None, "weight of each STYLE when several are "
                                                 "mixed, normalised to sum to 1 (default "
                                                 "equal)", type=float_list, metavar="W1,W2,...")
    size: int = option(256, "longer side of the output in px", type=positive_int)
    steps: int = option(100, "optimisation steps at each scale (one forward and backward "
                             "pass each)", type=positive_int)
    optimizer: str = option("lbfgs", "the optimiser", choices=OPTIMIZERS)
    lr: float | None = option(None, "step size (default 1 for lbfgs, 0.02 for adam)",
                              type=nonneg_float)
    content_weight: float = option(1.0, "weight of the content loss", type=nonneg_float)
    style_weight: float = option(100.0, "weight of the style loss", type=nonneg_float)
    tv_weight: float = option(1.0, "weight of the total-variation loss (smoothness)",
                              type=nonneg_float)
    content_layer: str | None = option(None, "layer name as `named_modules()` gives it, or "
                                             "conv4_2-style aliases on VGG (default: relu4_2 = "
                                             "features.22 on VGG-19)", metavar="LAYER")
    style_layers: list[str] | None = option(None, "the style layers (default: relu1_1,"
                                                  "relu2_1,relu3_1,relu4_1,relu5_1 on VGG-19)",
                                            type=name_list, metavar="L1,L2,...")
    init: str = option("content", "starting image", choices=INITS)
    preserve_color: str | None = option(None, "luminance: transfer on luminance, keep the "
                                              "content's colours; histogram: match the "
                                              "style's colours to the content's first",
                                        choices=PRESERVE)
    mask: str | None = option(None, "one flat colour per STYLE; the darkest colour takes the "
                                    "first style", metavar="PNG")
    scales: int = option(1, "coarse-to-fine levels, each twice as large as the one before",
                         type=positive_int)
    fine_style: str | None = option(None, "take the fine scale (the first --fine-layers style "
                                          "layers) from IMAGE, the coarse scale from STYLE",
                                    metavar="IMAGE")
    fine_layers: int | None = option(None, "how many style layers count as fine (default: "
                                           "half of them, rounded down)", type=positive_int)
    style_scale: float = option(1.0, "style images' size relative to the output",
                                type=nonneg_float)
    backbone: str = "vgg19"
    weights: str | None = None
    #: divide each layer's loss by its value for an all-zero response, so that layers and
    #: backbones of any activation scale count alike; False: Gatys' raw weights
    layer_norm: bool = option(True, "Gatys' raw layer weights instead of dividing each layer's "
                                    "loss by its size for an all-zero response",
                              flag="--no-layer-norm", switch=True)
    seed: int = seed_option("the noise start and the random backbone")
    device: str = "auto"
    # ------------------------------------------------------------ filled in by the run
    backbone_used: str = ""
    notices: list[str] = field(default_factory=list)

    def validate(self) -> None:
        """Raise a UsageError naming the first bad option."""
        if not self.styles:
            raise UsageError("give at least one style image.")
        checks = [
            (self.optimizer in OPTIMIZERS, f"`optimizer` must be one of {', '.join(OPTIMIZERS)}"),
            (self.init in INITS, f"`init` must be one of {', '.join(INITS)}"),
            (self.preserve_color in (None, *PRESERVE),
             f"`preserve_color` must be one of {', '.join(PRESERVE)}"),
            (self.size >= 8, "`size` must be at least 8 px"),
            (self.steps >= 1, "`steps` must be at least 1"),
            (self.scales >= 1, "`scales` must be at least 1"),
            (self.style_scale > 0, "`style_scale` must be positive"),
            (self.lr is None or self.lr > 0, "`lr` must be positive"),
            (min(self.content_weight, self.style_weight, self.tv_weight) >= 0,
             "loss weights must be >= 0"),
            (self.fine_layers is None or self.fine_layers >= 1, "`fine_layers` must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message + ".")
        if self.style_mix is not None:
            if self.mask:
                raise UsageError("`style_mix` mixes styles everywhere and `mask` gives each "
                                 "region its own style; use one of them.")
            if len(self.style_mix) != len(self.styles) or min(self.style_mix) < 0 \
                    or sum(self.style_mix) <= 0:
                raise UsageError(f"`style_mix` needs one weight >= 0 per style image "
                                 f"({len(self.styles)}), not all zero.")

    @property
    def mix(self) -> list[float]:
        """The style weights, summing to one."""
        raw = self.style_mix or [1.0] * len(self.styles)
        return [w / sum(raw) for w in raw]
