"""convscope explain / faithfulness: which pixels a decision depends on, and how faithful
each map is."""

from __future__ import annotations

import argparse
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from convscope.cli.common import (
    add_command,
    figure_file,
    npy_file,
    print_json,
)
from convscope.cli.options import add_options, config_from
from convscope.errors import UsageError
from convscope.inspect.annotated import MASK_METHODS, MaskExplainConfig, explain_mask_class
from convscope.inspect.attribution import ExplainConfig, explain_many, list_methods
from convscope.inspect.faithfulness import FaithfulnessConfig, faithfulness
from convscope.loading import open_model
from convscope.render.attribution import explanation_figure, faithfulness_figure
from convscope.render.figures import save_figure, save_image
from convscope.render.views import vstack
from convscope.scene.trained import TrainedDetector, TrainedSegmenter

#: the map options faithfulness shares with explain (target, channel, position: explain's)
MAP_OPTIONS = ("window", "stride", "baseline", "perturbations_per_eval", "layer", "batch_size")


def add_map_args(p: argparse.ArgumentParser, neuron: bool = False) -> None:
    """The options of the maps, from ExplainConfig: explain's and faithfulness's."""
    add_options(p.add_argument_group("occlusion"), ExplainConfig,
                only=("window", "stride", "baseline", "perturbations_per_eval"))
    add_options(p.add_argument_group("Grad-CAM"), ExplainConfig, only=("layer",))
    if neuron:
        add_options(p.add_argument_group("guided backprop of one neuron"), ExplainConfig,
                    only=("channel", "position"))
    add_options(p, ExplainConfig, only=("batch_size",))
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def register(sub) -> None:
    methods = list_methods()
    p = add_command(
        sub, "explain", "which pixels a decision depends on: occlusion, saliency, guided "
                        "backprop, Grad-CAM",
        "Draw attribution maps of images: one row per image with the image, each method's map "
        "and the predicted top-5 (the target in orange).",
        ("convscope explain runs/mnist/model.safetensors digit.png --method all --out maps.png",
         "convscope explain resnet18 --weights DEFAULT dog.jpg --method occlusion --window 32 "
         "--stride 16 --out occ.png",
         "convscope explain resnet18 dog.jpg --method guided-backprop --layer layer3 "
         "--channel 7 --out neuron.png",
         "convscope explain runs/masks/model.safetensors road.png --target car --method gradcam "
         "--out why-car.png"), run=run_explain)
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files")
    p.add_argument("--method", choices=[*methods, "all"], default="all",
                   help="the map (default all: one panel per method)")
    add_options(p, ExplainConfig, only=("target",))
    p.add_argument("--out", required=True, type=figure_file, metavar="PNG", help="the figure")
    p.add_argument("--npy", type=npy_file, metavar="NPY",
                   help="also save the maps: float32 (N, H, W), or (methods, N, H, W) for all")
    add_map_args(p, neuron=True)

    p = add_command(
        sub, "faithfulness", "score each map by deletion and insertion curves",
        "Delete (or insert) pixels in the order each method's map ranks them and track the "
        "predicted class's probability; report the area under each curve, with a random map "
        "as the baseline to beat.",
        ("convscope faithfulness runs/mnist/model.safetensors --data mnist5k --n 100 "
         "--out faith.png",), data=True, run=run_faithfulness)
    add_options(p, FaithfulnessConfig)
    p.add_argument("--out", type=figure_file, metavar="PNG",
                   help="also plot the mean curves to this PNG")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_map_args(p)


def run_explain(args) -> int:
    clf = open_model(args.model, args.weights, args.device)
    if isinstance(clf, TrainedSegmenter):
        return run_explain_mask(args, clf)
    if isinstance(clf, TrainedDetector):
        raise UsageError(f"{args.model} is a detector; explain one of its boxes with "
                         f"`convscope detect IMAGE --detector {args.model} --explain 0 "
                         "--method gradcam --out why.png`.")
    config = config_from(ExplainConfig, args, method=args.method)
    methods = list_methods() if args.method == "all" else [args.method]
    results = explain_many(clf, args.images, methods, config, progress=not args.quiet)

    first = results[methods[0]]
    for i, path in enumerate(args.images):
        top = first.probs[i].argmax()
        print(f"{path}: predicted {clf.classes[int(top)]} {float(first.probs[i, top]):.2f}, "
              f"explaining {first.target_label(i)}")
    record = {"command": "explain", "model": str(args.model), "weights": args.weights,
              "images": list(args.images),
              "methods": {m: asdict(a.config) for m, a in results.items()}}
    names = [Path(p).name for p in args.images]
    save_figure(explanation_figure(results, names=names), args.out, config=record)
    print(f"wrote {args.out}")
    if args.npy:
        maps = np.stack([results[m].numpy() for m in methods])  # (methods, N, H, W)
        Path(args.npy).parent.mkdir(parents=True, exist_ok=True)
        np.save(args.npy, maps if args.method == "all" else maps[0])
        print(f"wrote {args.npy}" + (f" (axes: method [{', '.join(methods)}], image, y, x)"
                                     if args.method == "all" else " (axes: image, y, x)"))
    return 0


def run_explain_mask(args, model) -> int:
    """A segmenter: which pixels make it call pixels --target (Grad-CAM, occlusion or
    both, one picture per image and method, stacked in --out)."""
    methods = list(MASK_METHODS) if args.method == "all" else [args.method]
    if any(m not in MASK_METHODS for m in methods):
        raise UsageError(f"a segmenter's class is explained by {' or '.join(MASK_METHODS)}, not "
                         f"--method {args.method}.")
    if not str(args.out).lower().endswith(".png"):
        raise UsageError(f"--out {args.out} must be a .png for a segmenter's maps.")
    if args.npy:
        raise UsageError("--npy saves a classifier's maps; a segmenter's are in --out.")
    pictures, results = [], []
    for path in args.images:
        for method in methods:
            config = MaskExplainConfig(target=args.target, method=method,
                                       window=args.window, stride=args.stride)
            expl = explain_mask_class(model, path, config, progress=not args.quiet)
            pictures.append(expl.render())
            results.append(expl.to_dict() | {"image": path})
            print(f"{path}: {expl.label} on {int(expl.mask.sum())} pixels (mean probability "
                  f"{expl.score:.2f}), {method}: {expl.inside_share():.0%} of the map on them")
    save_image(vstack(pictures, gap=8), args.out,
               config={"command": "explain", "model": str(args.model), "results": results})
    print(f"wrote {args.out}")
    return 0


def run_faithfulness(args) -> int:
    clf = open_model(args.model, args.weights, args.device)
    data = args.data or clf.meta.dataset
    config = config_from(FaithfulnessConfig, args, explain=config_from(ExplainConfig, args))
    config = replace(config, methods=tuple(dict.fromkeys(config.methods)))
    result = faithfulness(clf, args.data, config, progress=not args.quiet,
                          data_root=args.data_root, image_size=args.image_size)
    record = {"command": "faithfulness", "model": str(args.model), "weights": args.weights,
              "data": data, **result.to_dict()}
    if args.out:
        save_figure(faithfulness_figure(result), args.out,
                    config={k: v for k, v in record.items() if k != "mean_curves"})
    if args.json:
        print_json(record)
    else:
        print(f"model  {args.model}\ndata   {data} ({record['n']} test images; target: "
              "the predicted class)\n")
        print(result.format())
        if args.out:
            print(f"\nwrote {args.out}")
    return 0
