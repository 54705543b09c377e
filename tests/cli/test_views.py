"""convscope layers / filters / activations / neighbors / embed / patches from the command
line: each writes a PNG of the size its layout gives, with the pixels it should have."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from convscope.render.figures import read_config
from convscope.render.views import MARGIN, MIN_CAPTION, OTHER, OUTSIDE, SAME, shown_queries
from tests.conftest import call_cli, run_cli


def png(path) -> np.ndarray:
    a = np.asarray(Image.open(path).convert("RGB"))
    assert a.size and a.std() > 5, "blank picture"
    return a


def framed_width(body: int) -> int:
    """Width of a picture whose content is ``body`` px wide (caption at least as wide)."""
    return max(body, MIN_CAPTION) + 2 * MARGIN


def count(a: np.ndarray, colour) -> int:
    return int((a == np.asarray(colour, dtype=np.uint8)).all(-1).sum())


def find(a: np.ndarray, block: np.ndarray, left: int) -> bool:
    """Whether ``block`` appears in ``a`` with its left edge at column ``left``."""
    h, w = block.shape[:2]
    return any(np.array_equal(a[y:y + h, left:left + w], block) for y in range(len(a) - h + 1))


@pytest.fixture(scope="module")
def digit_png(tmp_path_factory):
    out = tmp_path_factory.mktemp("digit")
    run_cli("samples", "digits", "--n", "1", "--out", out)
    return next(out.glob("*.png"))


def test_layers_lists_names_shapes_and_defaults(digits_model):
    text = call_cli("layers", digits_model).stdout
    assert "conv1_1" in text and "8x8x8" in text and "filters" in text
    js = json.loads(call_cli("layers", digits_model, "--json").stdout)
    names = [r["name"] for r in js["layers"]]
    assert names[:3] == ["conv1_1", "bn1_1", "relu1_1"] and js["input"] == "8x8x1"
    assert js["defaults"]["neighbors"] == "fc1_relu"
    assert js["layers"][names.index("pool2")]["output_shape"] == [16, 2, 2]


def test_filters_gray_and_colour(digits_model, tmp_path):
    out = tmp_path / "f.png"
    call_cli("filters", digits_model, "--out", out)
    a = png(out)
    # 8 filters of 1x3x3 at 13 px a weight, in 3 columns of 39 px tiles 6 px apart
    assert a.shape[1] == framed_width(3 * 39 + 2 * 6)
    assert (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()   # all gray
    cfg = read_config(out)
    assert cfg["config"]["layer"] == "conv1_1" and cfg["config"]["mode"] == "gray"
    out = tmp_path / "rgb.png"
    proc = call_cli("filters", "resnet18", "--out", out)
    assert "64 filters of 3x7x7" in proc.stdout
    a = png(out)
    assert a.shape[1] == framed_width(8 * 42 + 7 * 2)             # 8x8 tiles of 7 x 6 px
    assert (a.max(-1).astype(int) - a.min(-1) > 40).mean() > 0.3     # colour tiles


def test_activations_show_the_input_and_convert_channels(digits_model, digit_png, tmp_path):
    out = tmp_path / "a.png"
    call_cli("activations", digits_model, digit_png, "--out", out)
    a = png(out)
    # 8 maps of 8x8 at 6x in 3 columns (148 px); the input beside them at 18x (144 px)
    assert a.shape[1] == framed_width(144 + 16 + 148)
    digit = np.asarray(Image.open(digit_png).convert("RGB"))
    assert find(a, np.repeat(np.repeat(digit, 18, 0), 18, 1), MARGIN)
    rgb = tmp_path / "rgb.png"
    Image.open(digit_png).convert("RGB").save(rgb)
    proc = call_cli("activations", digits_model, rgb, "--out", tmp_path / "b.png")
    assert "converted to the model's 1 channel" in proc.stdout
    assert np.array_equal(png(tmp_path / "b.png"), a)
    assert read_config(out)["config"]["layer"] == "relu1_1"


def test_neighbors_json_and_borders(digits_model, tmp_path):
    out = tmp_path / "nn.png"
    proc = call_cli("neighbors", digits_model, "--top-k", "4", "--n", "40", "--show", "6",
                    "--out", out, "--json", "--quiet")
    js = json.loads(proc.stdout)
    assert js["data"] == "digits" and len(js["queries"]) == 40
    q = js["queries"][0]
    assert len(q["feature"]["indices"]) == 4 and q["pixel"]["distances"] == sorted(
        q["pixel"]["distances"])
    a = png(out)
    # query, then 4 + 4 framed 48 px thumbnails: 52 px cells, 2 px apart, panels 14 px apart
    panel = 4 * 52 + 3 * 2
    assert a.shape[1] == framed_width(52 + 14 + panel + 14 + panel)
    shown = [js["queries"][i] for i in shown_queries(40, 6)]
    same = sum(label == s["label"] for s in shown for sp in ("feature", "pixel")
               for label in s[sp]["labels"])
    ring = 52 * 52 - 48 * 48                                 # pixels of one border
    assert count(a, SAME) == ring * same and count(a, OTHER) == ring * (6 * 8 - same)
    agree = js["agreement"]
    for space in ("feature", "pixel"):
        labels = [(x, s["label"]) for s in js["queries"] for x in s[space]["labels"]]
        assert agree[space] == pytest.approx(np.mean([x == y for x, y in labels]))
    assert read_config(out)["agreement"] == agree


def test_neighbors_errors(digits_model, tmp_path):
    out = tmp_path / "x.png"
    proc = call_cli("neighbors", digits_model, "--top-k", "5000", "--out", out, "--quiet", check=2)
    assert "--top-k 5000 is more than the 1,437 training images" in proc.stderr
    proc = call_cli("neighbors", digits_model, "--layer", "fc9", "--out", out, "--quiet",
                    check=2)
    assert "unknown layer 'fc9'" in proc.stderr and "conv1_1, bn1_1" in proc.stderr
    assert not out.exists()


def test_embed_pca_outputs(digits_model, tmp_path):
    out, npy, tb = tmp_path / "e.png", tmp_path / "e.npy", tmp_path / "tb"
    proc = call_cli("embed", digits_model, "--method", "pca", "--n", "100", "--out", out,
                    "--npy", npy, "--tensorboard", tb, "--json", "--quiet")
    js = json.loads(proc.stdout)
    coords = np.load(npy)
    assert coords.shape == (100, 2) and np.allclose(coords, js["coords"], atol=1e-4)
    assert js["config"]["grid"] == 10 and len(js["labels"]) == 100
    assert (tb / "projector_config.pbtxt").exists()
    a = png(out)
    # a 480 px scatter beside a 10x10 map of 16 px thumbnails
    assert a.shape[1] == framed_width(480 + 12 + 160)
    scatter = a[:, MARGIN:MARGIN + 480]
    import matplotlib

    tab10 = (np.asarray(matplotlib.colormaps["tab10"].colors) * 255).round()
    near = [(np.abs(scatter.astype(int) - c).max(-1) <= 2).sum() for c in tab10]
    classes = len(set(js["labels"]))
    assert all(near[:classes]) and sum(near) > 1000            # 100 points, every class
    bottom = len(a) - MARGIN                                   # the map, centred beside it
    thumbs = a[bottom - 320:bottom - 160, -MARGIN - 160:-MARGIN]
    assert (thumbs.sum(-1) < 100).mean() > 0.3                 # dark digits fill the map


def test_embed_json_has_the_trustworthiness_the_text_prints(digits_model, tmp_path):
    """Issue 18 defect 3: --json returned before the trustworthiness was computed."""
    opts = ("embed", digits_model, "--method", "pca", "--n", "100", "--quiet")
    js = json.loads(call_cli(*opts, "--out", tmp_path / "a.png", "--json").stdout)
    text = call_cli(*opts, "--out", tmp_path / "b.png").stdout
    printed = float(text.split("trustworthiness (5 neighbours)")[1].split()[0])
    assert js["trustworthiness_k"] == 5 and 0.5 < js["trustworthiness"] <= 1
    assert round(js["trustworthiness"], 3) == printed


def test_embed_of_too_few_images_leaves_the_trustworthiness_out(digits_model, tmp_path):
    """scikit-learn measures it only for more than 2k points; 8 images used to traceback."""
    opts = ("embed", digits_model, "--method", "pca", "--n", "8", "--quiet")
    assert "trustworthiness" not in call_cli(*opts, "--out", tmp_path / "a.png").stdout
    js = json.loads(call_cli(*opts, "--out", tmp_path / "b.png", "--json").stdout)
    assert js["trustworthiness"] is None and len(js["coords"]) == 8


def test_embed_tsne_text(digits_model, tmp_path):
    proc = call_cli("embed", digits_model, "--n", "60", "--steps", "50", "--out",
                    tmp_path / "t.png", "--quiet")
    assert "tsne of 60 images of digits (test images) at fc1_relu" in proc.stdout
    assert "trustworthiness (5 neighbours)" in proc.stdout
    assert read_config(tmp_path / "t.png")["config"]["method"] == "tsne"


def test_patches_rows_and_shaded_borders(digits_model, tmp_path):
    out = tmp_path / "p.png"
    proc = call_cli("patches", digits_model, "--layer", "conv2_2", "--channels", "0-2,5",
                    "--top-k", "4", "--out", out, "--json", "--quiet")
    js = json.loads(proc.stdout)
    assert [c["channel"] for c in js["channels"]] == [0, 1, 2, 5]
    hits = [h for c in js["channels"] for h in c["hits"]]
    assert len(hits) == 16 and js["receptive_field"]["size"] == [14, 14]
    for c in js["channels"]:
        acts = [h["activation"] for h in c["hits"]]
        assert acts == sorted(acts, reverse=True)
    a = png(out)
    # the 14 px fields clip to 8x8 canvases drawn at 8x: 66 px framed tiles after a 64 px label
    assert a.shape[1] == framed_width(64 + 2 + 4 * 66 + 3 * 2)
    assert len(a) > 4 * 66
    shaded = sum(64 - (h["box"][2] - h["box"][0]) * (h["box"][3] - h["box"][1]) for h in hits)
    assert count(a, OUTSIDE) == 64 * shaded


@pytest.mark.parametrize("args,message", [
    (["--channels", "99"], "--channels 99 is out of range: layer conv2_2 has 16 channels"),
    (["--channels", "x"], "argument --channels: takes numbers and ranges"),
])
def test_patches_errors(digits_model, tmp_path, args, message):
    proc = call_cli("patches", digits_model, "--layer", "conv2_2", "--out", tmp_path / "p.png",
                    "--quiet", *args, check=2)
    assert message in proc.stderr
