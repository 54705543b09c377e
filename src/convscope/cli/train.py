"""convscope train: train a classifier and write model.safetensors, metrics.jsonl, config.json."""

from __future__ import annotations

import os
import time
from pathlib import Path

from convscope.api import resume, train
from convscope.cli.common import add_command, add_data_args, add_device_arg
from convscope.cli.options import add_options, values_from
from convscope.errors import UsageError
from convscope.train.config import TrainConfig


def register(sub) -> None:
    p = add_command(
        sub, "train", "train a classifier, detector or segmenter on a dataset",
        "Train a classifier, or a detector (boxes: COCO, VOC or YOLO folders) or segmenter "
        "(masks) as the data's task says. Writes DIR/model.safetensors (weights plus metadata), "
        "DIR/metrics.jsonl (one line per epoch) and DIR/config.json. Options left out take the "
        "--recipe's defaults.",
        ("convscope train --data mnist5k --model convnet --out runs/mnist",
         "convscope train --data folder:~/photos --model resnet:depth=32 --epochs 30 "
         "--out runs/photos",
         "convscope train --data cifar10 --recipe fast --out runs/cifar",
         "convscope train --data folder:~/whales --model efficientnet-lite0 --weights pretrained "
         "--out runs/whales",
         "convscope train --data folder:~/whales --model efficientnet-lite0 --weights pretrained "
         "--freeze --out runs/probe",
         "convscope train --data digits-boxes --out runs/boxes",
         "convscope train --data coco:~/lab/annotations.json --model fasterrcnn --out runs/lab",
         "convscope train --data masks:~/roads --model deeplabv3 --out runs/roads",
         "convscope train --resume runs/photos"), model=False, run=run)
    add_data_args(p, default=TrainConfig.data)
    add_options(p, TrainConfig)
    add_device_arg(p)
    p.add_argument("--out", metavar="DIR",
                   help="output folder (default runs/<model>-<data>-<time>)")
    p.add_argument("--force", action="store_true",
                   help="replace a model already in --out")
    p.add_argument("--resume", metavar="DIR",
                   help="continue the run in DIR from its last checkpoint, with its saved "
                        "config (other training options are ignored)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _default_out(model: str, data: str) -> str:
    slug = "".join(ch if ch.isalnum() else "-" for ch in f"{model}-{Path(data).name or data}")
    return str(Path("runs") / f"{slug.strip('-')[:60]}-{time.strftime('%Y%m%d-%H%M%S')}")


def run(args) -> int:
    if args.resume:
        clf = resume(args.resume, progress=not args.quiet, data_root=args.data_root)
        return _report(clf, args.resume)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not args.out:
        raise UsageError("under torchrun, pass --out DIR so that every process uses the same "
                         "folder.")
    out = args.out or _default_out(args.model or args.recipe, args.data)
    if (Path(out) / "model.safetensors").exists() and not args.force:
        raise UsageError(f"{out} already holds a trained model; pass --force to replace it or "
                         "choose another --out.")
    if (Path(out) / "checkpoint.safetensors").exists() and not args.force:
        raise UsageError(f"{out} holds the checkpoint of an unfinished run; continue it with "
                         f"--resume {out}, or pass --force to start over.")
    clf = train(args.data, out=out, progress=not args.quiet, device=args.device,
                data_root=args.data_root, image_size=args.image_size,
                **values_from(TrainConfig, args))
    return _report(clf, out)


def _report(clf, out) -> int:
    m = clf.meta.metrics
    if m.get("test_acc") is not None:
        print(f"\ntest top-1 {100 * m['test_acc']:.2f}%, top-5 {100 * m['test_top5']:.2f}%")
    if m.get("test_map50") is not None:
        print(f"\ntest mAP@.5 {100 * m['test_map50']:.1f}%, mAP@[.5:.95] "
              f"{100 * m['test_map']:.1f}% (pycocotools)")
    if m.get("test_miou") is not None:
        print(f"\ntest mean IoU {100 * m['test_miou']:.1f}%, pixel accuracy "
              f"{100 * m['test_pixel_acc']:.1f}%")
    print(f"wrote {out}/model.safetensors, {out}/metrics.jsonl, {out}/config.json")
    return 0
