"""convscope explain / faithfulness from the command line, like a user runs them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from convscope.render.figures import read_config
from tests.conftest import call_cli, run_cli, write_image_folder


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("digit_files")
    run_cli("samples", "digits", "--n", "2", "--out", out)
    return sorted(str(p) for p in out.glob("*.png"))


def colourful_fraction(path) -> float:
    """Share of pixels with a clear hue: the heatmaps, since the digits are grey."""
    a = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return float(((a.max(-1) - a.min(-1)) > 60).mean())


def test_explain_all_draws_every_method_and_saves_the_maps(digits_model, digit_files, tmp_path):
    out, npy = tmp_path / "maps.png", tmp_path / "maps.npy"
    proc = run_cli("explain", digits_model, *digit_files, "--method", "all", "--out", out,
                   "--npy", npy, "--quiet")
    assert proc.stdout.count("predicted") == 2 and "wrote" in proc.stdout
    maps = np.load(npy)
    assert maps.shape == (5, 2, 8, 8) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and (maps.reshape(5, -1).std(1) > 0).all()
    cfg = read_config(out)
    assert cfg["command"] == "explain" and set(cfg["methods"]) == {
        "occlusion", "saliency", "guided-backprop", "gradcam", "guided-gradcam"}
    assert cfg["methods"]["occlusion"]["window"] == 2        # resolved, not None
    assert cfg["methods"]["gradcam"]["layer"]
    # two rows of seven panels, heatmaps in colour over grey digits
    w, h = Image.open(out).size
    assert w > 3 * h and colourful_fraction(out) > 0.05


def test_explain_one_method_with_a_target(digits_model, digit_files, tmp_path):
    out, npy = tmp_path / "occ.png", tmp_path / "occ.npy"
    proc = run_cli("explain", digits_model, digit_files[0], "--method", "occlusion",
                   "--target", "3", "--window", "3", "--stride", "1", "--baseline", "blur",
                   "--out", out, "--npy", npy, "--quiet")
    assert "explaining 3" in proc.stdout
    maps = np.load(npy)
    assert maps.shape == (1, 8, 8) and 0 <= maps.min() and maps.max() <= 1  # probabilities
    cfg = read_config(out)["methods"]["occlusion"]
    assert (cfg["window"], cfg["stride"], cfg["baseline"], cfg["target"]) == (3, 1, "blur", "3")
    neuron = run_cli("explain", digits_model, digit_files[0], "--method", "guided-backprop",
                     "--layer", "conv1_1", "--channel", "2", "--out", tmp_path / "n.png",
                     "--quiet")
    assert "explaining conv1_1[2, " in neuron.stdout


def test_explain_and_visualize_take_class_names_in_any_case(tmp_path):
    import convscope

    root = write_image_folder(tmp_path / "pets", classes=("cat", "dog"), per_class=4,
                              size=(8, 8))
    convscope.train(f"folder:{root}", model="linear", epochs=1, out=str(tmp_path / "run"),
                    progress=False, verbose=False)
    model, image = tmp_path / "run" / "model.safetensors", root / "dog" / "000.png"
    proc = call_cli("explain", model, image, "--method", "saliency", "--target", "Cat",
                    "--out", tmp_path / "cat.png", "--quiet")
    assert "explaining cat" in proc.stdout
    call_cli("visualize", model, "--class", "CAT", "--steps", "2", "--out", tmp_path / "v.png")
    proc = call_cli("explain", model, image, "--target", "cta", "--out", tmp_path / "x.png",
                    check=2)
    assert "unknown target class 'cta' (did you mean 'cat'?)" in proc.stderr


@pytest.mark.parametrize("args,code,message", [
    (["--target", "dog"], 2, "unknown target class 'dog'"),
    (["--channel", "1"], 2, "needs --layer L with --channel C"),
    (["--method", "occlusion", "--window", "20"], 2, "larger than the 8x8 image"),
    (["--method", "gradcam", "--layer", "fc9"], 2, "unknown layer 'fc9'"),
])
def test_explain_errors_are_one_sentence(digits_model, digit_files, tmp_path, args, code,
                                         message):
    proc = run_cli("explain", digits_model, digit_files[0], "--out", tmp_path / "x.png",
                   "--quiet", *args, check=code)
    assert message in proc.stderr
    assert not (tmp_path / "x.png").exists()


def test_explain_missing_image(digits_model, tmp_path):
    proc = run_cli("explain", digits_model, tmp_path / "nope.png", "--out", tmp_path / "x.png",
                   check=1)
    assert "no such image file" in proc.stderr


def test_faithfulness_json_and_plot(digits_model, tmp_path):
    out = tmp_path / "faith.png"
    js = json.loads(run_cli("faithfulness", digits_model, "--n", "6", "--steps", "4",
                            "--methods", "saliency", "gradcam", "--out", out, "--json",
                            "--quiet").stdout)
    assert js["data"] == "digits" and js["n"] == 6 and len(js["fractions"]) == 5
    assert set(js["auc"]) == {"saliency", "gradcam", "random"}
    cfg = read_config(out)
    assert cfg["command"] == "faithfulness" and cfg["auc"] == js["auc"]
    assert colourful_fraction(out) > 0.002   # the coloured curves
    for curves in js["mean_curves"].values():
        # all pixels deleted / inserted: every method ends at the same two images
        assert len(curves["deletion"]) == 5
    assert js["mean_curves"]["saliency"]["insertion"][-1] == pytest.approx(
        js["mean_curves"]["random"]["insertion"][-1])
