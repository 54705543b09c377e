"""The command line as a user meets it: outputs, exit codes, one-sentence errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.conftest import call_cli, run_cli


def test_help_lists_commands():
    out = run_cli("--help").stdout
    for cmd in ("train", "evaluate", "predict", "datasets", "models", "info", "samples"):
        assert cmd in out


def test_train_evaluate_predict(tmp_path):
    out = tmp_path / "run"
    proc = run_cli("train", "--data", "digits", "--model", "convnet:width=8,fc=32", "--epochs",
                   "2", "--out", out, "--quiet")
    assert "test top-1" in proc.stdout
    for f in ("model.safetensors", "metrics.jsonl", "config.json"):
        assert (out / f).is_file()
    last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])

    ev = json.loads(run_cli("evaluate", out / "model.safetensors", "--json", "--out",
                            tmp_path / "cm.png").stdout)
    assert ev["n"] == 360 and abs(ev["top1"] - last["test_acc"]) < 1e-6
    assert abs(ev["top5"] - last["test_top5"]) < 1e-6
    png = np.asarray(Image.open(tmp_path / "cm.png").convert("L"))
    assert png.shape[0] > 200 and png.std() > 20  # a real picture, not a blank canvas

    text = run_cli("evaluate", out / "model.safetensors", "--data", "digits").stdout
    assert "top-1" in text and "confusion matrix" in text

    run_cli("samples", "digits", "--n", "3", "--out", tmp_path / "s")
    files = sorted((tmp_path / "s").glob("*.png"))
    assert len(files) == 3
    res = json.loads(run_cli("predict", out / "model.safetensors", *files, "--json",
                             "--top-k", "3").stdout)
    assert [len(r["top"]) for r in res] == [3, 3, 3]
    assert abs(sum(t["probability"] for t in res[0]["top"]) - 1) < 0.5
    text = run_cli("predict", out / "model.safetensors", files[0]).stdout
    assert text.startswith(str(files[0])) and text.count(",") == 4  # five "label p" pairs

    # replacing a trained model needs --force; the model is left untouched
    before = (out / "model.safetensors").read_bytes()
    err = run_cli("train", "--data", "digits", "--out", out, check=2).stderr
    assert "already holds a trained model" in err
    assert (out / "model.safetensors").read_bytes() == before


def test_predict_odd_images(tmp_path, digits_model):
    rgba = tmp_path / "rgba.png"
    Image.new("RGBA", (30, 20), (0, 0, 0, 255)).save(rgba)
    deep = tmp_path / "deep.png"
    Image.fromarray(np.full((9, 9), 60000, np.uint16)).save(deep)
    pal = tmp_path / "pal.gif"
    Image.new("P", (8, 8), 3).save(pal)
    out = run_cli("predict", digits_model, rgba, deep, pal).stdout
    assert out.count("\n") == 3


def test_predict_draws_the_ilsvrc_slide(tmp_path, digits_model):
    """--out draws each photo above its top-k bars; a bad image is left out of it."""
    from convscope.render.figures import read_config

    good = tmp_path / "seven.png"
    Image.fromarray(np.tile(np.arange(0, 256, 32, dtype=np.uint8), (8, 1))).save(good)
    bad = tmp_path / "bad.jpg"
    bad.write_text("no")
    out = tmp_path / "slide.png"
    proc = run_cli("predict", digits_model, good, good, bad, "--top-k", "3", "--out", out,
                   check=1)
    assert f"wrote {out}" in proc.stdout and "bad.jpg" in proc.stderr
    with Image.open(out) as im:
        pixels = np.asarray(im.convert("RGB"))
    assert pixels.shape[1] > 2 * pixels.shape[0] * 0.6  # two columns side by side
    orange = (pixels[..., 0] > 230) & (pixels[..., 1] > 100) & (pixels[..., 1] < 150) & \
             (pixels[..., 2] < 60)
    assert orange.sum() > 50  # the top-1 bars
    assert read_config(out)["top_k"] == 3
    err = run_cli("predict", digits_model, good, "--out", tmp_path / "slide.jpg", check=2).stderr
    assert "must end in .png" in err


def test_bad_image_names_the_file(tmp_path, digits_model):
    bad = tmp_path / "cat.jpg"
    bad.write_text("not really a jpeg")
    good = tmp_path / "ok.png"
    Image.new("L", (8, 8)).save(good)
    proc = run_cli("predict", digits_model, good, bad, check=1)
    assert str(bad) in proc.stderr and "not a readable image" in proc.stderr
    assert str(good) in proc.stdout  # the good one is still answered
    proc = run_cli("predict", digits_model, tmp_path / "missing.png", check=1)
    assert "missing.png: no such image file" in proc.stderr


def test_usage_errors_exit_2_without_traceback(tmp_path):
    err = run_cli("train", "--data", "imagenet", "--out", tmp_path, check=2).stderr
    assert "unknown dataset 'imagenet'" in err and "mnist5k" in err and "folder:PATH" in err
    err = run_cli("train", "--model", "lenet", "--out", tmp_path, check=2).stderr
    assert "unknown model 'lenet'" in err and "resnet18" in err
    err = run_cli("train", "--epochs", "0", check=2).stderr
    assert "must be at least 1" in err
    run_cli("frobnicate", check=2)


def test_incompatible_model_file(tmp_path, digits_model):
    err = run_cli("evaluate", digits_model, "--data", "fake:size=8,channels=1,classes=3",
                  check=1).stderr
    assert "trained on 10 classes" in err
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"\x00" * 16)
    err = run_cli("evaluate", bad, check=1).stderr
    assert "not a valid safetensors model file" in err


def test_catalog_commands(digits_model):
    assert "mnist5k" in run_cli("datasets").stdout
    info = json.loads(run_cli("datasets", "digits", "--json").stdout)
    assert info["image_size"] == [8, 8] and info["channels"] == 1 and len(info["classes"]) == 10
    assert "resnet" in run_cli("models").stdout
    meta = json.loads(run_cli("info", digits_model, "--json").stdout)
    assert meta["model"] == "convnet" and meta["dataset"] == "digits"
    assert "test top-1" in run_cli("info", digits_model).stdout


def test_figures_carry_their_config(tmp_path, digits_model):
    from convscope.render.figures import read_config

    run_cli("evaluate", digits_model, "--out", tmp_path / "cm.png")
    cfg = read_config(tmp_path / "cm.png")
    assert cfg["command"] == "evaluate" and cfg["data"] == "digits"


def _call(*args, check=None):
    from tests.conftest import call_cli

    return call_cli(*args, check=check)


def test_bad_out_paths_exit_2_before_any_work(tmp_path):
    """Issue 20 finding 11: --out/--npy problems tracebacked after the work was done.
    The model file is missing, so exit 2 (not 1) shows the path was refused first."""
    model, img = tmp_path / "missing.safetensors", tmp_path / "missing.png"
    (tmp_path / "afile").write_text("x")
    cases = {
        ("--out", str(tmp_path / "maps.gif")): "must end in .png or .pdf",
        ("--out", str(tmp_path / "afile" / "m.png")): "afile is a file, not a folder",
        ("--out", str(tmp_path)): "is a folder; give a file name in it",
        ("--out", str(tmp_path / "m.png"), "--npy", str(tmp_path / "maps")): "must end in .npy",
    }
    for extra, message in cases.items():
        proc = _call("explain", model, img, *extra)
        assert proc.returncode == 2 and message in proc.stderr, (extra, proc.stderr)
        assert proc.stderr.count("error:") == 1 and "Traceback" not in proc.stderr
    proc = _call("samples", "digits", "--out", tmp_path / "afile")
    assert proc.returncode == 2 and "afile is a file; give a folder" in proc.stderr


def test_out_in_a_folder_that_cannot_be_written_exits_2(tmp_path):
    import os

    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        folder = next((f for f in (locked, "/proc/sys") if not os.access(f, os.W_OK)), None)
        if folder is None:
            pytest.skip("no folder here is read-only to this user (root, no read-only mount)")
        proc = _call("explain", tmp_path / "m.safetensors", "x.png", "--out",
                     f"{folder}/sub/m.png")
        assert proc.returncode == 2, proc.stderr
        assert f"the folder {folder} is not writable" in proc.stderr
    finally:
        locked.chmod(0o700)


def test_npy_into_a_missing_folder_is_written(tmp_path, digits_model):
    img = tmp_path / "d.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(img)
    npy = tmp_path / "new" / "deeper" / "maps.npy"
    _call("explain", digits_model, img, "--method", "saliency", "--out", tmp_path / "m.png",
          "--npy", npy, "--quiet", check=0)
    assert np.load(npy).shape == (1, 8, 8)


def test_pillow_warnings_stay_off_stderr(tmp_path, digits_model, monkeypatch):
    """Issue 20 finding 12: Pillow's DecompressionBombWarning leaked (our own pixel limit
    already guards decoding); Pillow's limit is lowered so that a small image trips it."""
    import warnings

    img = tmp_path / "d.png"
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(img)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1,600 pixels: warns, not refused
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        proc = _call("predict", digits_model, img, check=0)
    assert "predicted" in proc.stdout or proc.stdout.strip()
    leaked = [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    assert not leaked, leaked


def test_warnings_print_as_one_line(tmp_path):
    from tests.conftest import call_cli, write_image_folder

    root = write_image_folder(tmp_path / "imgs", classes=("a", "b", "c"), per_class=4)
    for f in (root / "c").iterdir():
        f.write_bytes(b"not an image")
    proc = call_cli("datasets", f"folder:{root}")
    lines = [ln for ln in proc.stderr.splitlines() if "warning" in ln]
    assert lines and all(ln.startswith("convscope datasets: warning: ") for ln in lines), \
        proc.stderr
    assert ".py:" not in proc.stderr


def test_samples_takes_the_dataset_once(tmp_path):
    """NAME or --data names the dataset; both, naming two, is a usage error (issue 14:
    --data was silently ignored)."""
    err = run_cli("samples", "digits", "--data", "mnist5k", "--out", tmp_path / "a",
                  check=2).stderr
    assert "NAME is digits but --data is mnist5k; give the dataset once" in err
    assert err.count("error:") == 1 and "Traceback" not in err
    assert not (tmp_path / "a").exists() or not list((tmp_path / "a").iterdir())
    err = run_cli("samples", "--out", tmp_path / "b", check=2).stderr
    assert "name the dataset" in err
    run_cli("samples", "--data", "digits", "--n", "2", "--out", tmp_path / "c")
    run_cli("samples", "digits", "--data", "digits", "--n", "2", "--out", tmp_path / "d")
    assert len(list((tmp_path / "c").glob("*.png"))) == 2
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == sorted(
        p.name for p in (tmp_path / "d").iterdir())


def test_predict_and_evaluate_take_a_torchvision_name_with_local_weights(tmp_path):
    """MODEL and --weights mean in predict and evaluate what they mean in every view."""
    import torch
    import torchvision

    from convscope.loading import open_model
    from tests.conftest import call_cli

    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        paths.append(tmp_path / f"r18-{seed}.pt")
        torch.save(torchvision.models.resnet18(num_classes=1000).state_dict(), paths[-1])
    image = tmp_path / "x.png"
    Image.fromarray((np.random.default_rng(0).random((40, 40, 3)) * 255).astype("uint8")).save(
        image)

    def top(weights):
        js = json.loads(call_cli("predict", "resnet18", image, "--weights", weights, "--top-k",
                                 "5", "--json").stdout)
        return [(t["label"], t["probability"]) for t in js[0]["top"]]

    first = top(paths[0])
    api = open_model("resnet18", weights=str(paths[0])).topk(str(image), k=5)[0]
    assert [lab for lab, _ in first] == [lab for lab, _ in api]
    assert [p for _, p in first] == pytest.approx([p for _, p in api], abs=1e-5)
    assert top(paths[1]) != first  # the weights given are the weights used
    proc = call_cli("evaluate", "resnet18", "--weights", paths[0], "--data", "digits",
                    "--quiet", check=1)
    assert "trained on 1000 classes" in proc.stderr and "Traceback" not in proc.stderr
    proc = call_cli("predict", "resnet18", image, "--weights", tmp_path / "none.pt", check=1)
    assert "weights file" in proc.stderr and "does not exist" in proc.stderr


def test_library_errors_name_the_flags_of_the_command(digits_model, monkeypatch, tmp_path):
    """The library names a parameter (`max_maps`); the CLI says the flag a user types."""
    from convscope.cli import views
    from convscope.inspect import filters

    def no_maps(*args, **options):  # the real library call, with a value argparse would refuse
        return filters.activations(*args, **{**options, "max_maps": 0})

    monkeypatch.setattr(views, "activations", no_maps)
    Image.new("L", (8, 8)).save(tmp_path / "digit.png")
    err = call_cli("activations", digits_model, tmp_path / "digit.png", "--out", tmp_path / "a.png",
                   check=2).stderr
    assert err == "convscope activations: error: --max-maps must be at least 1, got 0.\n"

    # a value to pass: `mode="gray"` reads --mode gray; a dest other than the flag's name:
    # neighbors' `k` is --top-k
    err = call_cli("filters", digits_model, "--mode", "colour", "--out", tmp_path / "f.png",
                   check=2).stderr
    assert err.endswith("use --mode gray.\n") and "`" not in err
    err = call_cli("neighbors", digits_model, "--top-k", "5000", "--out", tmp_path / "n.png",
                   "--quiet", check=2).stderr
    assert "--top-k 5000 is more than" in err and "pass --top-k 1437 or less" in err
