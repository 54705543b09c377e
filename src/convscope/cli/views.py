"""convscope layers / filters / activations / neighbors / embed / patches: what a network has
learned to represent."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

from convscope import distributed
from convscope.classifier import open_model
from convscope.cli.common import (
    INT_MAX,
    add_data_args,
    add_model_args,
    image_file,
    int_in,
    nonneg_int,
    npy_file,
    output_dir,
    positive_float,
    positive_int,
    print_json,
    seed_int,
)
from convscope.cli.options import renamed
from convscope.errors import UsageError
from convscope.evaluate import SPLITS
from convscope.images import probe_image
from convscope.inspect.embedding import EMBED_METHODS, TRUST_K, EmbedConfig, embed, write_projector
from convscope.inspect.filters import FILTER_MODES, activations, filters
from convscope.inspect.layers import list_layers
from convscope.inspect.neighbors import METRICS, NeighborsConfig, neighbors
from convscope.inspect.patches import parse_channels, patches
from convscope.render.figures import save_image


def count_or_all(text: str) -> int | None:
    return None if text == "all" else positive_int(text)


_threads = int_in(-1, 4096, name="jobs")


def jobs(text: str) -> int:
    """t-SNE threads: -1 for every core, or a count."""
    value = _threads(text)
    if value == 0:
        raise argparse.ArgumentTypeError("0 threads cannot run; give -1 (every core) or a count")
    return value


def channel_list(text: str) -> tuple[int, ...]:
    try:
        channels = parse_channels(text)
    except UsageError as exc:  # the library names its parameter: `channels` is --channels
        raise argparse.ArgumentTypeError(str(exc).replace("`channels`", "--channels")) from None
    if max(channels, default=0) > INT_MAX:
        raise argparse.ArgumentTypeError(f"a channel is at most {INT_MAX:,}, got {text}")
    return channels


def _parser(sub, name: str, help: str, description: str, examples: list[str]):
    return sub.add_parser(name, help=help, description=description,
                          epilog="examples:\n" + "\n".join(f"  {e}" for e in examples),
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def _common(p, layer_help: str, out: bool = True, data: bool = False) -> None:
    add_model_args(p)
    p.add_argument("--layer", metavar="L", help=layer_help + "; `convscope layers MODEL` "
                                                             "lists the names")
    if data:
        add_data_args(p)
        p.add_argument("--batch-size", type=positive_int, default=256,
                       help="images per forward pass (default 256)")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
    if out:
        p.add_argument("--out", required=True, type=image_file, metavar="PNG", help="the figure")


def _images_args(p, split: bool = False, reduction: bool = False) -> None:
    """Which images (--split) and how a layer's maps become one vector (--reduction)."""
    if split:
        p.add_argument("--split", choices=SPLITS, default="auto",
                       help="auto: the test images of the model's own data, every image of "
                            "any other (default auto)")
    if reduction:
        p.add_argument("--reduction", choices=("flatten", "avg"), default="flatten",
                       help="a spatial layer as one vector: flatten (default), or avg over "
                            "positions")


def register(sub) -> None:
    p = _parser(sub, "layers", "layer names with their output shapes",
                "List every layer a view's --layer accepts, with its type, its output "
                "volume for one image and which view starts from it by default.",
                ["convscope layers runs/mnist/model.safetensors", "convscope layers resnet18"])
    add_model_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_layers)

    p = _parser(sub, "filters", "draw a layer's filters",
                "Draw the filters of a convolution: first-layer filters on RGB input as colour "
                "tiles, others as one grayscale tile per input channel.",
                ["convscope filters resnet18 --weights DEFAULT --out conv1.png",
                 "convscope filters runs/mnist/model.safetensors --layer conv2_1 --out f.png"])
    _common(p, "the layer (default: the first convolution)")
    p.add_argument("--max-filters", type=positive_int, default=64,
                   help="filters drawn (default 64)")
    p.add_argument("--max-channels", type=positive_int, default=16,
                   help="input channels drawn per filter in grayscale (default 16)")
    p.add_argument("--mode", choices=FILTER_MODES, default="auto",
                   help="colour tiles (RGB filters only), gray tiles, or auto (default)")
    p.add_argument("--zoom", type=positive_int, help="pixels per weight (default: ~40 px tiles)")
    p.set_defaults(func=run_filters)

    p = _parser(sub, "activations", "draw one image's activation maps at a layer",
                "Show the activation maps of one image at one layer as a grid, with the input "
                "beside it (an image with other channels than the model's is converted).",
                ["convscope activations runs/mnist/model.safetensors digit.png --layer "
                 "relu1_2 --out maps.png"])
    _common(p, "the layer (default: the rectified output of the first convolution)")
    p.add_argument("image", metavar="IMAGE", help="an image file")
    p.add_argument("--max-maps", type=positive_int, default=64, help="maps drawn (default 64)")
    p.set_defaults(func=run_activations)

    d = NeighborsConfig()
    p = _parser(sub, "neighbors", "nearest training images in feature and pixel space",
                "For test images, find the nearest training images in feature space (by "
                "default the layer feeding the classifier, the lecture's FC7) and in pixel "
                "space, and report the label agreement of the k neighbours in each.",
                ["convscope neighbors runs/mnist/model.safetensors --data mnist5k --top-k 5 "
                 "--out nn.png --json"])
    _common(p, "the feature layer (default: the one feeding the classifier)", data=True)
    p.add_argument("--n", dest="queries", type=positive_int, default=d.queries,
                   help=f"test images used as queries, a seeded sample (default {d.queries})")
    p.add_argument("--top-k", dest="k", type=positive_int, default=d.k,
                   help=f"neighbours found for each query (default {d.k})")
    renamed(p, "--n", "--queries")
    renamed(p, "--top-k", "--k")
    p.add_argument("--metric", choices=METRICS, default=d.metric, help="distance (default l2)")
    p.add_argument("--show", type=positive_int, default=d.show,
                   help=f"queries drawn (default {d.show})")
    p.add_argument("--database", type=positive_int, metavar="N",
                   help="search a seeded sample of N training images (default: all)")
    _images_args(p, reduction=True)
    p.add_argument("--seed", type=seed_int, default=d.seed, help="which queries (default 0)")
    p.add_argument("--json", action="store_true",
                   help="print the neighbours' indices, distances and labels as JSON")
    p.set_defaults(func=run_neighbors)

    e = EmbedConfig()
    p = _parser(sub, "embed", "t-SNE or PCA map of a layer's features",
                "Reduce a layer's features to 2-D (openTSNE's t-SNE or scikit-learn's PCA) "
                "and draw a scatter coloured by class beside a thumbnail map of the images "
                "snapped to a grid.",
                ["convscope embed runs/mnist/model.safetensors --data mnist5k --method tsne "
                 "--n 1000 --out tsne.png --tensorboard runs/projector"])
    _common(p, "the feature layer (default: the one feeding the classifier)", data=True)
    p.add_argument("--method", choices=EMBED_METHODS, default=e.method,
                   help="tsne (default) or pca")
    p.add_argument("--n", type=count_or_all, default=e.n, metavar="N|all",
                   help=f"images, a seeded sample (default {e.n})")
    _images_args(p, split=True, reduction=True)
    p.add_argument("--perplexity", type=positive_float, default=e.perplexity,
                   help=f"t-SNE perplexity (default {e.perplexity:g})")
    p.add_argument("--steps", dest="iterations", type=positive_int, default=e.iterations,
                   help=f"t-SNE steps after early exaggeration (default {e.iterations})")
    renamed(p, "--steps", "--iterations")
    p.add_argument("--pca-dims", type=nonneg_int, default=e.pca_dims,
                   help=f"t-SNE: PCA to this many dimensions first, 0: never (default "
                        f"{e.pca_dims})")
    p.add_argument("--grid", type=positive_int, help="thumbnail map side in images "
                                                     "(default: fill it, at most 40)")
    p.add_argument("--jobs", type=jobs, default=e.n_jobs, help="t-SNE threads, -1: all cores")
    p.add_argument("--seed", type=seed_int, default=e.seed, help="sample and t-SNE seed (default 0)")
    p.add_argument("--npy", type=npy_file, metavar="NPY", help="also save the (N, 2) coordinates")
    p.add_argument("--tensorboard", type=output_dir, metavar="DIR",
                   help="also write TensorBoard embedding-projector files (vectors, labels, "
                        "sprite) to DIR")
    p.add_argument("--json", action="store_true", help="print the coordinates as JSON")
    p.set_defaults(func=run_embed)

    p = _parser(sub, "patches", "maximally activating patches of a layer's channels",
                "One pass over a dataset keeps each channel's top activations; each is cut "
                "from its image at the unit's receptive field. One row per channel.",
                ["convscope patches runs/mnist/model.safetensors --data mnist5k --layer "
                 "conv2_2 --channels 0-15 --top-k 9 --out patches.png"])
    _common(p, "the layer (default: the last with a spatial map)", data=True)
    p.add_argument("--channels", type=channel_list, metavar="LIST",
                   help="channels, e.g. 0-15 or 3,7,9 (default: the first 16)")
    p.add_argument("--top-k", dest="top", type=positive_int, default=9,
                   help="patches per channel (default 9)")
    renamed(p, "--top-k", "--top")
    _images_args(p, split=True)
    p.add_argument("--n", type=count_or_all, default=None, metavar="N|all",
                   help="search a seeded sample of N images (default all)")
    p.add_argument("--seed", type=seed_int, default=0, help="which sample (default 0)")
    p.add_argument("--json", action="store_true",
                   help="print each hit's image index, position and activation as JSON")
    p.set_defaults(func=run_patches)


# --------------------------------------------------------------------------- runners
def _record(args, command: str, result, **extra) -> dict:
    """How a picture was made: embedded in the PNG, and the head of the JSON output."""
    record = {"command": command, "model": str(args.model), "weights": args.weights}
    if hasattr(result, "data"):
        record["data"] = result.data
    return record | extra | {"config": asdict(result.config)}


def _save(image, path, record, quiet: bool = False) -> None:
    """Write the PNG (one process under torchrun) and say so, on stderr when stdout is JSON."""
    if distributed.current().is_main:  # under torchrun every process has the same picture
        save_image(image, path, config=record)
    print(f"wrote {path}", file=sys.stderr if quiet else sys.stdout)


def _data_options(args) -> dict:
    return {"data_root": args.data_root, "image_size": args.image_size,
            "progress": not args.quiet}


def run_layers(args) -> int:
    table = list_layers(args.model, args.weights, args.device)
    print_json(table.to_dict()) if args.json else print(table.format())
    return 0


def run_filters(args) -> int:
    clf = open_model(args.model, args.weights, args.device)
    f = filters(clf, layer=args.layer, max_filters=args.max_filters,
                max_channels=args.max_channels, mode=args.mode, zoom=args.zoom)
    print(f.describe())
    _save(f.render(), args.out, _record(args, "filters", f))
    return 0


def run_activations(args) -> int:
    clf = open_model(args.model, args.weights, args.device)
    mode = probe_image(args.image)[2]
    a = activations(clf, args.image, layer=args.layer, max_maps=args.max_maps)
    if (mode in ("L", "1", "I;16", "I", "F", "LA")) != (clf.channels == 1):
        print(f"note: {args.image} is {'grayscale' if clf.channels == 3 else 'colour'}; "
              f"converted to the model's {clf.channels} channel(s)")
    print(a.describe())
    _save(a.render(), args.out, _record(args, "activations", a, image=args.image))
    return 0


def run_neighbors(args) -> int:
    clf = open_model(args.model, args.weights, args.device)
    r = neighbors(clf, args.data, layer=args.layer, k=args.k, queries=args.queries,
                  show=args.show, metric=args.metric, reduction=args.reduction,
                  database=args.database, seed=args.seed, batch_size=args.batch_size,
                  **_data_options(args))
    record = _record(args, "neighbors", r, agreement=r.agreement)
    _save(r.render(), args.out, record, args.json)
    if args.json:
        print_json(record | r.to_dict())
        return 0
    c, agree = r.config, r.agreement
    print(f"data    {r.data}: {c.queries} test queries, {c.database:,} training images "
          f"searched, k={c.k}, {c.metric}")
    print(f"label agreement of the {c.k} nearest neighbours")
    feature = f"feature space ({c.layer})"
    print(f"  {feature}  {agree['feature']:.3f}")
    print(f"  {'pixel space':<{len(feature)}}  {agree['pixel']:.3f}")
    return 0


def run_embed(args) -> int:
    clf = open_model(args.model, args.weights, args.device)
    e = embed(clf, args.data, method=args.method, layer=args.layer, n=args.n, split=args.split,
              reduction=args.reduction, perplexity=args.perplexity, iterations=args.iterations,
              pca_dims=args.pca_dims, grid=args.grid, seed=args.seed, n_jobs=args.jobs,
              batch_size=args.batch_size, **_data_options(args))
    record = _record(args, "embed", e)
    _save(e.render(), args.out, record, args.json)
    main = distributed.current().is_main
    say = print if not args.json else (lambda m: print(m, file=sys.stderr))
    if args.npy:
        if main:
            Path(args.npy).parent.mkdir(parents=True, exist_ok=True)
            np.save(args.npy, e.coords)
        say(f"wrote {args.npy} ({len(e.coords)}, 2)")
    if args.tensorboard:
        if main:
            write_projector(e, args.tensorboard)
        say(f"wrote TensorBoard projector files to {args.tensorboard} "
            f"(tensorboard --logdir {args.tensorboard}, Projector tab)")
    if args.json:
        print_json(record | e.to_dict())
        return 0
    c = e.config
    print(f"{c.method} of {c.n} images of {e.data} at {c.layer} "
          f"({e.features.shape[1]} features)")
    trust = e.trust()
    if trust is not None:
        print(f"trustworthiness ({TRUST_K} neighbours)  {trust:.3f}")
    return 0


def run_patches(args) -> int:
    clf = open_model(args.model, args.weights, args.device)
    p = patches(clf, args.data, layer=args.layer, channels=args.channels, top=args.top,
                split=args.split, n=args.n, seed=args.seed, batch_size=args.batch_size,
                **_data_options(args))
    record = _record(args, "patches", p)
    _save(p.render(), args.out, record, args.json)
    if args.json:
        print_json(record | p.to_dict())
        return 0
    rf = p.field
    print(f"{p.config.layer}: receptive field {rf.size[0]}x{rf.size[1]} px, jump {rf.jump[0]}; "
          f"{p.config.n} images of {p.data}")
    for c, hits in zip(p.config.channels, p.hits):
        if hits:
            h = hits[0]
            print(f"  channel {c:>4}: best {h.activation:.4g} at image {h.image} "
                  f"({h.y}, {h.x})")
    return 0

