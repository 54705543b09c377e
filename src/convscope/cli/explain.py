"""convscope explain / faithfulness: which pixels a decision depends on, and how faithful
each map is."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

import numpy as np

from convscope.classifier import open_model
from convscope.cli.common import (
    INT_MAX,
    add_data_args,
    add_model_args,
    figure_file,
    nonneg_int,
    npy_file,
    positive_int,
    print_json,
    seed_int,
)
from convscope.cli.options import ListAction
from convscope.inspect.attribution import BASELINES, ExplainConfig, explain_many, list_methods
from convscope.inspect.faithfulness import FaithfulnessConfig, faithfulness
from convscope.render.attribution import explanation_figure, faithfulness_figure
from convscope.render.figures import save_figure


def position(text: str) -> tuple[int, int]:
    try:
        y, x = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected Y,X (two whole numbers), got {text!r}") from None
    if y < 0 or x < 0:
        raise argparse.ArgumentTypeError(f"a position is at least 0,0, got {text}")
    if y > INT_MAX or x > INT_MAX:
        raise argparse.ArgumentTypeError(f"a position is at most {INT_MAX:,}, got {text}")
    return y, x


def add_map_args(p: argparse.ArgumentParser) -> None:
    """The options of the maps, shared by explain and faithfulness."""
    d = ExplainConfig()
    g = p.add_argument_group("occlusion")
    g.add_argument("--window", type=positive_int, metavar="PX",
                   help="side of the square mask (default: about 1/8 of the image, 2-16 px)")
    g.add_argument("--stride", type=positive_int, metavar="PX",
                   help="step between masks (default: half the window)")
    g.add_argument("--baseline", choices=BASELINES, default=d.baseline,
                   help="what fills the mask: zero (black), mean (the training data's mean "
                        "colour) or blur (the image blurred) (default zero)")
    g.add_argument("--perturbations-per-eval", type=positive_int, metavar="P",
                   help="masked copies per forward pass (default: as many as fit a batch)")
    g = p.add_argument_group("Grad-CAM")
    g.add_argument("--layer", metavar="L",
                   help="Grad-CAM's layer (default: the last convolutional layer); with "
                        "--channel, the layer of the neuron guided backprop explains")
    p.add_argument("--batch-size", type=positive_int, metavar="N",
                   help="images per attribution call (default: by image size)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def register(sub) -> None:
    methods = list_methods()
    p = sub.add_parser(
        "explain", help="which pixels a decision depends on: occlusion, saliency, guided "
                        "backprop, Grad-CAM",
        description="Draw attribution maps of images: one row per image with the image, each "
                    "method's map and the predicted top-5 (the target in orange).",
        epilog="examples:\n"
               "  convscope explain runs/mnist/model.safetensors digit.png --method all "
               "--out maps.png\n"
               "  convscope explain resnet18 --weights DEFAULT dog.jpg --method occlusion "
               "--window 32 --stride 16 --out occ.png\n"
               "  convscope explain resnet18 dog.jpg --method guided-backprop --layer layer3 "
               "--channel 7 --out neuron.png",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_args(p)
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files")
    p.add_argument("--method", choices=[*methods, "all"], default="all",
                   help="the map (default all: one panel per method)")
    p.add_argument("--target", metavar="CLASS",
                   help="class name or index to explain (default: each image's prediction)")
    p.add_argument("--out", required=True, type=figure_file, metavar="PNG", help="the figure")
    p.add_argument("--npy", type=npy_file, metavar="NPY",
                   help="also save the maps: float32 (N, H, W), or (methods, N, H, W) for all")
    add_map_args(p)
    g = p.add_argument_group("guided backprop of one neuron")
    g.add_argument("--channel", type=nonneg_int, metavar="C", help="channel of --layer")
    g.add_argument("--position", type=position, metavar="Y,X",
                   help="the neuron's place in the layer's map (default: where the channel "
                        "is most active)")
    p.set_defaults(func=run_explain)

    p = sub.add_parser(
        "faithfulness", help="score each map by deletion and insertion curves",
        description="Delete (or insert) pixels in the order each method's map ranks them and "
                    "track the predicted class's probability; report the area under each "
                    "curve, with a random map as the baseline to beat.",
        epilog="example:\n  convscope faithfulness runs/mnist/model.safetensors --data mnist5k "
               "--n 100 --out faith.png",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_args(p)
    add_data_args(p)
    p.add_argument("--n", type=positive_int, default=100, help="test images (default 100)")
    p.add_argument("--methods", action=ListAction, allowed=methods, default=methods, metavar="METHOD",
                   help=f"methods to score (default all: {', '.join(methods)})")
    p.add_argument("--steps", type=positive_int, default=20,
                   help="points per curve (default 20)")
    p.add_argument("--deletion-baseline", choices=BASELINES, default="zero",
                   help="what deleted pixels become (default zero)")
    p.add_argument("--insertion-baseline", choices=BASELINES, default="blur",
                   help="what insertion starts from (default blur)")
    p.add_argument("--seed", type=seed_int, default=0, help="which test images (default 0)")
    p.add_argument("--out", type=figure_file, metavar="PNG",
                   help="also plot the mean curves to this PNG")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_map_args(p)
    p.set_defaults(func=run_faithfulness)


def explain_config(args, **extra) -> ExplainConfig:
    return ExplainConfig(window=args.window, stride=args.stride, baseline=args.baseline,
                         perturbations_per_eval=args.perturbations_per_eval, layer=args.layer,
                         batch_size=args.batch_size, **extra)


def run_explain(args) -> int:
    clf = open_model(args.model, args.weights, args.device)
    config = explain_config(args, method=args.method, target=args.target,
                            channel=args.channel, position=args.position)
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


def run_faithfulness(args) -> int:
    clf = open_model(args.model, args.weights, args.device)
    data = args.data or clf.meta.dataset
    config = FaithfulnessConfig(
        n=args.n, methods=tuple(dict.fromkeys(args.methods)), steps=args.steps,
        deletion_baseline=args.deletion_baseline, insertion_baseline=args.insertion_baseline,
        seed=args.seed, explain=explain_config(args))
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
