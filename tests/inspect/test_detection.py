"""Looking inside one detection: occlusion (black-box, any detector) against a detector whose
score is hand-computable, and Grad-CAM on MTCNN's O-Net."""

from __future__ import annotations

import numpy as np
import pytest

from convscope.errors import UsageError
from convscope.inspect.detection import BoxExplainConfig, explain_detection
from convscope.models.pretrained import PRETRAINED
from convscope.scene.models import Detector
from tests.conftest import ASTRONAUT_FACE

BOX = (20.0, 20.0, 40.0, 40.0)


class Brightness(Detector):
    """One fixed box whose score is the mean brightness inside it (0-1)."""

    task = "detect"
    label_names = ("thing",)
    default_min_score = 0.0
    batch = 4

    def __init__(self):
        super().__init__(PRETRAINED["ssd-mobilenet-v2"], None)

    def _detect(self, arrays, min_score):
        out = []
        for a in arrays:
            score = a[20:40, 20:40].mean() / 255
            out.append((np.array([BOX], np.float32), np.array([score], np.float32),
                        ["thing"], np.zeros((1, 0, 2))))
        return out


def test_occlusion_is_the_score_each_hidden_square_takes_away():
    white = np.full((60, 60, 3), 255, np.uint8)
    expl = explain_detection(Brightness(), white, BoxExplainConfig(window=10, stride=10,
                                                                   margin=1.0),
                             progress=False)
    assert expl.settings["region"] == [0, 0, 60, 60] and expl.settings["masks"] == 36
    # a 10x10 grey (127) square inside the 20x20 box takes (255-127)/255 * 100/400 away
    drop = (255 - 127) / 255 * 100 / 400
    np.testing.assert_allclose(expl.heat[20:40, 20:40], drop, rtol=1e-4)
    assert np.abs(expl.heat[:20]).max() == 0 and np.abs(expl.heat[:, 40:]).max() == 0
    assert expl.inside_share() == pytest.approx(1.0)
    assert expl.to_dict()["label"] == "thing"


def test_only_the_region_round_the_box_is_searched():
    white = np.full((200, 200, 3), 255, np.uint8)
    expl = explain_detection(Brightness(), white, BoxExplainConfig(window=5, margin=0.5),
                             progress=False)
    assert expl.settings["region"] == [10, 10, 50, 50]
    assert expl.heat[60:].max() == 0


def test_a_detection_that_is_not_there_is_one_sentence():
    with pytest.raises(UsageError, match="no detection 3 to explain"):
        explain_detection(Brightness(), np.zeros((60, 60, 3), np.uint8),
                          BoxExplainConfig(index=3), progress=False)
    with pytest.raises(UsageError, match="stride"):
        explain_detection(Brightness(), np.zeros((60, 60, 3), np.uint8),
                          BoxExplainConfig(window=4, stride=8), progress=False)


def test_gradcam_needs_a_pytorch_detector(photos, scene_model):
    with pytest.raises(UsageError, match="use `method` occlusion"):
        explain_detection(Brightness(), np.zeros((60, 60, 3), np.uint8),
                          BoxExplainConfig(method="gradcam"), progress=False)


def test_gradcam_of_mtcnn_looks_at_the_face(photos, scene_model):
    mtcnn = scene_model("mtcnn")
    weights = {k: v.clone() for k, v in mtcnn.network.state_dict().items()}
    expl = explain_detection(mtcnn, photos["astronaut"], BoxExplainConfig(method="gradcam"),
                             progress=False)
    assert expl.heat.max() > 0
    assert expl.inside_share() > 0.6
    x0, y0, x1, y1 = ASTRONAUT_FACE
    ys, xs = np.unravel_index(np.argmax(expl.heat), expl.heat.shape)
    assert x0 <= xs <= x1 and y0 <= ys <= y1
    # nothing of the detector changed: no hook left, same weights, same mode
    onet = mtcnn.network.onet
    assert not onet.dense6_1._forward_hooks and not onet.prelu3._forward_hooks
    assert all((v == weights[k]).all() for k, v in mtcnn.network.state_dict().items())
    assert not mtcnn.network.training


def test_occlusion_of_a_real_face_hurts_most_on_the_face(photos, scene_model):
    expl = explain_detection(scene_model("blazeface"), photos["astronaut"],
                             BoxExplainConfig(window=40, stride=20, margin=0.5),
                             progress=False)
    assert expl.heat.max() > 0.05
    assert expl.inside_share() > 0.5
    assert expl.render().ndim == 3
