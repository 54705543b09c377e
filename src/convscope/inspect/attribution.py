"""Which pixels a decision depends on: occlusion, saliency, guided backprop and Grad-CAM.

Each method is one small function registered in :data:`METHODS` (the CLI's ``--method``
choices come from it) over one shared path, :func:`explain_many`, which reads the images,
picks the targets, and hands every method a :class:`Context`.  captum does the attribution.

Two choices hold for every method:

* **Input space.**  Maps are taken with respect to the *normalised image at its own size*
  (``Preprocess.normalize``); the resize to the network's input size (small digits into
  AlexNet) is part of the differentiated forward pass, so every map lines up pixel for
  pixel with the uint8 image it is drawn over.
* **The user's model is never touched.**  Methods run on :func:`attribution_copy`, a deep
  copy in eval mode with frozen weights and non-in-place ReLUs; captum's hooks go on the
  copy, so the user's modules, hooks, flags and gradients stay exactly as they were.
"""

from __future__ import annotations

import argparse
import copy
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import torch
from torch import nn
from torchvision.transforms.v2.functional import gaussian_blur

from convscope.classifier import Classifier, class_index, resize_input
from convscope.display import Displayable, detached, draw
from convscope.errors import UsageError, unknown_name
from convscope.inspect.hooks import (
    LayerCall,
    capture,
    default_conv_layer,
    get_layer,
    trace_layers,
)
from convscope.loading import as_classifier
from convscope.options import INT_MAX, nonneg_int, option, positive_int
from convscope.progress import progress_bar
from convscope.registries import adds_to

#: occlusion baselines: what a masked window is filled with
BASELINES = ("zero", "mean", "blur")
#: a forward batch holds at most this many input values, and this many images
BATCH_VALUES = 2**23
BATCH_ROWS = 256


def position(text: str) -> tuple[int, int]:
    """``Y,X`` (a value type): a neuron's place in a layer's map."""
    try:
        y, x = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected Y,X (two whole numbers), got {text!r}") from None
    if y < 0 or x < 0:
        raise argparse.ArgumentTypeError(f"a position is at least 0,0, got {text}")
    if y > INT_MAX or x > INT_MAX:
        raise argparse.ArgumentTypeError(f"a position is at most {INT_MAX:,}, got {text}")
    return y, x


@dataclass(frozen=True)
class ExplainConfig:
    """The options of one ``explain`` job (one dataclass, written next to every output).

    ``None`` means "choose for me"; the :class:`Attribution` carries the resolved values.
    """

    #: the method (the command line's --method also takes "all")
    method: str = "gradcam"
    target: str | int | None = option(None, "class name or index to explain (default: each "
                                            "image's prediction)", metavar="CLASS")
    window: int | None = option(None, "occlusion: side of the square mask (default: about 1/8 "
                                      "of the image, 2-16 px)", type=positive_int, metavar="PX")
    stride: int | None = option(None, "occlusion: step between masks (default: half the "
                                      "window)", type=positive_int, metavar="PX")
    baseline: str = option("zero", "occlusion: what fills the mask: zero (black), mean (the "
                                   "training data's mean colour) or blur (the image blurred)",
                           choices=BASELINES)
    perturbations_per_eval: int | None = option(
        None, "occlusion: masked copies per forward pass (default: as many as fit a batch; 1 "
              "is captum's default, one at a time)", type=positive_int, metavar="P")
    layer: str | None = option(None, "Grad-CAM's layer (default: the last convolutional "
                                     "layer); with --channel, the layer of the neuron guided "
                                     "backprop explains", metavar="L")
    channel: int | None = option(None, "guided backprop of one neuron: its channel of --layer",
                                 type=nonneg_int, metavar="C")
    position: tuple[int, int] | None = option(None, "guided backprop of one neuron: its place "
                                                    "in the layer's map (default: where the "
                                                    "channel is most active)",
                                              type=position, metavar="Y,X")
    batch_size: int | None = option(None, "images per attribution call (default: by image "
                                          "size)", type=positive_int, metavar="N")


# --------------------------------------------------------------------------- the registry
@dataclass(frozen=True)
class Method:
    name: str
    summary: str
    fn: Callable[[Context], MethodOutput]
    #: how a figure draws the map: "probability" (0-1 heatmap), "heatmap" (scaled per
    #: image) or "gradient" (the signed input gradient shown as an image)
    draw: str = "heatmap"


METHODS: dict[str, Method] = {}


def register_method(name: str, summary: str, draw: str = "heatmap"):
    return adds_to(METHODS, lambda fn: Method(name, summary, fn, draw))


def list_methods() -> list[str]:
    """The method names ``--method`` accepts (besides ``all``)."""
    return list(METHODS)


# --------------------------------------------------------------------------- results
@dataclass
class MethodOutput:
    """What one method returns for a batch (all on the CPU, at the image size)."""

    maps: torch.Tensor                      # (N, H, W) what the figure draws
    importance: torch.Tensor | None = None  # (N, H, W) pixel ranking; None: the maps
    gradients: torch.Tensor | None = None   # (N, C, H, W) signed input gradient
    settings: dict = field(default_factory=dict)  # resolved config values
    neurons: list[tuple[int, ...]] | None = None  # guided backprop of a neuron: (c[, y, x])


@dataclass
class Attribution(Displayable):
    """The maps of one method on a batch of images.

    ``maps`` is what the figure draws: for occlusion the target probability with the mask
    over each pixel (averaged over the masks that cover it), for the others a non-negative
    heatmap.  ``importance`` ranks pixels, larger meaning more evidence for the target
    (occlusion: the drop in probability); faithfulness deletes pixels in that order.
    """

    method: str
    maps: torch.Tensor          # (N, H, W) float
    importance: torch.Tensor    # (N, H, W) float
    gradients: torch.Tensor | None  # (N, C, H, W) for the guided methods, else None
    images: torch.Tensor        # (N, C, H, W) uint8, what the maps are drawn over
    targets: torch.Tensor       # (N,) class indices
    probs: torch.Tensor         # (N, K) softmax of the unmasked images
    classes: list[str]
    config: ExplainConfig       # resolved: window, stride, layer ... as used
    neurons: list[tuple[int, ...]] | None = None

    def figure(self, names: list[str] | None = None):
        """The explanation figure (``convscope explain``'s): one row per image, the image,
        this method's map and the top-5, as a matplotlib Figure."""
        return detached(draw("explanation_figure", {self.method: self}, names=names))

    def numpy(self) -> np.ndarray:
        """The maps as a float32 (N, H, W) array."""
        return self.maps.numpy().astype(np.float32)

    def target_label(self, i: int) -> str:
        """What image ``i``'s map explains, in words."""
        if self.neurons is not None:
            return f"{self.config.layer}[{', '.join(map(str, self.neurons[i]))}]"
        return self.classes[int(self.targets[i])]


# --------------------------------------------------------------------------- the shared path
class _ResizedNet(nn.Module):
    """The attribution copy behind the classifier's resize: takes the normalised image at
    its own size, so gradients and masks live in the image's pixels."""

    def __init__(self, model: nn.Module, input_size: Sequence[int]):
        super().__init__()
        self.model = model
        self.input_size = tuple(input_size)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model(resize_input(z, self.input_size))


def attribution_copy(model: nn.Module) -> nn.Module:
    """A deep copy to attribute on: eval mode, frozen weights, non-in-place ReLUs.

    Guided backprop rewrites the gradient at every ReLU call with hooks.  torchvision's
    ResNets apply one in-place ReLU module several times per block: torch refuses a module
    backward hook on an in-place ReLU ("a view ... is being modified inplace"), and a hook
    that keeps per-module state mixes up the calls of a reused one.  captum 0.9 hooks each
    call's own tensors and copes with both, but the copy's ReLUs write new tensors so that
    no method depends on it (tests/inspect/test_attribution.py checks the in-place, reused net
    against its separate, non-in-place twin).  Working on a copy also means no hook, flag
    or ``requires_grad`` of the user's model is ever changed, even if a method fails.
    """
    twin = copy.deepcopy(model)
    twin.eval()
    for p in twin.parameters():
        p.requires_grad_(False)
    for m in twin.modules():
        if isinstance(m, (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.Hardtanh, nn.SiLU)):
            if getattr(m, "inplace", False):
                m.inplace = False
    return twin


@dataclass
class Context:
    """Everything a method needs for one batch of images."""

    clf: Classifier
    net: _ResizedNet          # normalised image (N, C, H, W) -> logits (N, K)
    inputs: torch.Tensor      # (N, C, H, W) normalised images at the image size, on the device
    targets: torch.Tensor     # (N,) class indices, on the device
    config: ExplainConfig
    progress: bool = False

    @property
    def model(self) -> nn.Module:
        """The attribution copy, where ``--layer`` names are looked up."""
        return self.net.model

    @cached_property
    def calls(self) -> list[LayerCall]:
        """Every module call of one forward pass, in order."""
        return trace_layers(self.model, resize_input(self.inputs[:1], self.net.input_size))

    @cached_property
    def cam_layer(self) -> str:
        """Grad-CAM's layer: the configured one, or the last convolutional layer."""
        if self.config.layer:
            return self.checked_layer(self.config.layer)
        return default_conv_layer(self.calls)

    def checked_layer(self, name: str) -> str:
        """``name``, if it is a layer applied once per forward pass.

        A reused module (torchvision's ResNets apply one ReLU module twice per block) has
        several outputs, so "its" activation would be whichever call a hook saw last.
        """
        get_layer(self.model, name)  # unknown names list the valid ones
        uses = sum(c.name == name for c in self.calls)
        if uses > 1:
            raise UsageError(f"layer {name} is one module applied {uses} times per forward "
                             "pass, so its output is ambiguous; choose a layer applied once, "
                             "such as the block around it.")
        return name

    def layer_output(self, name: str) -> torch.Tensor:
        """The output of layer ``name`` for these images, (N, ...)."""
        with capture(self.model, [self.checked_layer(name)], stop=True) as acts, \
                torch.no_grad():
            acts.run(self.net, self.inputs)  # stops once the layer has run
        return acts[name]




def resolve_targets(classes: list[str], target, probs: torch.Tensor) -> torch.Tensor:
    """(N,) target classes: the predicted ones, one class for all, or one per image."""
    n = len(probs)
    if target is None:
        return probs.argmax(dim=1)
    if isinstance(target, (str, int, np.integer)) or (
            isinstance(target, torch.Tensor) and target.ndim == 0):
        return torch.full((n,), class_index(classes, target, "target class"),
                          dtype=torch.long)
    targets = [class_index(classes, t, "target class") for t in target]
    if len(targets) != n:
        raise UsageError(f"{len(targets)} targets for {n} images; give one, or one per image.")
    return torch.tensor(targets, dtype=torch.long)


def rows_per_batch(shape: Sequence[int], rows: int = BATCH_ROWS, values: int = BATCH_VALUES
                   ) -> int:
    """How many (C, H, W) images fit one batch of at most ``rows`` images and ``values``
    input values."""
    return max(1, min(rows, values // max(1, math.prod(shape))))


def check_config(config: ExplainConfig, methods: Sequence[str]) -> None:
    """Refuse unknown methods and inconsistent options with one sentence."""
    for name in methods:
        if name not in METHODS:
            raise unknown_name("attribution method", name, [*METHODS, "all"])
    if config.baseline not in BASELINES:
        raise unknown_name("occlusion baseline", config.baseline, list(BASELINES))
    for key in ("window", "stride", "perturbations_per_eval", "batch_size"):
        value = getattr(config, key)
        if value is not None and value < 1:
            raise UsageError(f"`{key}` must be at least 1, got {value}.")
    if (config.channel is not None or config.position is not None) and not config.layer:
        raise UsageError("guided backprop of a neuron needs `layer=L` with `channel=C`.")
    if config.position is not None and config.channel is None:
        raise UsageError("`position` picks a neuron of a channel; give `channel=C` too.")


def explain_many(model, images, methods: Sequence[str], config: ExplainConfig | None = None, *,
                 progress: bool = False, **options) -> dict[str, Attribution]:
    """Run several methods on the same images and targets; ``{method: Attribution}``.

    >>> maps = explain_many("runs/demo/model.safetensors", ["a.png"],
    ...                     ["occlusion", "gradcam"], window=4)       # doctest: +SKIP
    """
    clf = as_classifier(model)
    config = replace(config or ExplainConfig(), **options)
    check_config(config, methods)
    images = clf.as_batch(images)                         # (N, C, H, W) uint8
    net = _ResizedNet(attribution_copy(clf.model), clf.meta.input_size)
    z = clf.preprocess.normalize(images.to(clf.device))   # (N, C, H, W) float
    # gradient methods keep every activation for the backward pass: smaller batches
    chunk = config.batch_size or rows_per_batch(z.shape[1:], rows=64, values=BATCH_VALUES // 4)

    # ---- the unmasked predictions, and what each map explains
    with torch.no_grad():
        probs = torch.cat([torch.softmax(net(z[i:i + chunk]), 1).float().cpu()
                           for i in range(0, len(z), chunk)])
    targets = resolve_targets(clf.classes, config.target, probs)

    # ---- every method over every chunk of images
    results = {}
    bar = progress_bar(total=len(z) * len(methods), desc="explain", unit="image",
                       enable=progress and len(methods) * len(z) > 1)
    with bar:
        for name in methods:
            outs = []
            for i in range(0, len(z), chunk):
                inputs = z[i:i + chunk].clone().requires_grad_(True)  # (n, C, H, W)
                ctx = Context(clf, net, inputs, targets[i:i + chunk].to(clf.device), config,
                              progress)
                with warnings.catch_warnings():  # captum announces the hooks it puts on the copy
                    warnings.filterwarnings("ignore", message="Setting backward hooks")
                    outs.append(METHODS[name].fn(ctx))
                bar.update(len(ctx.inputs))
            results[name] = _merge(name, outs, images, targets, probs, clf.classes, config)
    return results


def explain(model, images, method: str = "gradcam", config: ExplainConfig | None = None, *,
            progress: bool = False, **options) -> Attribution:
    """One method's maps for a batch of images.

    ``model`` is a Classifier, a model file or a torchvision name; ``images`` anything
    :meth:`Classifier.as_batch` reads; ``options`` are :class:`ExplainConfig` fields.

    >>> a = explain("runs/demo/model.safetensors", "digit.png", "saliency")  # doctest: +SKIP
    >>> a.maps.shape, a.numpy().dtype                                      # doctest: +SKIP
    (torch.Size([1, 28, 28]), dtype('float32'))
    """
    return explain_many(model, images, [method], config, progress=progress, **options)[method]


def _merge(name, outs: list[MethodOutput], images, targets, probs, classes, config
           ) -> Attribution:
    """Join the per-chunk outputs of one method into its Attribution."""
    cat = lambda key: None if getattr(outs[0], key) is None else torch.cat(  # noqa: E731
        [getattr(o, key) for o in outs])
    maps = cat("maps")
    importance = cat("importance")
    neurons = None if outs[0].neurons is None else [n for o in outs for n in o.neurons]
    return Attribution(
        method=name, maps=maps, importance=maps if importance is None else importance,
        gradients=cat("gradients"), images=images, targets=targets, probs=probs,
        classes=classes, config=replace(config, method=name, **outs[0].settings),
        neurons=neurons)


# --------------------------------------------------------------------------- baselines
def blurred(z: torch.Tensor, sigma: float) -> torch.Tensor:
    """A Gaussian blur of a (N, C, H, W) batch, kernel about 4 sigma, reflect-padded."""
    limit = 2 * min(z.shape[-2:]) - 1  # reflect padding must stay inside the image
    k = min(2 * math.ceil(2 * sigma) + 1, limit if limit % 2 else limit - 1)
    return gaussian_blur(z, kernel_size=[k, k], sigma=[sigma, sigma]) if k > 1 else z.clone()


def baseline_input(kind: str, z: torch.Tensor, clf: Classifier, sigma: float) -> torch.Tensor:
    """What masked pixels become, in the normalised input space, (N, C, H, W).

    zero: black pixels; mean: the training data's mean colour (0 after normalising);
    blur: the image blurred with ``sigma`` pixels.
    """
    if kind == "zero":
        return clf.preprocess.normalize(torch.zeros_like(z[:1])).expand_as(z).contiguous()
    if kind == "mean":
        return torch.zeros_like(z)
    if kind == "blur":
        return blurred(z, sigma)
    raise unknown_name("baseline", kind, list(BASELINES))


# --------------------------------------------------------------------------- the methods
def occlusion_window(config: ExplainConfig, size: tuple[int, int]) -> tuple[int, int]:
    """(window, stride) in pixels: the configured ones, or about an eighth of the image."""
    window = config.window or min(16, max(2, round(min(size) / 8)))
    stride = config.stride or max(1, window // 2)
    if window > min(size):
        raise UsageError(f"the occlusion window ({window} px) is larger than the "
                         f"{size[0]}x{size[1]} image; pass a smaller `window`.")
    if stride > window:
        raise UsageError(f"the stride ({stride}) is larger than the window ({window}), which "
                         "would leave pixels never masked; pass a `stride` no larger than the "
                         "`window`.")
    return window, stride


@register_method("occlusion", "target probability with a square mask at each location "
                 "(Zeiler & Fergus 2014)", draw="probability")
def occlusion(ctx: Context) -> MethodOutput:
    from captum.attr import Occlusion  # heavy optional dependency

    n, c, h, w = ctx.inputs.shape
    window, stride = occlusion_window(ctx.config, (h, w))
    masks = math.prod(math.ceil((s - window) / stride) + 1 for s in (h, w))  # captum's count
    per_eval = ctx.config.perturbations_per_eval or max(1, min(
        masks, rows_per_batch((c, h, w)) // n))
    baseline = baseline_input(ctx.config.baseline, ctx.inputs, ctx.clf, sigma=window / 2)
    bar = progress_bar(total=n * (masks + 1), desc="occlusion", unit="mask", leave=False,
                       enable=ctx.progress)

    def probs(x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, K)
        bar.update(len(x))
        return torch.softmax(ctx.net(x), dim=1)

    with bar, torch.no_grad():
        # captum: drop = P(target) - P(target | masked), averaged over the masks covering
        # each pixel; masks at the far edges are clipped so that every pixel is covered
        drop = Occlusion(probs).attribute(
            ctx.inputs, sliding_window_shapes=(c, window, window), strides=(c, stride, stride),
            baselines=baseline, target=ctx.targets, perturbations_per_eval=per_eval)
        p = torch.softmax(ctx.net(ctx.inputs), 1).gather(1, ctx.targets[:, None])  # (N, 1)
    drop = drop[:, 0].float()  # every channel is masked together: one map per image
    return MethodOutput(maps=(p[:, :, None] - drop).cpu(), importance=drop.cpu(),
                        settings={"window": window, "stride": stride,
                                  "perturbations_per_eval": per_eval})


@register_method("saliency", "|dS_c/dI| maxed over channels (Simonyan et al. 2014)")
def saliency(ctx: Context) -> MethodOutput:
    from captum.attr import Saliency  # heavy optional dependency

    grads = Saliency(ctx.net).attribute(ctx.inputs, target=ctx.targets, abs=True)
    return MethodOutput(maps=grads.amax(dim=1).detach().cpu())  # (N, H, W)


def _gradient_output(grads: torch.Tensor, **kwargs) -> MethodOutput:
    """A signed (N, C, H, W) input gradient: drawn as an image, ranked by |max| over C."""
    grads = grads.detach().float().cpu()
    return MethodOutput(maps=grads.abs().amax(dim=1), gradients=grads, **kwargs)


@register_method("guided-backprop", "gradient with only positive gradients through each ReLU "
                 "(Springenberg et al. 2015), for a class or one neuron", draw="gradient")
def guided_backprop(ctx: Context) -> MethodOutput:
    from captum.attr import GuidedBackprop  # heavy optional dependency

    if ctx.config.channel is not None:
        return _neuron_guided_backprop(ctx)
    return _gradient_output(GuidedBackprop(ctx.net).attribute(ctx.inputs, target=ctx.targets))


def _neuron_guided_backprop(ctx: Context) -> MethodOutput:
    """Guided backprop of one neuron of ``layer``: channel c at (y, x), by default where the
    channel is most active in each image."""
    from captum.attr import NeuronGuidedBackprop  # heavy optional dependency

    name, c, pos = ctx.config.layer, ctx.config.channel, ctx.config.position
    act = ctx.layer_output(name)  # (N, C', h, w) or (N, F)
    if act.ndim not in (2, 4) or not 0 <= c < act.shape[1]:
        raise UsageError(f"layer {name} has {act.shape[1] if act.ndim > 1 else 0} channels; "
                         f"`channel` must be 0..{act.shape[1] - 1 if act.ndim > 1 else 0}.")
    if act.ndim == 2:
        if pos is not None:
            raise UsageError(f"layer {name} has no spatial map; drop `position`.")
        neurons = [(c,)] * len(act)
        selector = (c,)
    else:
        h, w = act.shape[-2:]
        if pos is None:
            flat_index = act[:, c].flatten(1).argmax(dim=1)  # (N,) most active position
        elif 0 <= pos[0] < h and 0 <= pos[1] < w:
            flat_index = torch.full((len(act),), pos[0] * w + pos[1], device=act.device)
        else:
            raise UsageError(f"`position` {pos[0]},{pos[1]} is outside layer {name}'s "
                             f"{h}x{w} map.")
        neurons = [(c, int(i) // w, int(i) % w) for i in flat_index]

        def selector(out: torch.Tensor) -> torch.Tensor:  # (N, C', h, w) -> (N,)
            return out[:, c].flatten(1).gather(1, flat_index[:, None])[:, 0]

    grads = NeuronGuidedBackprop(ctx.net, get_layer(ctx.model, name)).attribute(
        ctx.inputs, neuron_selector=selector)
    return _gradient_output(grads, neurons=neurons)


@register_method("gradcam", "class-weighted activations of a convolutional layer, upsampled "
                 "(Selvaraju et al. 2017)")
def gradcam(ctx: Context) -> MethodOutput:
    from captum.attr import LayerAttribution, LayerGradCam  # heavy optional dependency

    layer = ctx.cam_layer
    cam = LayerGradCam(ctx.net, get_layer(ctx.model, layer)).attribute(
        ctx.inputs, target=ctx.targets, relu_attributions=True)  # (N, 1, h, w)
    if cam.ndim != 4:
        raise UsageError(f"Grad-CAM needs a layer with a spatial map, and {layer} has none; "
                         "pass a convolutional `layer`.")
    cam = LayerAttribution.interpolate(cam, tuple(ctx.inputs.shape[-2:]), "bilinear")
    return MethodOutput(maps=cam[:, 0].detach().float().cpu(), settings={"layer": layer})


@register_method("guided-gradcam", "guided backprop times Grad-CAM (Selvaraju et al. 2017)",
                 draw="gradient")
def guided_gradcam(ctx: Context) -> MethodOutput:
    from captum.attr import GuidedGradCam  # heavy optional dependency

    layer = ctx.cam_layer
    if ctx.layer_output(layer).ndim != 4:
        raise UsageError(f"Guided Grad-CAM needs a layer with a spatial map, and {layer} has "
                         "none; pass a convolutional `layer`.")
    grads = GuidedGradCam(ctx.net, get_layer(ctx.model, layer)).attribute(
        ctx.inputs, target=ctx.targets, interpolate_mode="bilinear")
    return _gradient_output(grads, settings={"layer": layer})
