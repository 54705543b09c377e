"""The scene models on photos: faces, objects, pose and the person mask where a person
can check them (scikit-image's astronaut, chelsea and coffee), coordinates in the photo's
own pixels whatever the photo's size, shape or mode."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.ops import box_iou, nms

import convscope
from convscope.errors import ImageError, UsageError
from convscope.scene import Detections, PersonMask, Poses, scene_names
from convscope.scene.models import _weighted_nms
from tests.conftest import ASTRONAUT_FACE

FACE_DETECTORS = ("mtcnn", "blazeface", "haar-cascade")


def iou(a, b) -> float:
    return float(box_iou(torch.tensor(np.array([a], np.float32)),
                         torch.tensor(np.array([b], np.float32)))[0, 0])


def test_every_task_opens_through_the_one_model_layer():
    assert set(scene_names("faces")) == set(FACE_DETECTORS)
    for name, task in [("mtcnn", "faces"), ("ssd-mobilenet-v2", "detect"),
                       ("movenet-lightning", "pose"), ("selfie-segmentation", "segment")]:
        model = convscope.open_model(name, task=task)
        d = model.describe()
        assert (d.task, d.name) == (task, name)
        assert d.provenance and d.licence and d.labels
    with pytest.raises(UsageError, match="is a faces model, and this needs a classify model"):
        convscope.open_model("mtcnn", task="classify")
    with pytest.raises(UsageError, match="carries its own weights"):
        convscope.open_model("blazeface", weights="x.pt")


@pytest.mark.parametrize("name", FACE_DETECTORS)
def test_each_face_detector_finds_the_astronauts_one_face_and_no_cat_face(
        scene_model, photos, name):
    model = scene_model(name)
    found = model(photos["astronaut"])
    assert isinstance(found, Detections) and len(found) == 1, found.to_dict()
    assert iou(found.boxes[0], ASTRONAUT_FACE) > 0.6, found.boxes
    assert found.labels == ("face",)
    for other in ("chelsea", "coffee"):
        assert len(model(photos[other])) == 0, (other, model(photos[other]).to_dict())


def test_landmarks_sit_on_the_face_in_order(scene_model, photos):
    found = scene_model("mtcnn")(photos["astronaut"])
    points = dict(zip(found.keypoint_names, found.keypoints[0]))
    x0, y0, x1, y1 = found.boxes[0]
    assert all(x0 <= x <= x1 and y0 <= y <= y1 for x, y in points.values())
    # the subject's right eye is on the left of the picture, both above the nose and mouth
    assert points["right eye"][0] < points["left eye"][0]
    assert max(points["right eye"][1], points["left eye"][1]) < points["nose"][1]
    assert points["nose"][1] < points["left mouth corner"][1]
    blaze = scene_model("blazeface")(photos["astronaut"])
    assert blaze.keypoints.shape == (1, 6, 2)


def test_objects_in_the_three_photos(scene_model, photos):
    ssd = scene_model("ssd-mobilenet-v2")
    person = ssd(photos["astronaut"])
    assert "person" in person.labels
    assert "cat" in ssd(photos["chelsea"]).labels
    coffee = ssd(photos["coffee"])
    assert "cup" in coffee.labels
    assert list(coffee.scores) == sorted(coffee.scores, reverse=True)
    assert (coffee.scores >= 0.5).all()  # the default min_score
    assert len(ssd(photos["coffee"], min_score=0.9)) < len(coffee)


def test_pose_puts_the_eyes_above_the_nose_above_the_shoulders(scene_model, photos):
    poses = scene_model("movenet-lightning")(photos["astronaut"])
    assert isinstance(poses, Poses) and poses.keypoints.shape == (1, 17, 2)
    nose = poses.point("nose")[1]
    assert poses.point("left eye")[1] < nose and poses.point("right eye")[1] < nose
    assert nose < poses.point("left shoulder")[1] and nose < poses.point("right shoulder")[1]
    x, y, _ = poses.point("nose")
    x0, y0, x1, y1 = ASTRONAUT_FACE
    assert x0 < x < x1 and y0 < y < y1


def test_the_mask_covers_the_person_more_than_the_background(scene_model, photos):
    mask = scene_model("selfie-segmentation")(photos["astronaut"])
    assert isinstance(mask, PersonMask) and mask.probability.shape == (512, 512)
    x0, y0, x1, y1 = (int(v) for v in scene_model("ssd-mobilenet-v2")(
        photos["astronaut"]).boxes[0])
    inside = np.zeros((512, 512), bool)
    inside[y0:y1, x0:x1] = True
    assert mask.mask[inside].mean() > 2 * mask.mask[~inside].mean()
    x0, y0, x1, y1 = ASTRONAUT_FACE
    assert mask.mask[y0:y1, x0:x1].mean() > 0.9
    assert mask.mask_image().dtype == np.uint8 and set(np.unique(mask.mask_image())) <= {0, 255}


@pytest.mark.parametrize("name", ["mtcnn", "blazeface", "haar-cascade", "ssd-mobilenet-v2"])
def test_boxes_are_in_the_photos_own_pixels_when_it_is_padded_or_large(scene_model, photos,
                                                                      name):
    model = scene_model(name)
    plain = model(photos["astronaut"]).boxes[0]
    wide = np.zeros((512, 912, 3), np.uint8)
    wide[:, 200:712] = photos["astronaut"]
    shifted = model(wide).boxes[0] - np.array([200, 0, 200, 0])
    assert iou(plain, shifted) > 0.8, (plain, shifted)
    big = np.asarray(Image.fromarray(photos["astronaut"]).resize((2048, 2048)))
    scaled = model(big, max_side=600).boxes[0] / 4  # looked at downscaled, given full size
    assert iou(plain, scaled) > 0.8, (plain, scaled)


def test_pose_and_mask_follow_the_photo_when_it_is_padded(scene_model, photos):
    wide = np.zeros((512, 912, 3), np.uint8)
    wide[:, 200:712] = photos["astronaut"]
    pose = scene_model("movenet-lightning")
    assert abs(pose(wide).point("nose")[0] - 200 - pose(photos["astronaut"]).point("nose")[0]) < 8
    mask = scene_model("selfie-segmentation")(wide)
    assert mask.probability.shape == (512, 912)
    assert mask.mask[:, :150].mean() < 0.05  # the black margin is no person


def _png(array: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, format="PNG") if mode else \
        Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def test_grey_rgba_and_16_bit_photos_are_converted(scene_model, photos):
    mtcnn = scene_model("mtcnn")
    a = photos["astronaut"]
    grey = np.asarray(Image.fromarray(a).convert("L"))
    rgba = np.dstack([a, np.full(a.shape[:2], 255, np.uint8)])
    deep = grey.astype(np.uint16) * 257
    for data in (_png(grey), _png(rgba), _png(deep)):
        found = mtcnn(data)
        assert len(found) == 1 and iou(found.boxes[0], ASTRONAUT_FACE) > 0.6
        assert found.image.shape == (512, 512, 3)


def test_a_photo_over_the_pixel_limit_is_refused_in_one_sentence(scene_model, photos,
                                                                 monkeypatch):
    monkeypatch.setenv("CONVSCOPE_MAX_PIXELS", "1000")
    with pytest.raises(ImageError, match="above the limit of 1,000"):
        scene_model("ssd-mobilenet-v2")(_png(photos["coffee"]))


def test_a_batch_gives_what_one_at_a_time_gives(scene_model, photos):
    for name in ("mtcnn", "ssd-mobilenet-v2"):
        model = scene_model(name)
        both = model.predict([photos["astronaut"], photos["astronaut"], photos["coffee"]])
        alone = [model(photos["astronaut"]), model(photos["coffee"])]
        for got, want in zip(both[1:], alone):
            assert got.labels == want.labels
            np.testing.assert_allclose(got.boxes, want.boxes, atol=1.0)
            np.testing.assert_allclose(got.scores, want.scores, atol=1e-3)


def test_min_score_out_of_range_is_one_sentence(scene_model, photos):
    with pytest.raises(UsageError, match="`min_score` must be between 0 and 1"):
        scene_model("mtcnn").predict([photos["coffee"]], min_score=2)


def test_results_say_themselves_as_json_and_draw_themselves(scene_model, photos):
    found = scene_model("mtcnn")(photos["astronaut"])
    d = found.to_dict()
    assert d["count"] == 1 and d["task"] == "faces" and d["detections"][0]["label"] == "face"
    assert set(d["detections"][0]["keypoints"]) == set(found.keypoint_names)
    picture = found.render()
    assert picture.ndim == 3 and picture.shape[1] >= 512
    assert found._repr_png_().startswith(b"\x89PNG")


def test_the_mask_of_a_batch_is_the_mask_of_each(scene_model, photos):
    model = scene_model("selfie-segmentation")
    many = model.predict([photos["astronaut"], photos["coffee"], photos["astronaut"]])
    alone = model(photos["coffee"])
    np.testing.assert_allclose(many[1].probability, alone.probability, atol=1e-4)
    np.testing.assert_allclose(many[0].probability, many[2].probability, atol=1e-5)


def test_blazefaces_weighted_suppression_matches_torchvisions_nms():
    """OpenCV's NMSBoxes plus the score-weighted mean, against torchvision's nms and
    box_iou as the oracle, on random overlapping boxes."""
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 30))
        centre, side = rng.uniform(0, 1, (n, 2)), rng.uniform(0.05, 0.3, (n, 2))
        boxes = np.concatenate([centre - side / 2, centre + side / 2], 1).astype(np.float32)
        scores = rng.uniform(0.5, 1, n).astype(np.float32)
        points = rng.uniform(0, 1, (n, 6, 2)).astype(np.float32)
        got_b, got_s, got_p = _weighted_nms(boxes, scores, points, 0.3)
        b = torch.from_numpy(boxes)
        keep = nms(b, torch.from_numpy(scores), 0.3).numpy()
        rows = box_iou(b[keep], b).numpy() > 0.3
        want_b = np.array([(boxes[r] * scores[r][:, None]).sum(0) / scores[r].sum()
                           for r in rows])
        want_p = np.array([(points[r] * scores[r][:, None, None]).sum(0) / scores[r].sum()
                           for r in rows])
        order, want = np.argsort(-got_s), np.argsort(-scores[keep])
        np.testing.assert_allclose(got_s[order], scores[keep][want])
        np.testing.assert_allclose(got_b[order], want_b[want], atol=1e-5)
        np.testing.assert_allclose(got_p[order], want_p[want], atol=1e-5)
