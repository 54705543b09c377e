"""A trained detector's worst detections and a segmenter's worst masks; Grad-CAM of one box
and of one mask class (the target mapped to the right detection, captum's numbers), occlusion
of a mask class; the model left as it was."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import LayerAttribution, LayerGradCam

import convscope
from convscope.data import load_dataset
from convscope.errors import UsageError
from convscope.inspect.annotated import (
    MaskExplainConfig,
    cam_layer,
    explain_mask_class,
    image_iou,
    match_detections,
    worst_detections,
    worst_masks,
)
from convscope.inspect.detection import BoxExplainConfig, box_target, explain_detection
from convscope.loading import open_model
from convscope.render.figures import read_config
from convscope.scene.trained import as_model_input


@pytest.fixture(scope="module")
def boxes(tmp_path_factory):
    """A one-epoch FCOS on 48-px shapes (about 15 s), its score threshold lowered so that
    its weak detections are kept; and its data."""
    out = tmp_path_factory.mktemp("boxes")
    convscope.train("fake-boxes:n=12,test=4,size=48", model="fcos", epochs=1, progress=False,
                    verbose=False, out=str(out))
    det = open_model(out / "model.safetensors")
    det.model.score_thresh = 0.01
    return det, load_dataset(det.meta.dataset, task="detect"), out


@pytest.fixture(scope="module")
def masks(tmp_path_factory):
    out = tmp_path_factory.mktemp("masks")
    convscope.train("fake-masks:n=12,test=4,size=48", model="lraspp", epochs=1,
                    progress=False, verbose=False, out=str(out))
    seg = open_model(out / "model.safetensors")
    return seg, load_dataset(seg.meta.dataset, task="segment"), out


def _photo(split, i=0) -> np.ndarray:
    return split.images[i].permute(1, 2, 0).numpy()


def test_matching_is_cocos_greedy_by_score():
    truths = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]])
    labels = torch.tensor([0, 1])
    out = {"boxes": torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 9], [20, 20, 30, 30],
                                  [50, 50, 60, 60]]),
           "scores": torch.tensor([0.6, 0.9, 0.8, 0.3]), "labels": torch.tensor([0, 0, 0, 0])}
    kept, matched = match_detections(out, truths, labels, min_score=0.5)
    # best first: 0.9 takes the class-0 box, 0.6 on the same box is left over, 0.8 is the
    # wrong class for the class-1 box, 0.3 is below min_score
    assert kept.tolist() == [1, 2, 0] and matched.tolist() == [0, -1, -1]


def test_image_iou_ignores_255():
    truth = torch.tensor([[0, 1], [1, 255]], dtype=torch.uint8)
    pred = torch.tensor([[0, 1], [0, 1]])
    miou, acc, per = image_iou(truth, pred, ["bg", "fg"])
    assert per == {"bg": 0.5, "fg": 0.5} and miou == 0.5 and acc == pytest.approx(2 / 3)


def test_worst_detections_add_up_and_draw(boxes, tmp_path):
    det, data, _ = boxes
    w = worst_detections(det, data, min_score=0.05, n=5)
    d = w.to_dict()
    assert d["objects"] == sum(len(b) for b in data.test.boxes)
    assert d["false_positive_count"] == w.detections - w.found
    assert len(w.false_positives) <= 5 and len(w.missed) == min(5, w.objects - w.found)
    scores = [m.score for m in w.false_positives]
    assert scores == sorted(scores, reverse=True) and all(s >= 0.05 for s in scores)
    assert all(m.why for m in w.false_positives + w.missed)
    assert {m.file for m in w.missed} <= set(data.test.files)
    w.save(tmp_path / "w.png", config={"n": 5})
    assert read_config(tmp_path / "w.png") == {"n": 5}
    with pytest.raises(UsageError, match="holds no boxes"):
        worst_detections(det, load_dataset("fake-masks:n=4,test=2,size=48", task="segment"))


def test_box_gradcam_target_is_the_box_score(boxes):
    det, data, _ = boxes
    photo = _photo(data.test)
    found = det.predict([photo], min_score=0.0)[0]
    x = as_model_input(photo, det.channels).float()[None] / 255
    for i in range(min(3, len(found))):  # each box maps to its own detection's score
        log_odds = box_target(det, found.boxes[i], found.labels[i])(x)
        assert float(torch.sigmoid(log_odds.detach())) == pytest.approx(float(found.scores[i]), abs=1e-4)
    lost = box_target(det, np.array([0, 0, 1, 1], np.float32), found.labels[0])(x)
    assert float(lost.detach()) == 0.0  # no detection of that label there: no score


def test_box_gradcam_runs_and_leaves_the_detector(boxes):
    det, data, _ = boxes
    layer, _, _ = cam_layer(det.model)
    det.model.train()
    try:
        e = explain_detection(det, _photo(data.test), BoxExplainConfig(0, "gradcam"),
                              min_score=0.0, progress=False)
        assert det.model.training and all(m.training for m in det.model.modules())
    finally:
        det.model.eval()
    assert not layer._forward_hooks and not layer._forward_pre_hooks
    assert e.heat.shape == (48, 48) and e.heat.min() >= 0
    assert e.settings["map"] == [2, 2]  # stride 32 on 48 px (padded to 64)
    assert e.render().ndim == 3


def test_mask_gradcam_is_captums(masks):
    seg, data, _ = masks
    photo = _photo(data.test)
    e = explain_mask_class(seg, photo, MaskExplainConfig(method="gradcam"), progress=False)
    k = seg.classes.index(e.label)
    x = as_model_input(photo, seg.channels).float()[None] / 255
    on = seg.probabilities(as_model_input(photo, seg.channels)).argmax(0) == k
    assert (on.numpy() == e.mask).all()

    def target(inp):
        return (seg.model(inp)["out"][:, k] * on).sum((1, 2))[:, None]

    cam = LayerGradCam(target, seg.model.classifier.cbr).attribute(
        x, target=0, relu_attributions=True, attribute_to_layer_input=True)
    want = LayerAttribution.interpolate(cam, (48, 48), interpolate_mode="bilinear")[0, 0]
    assert np.allclose(e.heat, want.detach().numpy(), atol=1e-5)
    assert not seg.model.training


def test_mask_occlusion_and_errors(masks, tmp_path):
    seg, data, _ = masks
    photo = _photo(data.test)
    e = explain_mask_class(seg, photo, MaskExplainConfig(method="occlusion", window=12,
                                                         stride=12), progress=False)
    assert e.settings["masks"] == 16 and e.heat.shape == (48, 48)
    assert 0 <= e.inside_share() <= 1 and e.to_dict()["pixels"] == int(e.mask.sum())
    e.save(tmp_path / "o.png")
    absent = [c for c in seg.classes if c not in seg(photo).shares()]
    if absent:
        with pytest.raises(UsageError, match="calls no pixel"):
            explain_mask_class(seg, photo, MaskExplainConfig(target=absent[0]))
    with pytest.raises(UsageError, match="target"):
        explain_mask_class(seg, photo, MaskExplainConfig(target="nonsense"))


def test_worst_masks_lowest_first(masks, tmp_path):
    seg, data, _ = masks
    w = worst_masks(seg, data, n=3)
    ious = [m.iou for m in w.worst]
    assert len(ious) == 3 and ious == sorted(ious)
    preds = seg.outputs(data.test.images)
    for m in w.worst:
        assert m.iou == pytest.approx(image_iou(data.test.masks[m.image], preds[m.image],
                                                seg.classes)[0])
    assert w.render().shape[2] == 3
    assert w.format().startswith("mean of the per-image IoU")
