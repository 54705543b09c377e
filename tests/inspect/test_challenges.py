"""The six challenges: severity 0 is the plain accuracy, severe settings hurt, the strips grow
more different with severity, a seed repeats, mCE against itself is 100%."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from convscope.classifier import load
from convscope.inspect.challenges import CHALLENGES, challenges, select
from convscope.inspect.sources import image_set
from tests.conftest import call_cli

N = 120


@pytest.fixture(scope="module")
def result(mnist_model):
    return challenges(mnist_model, n=N, seed=0, severities=5)


def test_severity_zero_is_the_plain_test_accuracy(mnist_model, result):
    clf = load(mnist_model)
    imgs = image_set(clf, None, n=N, seed=0, progress=False)
    plain = float((torch.from_numpy(clf.predict(imgs.images)) == imgs.labels).double().mean())
    assert result.main.clean == plain
    for name in result.names:
        assert result.main.curves[name].accuracy[0] == plain, name
    assert result.measure == "accuracy" and result.n == N


def test_severe_settings_fall_well_below_the_plain_accuracy(result):
    clean = result.main.clean
    assert clean > 0.9
    for name in ("rotation", "occlusion-random", "occlusion-evidence", "clutter"):
        assert result.main.curves[name].accuracy[-1] < clean - 0.25, (
            name, result.main.curves[name].accuracy)
    # evidence-placed patches hurt at least as much as random ones of the same size
    ev, rnd = (result.main.curves[k].score for k in ("occlusion-evidence", "occlusion-random"))
    assert ev <= rnd


def test_strips_move_further_from_the_image_as_severity_grows(result):
    for name in result.names:
        if name in ("intra-class", "translation"):
            continue
        strip = result.strips[name].float()  # (S + 1, C, H, W)
        diffs = [(strip[s] - strip[0]).abs().mean().item() for s in range(len(strip))]
        assert diffs[0] == 0
        assert all(b > a for a, b in zip(diffs, diffs[1:])), (name, diffs)
    # a shifted digit stops overlapping itself, so pixel differences saturate: check instead
    # that its centre of mass moves by the shift the parameters give
    strip = result.strips["translation"].float()[:, 0]  # (S + 1, H, W)
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    centre = torch.stack([((strip * g).sum((1, 2)) / strip.sum((1, 2))) for g in (ys, xs)], 1)
    moved = (centre - centre[0]).norm(dim=1)
    assert all(b > a for a, b in zip(moved.tolist(), moved[1:].tolist())), moved
    assert moved[1].item() == pytest.approx(result.params["translation"][1]["shift"] * 28, abs=1)


def test_grayscale_data_skips_colour_temperature_and_says_so(result):
    assert "temperature" not in result.names
    assert "grayscale" in result.skipped["temperature"]


def test_the_same_seed_gives_the_same_numbers(mnist_model, result):
    again = challenges(mnist_model, n=N, seed=0, severities=5)
    assert again.to_dict()["models"] == result.to_dict()["models"]
    other = challenges(mnist_model, n=N, seed=1, severities=5, only=("rotation",))
    assert other.main.curves["rotation"].accuracy != result.main.curves["rotation"].accuracy


def test_intra_class_bins_partition_the_images_from_typical_to_atypical(result):
    curve = result.main.curves["intra-class"]
    assert sum(curve.counts[1:]) == N and curve.counts[0] == N
    # the plain accuracy is the count-weighted mean of the bins' accuracies
    weighted = sum(a * c for a, c in zip(curve.accuracy[1:], curve.counts[1:])) / N
    assert weighted == pytest.approx(curve.accuracy[0])
    assert result.spread and all(v > 0 for v in result.spread.values())


def test_mce_against_the_same_model_is_100_percent(mnist_model):
    r = challenges(mnist_model, n=40, severities=2, only=("viewpoint",), baseline=mnist_model)
    assert set(r.ce) == {"rotation", "scale", "perspective", "translation"}
    for name, value in r.ce.items():
        err = sum(1 - a for a in r.main.curves[name].accuracy[1:])
        assert value == pytest.approx(100.0) if err else np.isnan(value)
    assert r.mce == pytest.approx(np.nanmean(list(r.ce.values())))


def test_colour_images_get_every_challenge(tmp_path):
    import convscope
    from tests.conftest import write_image_folder

    root = write_image_folder(tmp_path / "imgs", classes=("a", "b"), per_class=8,
                              size=(16, 16))
    clf = convscope.train(f"folder:{root}", model="convnet:width=4,fc=8", epochs=1,
                          progress=False, verbose=False)
    r = challenges(clf, f"folder:{root}", n=8, severities=2, split="all")
    assert r.skipped == {} and "temperature" in r.names
    diffs = [(r.strips["temperature"][s].float() - r.strips["temperature"][0].float())
             .abs().mean().item() for s in range(3)]
    assert diffs[0] == 0 < diffs[1] < diffs[2]


def test_select_accepts_groups_and_refuses_unknown_names():
    assert select(["viewpoint"]) == ["rotation", "scale", "perspective", "translation"]
    assert select(["elastic", "occlusion"]) == ["elastic", "occlusion-random",
                                                "occlusion-evidence"]
    assert select(["clutter", "occlusion-random"]) == ["clutter", "occlusion-random"]
    with pytest.raises(Exception, match="rotatoin|rotation"):
        select(["rotatoin"])
    assert {c.group for c in CHALLENGES.values()} == {
        "viewpoint", "illumination", "deformation", "occlusion", "clutter", "intra-class"}


def test_two_runs_model_files_are_named_apart_by_their_folders(mnist_model):
    from convscope.inspect.challenges import _labels

    clf = load(mnist_model)
    assert _labels(["runs/aug/model.safetensors", "runs/noaug/model.safetensors"],
                   [clf, clf]) == ["aug/model.safetensors", "noaug/model.safetensors"]
    assert _labels(["/a/b/small.safetensors", "/a/b/wide.safetensors"],
                   [clf, clf]) == ["small.safetensors", "wide.safetensors"]
    assert _labels([clf], [clf]) == [clf.meta.model]   # alone, a model keeps its full name
    assert _labels(["runs/a/m.safetensors"] * 2, [clf, clf]) == ["runs/a/m.safetensors"] * 2


def test_cli_writes_curves_strips_and_json(mnist_model, tmp_path):
    import shutil

    out = tmp_path / "ch"
    for run in ("aug", "noaug"):  # two runs' model.safetensors, as a user compares them
        (tmp_path / run).mkdir()
        shutil.copy(mnist_model, tmp_path / run / "model.safetensors")
    proc = call_cli("challenges", tmp_path / "aug" / "model.safetensors", "--n", "40",
                    "--severities", "2", "--only", "rotation,clutter", "--compare",
                    tmp_path / "noaug" / "model.safetensors", "--out", out, "--json",
                    "--quiet")
    data = json.loads(proc.stdout)
    assert data["challenges"] == ["rotation", "clutter"]
    assert [m["model"] for m in data["models"]] == ["aug/model.safetensors",
                                                    "noaug/model.safetensors"]
    assert len(data["models"][0]["curves"]["rotation"]["accuracy"]) == 3
    assert data["params"]["rotation"][2] == {"degrees": 60.0}
    assert data["config"]["seed"] == 0
    for name in ("curves.png", "strips.png", "challenges.json"):
        assert (out / name).stat().st_size > 1000
    from PIL import Image

    with Image.open(out / "strips.png") as im:
        assert im.width > 200 and im.height > 100
    text = call_cli("challenges", mnist_model, "--n", "30", "--severities", "1", "--only",
                    "occlusion", "--out", tmp_path / "t", "--quiet").stdout
    assert "hurts most" in text and "occlusion" in text


def test_cli_refuses_an_unknown_challenge(mnist_model, tmp_path):
    proc = call_cli("challenges", mnist_model, "--only", "weather", "--out", tmp_path,
                    check=2)
    assert "weather" in proc.stderr and "Traceback" not in proc.stderr


def test_display_in_a_notebook(mnist_model):
    r = challenges(mnist_model, n=20, severities=1, only=("rotation",))
    assert r._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_section_shows_the_curves_and_the_strip(digits_model, tmp_path):
    page = tmp_path / "r.html"
    call_cli("report", digits_model, "--sections", "accuracy", "challenges",
             "--challenge-n", "60", "--out", page, "--quiet")
    html = page.read_text()
    assert "The six challenges" in html and "Hurts most" in html
    section = html[html.index("The six challenges"):]
    assert section.count("data:image/png;base64,") >= 2
    assert "accuracy against severity" in section


def test_web_app_view_shows_the_curves_and_the_strip(digits_model):
    from fastapi.testclient import TestClient

    from convscope.data import load_dataset
    from convscope.render.server import ServeConfig, create_app
    from convscope.render.webpage import BODY

    clf = load(digits_model)
    app = create_app(clf, load_dataset("digits"), ServeConfig(challenge_n=40))
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        r = c.get("/api/challenges")
        assert r.status_code == 200
        body = r.json()
        assert body["n"] == 40 and body["hardest"] in body["scores"]
        assert set(body["scores"]) == {"viewpoint", "illumination", "deformation", "occlusion",
                                       "clutter", "intra-class"}
        for key in ("curves", "strips"):
            assert body[key].startswith("data:image/png;base64,") and len(body[key]) > 2000
        assert c.get("/api/challenges").json() == body  # computed once
    assert 'data-view="challenges"' in BODY and 'id="view-challenges"' in BODY
