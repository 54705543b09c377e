"""Options declared once: each job's config field carries its flag, help and value type.

A config dataclass declares a field with :func:`option`::

    max_maps: int = option(64, "maps drawn", type=positive_int)

and ``convscope.cli.options.add_options(parser, Config)`` builds the argparse flag from it
(``--max-maps``, its type, its help with the default), and ``config_from(Config, args)``
builds the config back from the parsed arguments.  The value types below are argparse types
(a bad value exits 2 with argparse's sentence); they live here, below every layer, so that a
config in any layer names its own.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass, field

#: the largest whole number torch (int64) takes
INT_MAX = 2**63 - 1
#: the largest seed numpy's RandomState (hence scikit-learn and openTSNE) takes
SEED_MAX = 2**32 - 1


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def int_in(lo: int, hi: int = INT_MAX, name: str = "int"):
    """An argparse type: a whole number in [lo, hi] (argparse exits 2 otherwise)."""
    def parse(text: str) -> int:
        value = _whole(text)
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(
                f"must be at least {lo}, got {text}" if value < lo
                else f"must be at most {hi:,}, got {text}")
        return value

    parse.__name__ = name
    return parse


#: a count: a whole number from 1 to torch's int64 limit
positive_int = int_in(1, name="positive_int")
nonneg_int = int_in(0, name="nonneg_int")
#: a random seed: numpy's RandomState, used by scikit-learn and openTSNE, takes no more
seed_int = int_in(0, SEED_MAX, name="seed_int")


def float_in(lo: float | None = None, hi: float | None = None, lo_open: bool = False,
             name: str = "float"):
    """An argparse type: a finite number (never nan or inf) in [lo, hi], or (lo, hi]."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if lo is not None and (value <= lo if lo_open else value < lo):
            raise argparse.ArgumentTypeError(
                f"must be {'more than' if lo_open else 'at least'} {lo:g}, got {text}")
        if hi is not None and value > hi:
            raise argparse.ArgumentTypeError(f"must be at most {hi:g}, got {text}")
        return value

    parse.__name__ = name
    return parse


finite_float = float_in(name="finite_float")
nonneg_float = float_in(0, name="nonneg_float")
positive_float = float_in(0, lo_open=True, name="positive_float")
fraction = float_in(0, 1, name="fraction")



@dataclass(frozen=True)
class Option:
    """How one config field reads on the command line."""

    help: str
    flag: str | None = None  # default: --field-name
    type: Callable | None = None
    #: the values allowed, or a function giving them (a registry filled after the config)
    choices: Sequence[str] | Callable[[], Sequence[str]] | None = None
    metavar: str | None = None
    #: several values (space- or comma-separated), each read by ``type``
    many: bool = False
    #: earlier flag names, still accepted with a notice
    old: tuple[str, ...] = ()
    #: how the default reads in --help (None: the value itself; "": not shown)
    shown: str | None = None
    #: a yes/no switch: True (--flag sets it, or --no-... clears a default-on field) or
    #: "both" (--flag / --no-flag, None when neither is given)
    switch: bool | str = False


def option(default=MISSING, help: str = "", **how):
    """A config field with its command-line reading (see :class:`Option`)."""
    kwargs = {"metadata": {"option": Option(help, **how)}}
    if isinstance(default, (list, dict, set)):
        kwargs["default_factory"] = lambda d=default: type(d)(d)
    elif default is not MISSING:
        kwargs["default"] = default
    return field(**kwargs)


def option_of(f) -> Option | None:
    """The :class:`Option` of a dataclass field, or None for a field without a flag."""
    return f.metadata.get("option")


def seed_option(what: str = "which sample"):
    """The seed field every seeded job has."""
    return option(0, f"{what}: the same seed gives the same result", type=seed_int)


def batch_option(default: int = 256):
    """The batch-size field every batched job has."""
    return option(default, "images per forward pass", type=positive_int)


def count_or_all(text: str) -> int | None:
    """A count, or ``all`` (None)."""
    return None if text == "all" else positive_int(text)


def layer_option(what: str):
    """The ``layer`` field of a view: ``what`` says its default."""
    return option(None, f"{what}; `convscope layers MODEL` lists the names", metavar="L")
