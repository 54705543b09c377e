"""convscope visualize / dream: images made by gradient ascent on a model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from PIL import Image

from convscope.cli.common import (
    add_command,
    nonneg_int,
    positive_int,
    print_json,
)
from convscope.cli.options import ListAction, add_options, config_from
from convscope.errors import UsageError
from convscope.inspect.dream import DreamConfig, dream
from convscope.inspect.synthesis import PRESETS, VisualizeConfig, channel_images, class_images
from convscope.loading import open_model
from convscope.render.figures import image_grid, save_figure, save_image


def register(sub) -> None:
    presets = "\n".join(f"  {p.name:<9} {p.summary}" for p in PRESETS.values())
    p = add_command(
        sub, "visualize", "images that maximise a class score, a channel or a neuron",
        "Synthesise images by gradient ascent: one per class (--class) or per channel of a "
        "layer (--layer/--channel, --neuron for one position). One target writes the image "
        "itself; several write a labelled grid.",
        ("convscope visualize runs/cifar/model.safetensors --class all --out classes.png",
         "convscope visualize runs/mnist/model.safetensors --class 3 --recipe simonyan "
         "--out three.png",
         "convscope visualize runs/cifar/model.safetensors --layer conv2_1 --channel 0 1 "
         "2 3 --out channels.png"), before=f"presets (--recipe):\n{presets}", run=run_visualize)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--class", dest="classes", nargs="+", metavar="NAME_OR_INDEX",
                        help="classes to draw, by name or index; `all` for every class")
    target.add_argument("--layer", metavar="L", help="a layer to visualise (with --channel)")
    p.add_argument("--channel", action=ListAction, item=nonneg_int, metavar="C",
                   help="channels of --layer (spaces or commas: 0 1 2 or 0,1,2)")
    p.add_argument("--neuron", metavar="Y,X",
                   help="one neuron at this position of the layer's map (default: the "
                        "channel's mean over all positions)")
    add_options(p, VisualizeConfig)
    p.add_argument("--judge", metavar="MODEL",
                   help="with --class: a second model trained apart on the same classes (other "
                        "seed, other architecture); print its probability and top-1 for each "
                        "image and the agreement over the classes, since the model's own p "
                        "also rewards images that only fool it")
    p.add_argument("--zoom", type=positive_int, default=1,
                   help="enlarge a single image N times, nearest-neighbour (default 1)")
    p.add_argument("--out", required=True, metavar="PNG", help="output image")
    p.add_argument("--json", action="store_true", help="print one JSON object")

    p = add_command(
        sub, "dream", "DeepDream: amplify what a layer sees in an image",
        "DeepDream (maximise the sum of a layer's squared activations) with octaves, jitter "
        "and gradient normalisation, at the image's own size.",
        ("convscope dream runs/cifar/model.safetensors photo.jpg --layer relu2_2 --out "
         "dream.png --frames frames/",), run=run_dream)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("image", metavar="IMAGE", help="the image to dream on")
    add_options(p, DreamConfig)
    p.add_argument("--out", required=True, metavar="PNG", help="output image")
    p.add_argument("--frames", metavar="DIR", help="also save the image after each step here")
    p.add_argument("--frame-every", type=positive_int, default=1, metavar="K",
                   help="with --frames, save every K-th step (default 1)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def check_out(path: str, what: str = "--out") -> None:
    """An output PNG path that can be written (its folder is created when missing)."""
    p = Path(path)
    if p.suffix.lower() != ".png":
        raise UsageError(f"{what} {path!r} must end in .png (the PNG carries the job's settings).")
    if p.is_dir():
        raise UsageError(f"{what} {path!r} is a folder; give a file name ending in .png.")


# ----------------------------------------------------------------- visualize
def parse_neuron(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        y, x = (int(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"--neuron takes Y,X (two whole numbers), got {text!r}.") from None
    return y, x


def _config(args, clf=None):
    """The resolved config, with the default preset for ``clf`` when --recipe is not given."""
    return config_from(VisualizeConfig, args).resolved(clf)


def run_visualize(args) -> int:
    check_out(args.out)
    if args.preset:  # without it the preset depends on the model: checked once it is open
        _config(args)
    if args.layer and not args.channel:
        raise UsageError("--layer needs --channel C [C ...]: the channels to visualise.")
    if args.channel and not args.layer:
        raise UsageError("--channel needs --layer L.")
    if args.judge and not args.classes:
        raise UsageError("--judge scores class images; use it with --class.")
    if args.judge and _same_file(args.judge, args.model):
        raise UsageError("--judge is the model itself; give a second model trained apart on "
                         "the same classes (another seed or architecture).")
    clf = open_model(args.model, args.weights, args.device)
    cfg = _config(args, clf)
    judge = open_model(args.judge, None, args.device) if args.judge else None
    if args.classes:
        wanted = list(range(len(clf.classes))) if args.classes == ["all"] else args.classes
        res = class_images(clf, wanted, cfg, progress=not args.quiet, judge=judge,
                           judge_name=args.judge)
    else:
        res = channel_images(clf, args.layer, args.channel, parse_neuron(args.neuron), cfg,
                             progress=not args.quiet)
    rows = _describe(clf, res, bool(args.classes))
    _write_visualization(res, rows, args, clf)
    judged = res.judgement
    if args.json:
        print_json({"out": args.out, "config": res.config, "images": rows,
                    **({"judge": judged.as_dict()} if judged else {})})
    else:
        for r in rows:
            line = f"{r['target']}: objective {r['objective_start']:.3g} -> {r['objective_end']:.3g}"
            if "probability" in r:
                line += f", p={r['probability']:.3f}, top-1 {r['top1']}"
            if "judge_probability" in r:
                line += (f"; judge p={r['judge_probability']:.3f}, top-1 {r['judge_top1']}"
                         + ("" if r["judge_agrees"] else " (disagrees)"))
            print(line)
        if judged:
            print(judged.summary())
        print(f"wrote {args.out}")
    return 0


def _same_file(a, b) -> bool:
    try:
        return Path(a).is_file() and Path(b).is_file() and Path(a).samefile(b)
    except OSError:
        return False


def _describe(clf, res, classes: bool) -> list[dict]:
    """Per image: the target, the objective at the first and last step, and for classes the
    model's probability of the target on the saved (uint8) image and its top-1 class."""
    rows = [{"target": label, "objective_start": float(res.objective[0, i]),
             "objective_end": float(res.objective[-1, i])} for i, label in enumerate(res.labels)]
    if classes:
        proba = clf.predict_proba(res.uint8())
        for i, r in enumerate(rows):
            r["probability"] = float(proba[i, clf.classes.index(r["target"])])
            r["top1"] = clf.classes[int(proba[i].argmax())]
    if res.judgement is not None:
        j = res.judgement
        for r, p, top1, agrees in zip(rows, j.probability, j.top1, j.agrees):
            r.update(judge_probability=p, judge_top1=top1, judge_agrees=agrees)
    return rows


def _write_visualization(res, rows, args, clf) -> None:
    config = {"job": "visualize", "model": str(args.model), "targets": res.labels, **res.config}
    if res.judgement is not None:
        config["judge"] = res.judgement.as_dict()
    images = res.pil()
    if len(images) == 1:
        img = images[0]
        if args.zoom > 1:
            img = img.resize((img.width * args.zoom, img.height * args.zoom), Image.NEAREST)
        save_image(img, args.out, config=config)
        return
    titles = [r["target"] + (f"\np={r['probability']:.2f}" if "probability" in r else "")
              + (f" judge {r['judge_probability']:.2f}" if "judge_probability" in r else "")
              for r in rows]
    title = f"{args.model} — {res.config['preset']}"
    if res.judgement is not None:
        title += f" — judge agrees {sum(res.judgement.agrees)}/{len(rows)}"
    save_figure(image_grid(images, titles, title=title), args.out, config=config)


# ----------------------------------------------------------------- dream
def run_dream(args) -> int:
    cfg = config_from(DreamConfig, args)
    cfg.check()
    check_out(args.out)
    frames = Path(args.frames) if args.frames else None
    if frames is not None and frames.exists() and not frames.is_dir():
        raise UsageError(f"--frames {args.frames!r} is a file; give a folder for the frames.")
    clf = open_model(args.model, args.weights, args.device)
    config = {"job": "dream", "model": str(args.model), "image": str(args.image),
              **dataclasses.asdict(cfg)}

    def save_frame(i, image):
        if i % args.frame_every == 0:
            arr = (image * 255).round().byte().permute(1, 2, 0).numpy()
            save_image(arr, frames / f"frame_{i:04d}.png", config={**config, "frame": i})

    res = dream(clf, args.image, cfg, progress=not args.quiet,
                on_frame=save_frame if frames else None)
    save_image(res.pil(), args.out, config={**config, **res.config})
    summary = {"out": args.out, "layer": res.layer, "energy_before": res.energy_before,
               "energy_after": res.energy_after, "gain": res.gain,
               "size": list(res.image.shape[-2:]), "octaves": [list(s) for s in res.sizes],
               "config": res.config}
    if args.json:
        print_json(summary)
    else:
        print(f"sum of squared activations at {res.layer}: {res.energy_before:.4g} -> "
              f"{res.energy_after:.4g} (x{res.gain:.1f})")
        print(f"wrote {args.out}" + (f" and frames in {frames}" if frames else ""))
    return 0
