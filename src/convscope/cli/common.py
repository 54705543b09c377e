"""Arguments and helpers shared by several subcommands."""

from __future__ import annotations

import argparse
import json
import sys

from convscope.data import list_datasets
from convscope.models import list_models


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def nonneg_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value < 0 or value != value:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def add_data_args(p: argparse.ArgumentParser, required: bool = False, default=None) -> None:
    p.add_argument("--data", required=required, default=default, metavar="NAME",
                   help="dataset: " + ", ".join(list_datasets())
                   + (f" (default: {default})" if default else ""))
    p.add_argument("--data-root", metavar="DIR",
                   help="where cifar10/mnist live or are downloaded to "
                        "(default ~/.cache/convscope/data)")
    p.add_argument("--image-size", type=positive_int, metavar="PX",
                   help="resize the dataset's images to PX x PX")


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


def add_model_args(p: argparse.ArgumentParser) -> None:
    """MODEL (a model file or a torchvision classifier), --weights and --device."""
    p.add_argument("model", metavar="MODEL",
                   help="a model file written by `convscope train`, or a torchvision "
                        "classifier such as resnet18")
    p.add_argument("--weights", metavar="DEFAULT|FILE",
                   help="torchvision models: DEFAULT downloads ImageNet weights, FILE reads a "
                        "local state dict (default: random weights)")
    add_device_arg(p)
