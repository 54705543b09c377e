"""The scene networks in the pretrained catalogue: where each comes from, its licence, and
one sentence with the install command when its package is missing."""

from __future__ import annotations

import importlib.util

import pytest

from convscope.errors import ConvscopeError
from convscope.models.pretrained import PRETRAINED
from convscope.models.scene import TfliteNetwork, packaged_file
from convscope.scene import open_scene, scene_names

SCENE = ("mtcnn", "blazeface", "haar-cascade", "ssd-mobilenet-v2", "movenet-lightning",
         "selfie-segmentation")


def test_each_scene_network_is_in_the_catalogue_with_licence_and_provenance():
    assert set(scene_names()) == set(SCENE)
    for name in SCENE:
        e = PRETRAINED[name]
        assert e.task in {"faces", "detect", "pose", "segment"}
        assert e.licence and e.provenance and e.installed
    assert "states no licence" in PRETRAINED["ssd-mobilenet-v2"].licence


def test_the_tflite_files_are_read_by_litert():
    net = TfliteNetwork(packaged_file(
        "mediapipe", "modules/selfie_segmentation/selfie_segmentation.tflite"))
    assert net.input_shape == (1, 256, 256, 3)


def test_a_missing_package_is_one_sentence_with_the_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "facenet_pytorch" else real(name, *a))
    with pytest.raises(ConvscopeError, match=r"pip install --no-deps facenet-pytorch==2\.6\.0"):
        open_scene("mtcnn")
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ai_edge_litert" else real(name, *a))
    with pytest.raises(ConvscopeError, match=r"convscope\[pretrained\]"):
        open_scene("blazeface")


def test_a_file_missing_from_a_package_is_named():
    with pytest.raises(ConvscopeError, match="missing from the installed mediapipe"):
        packaged_file("mediapipe", "modules/nothing/here.tflite")
