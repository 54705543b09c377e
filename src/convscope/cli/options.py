"""How flags read, the same in every command (docs/cli.md, "Glossary").

* :class:`ListAction`: a flag that takes several values accepts them separated by spaces,
  by commas, or both (``--methods occlusion gradcam`` = ``--methods occlusion,gradcam``);
* :func:`renamed`: an old flag name keeps working after a rename, as a hidden alias that
  prints one line saying the new name;
* :func:`add_options` / :func:`config_from`: a job's flags built from its config dataclass
  (each field declared once with :func:`convscope.options.option`), and the config built
  back from the parsed arguments.

* :func:`name_flags`: the library's errors name parameters in backticks, as a Python caller
  knows them (`max_maps`); the CLI shows a user the flag that sets each one (``--max-maps``).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable
from dataclasses import MISSING, fields

from convscope.options import Option, option_of

#: every renamed flag: command -> {old name: new name}; docs/cli.md lists the same
RENAMED: dict[str, dict[str, str]] = {}


class ListAction(argparse.Action):
    """Several values, space- or comma-separated; ``allowed`` checks each one (argparse's own
    ``choices`` would check ``a,b`` as one value).  Given again, the flag adds to its list
    (``--allowed-host a --allowed-host b``); the default is replaced by the first."""

    def __init__(self, option_strings, dest, allowed=None, item=str, **kwargs):
        kwargs.setdefault("nargs", "+")
        super().__init__(option_strings, dest, **kwargs)
        self.allowed = list(allowed) if allowed is not None else None
        self.item = item

    def __call__(self, parser, namespace, values, option_string=None):
        texts = values if isinstance(values, list) else [values]
        items = [v.strip() for text in texts for v in str(text).split(",") if v.strip()]
        if not items:
            parser.error(f"argument {option_string}: expected at least one value")
        if self.allowed is not None:
            bad = [v for v in items if v not in self.allowed]
            if bad:
                parser.error(f"argument {option_string}: invalid choice: {bad[0]!r} "
                             f"(choose from {', '.join(self.allowed)})")
        try:
            converted = [self.item(v) for v in items]
        except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
            parser.error(f"argument {option_string}: {exc}")
        given = getattr(namespace, "_lists_given", set())
        if self.dest in given:
            converted = [*getattr(namespace, self.dest), *converted]
        namespace._lists_given = given | {self.dest}
        setattr(namespace, self.dest, converted)


class _Renamed(argparse.Action):
    """The old name of a flag: says the new one on stderr, then acts as it does."""

    def __init__(self, option_strings, dest, target: argparse.Action, new: str, **kwargs):
        super().__init__(option_strings, dest, **kwargs)
        self.target, self.new = target, new

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog}: warning: {option_string} is now {self.new}; the old name still "
              "works", file=sys.stderr)
        self.target(parser, namespace, values, self.new)


def renamed(parser: argparse.ArgumentParser, new: str, *old: str) -> None:
    """Keep ``old`` names of the flag ``new`` (already added to ``parser``) working.

    The alias is hidden from --help, has no default of its own (the new flag's stands), and
    converts and checks its values exactly as the new flag does."""
    target = next(a for a in parser._actions if new in a.option_strings)
    if target.required:  # argparse would ask for the new name even when the old one is given
        raise ValueError(f"{new} is required; a required flag cannot keep a hidden old name")
    command = parser.prog.split()[-1]
    for name in old:
        parser.add_argument(name, dest=target.dest, action=_Renamed, target=target, new=new,
                            nargs=target.nargs, type=target.type, choices=target.choices,
                            metavar=target.metavar, default=argparse.SUPPRESS,
                            help=argparse.SUPPRESS)
        RENAMED.setdefault(command, {})[name] = new


# --------------------------------------------------------------------------- from configs
def _shown_default(value, opt: Option) -> str:
    if opt.shown is not None:
        return opt.shown
    if value is None or opt.switch:
        return ""
    if isinstance(value, (tuple, list)):
        return ", ".join(map(str, value)) if value else ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) and abs(value) >= 10_000:
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def add_options(parser: argparse.ArgumentParser, config: type, *, only: Iterable[str] = (),
                skip: Iterable[str] = (), defaults: dict | None = None,
                more: dict | None = None) -> None:
    """Add one flag per :func:`convscope.options.option` field of the dataclass ``config``
    (all of them, or ``only`` these names, in the config's order, less ``skip``): the flag,
    type, choices and help come from the field; the default is the field's (``defaults``
    overrides it for one command; ``more`` adds a command's words to a help); earlier names
    become hidden aliases."""
    chosen, skipped = set(only), set(skip)
    given = dict(defaults or {})
    for f in fields(config):
        opt = option_of(f)
        if opt is None or f.name in skipped or (chosen and f.name not in chosen):
            continue
        flag = opt.flag or "--" + f.name.replace("_", "-")
        default = given.get(f.name, f.default if f.default is not MISSING
                            else f.default_factory() if f.default_factory is not MISSING
                            else None)
        help_text = opt.help + (more or {}).get(f.name, "")
        shown = _shown_default(default, opt)
        if shown and "(default" not in help_text:
            help_text += f" (default {shown})"
        kwargs = {"dest": f.name, "help": help_text, "default": default}
        choices = opt.choices() if callable(opt.choices) else opt.choices
        kind = getattr(opt.type, "__name__", "")
        metavar = opt.metavar or ("N" if kind in ("positive_int", "nonneg_int") else
                                  "X" if kind.endswith("float") or kind == "fraction" else
                                  flag.lstrip("-").upper().replace("-", "_"))
        if opt.switch == "both":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kwargs)
        elif opt.switch:  # a flag that turns a default-on field off reads --no-...
            parser.add_argument(flag, action="store_false" if default else "store_true",
                                **kwargs)
        elif opt.many:
            parser.add_argument(flag, action=ListAction, allowed=choices,
                                item=opt.type or str, metavar=metavar, **kwargs)
        else:
            parser.add_argument(flag, type=opt.type, choices=choices,
                                metavar=None if choices else metavar, **kwargs)
        if opt.old:
            renamed(parser, flag, *opt.old)


def values_from(config: type, args: argparse.Namespace) -> dict:
    """The values of ``config``'s option fields that the command has, from the parsed
    arguments (a ListAction's list as a tuple)."""
    values = {}
    for f in fields(config):
        opt = option_of(f)
        if opt is None or not hasattr(args, f.name):
            continue
        value = getattr(args, f.name)
        values[f.name] = tuple(value) if opt.many and isinstance(value, list) else value
    return values


def config_from(config: type, args: argparse.Namespace, **values):
    """The config ``add_options`` declared, built from the parsed arguments (every option
    field the command has), with ``values`` for fields set another way."""
    return config(**{**values_from(config, args), **values})

#: a parameter named in a library message: `name`, or `name=value` (a value to pass)
PARAMETER = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)(?:=([^`]*))?`")
QUOTES = "\"'"


def _actions_by_dest(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """dest -> the action that stores into it (the first one: a renamed flag's hidden old
    name comes later)."""
    found: dict[str, argparse.Action] = {}
    for action in parser._actions:
        if isinstance(action, (_Renamed, argparse._HelpAction, argparse._VersionAction)):
            continue
        found.setdefault(action.dest, action)
    return found


def _as_flag(action: argparse.Action, value: str | None) -> str:
    if not action.option_strings:  # a positional: its metavar (MODEL)
        return str(action.metavar or action.dest.upper())
    flag = next((s for s in action.option_strings if s.startswith("--")),
                action.option_strings[0])
    if value is None or action.nargs == 0:  # `trust_code=True` reads --trust-code
        return flag
    return f"{flag} {value.strip(QUOTES)}"  # `weights="DEFAULT"`: --weights DEFAULT


def name_flags(message: str, parser: argparse.ArgumentParser) -> str:
    """``message`` with each backticked parameter that ``parser`` has a flag for written as
    that flag: `max_maps` as ``--max-maps``, `trust_code=True` as ``--trust-code``,
    `weights="DEFAULT"` as ``--weights DEFAULT``, a positional's `model` as ``MODEL``.
    Names the command has no flag for keep their backticks (a parameter of the Python API),
    as does anything else in backticks (a command to run)."""
    actions = _actions_by_dest(parser)

    def flag(match: re.Match) -> str:
        action = actions.get(match.group(1))
        return match.group(0) if action is None else _as_flag(action, match.group(2))

    return PARAMETER.sub(flag, message)
