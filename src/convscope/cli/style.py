"""convscope style: neural style transfer (Gatys et al. 2016) with the 2017 controls."""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path

from convscope.cli.common import (
    add_command,
    add_model_args,
    output_dir,
    output_file,
    positive_int,
    print_json,
)
from convscope.cli.options import add_options, config_from, name_flags
from convscope.errors import UsageError
from convscope.render.figures import save_figure, save_image
from convscope.samples import list_samples
from convscope.style import stylize
from convscope.style.config import StyleConfig
from convscope.style.fast import FAST_STYLES, fast_stylize, style_sheet

DEFAULT_IMAGES = ("sample:chelsea", "sample:ihc")


def register(sub) -> None:
    p = add_command(
        sub, "style", "neural style transfer, with colour, mask and scale control",
        "Repaint CONTENT in the style of STYLE (Gatys et al. 2016), with the controls of Gatys "
        "et al. 2017: --preserve-color, --mask, --scales, --fine-style. Images are files or "
        "sample:NAME, photos shipped with scikit-image: " + ", ".join(list_samples())
        + ". With no images: " + " ".join(DEFAULT_IMAGES) + ".",
        ("convscope style sample:chelsea sample:ihc --out cat.png",
         "convscope style photo.jpg painting.jpg --preserve-color --out mine.png"), model=False)
    p.add_argument("images", nargs="*", metavar="IMAGE",
                   help="CONTENT then one or more STYLE images (several are mixed, or one per "
                        "--mask region)")
    p.add_argument("--out", type=output_file(".png"), metavar="PNG",
                   help="the output image (required but for `--fast` alone, which lists the "
                        "styles)")
    p.add_argument("--fast", nargs="?", const="", metavar="N|STYLE_IMAGE",
                   help="feed-forward style transfer (Johnson et al. 2016), one pass instead "
                        "of an optimisation: a fixed style by number (0-25, or weights "
                        "3:0.5,12:0.5) or any style image; alone, lists the fixed styles "
                        "(with --out, draws them all on CONTENT); --size is the output's "
                        "longer side")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    add_options(p.add_argument_group("optimisation"), StyleConfig,
                only=("size", "steps", "optimizer", "lr", "init", "seed"))
    add_options(p.add_argument_group("losses"), StyleConfig,
                only=("content_weight", "style_weight", "tv_weight", "content_layer",
                      "style_layers", "layer_norm"))
    add_options(p.add_argument_group("the 2017 controls"), StyleConfig,
                only=("preserve_color", "mask", "style_mix", "scales", "fine_style",
                      "fine_layers", "style_scale"))
    g = p.add_argument_group("backbone")
    add_model_args(g, "--backbone", StyleConfig.backbone,
                   model_help="vgg19 (default; offline: vgg16-hed when installed, else "
                              "random-multiscale), vgg16-hed, random-multiscale[:filters=N], "
                              "a packaged network (efficientnet-lite0), a torchvision model "
                              "(resnet18, torchvision:NAME) or a convscope model file",
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


def run_fast(args) -> int:
    """``style --fast``: the packaged feed-forward networks (no optimisation)."""
    if len(args.images) > 1:
        raise UsageError("with --fast, give one CONTENT image; the style is --fast's value.")
    content = args.images[0] if args.images else DEFAULT_IMAGES[0]
    size = args.size  # --size: the output's longer side, as for every style run
    if not args.fast:  # the list of fixed styles, and their picture when --out is given
        print(f"{FAST_STYLES} fixed styles, by number (the package names none): "
              f"--fast 0 ... --fast {FAST_STYLES - 1}; mix them as --fast 3:0.5,12:0.5, "
              "or give a style image: --fast painting.jpg.")
        if args.out:
            out = _check_paths(args, [content])
            save_figure(style_sheet(content), out, config={"content": content,
                                                          "sheet": FAST_STYLES})
            print(f"wrote       {out} (every fixed style on {content})")
        return 0
    if not args.out:
        raise UsageError("give --out PNG for the styled image.")
    out = _check_paths(args, [content, args.fast])
    result = fast_stylize(content, args.fast, size)
    result.save(out)
    if args.json:
        print_json({"out": str(out), "seconds": result.config.seconds,
                    "config": asdict(result.config)})
        return 0
    h, w = result.image.shape[:2]
    what = f"fixed style {args.fast}" if result.config.mode == "fixed" else \
        f"the style of {args.fast}"
    print(f"fast        {what}, one pass of the packaged network")
    print(f"wrote       {out} ({w}x{h}) in {result.config.seconds:.2f} s")
    return 0


def run(args, parser: argparse.ArgumentParser | None = None) -> int:
    if args.fast is not None:
        return run_fast(args)
    if not args.out:
        raise UsageError("give --out PNG for the styled image.")
    images = args.images or list(DEFAULT_IMAGES)
    if len(images) < 2:
        raise UsageError("give CONTENT and at least one STYLE image (or none, for the "
                         "sample run).")
    out = _check_paths(args, images)
    config = config_from(StyleConfig, args, lr=args.lr or None, backbone=args.backbone,
                         weights=args.weights, device=args.device)
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
