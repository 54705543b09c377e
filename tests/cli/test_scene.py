"""convscope faces / detect / pose / segment / describe on photo files: text, JSON, pictures
with their settings inside, looking inside a detection, and one sentence for each mistake."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from convscope.render.figures import read_config
from convscope.samples import sample_path
from tests.conftest import call_cli

ASTRONAUT, COFFEE, CHELSEA = (str(sample_path(n)) for n in ("astronaut", "coffee", "chelsea"))


def test_faces_prints_draws_and_says_json(tmp_path):
    out = call_cli("faces", ASTRONAUT, CHELSEA, "--out", tmp_path / "faces")
    assert "astronaut.png: 1 face: 1.00" in out.stdout
    assert "chelsea.png: 0 faces" in out.stdout
    picture = tmp_path / "faces" / "astronaut.png"
    assert Image.open(picture).size[0] >= 512
    assert read_config(picture)["detector"] == "mtcnn"
    data = json.loads(call_cli("faces", ASTRONAUT, "--detector", "cascade", "--json").stdout)
    assert data["config"]["max_side"] == 1600
    [result] = data["results"]
    assert result["model"] == "haar-cascade" and result["count"] == 1
    assert result["score"] == "stage margin"


def test_detect_pose_and_segment(tmp_path):
    out = call_cli("detect", COFFEE, "--min-score", "0.7").stdout
    assert "cup 0.95" in out and "dining table" in out
    data = json.loads(call_cli("pose", ASTRONAUT, "--json").stdout)
    nose = data["results"][0]["people"][0]["keypoints"]["nose"]
    assert nose["visible"] and 175 < nose["x"] < 275
    out = call_cli("segment", ASTRONAUT, "--out", tmp_path / "o.png", "--mask-out",
                   tmp_path / "m.png").stdout
    assert "people cover" in out
    mask = Image.open(tmp_path / "m.png")
    assert mask.mode == "L" and mask.size == (512, 512)
    assert read_config(tmp_path / "m.png")["threshold"] == 0.5


def test_describe_says_the_alt_text(tmp_path):
    out = call_cli("describe", ASTRONAUT, COFFEE, "--out", tmp_path / "d").stdout
    assert "astronaut.png: Image may contain: 1 person" in out
    assert "a cup" in out
    assert (tmp_path / "d" / "coffee.png").is_file()
    data = json.loads(call_cli("describe", COFFEE, "--json", "--classifier", "none").stdout)
    assert data["config"]["classifier"] == "none"
    assert all("possibly" not in c["words"] for c in data["results"][0]["concepts"])


def test_looking_inside_a_detection(tmp_path):
    out = call_cli("faces", ASTRONAUT, "--explain", "0", "--method", "gradcam", "--out",
                   tmp_path / "why.png").stdout
    assert "gradcam" in out and "inside the box" in out
    assert read_config(tmp_path / "why.png")["method"] == "gradcam"
    proc = call_cli("detect", COFFEE, "--explain", "9", "--out", tmp_path / "x.png", check=2)
    assert "no detection 9 to explain; pass an --explain below" in proc.stderr
    proc = call_cli("detect", COFFEE, "--explain", "0", check=2)
    assert "give --out" in proc.stderr


@pytest.mark.parametrize(("args", "code", "says"), [
    (("faces", "nowhere.jpg"), 1, "nowhere.jpg: no such image file"),
    (("faces", ASTRONAUT, COFFEE, "--out", "one.png"), 2, "give a folder for --out"),
    (("faces", ASTRONAUT, "--detector", "yolo"), 2, "is not a faces network"),
    (("detect", ASTRONAUT, "--min-score", "-1"), 2, "must be at least 0"),
    (("pose", ASTRONAUT, "--min-score", "2"), 2, "must be at most 1"),
    (("segment", ASTRONAUT, "--mask-out", "m.jpg"), 2, "must be a .png file or a folder"),
    (("faces", ASTRONAUT, "--min-score", "1.5"), 2, "--min-score must be between 0 and 1"),
])
def test_each_mistake_is_one_sentence(tmp_path, monkeypatch, args, code, says):
    monkeypatch.chdir(tmp_path)
    proc = call_cli(*args, check=code)
    assert says in proc.stderr
    assert proc.stderr.count("error:") == 1


def test_a_bad_photo_among_good_ones_is_reported_and_the_rest_are_done(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    proc = call_cli("detect", str(bad), COFFEE, check=1)
    assert "bad.jpg: not a readable image" in proc.stderr
    assert "coffee.png: 3 objects" in proc.stdout


def test_info_and_summary_of_the_scene_networks():
    out = call_cli("info", "mtcnn").stdout
    assert "task        faces" in out and "facenet-pytorch 2.6.0" in out
    data = json.loads(call_cli("info", "ssd-mobilenet-v2", "--json").stdout)
    assert data["description"]["task"] == "detect" and len(data["description"]["labels"]) == 80
    out = call_cli("summary", "mtcnn").stdout
    assert "O-Net" in out and "dense6_1" in out
    proc = call_cli("summary", "blazeface", check=2)
    assert "runs in LiteRT, not as a PyTorch network" in proc.stderr


def test_detection_and_segmentation_names_are_listed_apart_and_named_in_one_sentence():
    out = call_cli("models").stdout
    assert out.index("classification") < out.index("detection") < out.index("fasterrcnn")
    assert "digits-boxes" in call_cli("datasets").stdout.split("detection")[1]
    assert "backbone.body" in call_cli("summary", "fasterrcnn").stdout  # its layer table
    proc = call_cli("predict", "fcos", "x.png", check=1)
    assert ("fcos names an untrained detect architecture, not a model; train it with "
            "`convscope train --data digits-boxes --model 'fcos' --out DIR`") in proc.stderr
