"""convscope evaluate: top-1/top-5, per-class accuracy and the confusion matrix."""

from __future__ import annotations

from convscope import distributed
from convscope.cli.common import (
    add_command,
    figure_file,
    positive_int,
    print_json,
)
from convscope.evaluate import dataset_for_model, resolve_split
from convscope.loading import open_model
from convscope.render.figures import confusion_figure, save_figure


def register(sub) -> None:
    p = add_command(sub, "evaluate", "accuracy, per-class accuracy and confusion matrix of a model",
                    "Evaluate a model file (or a torchvision classifier, with --weights) on a "
                    "dataset's test split.",
                    ("convscope evaluate runs/demo/model.safetensors --out confusion.png",),
                    data=True, run=run)
    p.add_argument("--split", choices=("auto", "test", "all", "train"), default="auto",
                   help="which images: auto = the test split of the model's own training "
                        "dataset, every image of any other dataset (default auto)")
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--out", type=figure_file, metavar="PNG", help="also draw the confusion matrix to this PNG")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def dataset_for(clf, args):
    """The dataset to evaluate on (--data, or the one the model was trained on), with the
    evaluated split moved into its test images."""
    ds, own = dataset_for_model(clf, args.data, data_root=args.data_root,
                                image_size=args.image_size, progress=not args.quiet)
    return ds.as_evaluation_split(resolve_split(args.split, own))


def run(args) -> int:
    clf = open_model(args.model, args.weights, args.device)
    data = dataset_for(clf, args)
    ev = clf.evaluate(data, batch_size=args.batch_size)
    if not distributed.current().is_main:  # under torchrun one process writes and prints
        return 0
    if args.out:
        save_figure(confusion_figure(ev), args.out,
                    config={"command": "evaluate", "model": args.model, "data": data.name})
    if args.json:
        print_json({"model": args.model, "data": data.name, **ev.to_dict()})
    else:
        print(f"model       {args.model}\ndata        {data.name}")
        print(ev.format())
        if args.out:
            print(f"\nwrote {args.out}")
    return 0
