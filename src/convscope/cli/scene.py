"""convscope faces / detect / pose / segment / describe: the applications the lecture opens
with, on a user's own photos, with the packaged networks (nothing is downloaded)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

from convscope.cli.common import add_command, add_device_arg, print_json
from convscope.cli.options import add_options, config_from
from convscope.errors import ImageError, UsageError
from convscope.inspect.detection import BoxExplainConfig, explain_detection
from convscope.loading import open_model
from convscope.render.figures import save_image
from convscope.scene.config import DetectConfig, PoseConfig, SegmentConfig
from convscope.scene.describe import DescribeConfig, Describer
from convscope.scene.models import read_photo, scene_names
from convscope.scene.trained import TrainedSegmenter

#: names a user may type for a catalogue name
ALIASES = {"cascade": "haar-cascade", "ssd": "ssd-mobilenet-v2", "movenet": "movenet-lightning",
           "selfie": "selfie-segmentation"}


def network(task: str):
    """An argparse type: a packaged network of ``task`` (or an alias of one), or a model
    file (a detector or segmenter trained by convscope; its task is checked when opened)."""
    names = scene_names(task)

    def parse(text: str) -> str:
        name = ALIASES.get(text, text)
        if Path(name).expanduser().is_file():
            return str(Path(name).expanduser())
        if name not in names:
            trained = (" or a model file you trained (DIR/model.safetensors)"
                       if task in ("detect", "segment") else "")
            raise argparse.ArgumentTypeError(f"{text!r} is not a {task} network; choose one "
                                             f"of: {', '.join(names)}{trained}")
        return name

    parse.__name__ = f"{task}_network"
    return parse


def _model_flag(p, flag: str, task: str, help_text: str) -> None:
    names = scene_names(task)
    trained = ", or a model file you trained" if task in ("detect", "segment") else ""
    p.add_argument(flag, default=names[0], type=network(task), metavar="NAME",
                   help=f"{help_text}: {', '.join(names)}{trained} (default {names[0]}; "
                        "`convscope models --pretrained` says where each comes from)")
    add_device_arg(p)


def _outputs(p, what: str) -> None:
    p.add_argument("images", metavar="IMAGE", nargs="+", help="photos (any common format)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--out", metavar="PNG|DIR", help=f"draw {what} on each photo: a .png file "
                   "for one photo, a folder (one PNG per photo) for several")


def register(sub) -> None:
    detectors = (
        ("faces", "find faces in photos: boxes, scores and landmarks",
         "Find the faces in each photo with a packaged face detector: MTCNN (the default, five "
         "landmarks), BlazeFace (six landmarks) or the Viola-Jones Haar cascade of a camera.",
         ("convscope faces group.jpg --out faces.png",
          "convscope faces *.jpg --detector blazeface --json",
          "convscope faces me.jpg --explain 0 --method gradcam --out why.png"),
         "the face detector", "the boxes and landmarks"),
        ("detect", "find objects in photos: COCO labels, boxes and scores",
         "Find the objects of COCO's 80 classes in each photo (SSD-MobileNetV2).",
         ("convscope detect street.jpg --out objects.png",
          "convscope detect kitchen.jpg --min-score 0.3 --json",
          "convscope detect coffee.jpg --explain 0 --out why-cup.png"),
         "the object detector", "the boxes and labels"),
    )
    for task, short, description, examples, which, drawn in detectors:
        p = add_command(sub, task, short, description + " --explain N shows which pixels keep "
                        "detection N's score.", examples, model=False, run=run_detect)
        _model_flag(p, "--detector", task, which)
        _outputs(p, drawn)
        add_options(p, DetectConfig)
        _explain_args(p)
        p.set_defaults(task=task)

    p = add_command(sub, "pose", "a person's 17 COCO keypoints and skeleton in photos",
                    "Find the pose of the main person in each photo (MoveNet Lightning): the "
                    "17 COCO keypoints with their scores, and the skeleton drawn.",
                    ("convscope pose runner.jpg --out pose.png",
                     "convscope pose *.jpg --json"), model=False, run=run_pose)
    _model_flag(p, "--model", "pose", "the pose network")
    _outputs(p, "the skeleton")
    add_options(p, PoseConfig)

    p = add_command(sub, "segment", "the person mask of photos, as an overlay and a PNG mask",
                    "Mark the pixels that belong to people (MediaPipe's selfie segmentation): "
                    "--out draws the mask over the photo, --mask-out writes it as a black-and-white "
                    "PNG (255: person).",
                    ("convscope segment me.jpg --out overlay.png --mask-out mask.png",
                     "convscope segment photos/*.jpg --mask-out masks/"), model=False,
                    run=run_segment)
    _model_flag(p, "--model", "segment", "the segmentation network")
    _outputs(p, "the mask")
    p.add_argument("--mask-out", metavar="PNG|DIR", help="write the mask itself: a .png file for "
                   "one photo, a folder for several")
    add_options(p, SegmentConfig)

    p = add_command(sub, "describe", "alt text for photos: 'Image may contain: 2 people, a "
                                     "cup; possibly espresso'",
                    "Build the automatic alt text of each photo from the faces, the COCO "
                    "objects with counts and the ImageNet classifier's top class, each kept "
                    "only above a threshold chosen for a precision of at least 0.8 (the README "
                    "says how they were measured).",
                    ("convscope describe holiday.jpg",
                     "convscope describe *.jpg --json",
                     "convscope describe kitchen.jpg --out described.png"), model=False,
                    run=run_describe)
    _outputs(p, "the boxes found (the alt text above)")
    add_options(p, DescribeConfig)
    add_device_arg(p)


def _explain_args(p) -> None:
    g = p.add_argument_group("look inside a detection")
    add_options(g, BoxExplainConfig)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _targets(args) -> list[Path] | None:
    """Where each photo's picture goes (--out), or None; checked before any work."""
    return _places(args.out, args.images, "--out")


def _places(out: str | None, images: list[str], flag: str) -> list[Path] | None:
    if not out:
        return None
    path = Path(out).expanduser()
    if path.suffix.lower() == ".png":
        if len(images) > 1:
            raise UsageError(f"{flag} {out} is one file, but {len(images)} photos were given; "
                             f"give a folder for {flag}.")
        return [path]
    if path.suffix:
        raise UsageError(f"{flag} {out} must be a .png file or a folder.")
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag} {out} is a file; give a folder for several photos.")
    names = [Path(i).stem for i in images]
    dup = {n for n in names if names.count(n) > 1}
    return [path / (f"{n}-{i}.png" if n in dup else f"{n}.png") for i, n in enumerate(names)]


def _each(command: str, images: list[str], fn):
    """(path, ``fn(photo)``) for each image; an unreadable one is reported on stderr and
    given as (path, None), and the command exits 1 at the end."""
    for path in images:
        try:
            photo = read_photo(path)
        except ImageError as exc:
            print(f"convscope {command}: error: {exc}", file=sys.stderr)
            yield path, None
            continue
        yield path, fn(photo)


def _print_or_json(args, results: list[dict], lines: list[str], config) -> int:
    failures = sum(1 for r in results if "error" in r)
    if args.json:
        print_json({"config": asdict(config), "results": results})
    else:
        print("\n".join(lines))
    return 1 if failures else 0


def _run(args, config, find, line, outputs=()) -> int:
    """The loop every scene command makes: ``find(photo)`` on each photo, its ``line`` of
    text and its JSON, and each of ``outputs`` (``save(result, path)``, the paths of
    ``_places``) written; an unreadable photo is reported and the rest are done."""
    results, lines = [], []
    for i, (path, found) in enumerate(_each(args.command, args.images, find)):
        if found is None:
            results.append({"image": path, "error": "unreadable"})
            continue
        results.append({**found.to_dict(), "image": path})
        lines.append(f"{path}: {line(found)}")
        for save, places in outputs:
            if places:
                save(found, places[i])
                lines.append(f"  wrote {places[i]}")
    return _print_or_json(args, results, lines, config)


def run_detect(args) -> int:
    if args.index is not None:
        return run_explain_box(args)
    model = open_model(args.detector, device=args.device, task=args.task)
    return detect_with(args, model, config_from(DetectConfig, args), args.detector)


def detect_with(args, model, config: DetectConfig, name: str) -> int:
    """``detect`` (and ``predict`` with a detector file): each photo's boxes, as text or
    JSON, drawn into ``args.out``."""
    targets = _targets(args)
    settings = {"detector": name, **asdict(config)}

    def line(found) -> str:
        fmt = "{:.2f}" if found.score_kind == "probability" else "{:.1f}"
        shown = ", ".join((fmt if model.task == "faces" else f"{lab} {fmt}").format(s)
                          for lab, s in zip(found.labels, found.scores))
        return (f"{len(found)} {'face' if model.task == 'faces' else 'object'}"
                f"{'' if len(found) == 1 else 's'}" + (f": {shown}" if shown else ""))

    return _run(args, config, lambda ph: model.predict(
        [ph], min_score=config.min_score, max_side=config.max_side)[0], line,
        [(lambda found, path: found.save(path, config=settings), targets)])


def run_explain_box(args) -> int:
    if not args.out:
        raise UsageError("--explain draws a picture; give --out PNG (or a folder).")
    targets = _targets(args)
    model = open_model(args.detector, device=args.device, task=args.task)
    detect = config_from(DetectConfig, args)
    config = config_from(BoxExplainConfig, args)
    results, lines = [], []
    for i, path in enumerate(args.images):
        expl = explain_detection(model, path, config, detect.min_score,
                                 progress=not args.quiet)
        expl.save(targets[i], config={"detector": args.detector, **asdict(config)})
        d = expl.to_dict()
        d["image"] = path
        results.append(d)
        lines.append(f"{path}: {expl.label} {expl.score:.2f}, {expl.method}: "
                     f"{expl.inside_share():.0%} of the map inside the box; wrote {targets[i]}")
    return _print_or_json(args, results, lines, config)


def run_pose(args) -> int:
    targets = _targets(args)
    model = open_model(args.model, device=args.device, task="pose")
    config = config_from(PoseConfig, args)
    settings = {"model": args.model, **asdict(config)}

    def line(poses) -> str:
        seen = [n for n, s in zip(poses.names, poses.scores[0]) if s >= config.min_score]
        return (f"{len(seen)} of {len(poses.names)} keypoints visible"
                + (f" ({', '.join(seen)})" if seen else ""))

    return _run(args, config, lambda ph: model.predict([ph], min_score=config.min_score)[0],
                line, [(lambda poses, path: poses.save(path, config=settings), targets)])


def run_segment(args) -> int:
    model = open_model(args.model, device=args.device, task="segment")
    return segment_with(args, model, config_from(SegmentConfig, args), args.model)


def segment_with(args, model, config: SegmentConfig, name: str) -> int:
    """``segment`` (and ``predict`` with a segmenter file): each photo's mask, as text or
    JSON, drawn into ``args.out`` and written as a PNG into ``args.mask_out``."""
    targets = _targets(args)
    masks = _places(args.mask_out, args.images, "--mask-out")
    if isinstance(model, TrainedSegmenter):  # every pixel its likeliest class
        find = lambda ph: model.predict([ph])[0]  # noqa: E731
        settings = {"model": name}

        def line(mask) -> str:
            shares = [f"{k} {v:.1%}" for k, v in mask.shares().items()]
            return ", ".join(shares[:8]) + " of the pixels"
    else:
        find = lambda ph: model.predict([ph], threshold=config.threshold)[0]  # noqa: E731
        settings = {"model": name, **asdict(config)}

        def line(mask) -> str:
            return f"people cover {mask.coverage:.1%} of the photo"
    return _run(args, config, find, line,
                [(lambda mask, path: mask.save(path, config=settings), targets),
                 (lambda mask, path: mask.save_mask(path, config=settings), masks)])


def run_describe(args) -> int:
    targets = _targets(args)
    config = config_from(DescribeConfig, args).resolve()
    describer = Describer(config, args.device)
    return _run(args, config, describer, lambda alt: alt.text,
                [(lambda alt, path: save_image(alt.render(), path, config=asdict(config)),
                  targets)])
