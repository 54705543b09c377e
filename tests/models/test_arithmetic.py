"""The lecture's conv arithmetic: worked examples exactly, and torch as the oracle."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from convscope.errors import UsageError
from convscope.models.arithmetic import (
    DoesNotFit,
    Volume,
    conv_arithmetic,
    output_size,
    pool_arithmetic,
)
from tests.conftest import run_cli
from tests.conftest import run_main as cli


# ----------------------------------------------------------------- the lecture's examples
@pytest.mark.parametrize("stride,out", [(1, 5), (2, 3)])
def test_7x7_input_3x3_filter(stride, out):
    r = conv_arithmetic(Volume(7, 7, 1), filters=1, size=3, stride=stride)
    assert (r.output.width, r.output.height) == (out, out)


def test_7x7_stride_3_does_not_fit_and_shows_the_arithmetic():
    with pytest.raises(DoesNotFit, match=r"\(7 - 3\)/3 \+ 1 = 2\.33, not a whole number"):
        conv_arithmetic(Volume(7, 7, 1), filters=1, size=3, stride=3)


def test_pad_1_keeps_7x7():
    r = conv_arithmetic(Volume(7, 7, 1), filters=1, size=3, stride=1, pad=1)
    assert (r.output.width, r.output.height) == (7, 7)


def test_32x32x3_ten_5x5_filters():
    r = conv_arithmetic(Volume(32, 32, 3), filters=10, size=5, stride=1, pad=2)
    assert str(r.output) == "32x32x10"
    assert r.weights_per_filter == 5 * 5 * 3 and r.params_per_filter == 76
    assert r.params == 760 and r.weights == 750 and r.biases == 10
    text = r.explain()
    assert "5*5*3 + 1 = 76" in text and "760" in text and "(32 - 5 + 2*2)/1 + 1 = 32" in text


@pytest.mark.parametrize("f,p", [(3, 1), (5, 2), (7, 3)])
def test_same_padding_preserves_size(f, p):
    for n in (7, 32, 224):
        assert conv_arithmetic(Volume(n, n, 3), 4, f, 1, p).output == Volume(n, n, 4)
        assert conv_arithmetic(Volume(n, n, 3), 4, f, 1, "same").pad == (p, p)


def test_pooling_and_1x1():
    r = pool_arithmetic(Volume(224, 224, 64), size=2)
    assert str(r.output) == "112x112x64" and r.params == 0 and r.stride == (2, 2)
    one = conv_arithmetic(Volume(56, 56, 64), filters=32, size=1)
    assert str(one.output) == "56x56x32" and one.params_per_filter == 65
    assert "1x1 convolution mixes depth only" in one.explain()
    with pytest.raises(DoesNotFit, match=r"\(7 - 2\)/2 \+ 1 = 3\.5"):
        pool_arithmetic(Volume(7, 7, 3), size=2)


def test_errors_suggest_settings_that_fit():
    with pytest.raises(DoesNotFit, match="S=1 gives 5, S=2 gives 3, P=1 gives 3"):
        conv_arithmetic(Volume(7, 7, 1), filters=1, size=3, stride=3)
    with pytest.raises(DoesNotFit, match="filter is larger than the input"):
        conv_arithmetic(Volume(5, 5, 1), filters=1, size=7)
    with pytest.raises(DoesNotFit, match=r"'same' padding .* = 1\.5"):
        conv_arithmetic(Volume(8, 8, 1), filters=1, size=4, pad="same")
    with pytest.raises(UsageError, match="groups=3"):
        conv_arithmetic(Volume(8, 8, 4), filters=4, size=3, groups=3)


def test_non_strict_rounds_like_torch_and_says_so():
    r = conv_arithmetic(Volume(224, 224, 3), 64, 11, 4, 2, strict=False)  # AlexNet's conv1
    assert not r.fits and str(r.output) == "55x55x64"
    assert "= 55.25, which torch rounds down to 55" in r.axis_formula("W")


def test_volume_parse():
    assert Volume.parse("32x32x3") == Volume(32, 32, 3)
    assert Volume.parse("64x48", depth=1) == Volume(64, 48, 1)
    assert Volume.parse("28", depth=1) == Volume(28, 28, 1)
    for bad in ("32x", "axb", "0x3x3"):
        with pytest.raises(UsageError):
            Volume.parse(bad, depth=3)


# ----------------------------------------------------------------- torch as the oracle
conv_settings = st.fixed_dictionaries({
    "w": st.integers(1, 40), "h": st.integers(1, 40), "d": st.integers(1, 6),
    "k": st.integers(1, 6), "f": st.integers(1, 7), "s": st.integers(1, 4),
    "p": st.integers(0, 3), "dil": st.integers(1, 3), "bias": st.booleans(),
})


def _fits(n, f, s, p, d):
    span = n - (d * (f - 1) + 1) + 2 * p
    return span >= 0 and span % s == 0


@settings(max_examples=150, deadline=None)
@given(conv_settings)
def test_conv_formula_equals_torch(c):
    fits = _fits(c["w"], c["f"], c["s"], c["p"], c["dil"]) and _fits(
        c["h"], c["f"], c["s"], c["p"], c["dil"])
    inp = Volume(c["w"], c["h"], c["d"])
    if not fits:  # the lecture's rule rejects it; torch's rounding is still reproduced
        with pytest.raises(DoesNotFit):
            conv_arithmetic(inp, c["k"], c["f"], c["s"], c["p"], c["dil"], bias=c["bias"])
    span_ok = all(n + 2 * c["p"] >= c["dil"] * (c["f"] - 1) + 1 for n in (c["w"], c["h"]))
    if not span_ok:
        return
    r = conv_arithmetic(inp, c["k"], c["f"], c["s"], c["p"], c["dil"], bias=c["bias"],
                        strict=False)
    assert r.fits == fits
    layer = nn.Conv2d(c["d"], c["k"], c["f"], c["s"], c["p"], c["dil"], bias=c["bias"])
    with torch.no_grad():
        out = layer(torch.zeros(1, c["d"], c["h"], c["w"]))
    assert (r.output.depth, r.output.height, r.output.width) == tuple(out.shape[1:])
    assert r.params == sum(p.numel() for p in layer.parameters())


pool_settings = st.fixed_dictionaries({
    "w": st.integers(1, 40), "h": st.integers(1, 40), "f": st.integers(1, 6),
    "s": st.integers(1, 4), "p": st.integers(0, 3), "ceil": st.booleans(),
})


@settings(max_examples=150, deadline=None)
@given(pool_settings)
def test_pool_formula_equals_torch(c):
    if c["p"] > c["f"] // 2 or min(c["w"], c["h"]) + 2 * c["p"] < c["f"]:
        return  # torch refuses these too
    inp = Volume(c["w"], c["h"], 2)
    fits = _fits(c["w"], c["f"], c["s"], c["p"], 1) and _fits(c["h"], c["f"], c["s"], c["p"], 1)
    if fits:
        assert pool_arithmetic(inp, c["f"], c["s"], c["p"]).fits
    else:
        with pytest.raises(DoesNotFit):
            pool_arithmetic(inp, c["f"], c["s"], c["p"])
    r = pool_arithmetic(inp, c["f"], c["s"], c["p"], ceil_mode=c["ceil"], strict=False)
    out = nn.MaxPool2d(c["f"], c["s"], c["p"], ceil_mode=c["ceil"])(torch.zeros(1, 2, c["h"], c["w"]))
    assert (r.output.depth, r.output.height, r.output.width) == tuple(out.shape[1:])
    assert r.params == 0


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 60), st.integers(1, 9), st.integers(1, 5), st.integers(0, 4))
def test_output_size_is_torchs_floor(n, f, s, p):
    if n + 2 * p < f:
        assert output_size(n, f, s, p) == 0
        return
    assert output_size(n, f, s, p) == (n - f + 2 * p) // s + 1


# ----------------------------------------------------------------- the command
def test_cli_conv_prints_the_worked_example(capsys):
    code, out, _ = cli(capsys, "conv", "--input", "32x32x3", "--filters", "10", "--size", "5",
                       "--stride", "1", "--pad", "2")
    assert code == 0 and "output volume   32x32x10" in out
    assert "5*5*3 + 1 = 76" in out and "760" in out


def test_cli_conv_no_fit_is_one_sentence_exit_1():
    proc = run_cli("conv", "--input", "7x7x3", "--filters", "1", "--size", "3", "--stride", "3",
                   check=1)
    assert "(7 - 3)/3 + 1 = 2.33" in proc.stderr and proc.stderr.count("\n") == 1


def test_cli_conv_input_without_depth_is_one_channel(capsys):
    code, _, err = cli(capsys, "conv", "--input", "7x7", "--filters", "1", "--size", "3",
                       "--stride", "3")
    assert code == 1 and "(7 - 3)/3 + 1 = 2.33" in err
    code, out, _ = cli(capsys, "conv", "--input", "7x7", "--filters", "2", "--size", "3",
                       "--json")
    data = json.loads(out)
    assert data["input"]["depth"] == 1 and data["params_per_filter"] == 3 * 3 * 1 + 1


def test_cli_conv_pool_and_json(capsys):
    code, out, _ = cli(capsys, "conv", "--input", "32x32x64", "--pool", "--size", "2", "--json")
    data = json.loads(out)
    assert data["output"] == {"width": 16, "height": 16, "depth": 64} and data["params"] == 0
    assert data["config"]["pool"] == "max"
    code, _, err = cli(capsys, "conv", "--input", "32x32x3", "--size", "3")
    assert code == 2 and "needs --filters K" in err
    code, _, err = cli(capsys, "conv", "--input", "7x7x3", "--size", "3", "--pool", "--pad", "same")
    assert code == 2 and "whole-number --pad" in err


def test_cli_conv_json_on_a_setting_that_does_not_fit_is_a_json_error(capsys):
    """--json promises JSON: a setting that doesn't fit gives an object with the error
    (exit 1, as without --json), not the plain-text sentence on stdout."""
    code, out, err = cli(capsys, "conv", "--input", "7x7x3", "--filters", "1", "--size", "3",
                         "--stride", "3", "--json")
    data = json.loads(out)
    assert code == 1 and data["fits"] is False
    assert "(7 - 3)/3 + 1 = 2.33" in data["error"] and "S=1 gives 5" in data["error"]
    assert data["config"]["stride"] == 3 and err.count("\n") == 1
    # a usage error under --json: an object too, exit 2
    code, out, _ = cli(capsys, "conv", "--input", "7x7x3", "--size", "3", "--json")
    assert code == 2 and "needs --filters K" in json.loads(out)["error"]


@pytest.mark.parametrize("filters, bias_text, head", [
    (1, "(9 weights + 1 bias)", "K=1 filter of"),
    (2, "(18 weights + 2 biases)", "K=2 filters of"),
])
def test_conv_counts_are_in_the_right_number(filters, bias_text, head):
    text = conv_arithmetic(Volume(7, 7, 1), filters=filters, size=3).explain()
    assert head in text and "(9 weights + 1 bias)" in text  # per filter
    assert f"= {10 * filters} {bias_text}" in text and "1 biases" not in text
    no_bias = conv_arithmetic(Volume(7, 7, 1), filters=1, size=1, bias=False).explain()
    assert "(1 weight)" in no_bias and "bias" not in no_bias.split("params total")[1]
