"""convscope train: train a classifier and write model.safetensors, metrics.jsonl, config.json."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from convscope.api import resume, train
from convscope.cli.common import (
    add_data_args,
    add_device_arg,
    fraction,
    nonneg_float,
    positive_int,
    seed_int,
)
from convscope.errors import UsageError
from convscope.models import list_models
from convscope.train.config import AMP, AUGMENTS, OPTIMIZERS, SCHEDULES, TrainConfig
from convscope.train.recipes import RECIPES


def _recipe_default(key: str) -> str:
    return ", ".join(f"{name} {r.defaults[key]}" for name, r in RECIPES.items()
                     if key in r.defaults)


def register(sub) -> None:
    d = TrainConfig()
    p = sub.add_parser(
        "train", help="train a classifier on a dataset",
        description="Train a classifier. Writes DIR/model.safetensors (weights plus metadata), "
                    "DIR/metrics.jsonl (one line per epoch) and DIR/config.json. Options left "
                    "out take the --recipe's defaults.",
        epilog="examples:\n  convscope train --data mnist5k --model convnet --out runs/mnist\n"
               "  convscope train --data folder:~/photos --model resnet:depth=32 --epochs 30 "
               "--out runs/photos\n"
               "  convscope train --data cifar10 --recipe fast --out runs/cifar\n"
               "  convscope train --resume runs/photos",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_data_args(p, default=d.data)
    p.add_argument("--holdout", type=_holdout, metavar="FRACTION|N",
                   help="folder datasets without a test/ subfolder: the test split as a "
                        "fraction or a number of images (default 0.2); 0 trains on all")
    p.add_argument("--recipe", choices=list(RECIPES), default=d.recipe,
                   help="; ".join(f"{n}: {r.summary}" for n, r in RECIPES.items()))
    p.add_argument("--model", metavar="NAME[:OPTS]",
                   help="model: " + ", ".join(list_models()) + "; options as "
                   f"NAME:key=value,... (default: {_recipe_default('model')}); "
                   "`convscope models` lists them")
    p.add_argument("--weights", metavar="DEFAULT|FILE",
                   help="ILSVRC models: DEFAULT downloads torchvision's ImageNet weights; "
                        "FILE reads a local state dict")
    p.add_argument("--epochs", type=positive_int,
                   help=f"passes over the training set (default: {_recipe_default('epochs')})")
    p.add_argument("--batch-size", type=positive_int,
                   help=f"images per step (default: {_recipe_default('batch_size')})")
    p.add_argument("--lr", type=nonneg_float, help="peak learning rate (default: sgd 0.05, "
                   "adamw 0.002, muon 0.053 per example for its SGD groups)")
    p.add_argument("--optimizer", choices=OPTIMIZERS,
                   help=f"sgd (Nesterov), adamw or muon (default: {_recipe_default('optimizer')})")
    p.add_argument("--momentum", type=nonneg_float, default=d.momentum)
    p.add_argument("--weight-decay", type=nonneg_float,
                   help="L2 weight decay (default: sgd 5e-4, adamw 0.05)")
    p.add_argument("--schedule", choices=SCHEDULES,
                   help=f"decay after the warm-up (default: {_recipe_default('schedule')})")
    p.add_argument("--warmup-epochs", type=nonneg_float,
                   help=f"linear warm-up length (default: {_recipe_default('warmup_epochs')})")
    p.add_argument("--label-smoothing", type=fraction,
                   help=f"(default: {_recipe_default('label_smoothing')})")
    p.add_argument("--augment", choices=AUGMENTS,
                   help="auto: flip+crop for natural images, none for digits (default: "
                        f"{_recipe_default('augment')})")
    p.add_argument("--tta", type=int, choices=(0, 1, 2),
                   help="test-time augmentation of the saved model: 0 none, 1 mirror, 2 mirror "
                        f"+ 1-px shifts (default: {_recipe_default('tta')})")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels-last memory layout (default: recipe's)")
    p.add_argument("--amp", choices=AMP, default=d.amp,
                   help="mixed precision (default auto: bf16 on CUDA, off on the CPU)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the model (falls back to eager if compiling fails)")
    p.add_argument("--sync-bn", action="store_true",
                   help="torchrun on GPUs: batch-norm statistics over all processes")
    p.add_argument("--max-grad-norm", type=nonneg_float,
                   help="clip the gradient norm to this before each step")
    p.add_argument("--seed", type=seed_int, default=d.seed, help="random seed (default 0)")
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


def _holdout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction or a count, got {text!r}") from None
    if not 0 <= value < float("inf") or (value > 1 and value != int(value)):
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1) or a whole number, "
                                         f"got {text}")
    return int(value) if value >= 1 else value


def _default_out(model: str, data: str) -> str:
    slug = "".join(ch if ch.isalnum() else "-" for ch in f"{model}-{Path(data).name or data}")
    return str(Path("runs") / f"{slug.strip('-')[:60]}-{time.strftime('%Y%m%d-%H%M%S')}")


TRAIN_OPTIONS = ("recipe", "model", "epochs", "batch_size", "lr", "optimizer", "momentum",
                 "weight_decay", "schedule", "warmup_epochs", "label_smoothing", "augment",
                 "tta", "channels_last", "amp", "compile", "sync_bn", "seed", "device", "data_root",
                 "image_size", "holdout", "weights", "max_grad_norm", "checkpoint_every")


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
    options = {k: getattr(args, k) for k in TRAIN_OPTIONS}
    clf = train(args.data, out=out, progress=not args.quiet, **options)
    return _report(clf, out)


def _report(clf, out) -> int:
    m = clf.meta.metrics
    if m.get("test_acc") is not None:
        print(f"\ntest top-1 {100 * m['test_acc']:.2f}%, top-5 {100 * m['test_top5']:.2f}%")
    print(f"wrote {out}/model.safetensors, {out}/metrics.jsonl, {out}/config.json")
    return 0
