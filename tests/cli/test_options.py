"""One name per idea: every command's flags are in docs/cli.md's glossary, old names still work
with a one-line notice, and lists take spaces, commas or both."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from convscope.cli import build_parser
from convscope.cli.options import RENAMED, ListAction, name_flags, renamed
from tests.conftest import ROOT, call_cli

DOC = ROOT / "docs" / "cli.md"


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _section(title: str) -> str:
    text = DOC.read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def _visible_flags() -> dict[str, set[str]]:
    """flag -> commands, for every long flag a user sees in --help."""
    found: dict[str, set[str]] = {}
    for name, parser in _commands().items():
        for action in parser._actions:
            if action.help is argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
                continue
            for flag in action.option_strings:
                if flag.startswith("--"):
                    found.setdefault(flag, set()).add(name)
    return found


def _glossary() -> dict[str, set[str]]:
    """flag -> the commands its glossary row names."""
    rows: dict[str, set[str]] = {}
    for line in _section("Glossary").splitlines():
        if not line.startswith("| `--"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        key, where = cells[0], cells[-1]
        commands = set(re.findall(r"[a-z]+", re.sub(r"`[^`]*`", "", where)))
        for flag in re.findall(r"`(--[a-z0-9-]+)`", key):
            rows[flag] = commands
    return rows


def test_every_flag_of_every_command_is_in_the_glossary():
    flags, glossary = _visible_flags(), _glossary()
    missing = sorted(f"{flag} ({', '.join(sorted(cmds))})" for flag, cmds in flags.items()
                     if flag not in glossary)
    assert not missing, f"flags missing from docs/cli.md's glossary: {missing}"
    stale = sorted(set(glossary) - set(flags))
    assert not stale, f"docs/cli.md names flags no command has: {stale}"
    unlisted = sorted(f"{flag}: {', '.join(sorted(cmds - glossary[flag]))}"
                      for flag, cmds in flags.items() if cmds - glossary[flag])
    assert not unlisted, f"commands missing from their glossary row: {unlisted}"


def test_the_renamed_table_is_the_registry_of_old_names():
    _commands()  # registers every alias
    rows = re.findall(r"^\| (\w+) \| `(--[a-z0-9-]+)` \| `(--[a-z0-9-]+)` \|$",
                      _section("Renamed flags"), flags=re.M)
    documented: dict[str, dict[str, str]] = {}
    for command, old, new in rows:
        documented.setdefault(command, {})[old] = new
    assert documented == RENAMED
    assert RENAMED["neighbors"] == {"--queries": "--n", "--k": "--top-k"}


def test_old_names_are_hidden_from_help():
    for command, names in RENAMED.items():
        text = _commands()[command].format_help()
        for old, new in names.items():
            assert new in text
            assert not re.search(rf"(?<![\w-]){re.escape(old)}(?![\w-])", text), (command, old)


@pytest.mark.parametrize(("command", "old", "new", "value", "dest"), [
    ("neighbors", "--queries", "--n", "7", "queries"),
    ("neighbors", "--k", "--top-k", "3", "k"),
    ("patches", "--top", "--top-k", "4", "top"),
    ("embed", "--iterations", "--steps", "50", "iterations"),
    ("visualize", "--reg", "--recipe", "simonyan", "preset"),
    ("visualize", "--tv", "--tv-weight", "0.5", "tv"),
    ("report", "--explain-images", "--explain-n", "2", "explain_images"),
    ("report", "--n", "--embed-n", "40", "n"),
    ("serve", "--tsne-n", "--embed-n", "30", "tsne_n"),
])
def test_an_old_name_parses_as_the_new_and_says_so(capsys, command, old, new, value, dest):
    required = {"visualize": ["--class", "1", "--out", "o.png"], "report": ["--out", "o.html"],
                "neighbors": ["--out", "o.png"], "patches": ["--out", "o.png"],
                "embed": ["--out", "o.png"], "serve": []}[command]
    parser = build_parser()
    args_new = parser.parse_args([command, "m.safetensors", *required, new, value])
    capsys.readouterr()
    args_old = parser.parse_args([command, "m.safetensors", *required, old, value])
    err = capsys.readouterr().err
    assert getattr(args_old, dest) == getattr(args_new, dest) != parser.parse_args(
        [command, "m.safetensors", *required]).__dict__.get(dest)
    assert err.strip() == (f"convscope {command}: warning: {old} is now {new}; the old name "
                           "still works")


def test_an_old_name_checks_its_value_as_the_new_one_does():
    proc = call_cli("neighbors", "m.safetensors", "--queries", "0", check=2)
    assert "--n" in proc.stderr and "Traceback" not in proc.stderr


def test_lists_take_spaces_commas_or_both():
    parser = build_parser()
    base = ["report", "m.safetensors", "--out", "o.html"]
    spaced = parser.parse_args([*base, "--sections", "model", "training", "accuracy"])
    commas = parser.parse_args([*base, "--sections", "model,training,accuracy"])
    mixed = parser.parse_args([*base, "--sections", "model,", "training", ",accuracy"])
    assert spaced.sections == commas.sections == mixed.sections == ["model", "training",
                                                                     "accuracy"]
    channels = parser.parse_args(["visualize", "m", "--layer", "conv1", "--channel", "0,1", "2",
                                  "--out", "o.png"]).channel
    assert channels == [0, 1, 2]
    methods = parser.parse_args(["faithfulness", "m", "--methods", "occlusion,gradcam",
                                 "--out", "f.png"]).methods
    assert methods == ["occlusion", "gradcam"]


def test_a_bad_list_value_is_one_line_with_the_choices():
    proc = call_cli("report", "m.safetensors", "--out", "o.html", "--sections",
                    "model,nonsense", check=2)
    assert "argument --sections: invalid choice: 'nonsense' (choose from model," in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = call_cli("visualize", "m", "--layer", "c", "--channel", "0,x", "--out", "o.png",
                    check=2)
    assert "argument --channel:" in proc.stderr and "Traceback" not in proc.stderr


def test_a_required_flag_cannot_be_renamed():
    parser = argparse.ArgumentParser(prog="convscope demo")
    parser.add_argument("--new", required=True)
    with pytest.raises(ValueError, match="required"):
        renamed(parser, "--new", "--old")


def test_list_action_default_is_kept_when_not_given():
    parser = argparse.ArgumentParser(prog="convscope demo")
    parser.add_argument("--items", action=ListAction, allowed=["a", "b"], default=["a"])
    assert parser.parse_args([]).items == ["a"]
    assert parser.parse_args(["--items", "b,a"]).items == ["b", "a"]


def test_the_readme_uses_no_old_name():
    readme = (ROOT / "README.md").read_text()
    used = []
    for command, names in RENAMED.items():
        for line in readme.splitlines():
            if f"convscope {command} " not in line:
                continue
            used += [f"{command} {old}" for old in names
                     if re.search(rf"(?<![\w-]){re.escape(old)}(?![\w-])", line)]
    assert not used, f"README.md still shows old flag names: {sorted(set(used))}"


def test_doc_exists_and_is_linked_from_the_readme():
    assert DOC.exists()
    assert "docs/cli.md" in (ROOT / "README.md").read_text()
    assert Path(DOC).read_text().count("| `--") >= 90


# --------------------------------------------------------------------------- options declared once
def _jobs():
    """command -> its job's config (each field with an option is one of the command's flags)."""
    from convscope.inspect.attribution import ExplainConfig
    from convscope.inspect.challenges import ChallengesConfig
    from convscope.inspect.dream import DreamConfig
    from convscope.inspect.embedding import EmbedConfig
    from convscope.inspect.faithfulness import FaithfulnessConfig
    from convscope.inspect.filters import ActivationsConfig, FiltersConfig
    from convscope.inspect.neighbors import NeighborsConfig
    from convscope.inspect.patches import PatchesConfig
    from convscope.inspect.synthesis import VisualizeConfig
    from convscope.render.report import ReportConfig
    from convscope.render.server import ServeConfig
    from convscope.style.config import StyleConfig
    from convscope.train.config import TrainConfig

    return {"filters": FiltersConfig, "activations": ActivationsConfig,
            "neighbors": NeighborsConfig, "embed": EmbedConfig, "patches": PatchesConfig,
            "explain": ExplainConfig, "faithfulness": FaithfulnessConfig,
            "challenges": ChallengesConfig, "visualize": VisualizeConfig, "dream": DreamConfig,
            "style": StyleConfig, "train": TrainConfig, "report": ReportConfig,
            "serve": ServeConfig}


#: option fields a command leaves to the library (or takes another way), with why
NOT_FLAGS = {("faithfulness", f) for f in ("target", "channel", "position")}


def test_each_config_field_is_its_commands_flag_with_the_fields_default():
    from dataclasses import MISSING, fields

    from convscope.options import option_of

    commands = _commands()
    checked = 0
    for command, config in _jobs().items():
        actions = {a.dest: a for a in commands[command]._actions
                   if a.help is not argparse.SUPPRESS}
        for f in fields(config):
            opt = option_of(f)
            if opt is None:
                continue
            action = actions.get(f.name)
            assert action is not None, f"{command}: {f.name} has no flag"
            default = f.default if f.default is not MISSING else f.default_factory()
            assert action.default == default, (command, f.name, action.default, default)
            assert opt.help in action.help, (command, f.name)
            checked += 1
        for command2, field_name in NOT_FLAGS:
            assert command2 != command or field_name not in actions
    assert checked >= 100, checked


@pytest.mark.parametrize("command, extra", [
    ("filters", ["--out", "x.png"]), ("neighbors", ["--out", "x.png"]),
    ("embed", ["--out", "x.png"]), ("patches", ["--out", "x.png"]),
    ("dream", ["img.png", "--out", "x.png"]), ("challenges", ["--out", "d"]),
    ("report", ["--out", "x.html"]), ("serve", []),
])
def test_no_flags_given_builds_the_configs_own_defaults(command, extra):
    """The defaults live in the config only: parsing nothing gives exactly its default."""
    from convscope.cli.options import config_from

    config = _jobs()[command]
    args = build_parser().parse_args([command, "m.safetensors", *extra])
    assert config_from(config, args) == config()


def test_flags_come_back_as_the_config_fields():
    from convscope.cli.options import config_from
    from convscope.inspect.embedding import EmbedConfig
    from convscope.inspect.faithfulness import FaithfulnessConfig

    args = build_parser().parse_args(["embed", "m", "--out", "x.png", "--steps", "7",
                                      "--jobs", "-1", "--n", "all", "--method", "pca"])
    assert config_from(EmbedConfig, args) == EmbedConfig(iterations=7, n_jobs=-1, n=None,
                                                         method="pca")
    args = build_parser().parse_args(["faithfulness", "m", "--methods", "saliency,gradcam"])
    assert config_from(FaithfulnessConfig, args).methods == ("saliency", "gradcam")


def test_add_options_reads_every_kind_of_option():
    from dataclasses import dataclass

    from convscope.cli.options import add_options, config_from
    from convscope.options import option, positive_int

    @dataclass(frozen=True)
    class Job:
        count: int = option(3, "how many", type=positive_int, old=("--how-many",))
        names: tuple[str, ...] = option(("a",), "names", many=True, choices=lambda: ["a", "b"])
        norm: bool = option(True, "raw values", flag="--no-norm", switch=True)
        layout: bool | None = option(None, "a layout", switch="both")
        hidden: int = 5  # no option: the library's alone

    p = argparse.ArgumentParser(prog="convscope job")
    add_options(p, Job)
    help_text = p.format_help()
    assert "--count N" in help_text and "how many (default 3)" in help_text
    assert "--hidden" not in help_text and "--how-many" not in help_text
    assert config_from(Job, p.parse_args([])) == Job()
    got = config_from(Job, p.parse_args(["--how-many", "4", "--names", "b", "a", "--no-norm",
                                         "--no-layout"]))
    assert got == Job(count=4, names=("b", "a"), norm=False, layout=False)
    # a list flag given twice adds up (serve --allowed-host a --allowed-host b)
    assert config_from(Job, p.parse_args(["--names", "b", "--names", "a"])).names == ("b", "a")
    with pytest.raises(SystemExit):
        p.parse_args(["--names", "c"])
    with pytest.raises(SystemExit):
        p.parse_args(["--count", "0"])

def test_library_parameters_read_as_the_commands_flags():
    parser = argparse.ArgumentParser(prog="convscope demo")
    parser.add_argument("model", metavar="MODEL")
    parser.add_argument("--max-maps", type=int)
    parser.add_argument("--top-k", dest="k", type=int)
    parser.add_argument("--trust-code", action="store_true")
    parser.add_argument("--weights")
    renamed(parser, "--top-k", "--k")
    for library, cli in [
        ("`max_maps` must be at least 1, got 0.", "--max-maps must be at least 1, got 0."),
        ("`k=50` is more than 10; pass `k=10` or less.", "--top-k 50 is more than 10; pass "
                                                         "--top-k 10 or less."),
        ("pass `trust_code=True` to run it.", "pass --trust-code to run it."),
        ('pass `weights="DEFAULT"` or a file as `weights`.',
         "pass --weights DEFAULT or a file as --weights."),
        ("`model` is not a model file.", "MODEL is not a model file."),
        # a parameter this command has no flag for stays a parameter, and a command stays code
        ("`image_size` must be 8; run `convscope train --out DIR`.",
         "`image_size` must be 8; run `convscope train --out DIR`."),
    ]:
        assert name_flags(library, parser) == cli


def test_the_style_commands_notes_name_its_flags():
    from convscope.style.backbone import FALLBACK_NOTICE

    text = name_flags(FALLBACK_NOTICE, _commands()["style"])
    assert "pass --weights DEFAULT to download" in text and "or a file as --weights." in text
    assert "`" not in text
