"""The style-transfer loop: targets at each scale, one objective, L-BFGS or Adam.

    stylize(content, styles, **options)
      for each scale, coarsest first:             (controls.pyramid_sizes)
        Targets.build: the content's features, each region's style Gram matrices
        optimise: minimise  α·content + β·style + γ·TV  over the image's pixels
      recombine the content's chroma when the transfer ran on luminance only

The image is optimised directly in [0, 1] pixel space and clamped after every step, as in
Gatys et al. and the PyTorch tutorial.  Gradients are taken with respect to the image only
(``torch.autograd.grad``), so the backbone's parameters are never touched.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from convscope.classifier import resolve_device
from convscope.display import MosaicDisplay, draw
from convscope.errors import UsageError
from convscope.images import fit_image, load_image_scaled, to_pil
from convscope.inspect.hooks import model_mode
from convscope.progress import progress_bar
from convscope.samples import resolve as resolve_sample
from convscope.style import controls
from convscope.style.backbone import StyleBackbone, extract, open_backbone
from convscope.style.config import StyleConfig
from convscope.style.losses import (
    content_loss,
    gram_matrix,
    guided_gram_matrix,
    style_layer_loss,
    tv_loss,
)


# --------------------------------------------------------------------------- the result
@dataclass
class StyleResult(MosaicDisplay):
    """What :func:`stylize` returns: the image, the resolved config and the loss history."""

    image: np.ndarray  # (H, W, 3) uint8
    config: StyleConfig
    #: one dict per step (the losses at its start) and one for the final image: scale, step,
    #: total, content, style, tv, evals (objective evaluations so far), seconds
    history: list[dict] = field(default_factory=list)
    #: mask runs: losses[r][s] = region r's style loss against style s (lower = closer)
    region_losses: list[list[float]] | None = None

    @property
    def start_loss(self) -> float:
        """Total loss of the starting image at the final scale."""
        last = self.history[-1]["scale"]
        return next(h["total"] for h in self.history if h["scale"] == last)

    @property
    def final_loss(self) -> float:
        return self.history[-1]["total"]

    def render(self) -> np.ndarray:
        """The styled image, (H, W, 3) uint8."""
        return self.image

    def save(self, path: str | Path) -> Path:
        """Write the image as PNG with the resolved config embedded."""
        return draw("save_image", self.image, path, config=self.config)


# --------------------------------------------------------------------------- images
def describe(source) -> str:
    """How an image input is named in the config."""
    if isinstance(source, (str, Path)):
        return str(source)
    shape = getattr(source, "shape", None) or getattr(source, "size", None)
    return f"{type(source).__name__} {tuple(shape) if shape is not None else ''}".strip()


def read_rgb(source, longer: int) -> torch.Tensor:
    """An image input (path, sample:NAME, array, PIL...) as (3, H, W) float in [0, 1]."""
    arr = load_image_scaled(resolve_sample(source), longer, channels=3)
    return torch.from_numpy(arr).float() / 255


def read_exact(source, shape: tuple[int, int]) -> torch.Tensor:
    """An image resized (shorter side, centre crop) to exactly (H, W), as (3, H, W)."""
    arr = fit_image(to_pil(resolve_sample(source)), shape, channels=3)
    return torch.from_numpy(arr).float() / 255


# --------------------------------------------------------------------------- targets
@dataclass
class Targets:
    """Everything the objective compares against at one scale."""

    content: torch.Tensor  # (1, C, H, W), C = 1 on the luminance path
    content_features: torch.Tensor
    content_norm: float
    #: layer -> (R, N, N) target Gram matrix of each region (R = 1 without a mask)
    grams: dict[str, torch.Tensor]
    #: layer -> (R,) weight of each region's loss at that layer
    weights: dict[str, torch.Tensor]
    #: layer -> (R, 1, h, w) guidance maps, or None without a mask
    guides: dict[str, torch.Tensor] | None
    #: every style image's own Gram matrices, layer -> (S, N, N); for region_losses
    style_grams: dict[str, torch.Tensor]


class Job:
    """One run's fixed parts: config, backbone, layers, and the decoded input images."""

    def __init__(self, config: StyleConfig, backbone: StyleBackbone, device: torch.device,
                 content, styles: list, fine_style=None):
        self.config, self.backbone, self.device = config, backbone, device
        if not (config.content_layer or backbone.content_layer) or \
                not (config.style_layers or backbone.style_layers):
            raise UsageError(f"no default layers could be traced in {backbone.name}; name "
                             "them with `content_layer` and `style_layers`.")
        self.content_layer = backbone.resolve(config.content_layer or backbone.content_layer)
        self.style_layers = [backbone.resolve(n) for n in config.style_layers or backbone.style_layers]
        self.luminance = config.preserve_color == "luminance" or backbone.channels == 1
        self.sources = {"content": content, "styles": styles, "fine": fine_style}
        n_fine = config.fine_layers or max(1, len(self.style_layers) // 2)
        self.fine = set(self.style_layers[:n_fine]) if fine_style is not None else set()

    # ------------------------------------------------------------ images at one scale
    def content_rgb(self, size: int) -> torch.Tensor:
        return read_rgb(self.sources["content"], size)

    def prepare_style(self, style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
        """A style image (3, H, W) as the transfer sees it, after the colour control."""
        if self.config.preserve_color == "histogram":
            style = controls.match_color(style, content)
        if self.luminance:
            return controls.match_luminance(controls.luminance(style), controls.luminance(content))
        return style

    def working(self, content: torch.Tensor) -> torch.Tensor:
        """The content as the optimised image's space: luminance (1, H, W) or RGB."""
        return controls.luminance(content) if self.luminance else content

    def style_images(self, size: int, content: torch.Tensor) -> list[torch.Tensor]:
        longer = max(8, round(size * self.config.style_scale))
        images = [read_rgb(s, longer) for s in self.sources["styles"]]
        if self.sources["fine"] is not None:
            images.append(read_rgb(self.sources["fine"], longer))
        return [self.prepare_style(s, content) for s in images]

    # ------------------------------------------------------------ targets at one scale
    def targets(self, size: int, masks: torch.Tensor | None) -> Targets:
        content_rgb = self.content_rgb(size)
        content = self.working(content_rgb)[None].to(self.device)
        styles = self.style_images(size, content_rgb)
        layers = self.style_layers
        with torch.no_grad():
            feats = extract(self.backbone, content, [self.content_layer, *layers])
            per_style = [extract(self.backbone, s[None].to(self.device), layers) for s in styles]
        style_grams = {n: torch.cat([gram_matrix(f[n]) for f in per_style]) for n in layers}
        n_styles = len(self.sources["styles"])
        mix = self._region_mix(n_styles, masks).to(self.device)  # (R, S)
        grams, weights, guides = {}, {}, ({} if masks is not None else None)
        for n in layers:
            own = style_grams[n][:n_styles]  # (S, N, N)
            target = torch.einsum("rs,sij->rij", mix, own)
            if n in self.fine:  # scale control: this layer's statistics from the fine image
                target = style_grams[n][n_styles:].expand_as(target)
            grams[n] = target
            # one normaliser per layer, shared by the regions: it evens out the layers'
            # activation scales, not the styles' (a dark style must not outweigh a bright one)
            norm = float(0.25 * target.pow(2).mean()) if self.config.layer_norm else 1.0
            weights[n] = torch.full((len(target),), 1.0 / (len(layers) * len(target)
                                                            * max(norm, 1e-12)), device=self.device)
            if masks is not None:
                guides[n] = controls.layer_guides(masks.to(self.device), feats[n].shape[-2:])
        p = feats[self.content_layer]
        content_norm = float(0.5 * p.pow(2).mean()) if self.config.layer_norm else 1.0
        return Targets(content, p, max(content_norm, 1e-12), grams, weights, guides, style_grams)

    def _region_mix(self, n_styles: int, masks) -> torch.Tensor:
        """(R, S): how much each style counts in each region."""
        if masks is None:
            return torch.tensor([self.config.mix])
        return torch.eye(n_styles)

    # ------------------------------------------------------------ the objective
    def objective(self, image: torch.Tensor, t: Targets) -> tuple[torch.Tensor, dict]:
        """α·content + β·style + γ·TV for a (1, C, H, W) image; also the three parts."""
        cfg = self.config
        feats = extract(self.backbone, image, [self.content_layer, *self.style_layers])
        c_loss = content_loss(feats[self.content_layer], t.content_features) / t.content_norm
        s_loss = image.new_zeros(())
        for n in self.style_layers:
            for r, target in enumerate(t.grams[n]):
                g = gram_matrix(feats[n])[0] if t.guides is None \
                    else guided_gram_matrix(feats[n], t.guides[n][r : r + 1])[0]
                s_loss = s_loss + t.weights[n][r] * style_layer_loss(g, target)
        v_loss = tv_loss(image)
        total = cfg.content_weight * c_loss + cfg.style_weight * s_loss + cfg.tv_weight * v_loss
        return total, {"content": c_loss.item(), "style": s_loss.item(), "tv": v_loss.item()}

    def region_losses(self, image: torch.Tensor, t: Targets) -> list[list[float]]:
        """losses[r][s]: region r's guided style loss against style s, with region r's layer
        weights; a region that took its own style has the lowest value on the diagonal."""
        with torch.no_grad():
            feats = extract(self.backbone, image, self.style_layers)
        n_styles = len(self.sources["styles"])
        out = []
        for r in range(n_styles):
            row = []
            for s in range(n_styles):
                loss = sum(t.weights[n][r] * style_layer_loss(
                    guided_gram_matrix(feats[n], t.guides[n][r : r + 1])[0], t.style_grams[n][s])
                    for n in self.style_layers)
                row.append(float(loss))
            out.append(row)
        return out

    # ------------------------------------------------------------ the start
    def initial(self, t: Targets, generator: torch.Generator) -> torch.Tensor:
        init = self.config.init
        if init == "content":
            return t.content.clone()
        if init == "noise":
            return torch.rand(t.content.shape, generator=generator).to(self.device)
        style = read_exact(self.sources["styles"][0], tuple(t.content.shape[-2:]))
        return self.working(self.prepare_style(style, self.content_rgb(max(t.content.shape[-2:]))))[None].to(self.device)

    def render(self, image: torch.Tensor) -> np.ndarray:
        """The optimised (1, C, H, W) image as an (H, W, 3) uint8 picture, with the content's
        chroma put back on the luminance path."""
        x = image.detach()[0].cpu().clamp(0, 1)
        if self.luminance:
            content = read_exact(self.sources["content"], tuple(x.shape[-2:]))
            x = controls.recombine(x, content)
        if x.shape[0] == 1:
            x = x.expand(3, -1, -1)
        return (x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


# --------------------------------------------------------------------------- optimisation
def optimise(job: Job, t: Targets, image: torch.Tensor, scale: int, bar, history: list,
             start: float, callback=None) -> torch.Tensor:
    """``config.steps`` steps of L-BFGS or Adam on ``image``, clamped to [0, 1] after each.

    L-BFGS takes one iteration per step with a strong-Wolfe line search: without one, its
    unit steps overshoot and the loss jumps by orders of magnitude now and then.  Each
    evaluation is cached, so the evaluation at the point the line search ended is reused
    when the next step starts there; usually a step costs one forward and backward pass.
    """
    cfg = job.config
    image = image.detach().clone().requires_grad_(True)
    if cfg.optimizer == "lbfgs":  # max_iter=1: one iteration per step; its memory persists
        opt = torch.optim.LBFGS([image], lr=cfg.lr or 1.0, max_iter=1, history_size=50,
                                max_eval=21, line_search_fn="strong_wolfe")  # 20 in a search
    else:
        opt = torch.optim.Adam([image], lr=cfg.lr or 0.02)
    last: dict = {"evals": 0}

    def closure():
        if "at" in last and torch.equal(last["at"], image.detach()):
            image.grad = last["grad"].clone()
            return last["loss"]
        total, values = job.objective(image, t)
        (grad,) = torch.autograd.grad(total, image)
        image.grad = grad.clone()
        last.update(values, at=image.detach().clone(), grad=grad, loss=total.detach(),
                    total=total.item(), evals=last["evals"] + 1)
        return last["loss"]

    for step in range(cfg.steps):
        closure()  # the loss at the start of this step (cached for the optimiser)
        record = {"scale": scale, "step": step, "total": last["total"],
                  **{k: last[k] for k in ("content", "style", "tv")}}
        opt.step(closure)
        if cfg.optimizer != "lbfgs":
            with torch.no_grad():
                image.clamp_(0, 1)
        history.append({**record, "evals": last["evals"],
                        "seconds": round(time.perf_counter() - start, 4)})
        bar.update(1)
        bar.set_postfix(loss=f"{record['total']:.4g}", px=scale)
        if callback is not None:
            callback(history[-1], lambda: job.render(image))
    with torch.no_grad():  # the loss of the final image, after the last update
        total, values = job.objective(image, t)
    history.append({"scale": scale, "step": cfg.steps, **values, "total": total.item(),
                    "evals": last["evals"], "seconds": round(time.perf_counter() - start, 4)})
    return image.detach()


def stylize(content="sample:chelsea", styles="sample:ihc", config: StyleConfig | None = None,
            *, backbone=None, progress: bool = True,
            callback: Callable[[dict, Callable[[], np.ndarray]], None] | None = None,
            **options) -> StyleResult:
    """Neural style transfer (Gatys et al. 2016) with the 2017 controls.

    ``content`` and ``styles`` (one or a list) are paths, ``sample:NAME``, PIL images or
    arrays; ``backbone`` overrides ``config.backbone`` with a name, a Classifier, an
    ``nn.Module`` or a StyleBackbone.  Any :class:`StyleConfig` field is a keyword.
    ``callback(step_info, render)`` runs after every step; ``render()`` gives the current
    image as (H, W, 3) uint8.

    >>> from convscope.style import stylize
    >>> result = stylize("sample:chelsea", "sample:ihc", size=64, steps=20)  # doctest: +SKIP
    >>> result.save("cat.png"); result.final_loss < result.start_loss        # doctest: +SKIP
    """
    styles = list(styles) if isinstance(styles, (list, tuple)) else [styles]
    config = dataclasses.replace(config or StyleConfig(), **options)
    fine = config.fine_style  # a path or sample name, or (from Python) an image
    config = dataclasses.replace(
        config, content=describe(content), styles=[describe(s) for s in styles],
        fine_style=fine if fine is None or isinstance(fine, str) else describe(fine))
    config.validate()
    torch.manual_seed(config.seed)

    # ---- backbone: our own copy moves to the device; a caller's model stays where it is
    spec = backbone if backbone is not None else config.backbone
    bb = open_backbone(spec, config.weights, seed=config.seed)
    if isinstance(spec, str):
        device = resolve_device(config.device)
        bb.to(device)
    else:
        device = next(bb.net.parameters(), torch.empty(0)).device
    notices = [bb.notice] if bb.notice else []
    config = dataclasses.replace(config, backbone_used=bb.name, notices=notices)
    job = Job(config, bb, device, content, styles, fine)
    if bb.channels == 1 and config.preserve_color != "luminance":
        notices.append(f"{bb.name} sees one channel, so the transfer ran on luminance "
                       "and kept the content's colours.")
    config = dataclasses.replace(config, content_layer=job.content_layer,
                                 style_layers=list(job.style_layers))

    # ---- coarse to fine
    final_shape = tuple(job.content_rgb(config.size).shape[-2:])
    sizes = controls.pyramid_sizes(config.size, config.scales)
    shapes = [final_shape if size == config.size else tuple(job.content_rgb(size).shape[-2:])
              for size in sizes]
    masks = [controls.read_mask(resolve_sample(config.mask), shape, len(styles))
             if config.mask else None for shape in shapes]
    generator = torch.Generator().manual_seed(config.seed)
    history: list[dict] = []
    image, targets = None, None
    start = time.perf_counter()
    bar = progress_bar(total=config.steps * len(sizes), desc="style", unit="step",
                       enable=progress)
    try:
        with model_mode(bb.net):
            for size, shape, mask in zip(sizes, shapes, masks):
                targets = job.targets(size, mask)
                image = job.initial(targets, generator) if image is None else \
                    F.interpolate(image, size=shape, mode="bilinear", align_corners=False)
                image = optimise(job, targets, image, size, bar, history, start, callback)
            regions = job.region_losses(image, targets) if config.mask else None
    finally:
        bar.close()
    return StyleResult(job.render(image), config, history, regions)
