"""convscope evaluate: top-1/top-5, per-class accuracy and the confusion matrix."""

from __future__ import annotations

from convscope import distributed
from convscope.classifier import Classifier
from convscope.cli.common import (
    add_command,
    figure_file,
    positive_int,
    print_json,
)
from convscope.errors import UsageError
from convscope.evaluate import dataset_for_model, resolve_split
from convscope.loading import open_model
from convscope.render.figures import class_scores_figure, confusion_figure, save_figure
from convscope.scene.trained import TrainedDetector, TrainedSegmenter


def register(sub) -> None:
    p = add_command(sub, "evaluate", "accuracy and confusion matrix, COCO mAP, or mean IoU of "
                    "a model",
                    "Evaluate a model file (or a torchvision classifier, with --weights) on a "
                    "dataset's test split: a classifier's top-1/top-5 and confusion matrix, a "
                    "detector's COCO mAP@[.5:.95], mAP@.5 and per-class AP (pycocotools), a "
                    "segmenter's mean IoU, pixel accuracy and per-class IoU.",
                    ("convscope evaluate runs/demo/model.safetensors --out confusion.png",
                     "convscope evaluate runs/boxes/model.safetensors --json",
                     "convscope evaluate runs/roads/model.safetensors --data masks:~/roads2 "
                     "--out iou.png"),
                    data=True, run=run)
    p.add_argument("--split", choices=("auto", "test", "all", "train"), default="auto",
                   help="which images: auto = the test split of the model's own training "
                        "dataset, every image of any other dataset (default auto)")
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--out", type=figure_file, metavar="PNG", help="also draw the confusion matrix (a detector's or segmenter's "
                   "per-class scores) to this PNG")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def dataset_for(clf, args):
    """The dataset to evaluate on (--data, or the one the model was trained on), with the
    evaluated split moved into its test images."""
    ds, own = dataset_for_model(clf, args.data, data_root=args.data_root,
                                image_size=args.image_size, progress=not args.quiet)
    return ds.as_evaluation_split(resolve_split(args.split, own))


def run(args) -> int:
    model = open_model(args.model, args.weights, args.device)
    if isinstance(model, (TrainedDetector, TrainedSegmenter)):
        # a detector's COCO mAP or a segmenter's mean IoU, per-class table and bars
        data = dataset_for(model, args)
        ev, figure, extra = model.evaluate(data), class_scores_figure, {"task": model.task}
    elif isinstance(model, Classifier):
        data = dataset_for(model, args)
        ev, figure, extra = model.evaluate(data, batch_size=args.batch_size), confusion_figure, {}
    else:
        raise UsageError(f"{args.model} is a packaged {model.task} network; evaluate scores "
                         "classifiers and the detectors and segmenters convscope trains.")
    if not distributed.current().is_main:  # under torchrun one process writes and prints
        return 0
    if args.out:
        save_figure(figure(ev), args.out,
                    config={"command": "evaluate", "model": args.model, "data": data.name})
    if args.json:
        print_json({"model": args.model, "data": data.name, **extra, **ev.to_dict()})
    else:
        print(f"model       {args.model}\ndata        {data.name}")
        print(ev.format())
        if args.out:
            print(f"\nwrote {args.out}")
    return 0
