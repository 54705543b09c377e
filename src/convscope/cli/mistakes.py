"""convscope mistakes: a trained detector's worst detections (false positives with high
scores, missed objects) or a segmenter's worst masks, on labelled images."""

from __future__ import annotations

from convscope.cli.common import add_command, image_file, positive_int, print_json
from convscope.errors import UsageError
from convscope.evaluate import dataset_for_model
from convscope.inspect.annotated import MATCH_IOU, worst_detections, worst_masks
from convscope.loading import open_model
from convscope.options import fraction
from convscope.scene.trained import TrainedDetector, TrainedSegmenter


def register(sub) -> None:
    p = add_command(
        sub, "mistakes", "a detector's worst detections, a segmenter's worst masks",
        "List a detector's false positives with the highest scores and the objects it "
        "missed (matched as COCO matches them: by score, each detection to the unmatched true "
        "box of its class it overlaps most at IoU >= 0.5), each with why (a duplicate, the "
        "wrong class, a badly placed box, the background, a score too low), or a segmenter's "
        "test images with the lowest IoU; --out draws them (truth green, detections orange; "
        "image, truth and prediction side by side).",
        ("convscope mistakes runs/boxes/model.safetensors --out mistakes.png",
         "convscope mistakes runs/boxes/model.safetensors --min-score 0.3 --json",
         "convscope mistakes runs/masks/model.safetensors --data masks:~/roads --out worst.png"),
        data=True, run=run)
    p.add_argument("--split", choices=("test", "train"), default="test",
                   help="which images of the data (default test: those training held out)")
    p.add_argument("--n", type=positive_int, default=12, metavar="N",
                   help="how many of each kind to show (default 12)")
    p.add_argument("--min-score", type=fraction, default=None, metavar="S",
                   help="a detection counts from this score (default: the detector's, 0.5)")
    p.add_argument("--iou", type=fraction, default=MATCH_IOU, metavar="F",
                   help=f"the overlap at which a detection finds an object (default {MATCH_IOU})")
    p.add_argument("--out", type=image_file, metavar="PNG", help="draw them to this PNG")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    model = open_model(args.model, args.weights, args.device)
    if not isinstance(model, (TrainedDetector, TrainedSegmenter)):
        raise UsageError(f"{args.model} is a {getattr(model, 'task', 'classify')} model; "
                         "mistakes lists a detector's or segmenter's that convscope trained "
                         "(a classifier's most confident mistakes are in `convscope report "
                         "MODEL --sections mistakes`).")
    data, _ = dataset_for_model(model, args.data, data_root=args.data_root,
                                image_size=args.image_size, progress=not args.json)
    if isinstance(model, TrainedDetector):
        result = worst_detections(model, data, args.split, args.n, args.min_score, args.iou)
    else:
        result = worst_masks(model, data, args.split, args.n)
    record = {"command": "mistakes", "model": str(args.model), **result.to_dict()}
    if args.out:
        result.save(args.out, config={k: v for k, v in record.items()
                                      if k not in ("false_positives", "missed", "worst")})
    if args.json:
        print_json(record)
    else:
        print(f"model  {args.model}\ndata   {data.name} ({args.split} images)\n")
        print(result.format())
        if args.out:
            print(f"\nwrote {args.out}")
    return 0
