"""Property-based fuzzing (hypothesis): only convscope's own errors may escape, quickly.

The number of examples per target is fixed (see FUZZ_EXAMPLES) and the search is
derandomised, so CI runs the same cases every time; README.md states the totals.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import convscope
from convscope.errors import ConvscopeError, ImageError
from convscope.images import open_image
from tests.conftest import call_cli

#: examples per fuzz target; README.md quotes these numbers
FUZZ_EXAMPLES = {"image_bytes": 300, "image_mutations": 400, "model_file": 150, "cli": 150,
                 "spec_text": 200, "spec_models": 300}

FUZZ = dict(derandomize=True, database=None, deadline=3000,
            suppress_health_check=[HealthCheck.function_scoped_fixture,
                                   HealthCheck.too_slow])


def _encodings() -> list[bytes]:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (12, 10, 3), dtype=np.uint8))
    out = []
    for fmt, img in [("PNG", rgb), ("JPEG", rgb), ("GIF", rgb.convert("P")), ("BMP", rgb),
                     ("TIFF", rgb), ("WEBP", rgb), ("PPM", rgb), ("PNG", rgb.convert("LA")),
                     ("PNG", Image.fromarray(np.full((5, 5), 4000, np.uint16)))]:
        buf = io.BytesIO()
        img.save(buf, fmt)
        out.append(buf.getvalue())
    return out


SEEDS = _encodings()


def decode_or_image_error(data: bytes) -> None:
    try:
        img = open_image(data)
    except ImageError as exc:
        assert str(exc)  # one sentence, never empty
        return
    assert img.mode in ("L", "RGB")


@settings(max_examples=FUZZ_EXAMPLES["image_bytes"], **FUZZ)
@given(st.binary(max_size=2048))
def test_random_bytes_never_crash_the_decoder(data):
    decode_or_image_error(data)


@st.composite
def mutated_image(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "zero_run"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "zero_run":
            data[pos:pos + draw(st.integers(1, 32))] = b"\x00" * 8
    return bytes(data)


@settings(max_examples=FUZZ_EXAMPLES["image_mutations"], **FUZZ)
@given(mutated_image())
def test_mutated_images_give_an_image_or_an_image_error(data):
    decode_or_image_error(data)


@pytest.fixture(scope="module")
def tiny_model_bytes(tmp_path_factory) -> bytes:
    out = tmp_path_factory.mktemp("tiny")
    convscope.train("fake:size=4,channels=1,classes=2,n=8,test=4", model="linear", epochs=1,
                    out=str(out), progress=False, verbose=False)
    return (out / "model.safetensors").read_bytes()


@settings(max_examples=FUZZ_EXAMPLES["model_file"], **FUZZ)
@given(data=st.data())
def test_mutated_model_files_load_or_fail_cleanly(tiny_model_bytes, tmp_path_factory, data):
    raw = bytearray(tiny_model_bytes)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        action = data.draw(st.sampled_from(["flip", "truncate", "digit"]))
        if action == "flip":
            raw[pos] ^= data.draw(st.integers(1, 255))
        elif action == "truncate":
            del raw[pos:]
            if not raw:
                break
        else:  # change a digit inside the JSON header, e.g. an offset or a shape
            header_end = 8 + int.from_bytes(tiny_model_bytes[:8], "little")
            digits = [i for i in range(8, min(header_end, len(raw))) if chr(raw[i]).isdigit()]
            if digits:
                raw[data.draw(st.sampled_from(digits))] = ord(str(data.draw(st.integers(0, 9))))
    path = tmp_path_factory.mktemp("mut") / "model.safetensors"
    path.write_bytes(bytes(raw))
    try:
        clf = convscope.load(path)
    except ConvscopeError as exc:
        assert str(exc)
        return
    clf.predict(np.zeros((1, 4, 4), np.uint8))  # whatever loaded must also run


COMMANDS = ["train", "evaluate", "predict", "datasets", "models", "info", "samples"]
FLAGS = ["--data", "--model", "--epochs", "--batch-size", "--lr", "--top-k", "--json",
         "--optimizer", "--augment", "--device", "--out", "--image-size", "--seed", "--n",
         "--resume", "--weights", "--schedule", "--help"]
VALUES = ["digits", "fake:size=4", "fake:bogus", "folder:/nonexistent", "imagenet", "mnist5k",
          "convnet", "convnet:n=0", "resnet:depth=7", "mlp:hidden=-1", "0", "-3", "1e999",
          "nan", "abc", "", "sgd", "adamw", "cpu", "cuda", "5", "flip", "/dev/null",
          "../../etc/passwd", "x.png"]


@settings(max_examples=FUZZ_EXAMPLES["cli"], **{**FUZZ, "deadline": None})
@given(st.lists(st.sampled_from(COMMANDS + FLAGS + VALUES), max_size=7))
def test_cli_arguments_never_traceback(monkeypatch, tmp_path_factory, argv):
    from convscope.train import loop

    def no_training(self):
        raise ConvscopeError("(fuzz) training reached")

    monkeypatch.setattr(loop.Trainer, "run", no_training)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
    proc = call_cli(*argv, check=None)  # asserts no traceback
    assert proc.returncode in (0, 1, 2), (argv, proc.stderr)
    if proc.returncode:
        assert proc.stderr.strip(), argv



SPEC_NUMBERS = st.sampled_from(["2", "3", "1", "5", "2", "3", "7", "16", "0", "99999", "-1", "x",
                                ""])
SPEC_MODS = st.lists(st.sampled_from(["/S", "/P", "/D"]).flatmap(
    lambda m: SPEC_NUMBERS.map(lambda n: m + n)) | st.just("/Psame"), max_size=1).map("".join)


@st.composite
def spec_text(draw, depth: int = 0) -> str:
    """Strings near the spec grammar: layers with numbers and modifiers (sometimes bad ones),
    groups and repetitions, and now and then a stray token."""
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["conv", "pool", "avgpool", "gap", "fc", "relu", "bn",
                                     "dropout", "softmax", "group"] if depth < 2 else
                                    ["conv", "pool", "relu", "fc"]))
        if kind == "conv":
            part = f"CONV{draw(SPEC_NUMBERS)}-{draw(SPEC_NUMBERS)}{draw(SPEC_MODS)}"
        elif kind in ("pool", "avgpool"):
            part = f"{kind.upper()}{draw(SPEC_NUMBERS)}{draw(SPEC_MODS)}"
        elif kind == "fc":
            part = "FC" + draw(st.sampled_from(["", "8", "0"]))
        elif kind == "dropout":
            part = "DROPOUT" + draw(st.sampled_from(["", "0.3", "1.5"]))
        elif kind == "group":
            open_, close = draw(st.sampled_from(["()", "[]", "()", "[]", "(]"]))
            part = open_ + draw(spec_text(depth + 1)) + close
        else:
            part = kind.upper()
        if draw(st.integers(0, 3)) == 0:
            part += "*" + draw(st.sampled_from(["2", "3", "1", "0", "x"]))
        parts.append(part)
    text = "-".join(parts)
    if depth == 0:
        text += draw(st.sampled_from(["-FC", "-FC", "-FC", "-FC-SOFTMAX", "", "--FC"]))
    return text

SPEC_TOKENS = ["CONV", "POOL", "MAXPOOL", "AVGPOOL", "GAP", "FC", "RELU", "BN", "DROPOUT",
               "SOFTMAX", "conv", "-", "-", "-", "*", "(", ")", "[", "]", "/S", "/P", "/D",
               "/Psame", " ", "0", "1", "2", "3", "5", "8", "0.5", "-1", "x", "1e3", "99999"]


@settings(max_examples=FUZZ_EXAMPLES["spec_text"], **FUZZ)
@given(st.text(max_size=60))
def test_spec_parser_on_arbitrary_text(text):
    from convscope.models.spec import parse_spec

    try:
        parse_spec(text)
    except ConvscopeError as exc:
        assert str(exc)


@settings(max_examples=FUZZ_EXAMPLES["spec_models"], **FUZZ)
@given(st.one_of(spec_text(), st.lists(st.sampled_from(SPEC_TOKENS), min_size=1,
                                       max_size=14).map("".join)))
def test_spec_models_build_and_run_or_say_why(text):
    """Specs near the grammar: a parse error, a "doesn't fit" error, or a model that maps a
    12x12x3 batch to 4 class scores."""
    import torch

    from convscope.models import ModelInput
    from convscope.models.spec import build_spec, parse_spec

    try:
        spec = parse_spec(text)
        if any(n > 64 for layer in spec.layers
               for n in (layer.size, layer.filters, layer.units or 0, layer.pad, layer.stride,
                         layer.dilation)):
            return  # parsed; too large to build in a fuzz budget
        net = build_spec(spec, ModelInput(3, 4, (12, 12)))
    except ConvscopeError as exc:
        assert str(exc)
        return
    with torch.no_grad():
        assert net.eval()(torch.zeros(2, 3, 12, 12)).shape == (2, 4), text


# ------------------------------------------------ every numeric flag of every command
#: fed to every numeric flag (issue 20, finding 11); README.md quotes the number of cases
NUMERIC_VALUES = ("nan", "inf", "-inf", "-1", "0", "12345678901234567890", "1e309", "abc")


def _is_numeric(action) -> bool:
    """Whether an option parses numbers: int/float, or a type that turns "1", "0.5" or
    "1,1" into a number or a sequence of numbers (counts, seeds, Y,X, W1,W2, ...). A list
    flag (cli.options.ListAction) converts each value with its ``item``; a renamed flag's
    hidden old name is the same option and is not counted twice."""
    import argparse

    if action.help is argparse.SUPPRESS:
        return False
    kind = getattr(action, "item", None) if action.type is None else action.type
    if kind in (int, float):
        return True
    if kind is None or not callable(kind) or not action.option_strings:
        return False
    for probe in ("1", "0.5", "1,1"):
        try:
            value = kind(probe)
        except Exception:  # noqa: BLE001 - the probe only asks what the type returns
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        if values and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                          for v in values):
            return True
    return False


def _numeric_cases() -> list[tuple[str, str]]:
    import argparse

    from convscope.cli import build_parser

    sub = next(a for a in build_parser()._actions
               if isinstance(a, argparse._SubParsersAction))
    return [(name, action.option_strings[-1 if action.option_strings[0].startswith("--")
                                          else 0])
            for name, parser in sub.choices.items() for action in parser._actions
            if _is_numeric(action)]


def _base_argv(command: str, flag: str, tmp) -> list[str]:
    """The command's required arguments, chosen to stop cheaply once parsing succeeds: a
    model file that does not exist, images that do not exist, training stopped before the
    first step (the test patches the trainer)."""
    import argparse

    from convscope.cli import build_parser

    sub = next(a for a in build_parser()._actions
               if isinstance(a, argparse._SubParsersAction))
    parser = sub.choices[command]
    given = {"model": [str(tmp / "missing.safetensors")],
             "images": [str(tmp / "missing1.png"), str(tmp / "missing2.png")],
             "image": [str(tmp / "missing.png")], "name": ["no-such-dataset"],
             "input": ["7x7x3"], "size": ["3"]}
    positional, options = [], []
    for action in parser._actions:
        if flag in action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        if not action.option_strings:
            positional += given.get(action.dest, ["1"])
        elif action.required:
            if action.dest == "out":
                for name in ("o.png", "o.html", "odir"):
                    try:
                        value = (action.type or str)(str(tmp / name))
                        break
                    except argparse.ArgumentTypeError:
                        continue
            else:
                value = given.get(action.dest, [action.choices[0] if action.choices else "1"])[0]
            options += [action.option_strings[0], str(value)]
    for group in parser._mutually_exclusive_groups:  # e.g. visualize's --class | --layer
        if group.required and not any(flag in a.option_strings for a in group._group_actions):
            options += [group._group_actions[0].option_strings[0], "0"]
    if command == "train":
        options += ["--data", "digits", "--out", str(tmp / "run")]
    return [command, *positional, *options]


NUMERIC_CASES = [(c, f, v) for c, f in _numeric_cases() for v in NUMERIC_VALUES]


def _int_flags() -> dict[str, set[str]]:
    """command -> its flags that take whole numbers only (20 digits overflow int64)."""
    import argparse

    from convscope.cli import build_parser

    sub = next(a for a in build_parser()._actions
               if isinstance(a, argparse._SubParsersAction))
    out: dict[str, set[str]] = {}
    for name, parser in sub.choices.items():
        out[name] = set()
        for action in parser._actions:
            if _is_numeric(action):
                try:
                    action.type("0.5")
                except Exception:  # noqa: BLE001 - refuses fractions: a whole-number flag
                    out[name].update(action.option_strings)
    return out


INT_FLAGS = _int_flags()


def test_every_numeric_flag_refuses_bad_numbers_without_a_traceback(monkeypatch, tmp_path):
    """nan, inf, -1, 0, a 20-digit number, 1e309 and abc to every numeric option of every
    command: exit status 0, 1 or 2 with a message, never a traceback."""
    import time

    from convscope.train import loop

    def no_training(self):
        raise ConvscopeError("(fuzz) training reached")

    import convscope.cli

    monkeypatch.setattr(loop.Trainer, "run", no_training)
    parser = convscope.cli.build_parser()  # built once: argparse parsers are reusable
    monkeypatch.setattr(convscope.cli, "build_parser", lambda: parser)
    monkeypatch.chdir(tmp_path)
    assert len(NUMERIC_CASES) >= 8 * 100  # every command's flags were found
    start, failures = time.perf_counter(), []
    for command, flag, value in NUMERIC_CASES:
        argv = [*_base_argv(command, flag, tmp_path), f"{flag}={value}"]
        proc = call_cli(*argv, check=None)
        if proc.returncode not in (0, 1, 2) or "Traceback" in proc.stderr or (
                proc.returncode and not proc.stderr.strip()):
            failures.append(f"{command} {flag}={value}: {proc.returncode} {proc.stderr[-200:]}")
        never = {"nan", "inf", "-inf", "1e309", "abc"} | ({"12345678901234567890"}
                                                          if flag in INT_FLAGS[command] else set())
        if value in never and proc.returncode != 2:  # argparse refuses them before any work
            failures.append(f"{command} {flag}={value}: accepted ({proc.returncode})")
    assert not failures, "\n".join(failures)
    assert time.perf_counter() - start < 120
