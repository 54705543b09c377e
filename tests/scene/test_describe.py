"""The alt text: concepts only above their thresholds, people from faces and person boxes,
objects counted, the ImageNet class as a "possibly"."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data

from convscope.scene.describe import (
    CLASS_THRESHOLD,
    FACE_THRESHOLDS,
    LONE_FACE_THRESHOLDS,
    OBJECT_THRESHOLD,
    DescribeConfig,
    Describer,
    alt_text,
    people_concepts,
)
from convscope.scene.results import Concept, Detections


def _found(labels, scores, model="m", kind="probability", boxes=None) -> Detections:
    n = len(labels)
    boxes = np.zeros((n, 4), np.float32) if boxes is None else np.asarray(boxes, np.float32)
    return Detections("detect", model, np.zeros((10, 10, 3), np.uint8),
                      boxes.reshape(n, 4), np.asarray(scores, np.float32),
                      tuple(labels), np.zeros((n, 0, 2), np.float32), score_kind=kind)


def test_the_sentence_reads_as_facebooks():
    concepts = [Concept("person", 2, "faces", 0.99, "2 people"),
                Concept("cup", 1, "ssd", 0.9, "a cup"),
                Concept("dining table", 1, "ssd", 0.8, "a dining table"),
                Concept("espresso", 1, "lite0", 0.7, "possibly espresso")]
    assert alt_text(concepts) == ("Image may contain: 2 people, a cup, a dining table; "
                                  "possibly espresso")
    assert alt_text(concepts[-1:]) == "Image may contain: possibly espresso"
    assert alt_text([]).startswith("No description")


def test_people_are_the_larger_of_the_faces_and_the_person_boxes():
    faces = _found(["face"] * 3, [0.99, 0.98, 0.95], "mtcnn")
    objects = _found(["person", "person", "cup"], [0.9, 0.8, 0.7], "ssd")
    [c] = people_concepts(faces, objects)
    assert (c.count, c.words, c.source) == (3, "3 people", "mtcnn + ssd")
    assert c.score == pytest.approx(0.99)
    [c] = people_concepts(_found([], []), _found(["person"], [0.6], "ssd"))
    assert (c.words, c.source) == ("1 person", "ssd")
    assert people_concepts(_found([], []), _found(["cup"], [0.9])) == []


def test_a_face_with_no_person_round_it_needs_the_lone_threshold():
    faces = _found(["face"] * 2, [0.99, 0.93], "mtcnn", boxes=[[10, 10, 20, 20], [80, 80, 90, 90]])
    people = _found(["person"], [0.8], "ssd", boxes=[[0, 0, 50, 60]])
    [c] = people_concepts(faces, people, lone_threshold=0.95)
    assert c.count == 1  # the 0.93 face far from the person box is not a person
    [c] = people_concepts(faces, people, lone_threshold=0.9)
    assert c.count == 2
    inside = _found(["face"], [0.75], "mtcnn", boxes=[[10, 10, 20, 20]])
    [c] = people_concepts(inside, _found(["person"], [0.8], "ssd", boxes=[[0, 0, 50, 60]]),
                          lone_threshold=0.95)
    assert c.count == 1 and c.score == pytest.approx(0.8)
    assert people_concepts(inside, _found([], []), lone_threshold=0.95) == []


def test_no_people_on_a_motorcycle(describer):
    alt = describer(skimage.data.stereo_motorcycle()[0])
    assert "motorcycle" in alt.text and "person" not in alt.text and "people" not in alt.text


@pytest.fixture(scope="module")
def describer():
    return Describer()


def test_the_three_photos(describer, photos):
    astronaut, coffee, chelsea = describer.describe(
        [photos["astronaut"], photos["coffee"], photos["chelsea"]])
    assert astronaut.text.startswith("Image may contain: 1 person"), astronaut.text
    assert "a cup" in coffee.text, coffee.text
    assert "person" not in chelsea.text and "people" not in chelsea.text, chelsea.text
    d = coffee.to_dict()
    cup = next(c for c in d["concepts"] if c["name"] == "cup")
    assert cup["source"] == "ssd-mobilenet-v2" and cup["score"] >= OBJECT_THRESHOLD
    assert d["thresholds"] == {"faces": FACE_THRESHOLDS["mtcnn"],
                               "lone faces": LONE_FACE_THRESHOLDS["mtcnn"],
                               "objects": OBJECT_THRESHOLD, "imagenet": CLASS_THRESHOLD}
    assert coffee.render().ndim == 3


def test_a_concept_below_its_threshold_is_left_out(photos):
    strict = Describer(DescribeConfig(object_threshold=0.99, class_threshold=0.999,
                                      classifier="none"))
    alt = strict(photos["coffee"])
    assert "cup" not in alt.text and "possibly" not in alt.text
    assert all(c.source != "ssd-mobilenet-v2" for c in alt.concepts)


def test_the_face_threshold_defaults_to_the_detectors_own():
    assert DescribeConfig().resolve().face_threshold == FACE_THRESHOLDS["mtcnn"]
    assert DescribeConfig(faces="blazeface").resolve().face_threshold == \
        FACE_THRESHOLDS["blazeface"]
    assert DescribeConfig(face_threshold=0.5).resolve().face_threshold == 0.5
