"""convscope mistakes, explain with a segmenter and report of a detector and a segmenter,
on tiny models trained here: text, JSON, pictures, the sections that apply."""

from __future__ import annotations

import json
import re

import pytest

import convscope
from convscope.render.figures import read_config
from convscope.render.report import read_report_config
from tests.conftest import call_cli


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A one-epoch FCOS and LR-ASPP on 48-px shapes (about 25 s together)."""
    out = {}
    for data, model in (("fake-boxes", "fcos"), ("fake-masks", "lraspp")):
        where = tmp_path_factory.mktemp(model)
        convscope.train(f"{data}:n=12,test=4,size=48", model=model, epochs=1, progress=False,
                        verbose=False, out=str(where))
        out[model] = where
    return out


def test_mistakes_of_a_detector(trained, tmp_path):
    model = trained["fcos"] / "model.safetensors"
    out = call_cli("mistakes", model, "--min-score", "0", "--out", tmp_path / "m.png").stdout
    assert "objects found at score >= 0" in out and "missed objects" in out
    assert read_config(tmp_path / "m.png")["min_score"] == 0.0
    data = json.loads(call_cli("mistakes", model, "--json", "--n", "2").stdout)
    assert data["objects"] == 7 and len(data["missed"]) <= 2
    assert data["missed_count"] == data["objects"] - data["found"]


def test_mistakes_of_a_segmenter_and_errors(trained, tmp_path):
    model = trained["lraspp"] / "model.safetensors"
    out = call_cli("mistakes", model, "--n", "2", "--out", tmp_path / "w.png").stdout
    assert "mean of the per-image IoU" in out and (tmp_path / "w.png").is_file()
    err = call_cli("mistakes", model, "--data", "fake-boxes:n=4,test=2,size=48",
                   check=2).stderr
    assert "is for the task 'detect', not 'segment'" in err
    assert len(err.strip().splitlines()) == 1


def test_explain_a_mask_class(trained, tmp_path):
    from PIL import Image

    from convscope.data import load_dataset

    data = load_dataset("fake-masks:n=12,test=4,size=48", task="segment")
    Image.fromarray(data.test.images[0].permute(1, 2, 0).numpy()).save(tmp_path / "a.png")
    model = trained["lraspp"] / "model.safetensors"
    out = call_cli("explain", model, tmp_path / "a.png", "--method", "all",
                   "--out", tmp_path / "why.png").stdout
    assert "gradcam:" in out and "occlusion:" in out and "wrote" in out
    err = call_cli("explain", trained["fcos"] / "model.safetensors", tmp_path / "a.png",
                   "--out", tmp_path / "x.png", check=2).stderr
    assert "--explain 0" in err


@pytest.mark.parametrize("model", ["fcos", "lraspp"])
def test_report_of_a_detector_and_a_segmenter(trained, tmp_path, model):
    page = tmp_path / "r.html"
    out = call_cli("report", trained[model] / "model.safetensors", "--out", page, "--quiet")
    assert "wrote" in out.stdout and "(6 sections" in out.stdout
    html = page.read_text()
    shown = re.findall(r'data-section="([^"]+)"', html)
    assert shown == ["left-out", "model", "training", "scores", "predictions", "worst",
                     "look-inside"]
    assert 'class="unavailable"' not in html and "no data" not in html
    assert "Left out: accuracy, mistakes" in html
    facts = read_report_config(html)["facts"]
    assert ("map" in facts) if model == "fcos" else ("miou" in facts)
    err = call_cli("report", trained[model] / "model.safetensors", "--out", page,
                   "--sections", "accuracy", check=2).stderr
    assert "none of the sections chosen applies" in err
