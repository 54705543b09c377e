"""Arguments and helpers shared by several subcommands."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from convscope.data import list_datasets
from convscope.models import list_models
from convscope.options import (  # noqa: F401 - the value types, for every command
    INT_MAX,
    SEED_MAX,
    finite_float,
    float_in,
    fraction,
    int_in,
    nonneg_float,
    nonneg_int,
    positive_float,
    positive_int,
    seed_int,
)


def _writable_place(path: Path) -> str | None:
    """Why files cannot be made at ``path`` (its folders are created when missing), or None."""
    target = path.absolute()
    if target.exists() and not os.access(target, os.W_OK):
        return f"{target} is not writable"
    folder = target.parent
    while not folder.exists():  # the nearest folder that exists is where mkdir starts
        folder = folder.parent
    if not folder.is_dir():
        return f"{folder} is a file, not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):  # a read-only mount answers False too
        return f"the folder {folder} is not writable"
    return None


def output_file(*suffixes: str):
    """An argparse type for an output file: one of ``suffixes``, in a place that can be
    written, so that a typo in --out fails before minutes of work, with exit status 2."""
    names = " or ".join(suffixes)

    def parse(text: str) -> str:
        path = Path(text).expanduser()
        if path.is_dir():
            raise argparse.ArgumentTypeError(
                f"{text} is a folder; give a file name in it ending in {names}")
        if path.suffix.lower() not in suffixes:
            raise argparse.ArgumentTypeError(
                f"{text!r} must end in {names} (the supported formats)")
        why = _writable_place(path)
        if why:
            raise argparse.ArgumentTypeError(f"cannot write {text}: {why}")
        return text

    parse.__name__ = "output_file"
    return parse


def output_dir(text: str) -> str:
    """An argparse type for an output folder (created when missing) that can be written."""
    path = Path(text).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; give a folder")
    why = _writable_place(path / "x")
    if why:
        raise argparse.ArgumentTypeError(f"cannot write into {text}: {why}")
    return text


#: --out of a matplotlib figure (save_figure); only PNG carries the job's settings
figure_file = output_file(".png", ".pdf", ".svg", ".jpg", ".jpeg")
#: --out of a picture saved by save_image, which embeds the job's settings in it
image_file = output_file(".png")
npy_file = output_file(".npy")


def add_data_args(p: argparse.ArgumentParser, required: bool = False, default=None) -> None:
    p.add_argument("--data", required=required, default=default, metavar="NAME",
                   help="dataset: " + ", ".join(list_datasets("classify"))
                   + "; boxes: " + ", ".join(list_datasets("detect"))
                   + "; masks: " + ", ".join(list_datasets("segment"))
                   + (f" (default: {default})" if default else ""))
    p.add_argument("--data-root", metavar="DIR",
                   help="where cifar10/mnist live or are downloaded to "
                        "(default ~/.cache/convscope/data)")
    p.add_argument("--image-size", type=positive_int, metavar="PX",
                   help="resize the dataset's images to PX x PX (boxes and masks: the longest "
                        "side the network reads, default the largest image side up to 512)")


def add_model_arg(p: argparse.ArgumentParser, default: str = "convnet") -> None:
    p.add_argument("--model", default=default, metavar="NAME[:OPTS]",
                   help="model: " + ", ".join(list_models())
                   + f"; options as NAME:key=value,... (default: {default}); "
                     "`convscope models` lists them")


def add_device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where to compute (default: auto, CUDA when available)")


def print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")


MODEL_HELP = "a model file written by `convscope train`, or a torchvision classifier such as resnet18"
WEIGHTS_HELP = ("torchvision models: DEFAULT downloads ImageNet weights, FILE reads a local "
                "state dict (default: random weights)")


def add_model_args(p, flag: str | None = None, default: str | None = None,
                   model_help: str = MODEL_HELP, weights: str = "DEFAULT|FILE",
                   weights_help: str = WEIGHTS_HELP) -> None:
    """The model arguments every command shares: MODEL (or ``flag``, e.g. style's
    ``--backbone``, with its ``default``), --weights and --device."""
    if flag is None:
        p.add_argument("model", metavar="MODEL", help=model_help)
    else:
        p.add_argument(flag, default=default, metavar="MODEL", help=model_help)
    p.add_argument("--weights", metavar=weights, help=weights_help)
    add_device_arg(p)


def add_command(sub, name: str, help: str, description: str, examples: tuple[str, ...] = (),
                *, before: str = "", model: bool = True, data: bool = False, run=None):
    """One subcommand as every command is made: its one-line ``help``, its ``description``,
    an epilog of ``before`` (a table of its choices) then its ``examples``, and the shared
    MODEL, --weights and --device (``model``) and data flags (``data``); ``run`` is what it
    calls.  The parser, for the command's own flags."""
    lines = [f"  {e}" for e in examples]
    epilog = "\n\n".join(part for part in (before, "examples:\n" + "\n".join(lines)
                                           if lines else "") if part)
    p = sub.add_parser(name, help=help, description=description, epilog=epilog or None,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    if model:
        add_model_args(p)
    if data:
        add_data_args(p)
    if run is not None:
        p.set_defaults(func=run)
    return p
