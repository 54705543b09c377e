"""`convscope visualize` and `convscope dream` as a user meets them; class images on a
trained MNIST model reach top-1 for every class."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import convscope
from convscope.inspect.synthesis import VisualizeConfig, class_images
from convscope.render.figures import read_config
from tests.conftest import run_cli


def test_every_mnist_class_becomes_top1_with_the_default_recipe(mnist_model):
    clf = convscope.load(mnist_model)
    res = class_images(clf, clf.classes, progress=False)
    proba = clf.predict_proba(res.uint8())  # the 8-bit images a PNG holds
    assert list(proba.argmax(1)) == list(range(10))
    assert proba[np.arange(10), np.arange(10)].min() > 0.9, proba.diagonal()
    # grayscale's default (mahendran): S_c alone, from the mean image, which already reads
    # as a "1"; the score rises for every digit (by 2.5 on average here)
    assert res.config["preset"] == "mahendran"
    rise = res.objective[-1] - res.objective[0]
    assert (rise > 0).all() and rise.mean() > 1, rise
    # a real picture: strokes on a background, not flat and not saturated noise
    img = res.uint8().float() / 255
    assert 0.05 < float(img.std()) and float((img > 0.99).float().mean()) < 0.5


def test_visualize_one_class_writes_the_image_with_its_config(tmp_path, digits_model):
    out = tmp_path / "seven.png"
    proc = run_cli("visualize", digits_model, "--class", "7", "--steps", "30", "--out", out,
                   "--json", "--quiet")
    info = json.loads(proc.stdout)
    img = Image.open(out)
    assert img.size == (8, 8) and img.mode == "L"  # the model's own size and channels
    # not flat; faint after 30 steps, since grayscale's default (mahendran) starts from the
    # mean image without noise and takes steps of 0.02 (std 3.4 grey levels here)
    assert np.asarray(img).std() > 1
    cfg = read_config(out)
    assert cfg["job"] == "visualize" and cfg["targets"] == ["7"] and cfg["steps"] == 30
    assert cfg["preset"] == "mahendran" and cfg["lr"] is not None  # grayscale's default
    row = info["images"][0]
    assert row["target"] == "7" and row["objective_end"] > row["objective_start"]
    # the printed probability is the model's on the written file
    clf = convscope.load(digits_model)
    assert clf.predict_proba(str(out))[0, 7] == pytest.approx(row["probability"], abs=1e-5)
    # same seed, same file; the API gives the same pixels
    run_cli("visualize", digits_model, "--class", "7", "--steps", "30", "--out",
            tmp_path / "again.png", "--quiet")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "again.png")), np.asarray(img))
    api = class_images(clf, ["7"], VisualizeConfig(steps=30), progress=False).uint8()[0, 0]
    assert np.array_equal(api.numpy(), np.asarray(img))


def test_visualize_grid_presets_channels_and_zoom(tmp_path, digits_model):
    grid = tmp_path / "grid.png"
    text = run_cli("visualize", digits_model, "--class", "all", "--recipe", "simonyan",
                   "--steps", "10", "--out", grid, "--quiet").stdout
    assert text.count("p=") == 10 and "wrote" in text
    arr = np.asarray(Image.open(grid).convert("L"))
    assert arr.shape[0] > 150 and arr.shape[1] > 500 and arr.std() > 20
    assert read_config(grid)["l2"] == 3.0  # simonyan's lambda
    # blur needs pixels: fine on a grayscale model, whose default (mahendran) has them
    run_cli("visualize", digits_model, "--class", "1", "--blur", "1", "--steps", "3", "--out",
            tmp_path / "blur.png", "--quiet")
    assert read_config(tmp_path / "blur.png")["blur_sigma"] == 1.0

    out = tmp_path / "ch.png"
    run_cli("visualize", digits_model, "--layer", "conv1_1", "--channel", "0", "--neuron",
            "3,4", "--recipe", "fourier", "--steps", "5", "--zoom", "4", "--out", out, "--quiet")
    assert Image.open(out).size == (32, 32)
    assert read_config(out)["targets"] == ["conv1_1:0@3,4"]
    run_cli("visualize", digits_model, "--layer", "fc1", "--channel", "0", "1", "--steps", "5",
            "--out", tmp_path / "fc.png", "--quiet")


@pytest.fixture(scope="module")
def digits_judge(tmp_path_factory):
    """A second digits model trained apart from ``digits_model``: other seed, other network."""
    out = tmp_path_factory.mktemp("digits_judge")
    convscope.train("digits", model="mlp", seed=1, epochs=2, out=str(out), progress=False,
                    verbose=False)
    return out / "model.safetensors"


def test_visualize_judge_prints_its_agreement_beside_p(tmp_path, digits_model, digits_judge,
                                                       capsys):
    code, err = in_process(capsys, "visualize", digits_model, "--class", "1", "--judge",
                           digits_model, "--out", tmp_path / "x.png", "--quiet")
    assert code == 2 and "--judge is the model itself" in err
    grid = tmp_path / "grid.png"
    text = run_cli("visualize", digits_model, "--class", "all", "--steps", "10", "--judge",
                   digits_judge, "--out", grid, "--quiet").stdout
    lines = text.splitlines()
    assert sum("p=" in ln and "; judge p=" in ln for ln in lines) == 10, text
    summary = [ln for ln in lines if ln.startswith("judge ")]
    assert len(summary) == 1 and "agrees on" in summary[0] and "/10 class images" in summary[0]
    agreeing = sum("judge p=" in ln and "(disagrees)" not in ln for ln in lines[:10])
    assert f"agrees on {agreeing}/10" in summary[0]
    assert read_config(grid)["judge"]["agreement"] == pytest.approx(agreeing / 10)

    # JSON: the judge's probability is the judge's on the written file
    out = tmp_path / "seven.png"
    info = json.loads(run_cli("visualize", digits_model, "--class", "7", "--steps", "10",
                              "--judge", digits_judge, "--out", out, "--json", "--quiet").stdout)
    row, judge = info["images"][0], convscope.load(digits_judge)
    proba = judge.predict_proba(str(out))[0]
    assert row["judge_probability"] == pytest.approx(proba[7], abs=1e-5)
    assert row["judge_top1"] == str(proba.argmax()) and row["judge_agrees"] == (proba.argmax() == 7)
    assert info["judge"] == {"judge": str(digits_judge), "agreement": float(row["judge_agrees"]),
                             "mean_probability": pytest.approx(row["judge_probability"])}


@pytest.mark.parametrize("args,code,message", [
    (["--class", "cow"], 2, "unknown class 'cow'"),
    (["--class", "12"], 2, "unknown class '12'"),
    (["--layer", "conv9", "--channel", "0"], 2, "unknown layer 'conv9'"),
    (["--layer", "conv1_1"], 2, "--layer needs --channel"),
    (["--layer", "conv1_1", "--channel", "99"], 2, "unit 99 is out of range"),
    (["--layer", "conv1_1", "--channel", "0", "--neuron", "a,b"], 2, "--neuron takes Y,X"),
    (["--layer", "conv1_1", "--channel", "0", "--neuron", "30,0"], 2, "outside conv1_1's"),
    (["--class", "1", "--param", "fourier", "--blur", "1"], 2, "not fourier"),
    (["--layer", "conv1_1", "--channel", "0", "--judge", "x.safetensors"], 2,
     "--judge scores class images"),
    (["--class", "1", "--judge", "missing.safetensors"], 1, "missing.safetensors"),
])
def test_visualize_errors_are_one_sentence(tmp_path, digits_model, args, code, message, capsys):
    """In-process (the subprocess runs below check that no traceback escapes)."""
    from convscope.cli import main

    assert main(["visualize", str(digits_model), *args, "--steps", "2", "--out",
                 str(tmp_path / "x.png"), "--quiet"]) == code
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and err.startswith("convscope visualize:")
    assert not (tmp_path / "x.png").exists()


def in_process(capsys, *args) -> tuple[int, str]:
    from convscope.cli import main

    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def test_visualize_bad_outputs_and_models(tmp_path, digits_model, capsys):
    code, err = in_process(capsys, "visualize", digits_model, "--class", "1", "--out",
                           tmp_path / "x.jpg")
    assert code == 2 and "must end in .png" in err
    err = run_cli("visualize", tmp_path / "none.safetensors", "--class", "1", "--out",
                  tmp_path / "x.png", check=1).stderr
    assert "none.safetensors" in err


def test_dream_cli_with_frames(tmp_path, digits_model):
    src = tmp_path / "in.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (30, 45, 3), dtype=np.uint8)).save(src)
    out, frames = tmp_path / "dream.png", tmp_path / "frames"
    info = json.loads(run_cli("dream", digits_model, src, "--layer", "relu1_2", "--octaves", "2",
                              "--steps", "3", "--jitter", "4", "--out", out, "--frames", frames,
                              "--frame-every", "2", "--json", "--quiet").stdout)
    img = Image.open(out)
    assert img.size == (45, 30) and img.mode == "L"  # the input's size, the model's channels
    assert info["gain"] > 1 and info["layer"] == "relu1_2"
    names = sorted(p.name for p in frames.glob("*.png"))
    assert names == ["frame_0000.png", "frame_0002.png", "frame_0004.png"]
    assert Image.open(frames / names[-1]).size == (45, 30)
    cfg = read_config(out)
    assert cfg["job"] == "dream" and cfg["octaves"] == 2 and cfg["layer"] == "relu1_2"
    text = run_cli("dream", digits_model, src, "--octaves", "1", "--steps", "1", "--out",
                   tmp_path / "d2.png", "--quiet").stdout
    assert "sum of squared activations at pool2" in text


def test_dream_errors(tmp_path, digits_model, capsys):
    err = run_cli("dream", digits_model, tmp_path / "missing.png", "--out", tmp_path / "o.png",
                  "--quiet", check=1).stderr
    assert "missing.png" in err and "no such image file" in err
    (tmp_path / "f").write_text("x")
    src = tmp_path / "in.png"
    Image.new("RGB", (20, 20)).save(src)
    code, err = in_process(capsys, "dream", digits_model, src, "--frames", tmp_path / "f",
                           "--out", tmp_path / "o.png")
    assert code == 2 and "is a file" in err
    code, err = in_process(capsys, "dream", digits_model, src, "--layer", "nope", "--out",
                           tmp_path / "o.png", "--quiet")
    assert code == 2 and "unknown layer 'nope'" in err
    code, err = in_process(capsys, "dream", digits_model, src, "--layer", "fc1", "--steps", "1",
                           "--octaves", "1", "--out", tmp_path / "o.png", "--quiet")
    assert code == 1 and "cannot run on a 20x20 image" in err
    assert not (tmp_path / "o.png").exists()
