"""convscope layers / filters / activations / neighbors / embed / patches: what a network has
learned to represent."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

from convscope import distributed
from convscope.cli.common import (
    add_command,
    image_file,
    npy_file,
    output_dir,
    print_json,
)
from convscope.cli.options import add_options, config_from
from convscope.images import probe_image
from convscope.inspect.embedding import TRUST_K, EmbedConfig, embed, write_projector
from convscope.inspect.filters import ActivationsConfig, FiltersConfig, activations, filters
from convscope.inspect.layers import list_layers
from convscope.inspect.neighbors import NeighborsConfig, neighbors
from convscope.inspect.patches import PatchesConfig, patches
from convscope.loading import open_model
from convscope.render.figures import save_image


def _view(sub, name: str, help: str, description: str, examples: list[str], config: type,
          run, *, data: bool = False, json: str | None = None):
    """A view's subcommand: MODEL, --weights, --device, the data flags of a view over a
    dataset, its --out, every option its config declares and, with ``json`` (its help),
    --json; the parser, for flags of its own."""
    p = add_command(sub, name, help, description, tuple(examples), data=data, run=run)
    if data:
        p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--out", required=True, type=image_file, metavar="PNG", help="the figure")
    add_options(p, config)
    if json:
        p.add_argument("--json", action="store_true", help=json)
    return p


def register(sub) -> None:
    p = add_command(sub, "layers", "layer names with their output shapes",
                    "List every layer a view's --layer accepts, with its type, its output "
                    "volume for one image and which view starts from it by default.",
                    ("convscope layers runs/mnist/model.safetensors",
                     "convscope layers resnet18"), run=run_layers)
    p.add_argument("--json", action="store_true", help="print one JSON object")

    _view(sub, "filters", "draw a layer's filters",
          "Draw the filters of a convolution: first-layer filters on RGB input as colour "
          "tiles, others as one grayscale tile per input channel.",
          ["convscope filters resnet18 --weights DEFAULT --out conv1.png",
           "convscope filters runs/mnist/model.safetensors --layer conv2_1 --out f.png"],
          FiltersConfig, run_filters)

    p = _view(sub, "activations", "draw one image's activation maps at a layer",
              "Show the activation maps of one image at one layer as a grid, with the input "
              "beside it (an image with other channels than the model's is converted).",
              ["convscope activations runs/mnist/model.safetensors digit.png --layer "
               "relu1_2 --out maps.png"], ActivationsConfig, run_activations)
    p.add_argument("image", metavar="IMAGE", help="an image file")

    _view(sub, "neighbors", "nearest training images in feature and pixel space",
          "For test images, find the nearest training images in feature space (by "
          "default the layer feeding the classifier, the lecture's FC7) and in pixel "
          "space, and report the label agreement of the k neighbours in each.",
          ["convscope neighbors runs/mnist/model.safetensors --data mnist5k --top-k 5 "
           "--out nn.png --json"], NeighborsConfig, run_neighbors, data=True,
          json="print the neighbours' indices, distances and labels as JSON")

    p = _view(sub, "embed", "t-SNE or PCA map of a layer's features",
              "Reduce a layer's features to 2-D (openTSNE's t-SNE or scikit-learn's PCA) "
              "and draw a scatter coloured by class beside a thumbnail map of the images "
              "snapped to a grid.",
              ["convscope embed runs/mnist/model.safetensors --data mnist5k --method tsne "
               "--n 1000 --out tsne.png --tensorboard runs/projector"], EmbedConfig,
              run_embed, data=True, json="print the coordinates as JSON")
    p.add_argument("--npy", type=npy_file, metavar="NPY", help="also save the (N, 2) coordinates")
    p.add_argument("--tensorboard", type=output_dir, metavar="DIR",
                   help="also write TensorBoard embedding-projector files (vectors, labels, "
                        "sprite) to DIR")

    _view(sub, "patches", "maximally activating patches of a layer's channels",
          "One pass over a dataset keeps each channel's top activations; each is cut "
          "from its image at the unit's receptive field. One row per channel.",
          ["convscope patches runs/mnist/model.safetensors --data mnist5k --layer "
           "conv2_2 --channels 0-15 --top-k 9 --out patches.png"], PatchesConfig, run_patches,
          data=True, json="print each hit's image index, position and activation as JSON")


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


def _printed_json(args, record: dict, result) -> bool:
    """With --json, print the record and the result as one object (and say so)."""
    if args.json:
        print_json(record | result.to_dict())
    return args.json


def _data_options(args) -> dict:
    return {"data_root": args.data_root, "image_size": args.image_size,
            "progress": not args.quiet}


def _dataset_view(args, command: str, view, config: type, **extra):
    """A view over a dataset as every such command runs it: open MODEL, compute the view
    with the config its flags give, write the PNG with its record; (result, record)."""
    clf = open_model(args.model, args.weights, args.device)
    result = view(clf, args.data, config_from(config, args), **_data_options(args))
    record = _record(args, command, result, **{k: f(result) for k, f in extra.items()})
    _save(result.render(), args.out, record, args.json)
    return result, record


def run_layers(args) -> int:
    table = list_layers(args.model, args.weights, args.device)
    print_json(table.to_dict()) if args.json else print(table.format())
    return 0


def run_filters(args) -> int:
    clf = open_model(args.model, args.weights, args.device)
    f = filters(clf, config_from(FiltersConfig, args))
    print(f.describe())
    _save(f.render(), args.out, _record(args, "filters", f))
    return 0


def run_activations(args) -> int:
    clf = open_model(args.model, args.weights, args.device)
    mode = probe_image(args.image)[2]
    a = activations(clf, args.image, config_from(ActivationsConfig, args))
    if (mode in ("L", "1", "I;16", "I", "F", "LA")) != (clf.channels == 1):
        print(f"note: {args.image} is {'grayscale' if clf.channels == 3 else 'colour'}; "
              f"converted to the model's {clf.channels} channel(s)")
    print(a.describe())
    _save(a.render(), args.out, _record(args, "activations", a, image=args.image))
    return 0


def run_neighbors(args) -> int:
    r, record = _dataset_view(args, "neighbors", neighbors, NeighborsConfig,
                              agreement=lambda r: r.agreement)
    if _printed_json(args, record, r):
        return 0
    c, agree = r.config, r.agreement
    if not r.labelled:
        print(f"data    {r.data}: {c.queries} queries among its {c.database:,} images "
              f"(unlabelled: no agreement to score), k={c.k}, {c.metric}")
        return 0
    print(f"data    {r.data}: {c.queries} test queries, {c.database:,} training images "
          f"searched, k={c.k}, {c.metric}")
    print(f"label agreement of the {c.k} nearest neighbours")
    feature = f"feature space ({c.layer})"
    print(f"  {feature}  {agree['feature']:.3f}")
    print(f"  {'pixel space':<{len(feature)}}  {agree['pixel']:.3f}")
    return 0


def run_embed(args) -> int:
    e, record = _dataset_view(args, "embed", embed, EmbedConfig)
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
    if _printed_json(args, record, e):
        return 0
    c = e.config
    print(f"{c.method} of {c.n} images of {e.data} at {c.layer} "
          f"({e.features.shape[1]} features)")
    trust = e.trust()
    if trust is not None:
        print(f"trustworthiness ({TRUST_K} neighbours)  {trust:.3f}")
    return 0


def run_patches(args) -> int:
    p, record = _dataset_view(args, "patches", patches, PatchesConfig)
    if _printed_json(args, record, p):
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

