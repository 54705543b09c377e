"""``StyleConfig``: the one config of a style-transfer job; its resolved values are embedded
in the output PNG (``convscope.render.figures.read_config`` reads them back)."""

from __future__ import annotations

from dataclasses import dataclass, field

from convscope.errors import UsageError

OPTIMIZERS = ("lbfgs", "adam")
INITS = ("content", "noise", "style")
PRESERVE = ("luminance", "histogram")


@dataclass(frozen=True)
class StyleConfig:
    """Options of one style transfer; defaults are the ones ``convscope style`` uses.

    Images are paths, ``sample:NAME`` (photos bundled with scikit-image) or, from Python,
    arrays; the config keeps a description of each.
    """

    content: str = "sample:chelsea"
    styles: list[str] = field(default_factory=lambda: ["sample:ihc"])
    #: how much each style counts when several are mixed (normalised to sum to 1)
    style_mix: list[float] | None = None
    #: longer side of the output, px
    size: int = 256
    #: optimisation steps at each scale (one forward and backward pass each)
    steps: int = 100
    optimizer: str = "lbfgs"
    #: step size; None: 1.0 for L-BFGS, 0.02 for Adam
    lr: float | None = None
    content_weight: float = 1.0
    style_weight: float = 100.0
    tv_weight: float = 1.0
    #: None: the backbone's default (relu4_2 on VGG-19)
    content_layer: str | None = None
    #: None: the backbone's default (relu1_1 ... relu5_1 on VGG-19)
    style_layers: list[str] | None = None
    init: str = "content"
    #: None, "luminance" or "histogram"
    preserve_color: str | None = None
    #: mask image, one flat colour per style (darkest colour = first style)
    mask: str | None = None
    #: coarse-to-fine levels, each twice the size of the one before; 1 = single scale
    scales: int = 1
    #: take the fine scale (the first ``fine_layers`` style layers) from this image
    fine_style: str | None = None
    #: None: the first half of the style layers, rounded down (relu1_1, relu2_1 on VGG-19)
    fine_layers: int | None = None
    #: style images are resized to this fraction of the output's size
    style_scale: float = 1.0
    backbone: str = "vgg19"
    weights: str | None = None
    #: divide each layer's loss by its value for an all-zero response, so that layers and
    #: backbones of any activation scale count alike; False: Gatys' raw weights
    layer_norm: bool = True
    seed: int = 0
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
