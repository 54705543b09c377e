"""convscope predict: the top-k classes of each image, like the ILSVRC output."""

from __future__ import annotations

import sys
from pathlib import Path

from convscope.classifier import Classifier
from convscope.cli.common import add_command, positive_int, print_json
from convscope.cli.options import add_options, config_from
from convscope.cli.scene import detect_with, segment_with
from convscope.cli.visualize import check_out
from convscope.errors import ImageError, UsageError
from convscope.images import to_pil
from convscope.loading import open_model
from convscope.render.figures import predictions_figure, save_figure
from convscope.scene.config import DetectConfig, SegmentConfig
from convscope.scene.trained import TrainedDetector, TrainedSegmenter


def register(sub) -> None:
    p = add_command(sub, "predict", "top-k classes, boxes or masks of image files",
                    "Print the top-k labels of each image with their probabilities; with a "
                    "detector you trained, the boxes, labels and scores (drawn with --out); "
                    "with a segmenter, each pixel's class (drawn with --out, written as an "
                    "indexed PNG with --mask-out). Any common image file works; it is "
                    "converted to what the model expects.",
                    ("convscope predict efficientnet-lite0 cat.jpg coffee.jpg --out top5.png",
                     "convscope predict resnet18 --weights DEFAULT dog.jpg --top-k 3",
                     "convscope predict runs/boxes/model.safetensors a.png b.png --out drawn/ "
                     "--min-score 0.3",
                     "convscope predict runs/roads/model.safetensors road.jpg --out seg.png "
                     "--mask-out mask.png --json"), run=run)
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files")
    p.add_argument("--top-k", type=positive_int, default=5, help="how many classes (default 5)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--out", metavar="PNG", help="also draw each image above the bars of its "
                   "top-k classes, as the ILSVRC slide does (detectors and segmenters: the "
                   "boxes or masks on each image, a .png for one image or a folder)")
    g = p.add_argument_group("detectors and segmenters you trained")
    add_options(g, DetectConfig)
    g.add_argument("--mask-out", metavar="PNG|DIR", help="a segmenter's mask of each image as "
                   "an indexed PNG (Pascal VOC style): a .png for one image, a folder for "
                   "several")


def run(args) -> int:
    clf = open_model(args.model, args.weights, args.device)
    if isinstance(clf, TrainedDetector):
        if args.mask_out:
            raise UsageError("--mask-out writes a segmenter's masks; a detector's boxes are "
                             "drawn with --out and listed with --json.")
        return detect_with(args, clf, config_from(DetectConfig, args), args.model)
    if isinstance(clf, TrainedSegmenter):
        return segment_with(args, clf, SegmentConfig(), args.model)
    if not isinstance(clf, Classifier):
        raise UsageError(f"{args.model} is a packaged {clf.task} network; run it with "
                         f"`convscope {clf.task} IMAGE --{'detector' if clf.task in ('faces', 'detect') else 'model'} {args.model}`.")
    if args.min_score is not None or args.mask_out:
        raise UsageError("--min-score and --mask-out are for detectors and segmenters; a "
                         "classifier gives its --top-k classes.")
    if args.out:
        check_out(args.out)
    results, failures, shown = [], 0, []
    for path in args.images:
        try:
            top = clf.topk(path, k=args.top_k)[0]
        except ImageError as exc:
            failures += 1
            print(f"convscope predict: error: {exc}", file=sys.stderr)
            results.append({"image": path, "error": str(exc)})
            continue
        results.append({
            "image": path,
            "top": [{"label": lab, "index": clf.classes.index(lab), "probability": round(p, 6)}
                    for lab, p in top],
        })
        if args.out:
            photo = to_pil(path)
            photo.thumbnail((448, 448))
            shown.append((photo, top, Path(path).name))
        if not args.json:
            print(f"{path}: " + ", ".join(f"{lab} {p:.2f}" for lab, p in top))
    if args.out and shown:
        photos, tops, names = zip(*shown)
        save_figure(predictions_figure(photos, tops, names), args.out,
                    config={"model": args.model, "top_k": args.top_k})
    if args.json:
        print_json(results)
    elif args.out and shown:
        print(f"wrote {args.out}")
    return 1 if failures else 0
