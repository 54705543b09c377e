"""convscope style: neural style transfer (Gatys et al. 2016) with the 2017 controls."""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path

from convscope.cli.common import (
    add_model_args,
    nonneg_float,
    output_dir,
    output_file,
    positive_int,
    print_json,
    seed_int,
)
from convscope.cli.options import name_flags
from convscope.errors import UsageError
from convscope.render.figures import save_image
from convscope.samples import list_samples
from convscope.style import stylize
from convscope.style.config import INITS, OPTIMIZERS, PRESERVE, StyleConfig

DEFAULT_IMAGES = ("sample:chelsea", "sample:ihc")


def float_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected finite numbers (no nan or inf), got {text!r}")
    return values


def name_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def register(sub) -> None:
    d = StyleConfig()
    p = sub.add_parser(
        "style", help="neural style transfer, with colour, mask and scale control",
        description="Repaint CONTENT in the style of STYLE (Gatys et al. 2016), with the controls "
                    "of Gatys et al. 2017: --preserve-color, --mask, --scales, --fine-style. "
                    "Images are files or sample:NAME, photos shipped with scikit-image: "
                    + ", ".join(list_samples()) + ". With no images: "
                    + " ".join(DEFAULT_IMAGES) + ".",
    )
    p.add_argument("images", nargs="*", metavar="IMAGE",
                   help="CONTENT then one or more STYLE images (several are mixed, or one per "
                        "--mask region)")
    p.add_argument("--out", required=True, type=output_file(".png"), metavar="PNG",
                   help="the output image")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    g = p.add_argument_group("optimisation")
    g.add_argument("--size", type=positive_int, default=d.size,
                   help=f"longer side of the output in px (default {d.size})")
    g.add_argument("--steps", type=positive_int, default=d.steps,
                   help=f"steps at each scale (default {d.steps})")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer)
    g.add_argument("--lr", type=nonneg_float, help="step size (default 1 for lbfgs, 0.02 adam)")
    g.add_argument("--init", choices=INITS, default=d.init,
                   help=f"starting image (default {d.init})")
    g.add_argument("--seed", type=seed_int, default=d.seed)
    g = p.add_argument_group("losses")
    g.add_argument("--content-weight", type=nonneg_float, default=d.content_weight)
    g.add_argument("--style-weight", type=nonneg_float, default=d.style_weight)
    g.add_argument("--tv-weight", type=nonneg_float, default=d.tv_weight)
    g.add_argument("--content-layer", metavar="LAYER",
                   help="layer name as `named_modules()` gives it, or conv4_2-style aliases on "
                        "VGG (default: relu4_2 = features.22 on VGG-19)")
    g.add_argument("--style-layers", type=name_list, metavar="L1,L2,...",
                   help="default: relu1_1,relu2_1,relu3_1,relu4_1,relu5_1 on VGG-19")
    g.add_argument("--no-layer-norm", dest="layer_norm", action="store_false",
                   help="Gatys' raw layer weights instead of dividing each layer's loss by its "
                        "size for an all-zero response")
    g = p.add_argument_group("the 2017 controls")
    g.add_argument("--preserve-color", choices=PRESERVE,
                   help="luminance: transfer on luminance, keep the content's colours; "
                        "histogram: match the style's colours to the content's first")
    g.add_argument("--mask", metavar="PNG",
                   help="one flat colour per STYLE; darkest colour takes the first style")
    g.add_argument("--style-mix", type=float_list, metavar="W1,W2,...",
                   help="weight of each STYLE when several are mixed (default equal)")
    g.add_argument("--scales", type=positive_int, default=d.scales,
                   help="coarse-to-fine levels, each twice as large (default 1)")
    g.add_argument("--fine-style", metavar="IMAGE",
                   help="take the fine scale (the first --fine-layers style layers) from IMAGE, "
                        "the coarse scale from STYLE")
    g.add_argument("--fine-layers", type=positive_int,
                   help="how many style layers count as fine (default half of them)")
    g.add_argument("--style-scale", type=nonneg_float, default=d.style_scale,
                   help="style images' size relative to the output (default 1)")
    g = p.add_argument_group("backbone")
    add_model_args(g, "--backbone", d.backbone,
                   model_help="vgg19 (default), random-multiscale[:filters=N], a torchvision "
                              "model (resnet18, torchvision:NAME) or a convscope model file",
                   weights="DEFAULT|FILE|random",
                   weights_help="DEFAULT downloads ImageNet weights, FILE reads a state dict; "
                                "none: cached ImageNet weights, else the random multi-scale "
                                "network")
    g = p.add_argument_group("output")
    g.add_argument("--frames", type=output_dir, metavar="DIR", help="also save intermediate images here")
    g.add_argument("--frame-every", type=positive_int, default=10, metavar="N",
                   help="save a frame every N steps (default 10)")
    g.add_argument("--json", action="store_true", help="print a JSON summary")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=partial(run, parser=p))  # the notes name this command's flags


def _check_paths(args, images: list[str]) -> Path:
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise UsageError(f"--out {out} must end in .png (the run's config is embedded in it).")
    inputs = [Path(i).resolve() for i in [*images, args.mask, args.fine_style] if i]
    if out.resolve() in inputs:
        raise UsageError(f"--out {out} is one of the input images; choose another name.")
    if out.exists() and not args.force:
        raise UsageError(f"{out} exists; pass --force to overwrite it.")
    return out


def _frame_saver(args, config):
    folder = Path(args.frames)
    folder.mkdir(parents=True, exist_ok=True)

    def save(info: dict, render) -> None:
        if (info["step"] + 1) % args.frame_every == 0:
            save_image(render(), folder / f"frame_{info['scale']}px_{info['step'] + 1:05d}.png",
                       config=config)

    return save


def run(args, parser: argparse.ArgumentParser | None = None) -> int:
    images = args.images or list(DEFAULT_IMAGES)
    if len(images) < 2:
        raise UsageError("give CONTENT and at least one STYLE image (or none, for the "
                         "sample run).")
    out = _check_paths(args, images)
    config = StyleConfig(
        size=args.size, steps=args.steps, optimizer=args.optimizer, lr=args.lr or None,
        content_weight=args.content_weight, style_weight=args.style_weight,
        tv_weight=args.tv_weight, content_layer=args.content_layer,
        style_layers=args.style_layers, init=args.init, preserve_color=args.preserve_color,
        mask=args.mask, style_mix=args.style_mix, scales=args.scales, fine_style=args.fine_style,
        fine_layers=args.fine_layers, style_scale=args.style_scale, backbone=args.backbone,
        weights=args.weights, layer_norm=args.layer_norm, seed=args.seed, device=args.device)
    callback = _frame_saver(args, config) if args.frames else None
    start = time.perf_counter()
    result = stylize(images[0], images[1:], config, progress=not args.quiet, callback=callback)
    seconds = time.perf_counter() - start
    result.save(out)
    if args.json:
        print_json({"out": str(out), "seconds": round(seconds, 2),
                    "start_loss": result.start_loss, "final_loss": result.final_loss,
                    "region_losses": result.region_losses, "config": asdict(result.config)})
        return 0
    for notice in result.config.notices:  # the library's, naming parameters: say the flags
        print(f"note: {name_flags(notice, parser) if parser else notice}")
    h, w = result.image.shape[:2]
    print(f"backbone    {result.config.backbone_used}; content {result.config.content_layer}, "
          f"style {', '.join(result.config.style_layers)}")
    print(f"loss        {result.start_loss:.4g} -> {result.final_loss:.4g} "
          f"({result.start_loss / max(result.final_loss, 1e-12):.1f}x lower) at "
          f"{result.history[-1]['scale']} px")
    if result.region_losses:
        for r, row in enumerate(result.region_losses):
            print(f"region {r}    style loss vs each style: "
                  + ", ".join(f"{v:.3g}" for v in row) + f" (its own: style {r + 1})")
    print(f"wrote       {out} ({w}x{h}) in {seconds:.1f} s")
    return 0
