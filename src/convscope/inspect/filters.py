"""What a layer holds and what it outputs: its filters, and its activation maps for one image.

First-layer filters on RGB input are drawn as colour tiles, each scaled to its own range
(the classic AlexNet 64x3x11x11 / ResNet 64x3x7x7 pictures).  Any other filters are drawn
as grayscale tiles, one per input channel, each filter scaled to its own largest |weight|
with 0 as mid-grey.  A fully connected layer on the raw pixels (a linear classifier, an MLP)
has templates instead of filters: each row of its weights reshaped to an image.

>>> f = filters("runs/mnist/model.safetensors")              # doctest: +SKIP
>>> f.layer, f.weights.shape, f.colour                        # doctest: +SKIP
('conv1_1', torch.Size([32, 1, 3, 3]), False)
>>> a = activations("resnet18", "dog.jpg", layer="layer1")    # doctest: +SKIP
>>> a.maps.shape                                              # doctest: +SKIP
torch.Size([64, 56, 56])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from torch import nn

from convscope.classifier import Classifier
from convscope.display import MosaicDisplay, draw
from convscope.errors import UsageError, unknown_name
from convscope.inspect.hooks import capture, get_layer, model_mode
from convscope.inspect.layers import choose_layer, first_conv_layer, traced_calls
from convscope.loading import as_classifier
from convscope.options import layer_option, option, positive_int

FILTER_MODES = ("auto", "colour", "gray")


@dataclass(frozen=True)
class FiltersConfig:
    """The options of one ``filters`` job."""

    layer: str | None = layer_option("a convolution, or a fully connected layer on the pixels "
                                     "(default: the first convolution)")
    max_filters: int = option(64, "filters drawn (the first ones)", type=positive_int)
    max_channels: int = option(16, "input channels drawn per filter, one grayscale tile each",
                               type=positive_int)
    mode: str = option("auto", "colour tiles (RGB filters only), gray tiles, or auto: colour "
                               "for a first layer on RGB input", choices=FILTER_MODES)
    zoom: int | None = option(None, "screen pixels per weight (default: tiles of about 40 px)",
                              type=positive_int)


@dataclass
class Filters(MosaicDisplay):
    """A layer's filters, ``(K, C, kh, kw)``, and how they are drawn."""

    layer: str
    weights: torch.Tensor   # (K, C, kh, kw) float, every filter
    colour: bool            # drawn as RGB tiles (else one grayscale tile per channel)
    templates: bool         # a fully connected layer's rows shown as images
    config: FiltersConfig   # resolved: layer, mode, zoom

    @property
    def shown(self) -> torch.Tensor:
        """The filters and channels drawn, ``(K', C', kh, kw)``."""
        c = 3 if self.colour else self.config.max_channels
        return self.weights[: self.config.max_filters, :c]

    def tiles(self) -> np.ndarray:
        """The drawn filters scaled to [0, 1]: ``(K', kh, kw, 3)`` colour tiles, each
        min-max scaled on its own, or ``(K', C', kh, kw)`` grayscale tiles, each filter
        scaled so that 0 is 0.5 and its largest |w| reaches 0 or 1."""
        w = self.shown.double()
        if self.colour:
            lo = w.amin(dim=(1, 2, 3), keepdim=True)
            hi = w.amax(dim=(1, 2, 3), keepdim=True)
            t = (w - lo) / (hi - lo).clamp_min(1e-12)
            return t.permute(0, 2, 3, 1).numpy().astype(np.float32)
        m = w.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
        return (0.5 + 0.5 * w / m).numpy().astype(np.float32)

    def describe(self) -> str:
        k, c, kh, kw = self.weights.shape
        what = "templates" if self.templates else "filters"
        text = f"{self.layer}: {k} {what} of {c}x{kh}x{kw} (CxHxW)"
        ks, cs = self.shown.shape[:2]
        if ks < k or (not self.colour and cs < c):
            text += f", showing {ks} x {cs} channels"
        return text + ("; colour, each scaled to its own range" if self.colour else
                       "; one gray tile per input channel, 0 is mid-grey, each filter "
                       "scaled to its own largest |w|")

    def render(self) -> np.ndarray:
        """The mosaic as an (H, W, 3) uint8 array."""
        return draw("filters_image", self)

    def to_dict(self) -> dict:
        return {"layer": self.layer, "shape": list(self.weights.shape), "colour": self.colour,
                "templates": self.templates, "config": asdict(self.config)}


def _filter_weights(clf: Classifier, name: str) -> tuple[torch.Tensor, bool]:
    """(K, C, kh, kw) weights of ``name`` and whether they are fully connected templates."""
    module = get_layer(clf.model, name)
    if isinstance(module, nn.Conv2d):
        return module.weight.detach().float().cpu(), False
    c, (h, w) = clf.channels, clf.meta.input_size
    if isinstance(module, nn.Linear) and module.in_features == c * h * w:
        return module.weight.detach().float().cpu().view(-1, c, h, w), True
    raise UsageError(f"layer {name} ({type(module).__name__}) has no filters to draw; choose a "
                     "convolution (`convscope layers MODEL` lists them), or a fully connected "
                     "layer on the pixels.")


def filters(model, config: FiltersConfig | None = None, *, weights: str | None = None,
            **options) -> Filters:
    """The filters of a layer (default: the first convolution) and how to draw them.

    ``model`` is a Classifier, a model file or a torchvision name; ``options`` are
    :class:`FiltersConfig` fields.
    """
    clf = as_classifier(model, weights)
    config = replace(config or FiltersConfig(), **options)
    if config.mode not in FILTER_MODES:
        raise unknown_name("filter mode", config.mode, list(FILTER_MODES))
    if min(config.max_filters, config.max_channels) < 1 or (config.zoom or 1) < 1:
        raise UsageError("`max_filters`, `max_channels` and `zoom` must be at least 1.")
    calls = traced_calls(clf)
    layer = choose_layer(clf, config.layer, "filters", calls)
    w, templates = _filter_weights(clf, layer)
    first = templates or layer == first_conv_layer(calls)
    rgb = w.shape[1] == 3
    if config.mode == "colour" and not rgb:
        raise UsageError(f"colour tiles need filters over 3 input channels; {layer}'s have "
                         f"{w.shape[1]}; use `mode=\"gray\"`.")
    colour = rgb and (config.mode == "colour" or (config.mode == "auto" and first))
    zoom = config.zoom or max(1, round(40 / max(w.shape[-2:])))
    config = replace(config, layer=layer, mode="colour" if colour else "gray", zoom=zoom)
    return Filters(layer, w, colour, templates, config)


# --------------------------------------------------------------------------- activations
@dataclass(frozen=True)
class ActivationsConfig:
    """The options of one ``activations`` job."""

    layer: str | None = layer_option("the layer (default: the rectified output of the first "
                                     "convolution)")
    max_maps: int = option(64, "maps drawn (the first channels)", type=positive_int)


@dataclass
class Activations(MosaicDisplay):
    """One image's activation maps at one layer."""

    layer: str
    image: torch.Tensor      # (C, H, W) uint8, the image as the model sees it
    maps: torch.Tensor       # (K, h, w) float, every channel (a vector layer: (K, 1, 1))
    config: ActivationsConfig

    @property
    def shown(self) -> torch.Tensor:
        return self.maps[: self.config.max_maps]

    def describe(self) -> str:
        k, h, w = self.maps.shape
        text = f"{self.layer}: {k} maps of {h}x{w}"
        if len(self.shown) < k:
            text += f", showing {len(self.shown)}"
        lo, hi = float(self.maps.min()), float(self.maps.max())
        return text + f"; values {lo:.3g} to {hi:.3g}, one scale for all maps"

    def render(self) -> np.ndarray:
        """The figure (input beside the grid of maps) as an (H, W, 3) uint8 array."""
        return draw("activations_image", self)

    def to_dict(self) -> dict:
        m = self.maps.flatten(1)
        return {"layer": self.layer, "shape": list(self.maps.shape),
                "max": m.amax(1).tolist(), "mean": m.mean(1).tolist(),
                "config": asdict(self.config)}


def activations(model, image, config: ActivationsConfig | None = None, *,
                weights: str | None = None, **options) -> Activations:
    """The activation maps of ``image`` (anything :meth:`Classifier.as_batch` reads; a
    grayscale image for an RGB model is converted, and the other way round) at a layer."""
    clf = as_classifier(model, weights)
    config = replace(config or ActivationsConfig(), **options)
    if config.max_maps < 1:
        raise UsageError(f"`max_maps` must be at least 1, got {config.max_maps}.")
    layer = choose_layer(clf, config.layer, "activations")
    x = clf.as_batch(image)[:1]                           # (1, C, H, W) uint8
    with model_mode(clf.model), capture(clf.model, [layer]) as acts, torch.no_grad():
        clf.model(clf.preprocess(x.to(clf.device)))
    a = acts[layer][0].float().cpu()
    if a.ndim == 1:
        a = a[:, None, None]                              # a vector: K maps of 1x1
    elif a.ndim != 3:
        raise UsageError(f"layer {layer}'s output has shape {tuple(a.shape)}, not maps "
                         "(C, H, W) or a vector; choose another layer.")
    return Activations(layer, x[0], a, replace(config, layer=layer))
