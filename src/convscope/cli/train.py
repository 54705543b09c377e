"""convscope train: train a classifier and write model.safetensors, metrics.jsonl, config.json."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from convscope.cli.common import (
    add_data_args,
    add_device_arg,
    add_model_arg,
    nonneg_float,
    positive_int,
)
from convscope.errors import UsageError
from convscope.train.config import AUGMENTS, OPTIMIZERS, SCHEDULES, TrainConfig


def register(sub) -> None:
    d = TrainConfig()
    p = sub.add_parser(
        "train", help="train a classifier on a dataset",
        description="Train a classifier. Writes DIR/model.safetensors (weights plus metadata), "
                    "DIR/metrics.jsonl (one line per epoch) and DIR/config.json.",
        epilog="examples:\n  convscope train --data mnist5k --model convnet --out runs/mnist\n"
               "  convscope train --data folder:~/photos --model resnet:depth=32 --epochs 30 "
               "--out runs/photos",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_data_args(p, default=d.data)
    add_model_arg(p, default=d.model)
    p.add_argument("--weights", metavar="DEFAULT|FILE",
                   help="ILSVRC models: DEFAULT downloads torchvision's ImageNet weights; "
                        "FILE reads a local state dict")
    p.add_argument("--epochs", type=positive_int, default=d.epochs,
                   help=f"passes over the training set (default {d.epochs})")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size,
                   help=f"images per step (default {d.batch_size})")
    p.add_argument("--lr", type=nonneg_float, help="peak learning rate (default: sgd 0.05, "
                   "adamw 0.002)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer,
                   help="sgd (Nesterov momentum) or adamw (default sgd)")
    p.add_argument("--momentum", type=nonneg_float, default=d.momentum)
    p.add_argument("--weight-decay", type=nonneg_float,
                   help="L2 weight decay (default: sgd 5e-4, adamw 0.05)")
    p.add_argument("--schedule", choices=SCHEDULES, default=d.schedule,
                   help="decay after the warm-up (default cosine)")
    p.add_argument("--warmup-epochs", type=nonneg_float, default=d.warmup_epochs,
                   help=f"linear warm-up length (default {d.warmup_epochs})")
    p.add_argument("--label-smoothing", type=nonneg_float, default=d.label_smoothing,
                   help=f"(default {d.label_smoothing})")
    p.add_argument("--augment", choices=AUGMENTS, default=d.augment,
                   help="auto: flip+crop for natural images, none for digits (default auto)")
    p.add_argument("--max-grad-norm", type=nonneg_float,
                   help="clip the gradient norm to this before each step")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed (default 0)")
    add_device_arg(p)
    p.add_argument("--out", metavar="DIR",
                   help="output folder (default runs/<model>-<data>-<time>)")
    p.add_argument("--force", action="store_true",
                   help="replace a model already in --out")
    p.add_argument("--checkpoint-every", type=positive_int, metavar="STEPS",
                   help="also checkpoint every STEPS steps (a checkpoint is always written "
                        "at the end of each epoch and on Ctrl-C)")
    p.add_argument("--resume", metavar="DIR",
                   help="continue the run in DIR from its last checkpoint, with its saved "
                        "config (other training options are ignored)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _default_out(model: str, data: str) -> str:
    slug = "".join(ch if ch.isalnum() else "-" for ch in f"{model}-{Path(data).name or data}")
    return str(Path("runs") / f"{slug.strip('-')[:60]}-{time.strftime('%Y%m%d-%H%M%S')}")


def run(args) -> int:
    from convscope.api import resume, train

    if args.resume:
        clf = resume(args.resume, progress=not args.quiet, data_root=args.data_root)
        return _report(clf, args.resume)
    out = args.out or _default_out(args.model, args.data)
    if (Path(out) / "model.safetensors").exists() and not args.force:
        raise UsageError(f"{out} already holds a trained model; pass --force to replace it or "
                         "choose another --out.")
    if (Path(out) / "checkpoint.safetensors").exists() and not args.force:
        raise UsageError(f"{out} holds the checkpoint of an unfinished run; continue it with "
                         f"--resume {out}, or pass --force to start over.")
    clf = train(
        args.data, model=args.model, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        optimizer=args.optimizer, momentum=args.momentum, weight_decay=args.weight_decay,
        schedule=args.schedule, warmup_epochs=args.warmup_epochs,
        label_smoothing=args.label_smoothing, augment=args.augment, seed=args.seed,
        device=args.device, data_root=args.data_root, image_size=args.image_size,
        weights=args.weights, max_grad_norm=args.max_grad_norm,
        checkpoint_every=args.checkpoint_every, out=out, progress=not args.quiet,
    )
    return _report(clf, out)


def _report(clf, out) -> int:
    m = clf.meta.metrics
    print(f"\ntest top-1 {100 * m['test_acc']:.2f}%, top-5 {100 * m['test_top5']:.2f}%")
    print(f"wrote {out}/model.safetensors, {out}/metrics.jsonl, {out}/config.json")
    return 0
