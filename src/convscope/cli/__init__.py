"""The ``convscope`` command: one thin layer over the library.

Each subcommand lives in its own module with ``register(subparsers)``; it parses
its options into a config and calls one library function.  User errors
(:class:`ConvscopeError`) print one sentence and exit non-zero, never a traceback; the
parameters the sentence names in backticks are written as the command's flags.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

from PIL import Image

from convscope import distributed
from convscope.cli.options import name_flags
from convscope.errors import ConvscopeError
from convscope.version import __version__

#: modules under convscope.cli, each with register(subparsers); order is the --help order
COMMAND_MODULES = ("train", "evaluate", "predict", "views", "explain", "challenges",
                   "visualize", "style", "scene", "mistakes", "report", "catalog", "arith")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convscope",
        description="A workbench for convolutional networks on images: train a classifier, "
                    "look inside it, restyle images.",
    )
    parser.add_argument("--version", action="version", version=f"convscope {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"convscope.cli.{name}").register(sub)
    return parser


def command_parser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    """The subcommand's own parser, whose flags an error's parameters are named by."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def quiet_library_warnings() -> None:
    """Keep the libraries' noise off a user's terminal (issue 20, finding 12); convscope's
    own warnings (DataWarning and the like) still show.

    * Pillow's DecompressionBombWarning: convscope.images already refuses images above
      CONVSCOPE_MAX_PIXELS before decoding; the warning only fires when the user raised
      that limit past Pillow's, i.e. asked for the big image;
    * Pillow's "Palette images with Transparency expressed in bytes": convscope.images
      converts such images to RGBA and composites them over white itself;
    * numpy's floating-point RuntimeWarnings (0/0 in normalising a flat map, overflow in
      an exp): the results say nan or inf where it matters, the warning names a line of
      our code that a user cannot act on.
    """
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    warnings.filterwarnings("ignore", message="Palette images with Transparency")
    warnings.filterwarnings("ignore", category=RuntimeWarning,
                            message=r".*(invalid value|divide by zero|overflow|underflow) "
                                    r"encountered")
    warnings.filterwarnings("ignore", category=RuntimeWarning,
                            message=r"(Mean of empty slice|Degrees of freedom <= 0)")


def _one_line(command: str):
    """Warnings as one line on stderr, like errors (not Python's file:line and source)."""

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"convscope {command}: warning: {message}", file=file or sys.stderr)

    return show


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # usage errors: argparse prints usage and exits 2
    if int(os.environ.get("RANK", "0")) > 0:  # under torchrun only rank 0 speaks
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    try:
        distributed.init_from_env(getattr(args, "device", "auto"))  # no-op outside torchrun
        with warnings.catch_warnings():
            quiet_library_warnings()
            warnings.showwarning = _one_line(args.command)  # restored by catch_warnings
            return int(args.func(args) or 0)
    except ConvscopeError as exc:
        message = name_flags(str(exc), command_parser(parser, args.command))
        print(f"convscope {args.command}: error: {message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"convscope {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `convscope predict ... | head`
        return 0
    finally:
        distributed.shutdown()
