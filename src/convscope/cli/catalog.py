"""convscope datasets / models / info / samples: what is available and what a file holds."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image

from convscope.cli.common import (
    add_data_args,
    add_model_args,
    output_dir,
    positive_int,
    print_json,
)
from convscope.data import dataset_entries, load_dataset
from convscope.errors import UsageError
from convscope.loading import open_model
from convscope.modelfile import read_meta
from convscope.models import model_entries
from convscope.models.pretrained import list_pretrained, pretrained_entry
from convscope.text import count, plural


def register(sub) -> None:
    p = sub.add_parser("datasets", help="list datasets, or describe one",
                       description="List the dataset names, or describe one: splits, classes, "
                                   "image size, channels and normalisation.")
    p.add_argument("name", nargs="?", metavar="NAME", help="a dataset to describe")
    p.add_argument("--data-root", metavar="DIR", help="where cifar10/mnist live")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_datasets)

    p = sub.add_parser("models", help="list the models and their options; --pretrained: "
                                      "the packaged networks with real weights",
                       description="List the architectures convscope trains, with their "
                                   "options; with --pretrained, the networks whose weights "
                                   "ship inside packages (no download), which of them are "
                                   "installed, and the command that installs the others.")
    p.add_argument("--pretrained", action="store_true",
                   help="the pretrained catalogue: task, input, licence, installed or not")
    p.add_argument("--requirements", action="store_true",
                   help="with --pretrained: only the pip requirements, one per line (what "
                        "`pip install --no-deps` takes)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_models)

    p = sub.add_parser("info", help="what a model is: task, labels, input, normalisation, "
                                    "provenance, licence; a file's metrics and config",
                       description="Describe a model: its task, labels, input size, "
                                   "normalisation, provenance and licence; for a model file "
                                   "also its metrics and training config (read from the "
                                   "file's metadata, without loading its weights).")
    add_model_args(p, model_help="a model file, a torchvision classifier such as resnet18, "
                                 "or a model name or spec:... (an untrained architecture)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_info)

    p = sub.add_parser("samples", help="write a dataset's test images as PNG files",
                       description="Write the first N test images of a dataset as PNG files "
                                   "named <index>_<label>.png, e.g. to try `convscope predict`. "
                                   "The dataset is NAME or --data NAME, as in other commands.")
    p.add_argument("name", nargs="?", metavar="NAME", help="dataset (or give it as --data)")
    p.add_argument("--n", type=positive_int, default=8, help="how many images (default 8)")
    p.add_argument("--out", required=True, type=output_dir, metavar="DIR")
    add_data_args(p)
    p.set_defaults(func=run_samples)


def run_datasets(args) -> int:
    if args.name:
        ds = load_dataset(args.name, data_root=args.data_root)
        print_json(ds.describe()) if args.json else print(ds.format())
        return 0
    entries = dataset_entries()
    if args.json:
        print_json([{"name": e.usage, "task": e.task, "summary": e.summary} for e in entries])
        return 0
    width = max(len(e.usage) for e in entries)
    for task, title in TASK_TITLES.items():
        rows = [e for e in entries if e.task == task]
        if rows:
            print(f"{title}:")
        for e in rows:
            print(f"  {e.usage:<{width}}  {e.summary}")
    return 0


#: the headings of the listings, by task: what each task's entries are used by today
TASK_TITLES = {
    "classify": "classification (`convscope train` and every view)",
    "detect": "detection, boxes (`convscope train --data digits-boxes|coco:|voc:|yolo:PATH`, "
              "then evaluate, predict, detect, report)",
    "segment": "segmentation, masks (`convscope train --data digits-masks|masks:PATH`, then "
               "evaluate, predict, segment, report)",
}


def run_pretrained(args) -> int:
    entries = [pretrained_entry(n) for n in list_pretrained()]
    if args.requirements:
        print("\n".join(dict.fromkeys(p for e in entries for p in e.packages)))
        return 0
    if args.json:
        print_json([e.to_dict() for e in entries])
        return 0
    width = max(len(e.name) for e in entries)
    for e in entries:
        h, w = e.input_size
        state = "installed" if e.installed else f"not installed: {e.install_command}"
        print(f"{e.name:<{width}}  {e.task:<9} {w}x{h}  {e.summary}\n{'':<{width}}  "
              f"licence: {e.licence}\n{'':<{width}}  {state}")
    missing = [e for e in entries if not e.installed]
    if missing:
        print(f"\n{count(len(missing), 'network')} not installed; `make setup` installs "
              "every one (the README's \"Pretrained networks\" says how by hand).")
    print("\nNo package carries ImageNet weights for VGG, AlexNet, GoogLeNet or ResNet: for "
          "those, --weights DEFAULT downloads torchvision's where the hub can be reached, and "
          "--weights FILE reads a state dict you have.")
    return 0


def run_models(args) -> int:
    if args.requirements and not args.pretrained:
        raise UsageError("--requirements lists the pretrained networks' packages; pass it "
                         "with --pretrained.")
    if args.pretrained:
        return run_pretrained(args)
    entries = model_entries()
    if args.json:
        print_json([{"name": e.usage, "family": e.family, "task": e.task, "summary": e.summary,
                     "options": e.defaults, "pretrained": e.pretrained} for e in entries])
        return 0
    width = max(len(e.usage) for e in entries)
    for task, title in TASK_TITLES.items():
        rows = [e for e in entries if e.task == task]
        if rows:
            print(f"{title}:")
        for e in rows:
            opts = ", ".join(f"{k}={v}" for k, v in e.defaults.items())
            print(f"  {e.usage:<{width}}  {e.summary}" + (f"  [{opts}]" if opts else ""))
    return 0


def run_info(args) -> int:
    is_file = Path(args.model).is_file() and not args.weights
    if is_file:  # the header only, never the weights
        meta = read_meta(args.model)
    else:
        model = open_model(args.model, args.weights, args.device, untrained=True)
        if not hasattr(model, "meta"):  # a model object of another task: its description
            description = model.describe()
            if args.json:
                print_json({"description": description.to_dict()})
            else:
                print(description.format())
            return 0
        meta = model.meta
    description = meta.describe()
    if args.json:
        print_json({**asdict(meta), "description": description.to_dict()})
        return 0
    opts = ", ".join(f"{k}={v}" for k, v in meta.options.items())
    print(description.format().replace(f"model       {meta.model}", f"model       {meta.model}"
                                       + (f" ({opts})" if opts else ""), 1))
    if meta.dataset:
        print(f"dataset     {meta.dataset}")
    if meta.metrics:
        m = meta.metrics
        if m.get("test_map50") is not None:
            test = (f"test mAP@.5 {100 * m['test_map50']:.1f}%, mAP "
                    f"{100 * (m.get('test_map') or 0):.1f}%")
        elif m.get("test_miou") is not None:
            test = (f"test mean IoU {100 * m['test_miou']:.1f}%, pixel accuracy "
                    f"{100 * (m.get('test_pixel_acc') or 0):.1f}%")
        elif m.get("test_acc") is not None:
            test = (f"test top-1 {100 * m['test_acc']:.2f}%, top-5 "
                    f"{100 * (m.get('test_top5') or 0):.2f}%")
        else:
            test = "no test split"
        print(f"metrics     epoch {m.get('epoch')}: {test}, train loss {m.get('train_loss')}")
    cfg = meta.train_config
    if cfg.get("epochs") is not None:
        epochs = cfg.get('epochs')
        print(f"trained     {epochs} {plural(epochs, 'epoch')}, {cfg.get('optimizer')} lr {cfg.get('lr')}, "
              f"batch {cfg.get('batch_size')}, seed {cfg.get('seed')}")
    if is_file:
        print(f"created     {meta.created}  ({', '.join(f'{k} {v}' for k, v in meta.versions.items())})")
    return 0


def sample_indices(labels, n: int) -> list[int]:
    """n indices taking each class in turn, so a few samples cover many classes."""
    labels = np.asarray(labels)
    per_class = [list(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    picked: list[int] = []
    while len(picked) < n and any(per_class):
        for idx in per_class:
            if idx and len(picked) < n:
                picked.append(int(idx.pop(0)))
    return picked


def samples_dataset(name: str | None, data: str | None) -> str:
    """The one dataset ``samples`` writes: NAME or ``--data``; both, naming two, is an error
    (``--data`` used to be ignored silently)."""
    if name and data and name != data:
        raise UsageError(f"NAME is {name} but --data is {data}; give the dataset once, as "
                         "NAME or as --data.")
    if not (name or data):
        raise UsageError("name the dataset: convscope samples NAME --out DIR (`convscope "
                         "datasets` lists them).")
    return name or data


def run_samples(args) -> int:
    ds = load_dataset(samples_dataset(args.name, args.data), data_root=args.data_root,
                      image_size=args.image_size)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    n = min(args.n, len(ds.test_labels))
    for i in sample_indices(ds.test_labels, n):
        arr = ds.test_images[i].permute(1, 2, 0).numpy()
        label = ds.classes[int(ds.test_labels[i])]
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in label)
        img = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
        img.save(out / f"{i:04d}_{safe}.png")
    print(f"wrote {count(n, 'test image')} of {ds.name} to {out}/")
    return 0
