"""COCO mAP by pycocotools, checked against pycocotools run on the exported JSON and against
hand-computed cases; mean IoU and pixel accuracy on a hand-computed 4x4 example."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import torch

from convscope.data import AnnotatedDataset, AnnotatedSplit, load_dataset
from convscope.errors import ConvscopeError
from convscope.metrics import (
    coco_ground_truth,
    coco_predictions,
    confusion_matrix,
    evaluate_boxes,
    evaluate_masks,
)


def perfect(split):
    return [{"boxes": b, "scores": torch.ones(len(b)), "labels": y}
            for b, y in zip(split.boxes, split.labels)]


def noisy(split, seed=0):
    """Jittered true boxes with random scores, some labels wrong, plus a false positive."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for b, y in zip(split.boxes, split.labels):
        jitter = torch.randn(b.shape, generator=g) * 3
        labels = torch.where(torch.rand(len(y), generator=g) < 0.2, 1 - y, y)
        extra = torch.tensor([[5.0, 5.0, 25.0, 25.0]])
        out.append({"boxes": torch.cat([b + jitter, extra]),
                    "scores": torch.rand(len(b) + 1, generator=g),
                    "labels": torch.cat([labels, torch.tensor([0])])})
    return out


def two_objects():
    """One image with two 'thing' boxes."""
    image = torch.zeros(3, 40, 40, dtype=torch.uint8)
    split = AnnotatedSplit([image], ["a.png"],
                           [torch.tensor([[2.0, 2, 12, 12], [20, 20, 30, 34]])],
                           [torch.tensor([0, 0])])
    return AnnotatedDataset("two", "detect", ["thing", "other"], split, split)


def test_perfect_predictions_score_one():
    ds = load_dataset("fake-boxes")
    ev = evaluate_boxes(perfect(ds.test), ds)
    assert ev.map == pytest.approx(1.0) and ev.map50 == pytest.approx(1.0)
    assert ev.per_class == pytest.approx([1.0, 1.0]) and ev.images == 8
    assert json.loads(json.dumps(ev.to_dict()))["per_class"] == {"rectangle": 1.0,
                                                                 "ellipse": 1.0}


def test_one_missed_object_of_two_by_hand():
    ds = two_objects()
    found = [{"boxes": torch.tensor([[2.0, 2, 12, 12]]), "scores": torch.tensor([0.9]),
              "labels": torch.tensor([0])}]
    ev = evaluate_boxes(found, ds)
    # recall reaches 1/2 at precision 1: COCO's 101 recall points 0, .01, ..., .5 score 1,
    # the 50 above score 0, at every IoU threshold
    assert ev.map == pytest.approx(51 / 101) and ev.map50 == pytest.approx(51 / 101)
    assert ev.per_class == [pytest.approx(51 / 101), None]  # "other" has no true box
    nothing = evaluate_boxes([{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0),
                               "labels": torch.zeros(0, dtype=torch.int64)}], ds)
    assert nothing.map == 0.0 and nothing.per_class == [0.0, None]
    assert "mAP@.5" in ev.format()


def test_map_equals_pycocotools_on_the_exported_json(tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ds = load_dataset("fake-boxes:n=4,test=30,seed=2")
    predictions = noisy(ds.test)
    ev = evaluate_boxes(predictions, ds)
    assert 0.05 < ev.map < 0.95  # a case that is neither trivial nor hopeless
    (tmp_path / "gt.json").write_text(json.dumps(coco_ground_truth(ds)))
    (tmp_path / "dt.json").write_text(json.dumps(coco_predictions(predictions)))
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(tmp_path / "gt.json"))
        reference = COCOeval(gt, gt.loadRes(str(tmp_path / "dt.json")), "bbox")
        reference.evaluate()
        reference.accumulate()
        reference.summarize()
    assert ev.map == pytest.approx(reference.stats[0], abs=1e-12)
    assert ev.map50 == pytest.approx(reference.stats[1], abs=1e-12)
    assert ev.map75 == pytest.approx(reference.stats[2], abs=1e-12)
    assert np.mean(ev.per_class) == pytest.approx(reference.stats[0], abs=1e-12)


def test_export_and_refusals():
    ds = two_objects()
    doc = coco_ground_truth(ds)
    assert doc["categories"] == [{"id": 1, "name": "thing"}, {"id": 2, "name": "other"}]
    assert doc["annotations"][1]["bbox"] == [20, 20, 10, 14]
    assert doc["images"][0] == {"id": 1, "file_name": "a.png", "height": 40, "width": 40}
    with pytest.raises(ConvscopeError, match="holds 0 images but the test split has 1"):
        evaluate_boxes([], ds)
    with pytest.raises(ConvscopeError, match="labels outside 0..1.*subtract 1"):
        evaluate_boxes([{"boxes": [[1, 1, 2, 2]], "scores": [1], "labels": [2]}], ds)
    with pytest.raises(ConvscopeError, match="2 boxes, 1 scores"):
        evaluate_boxes([{"boxes": [[1, 1, 2, 2]] * 2, "scores": [1], "labels": [0]}], ds)
    with pytest.raises(ConvscopeError, match="`evaluate_masks`"):
        coco_ground_truth(load_dataset("fake-masks"))


# --------------------------------------------------------------------------- masks

TRUE = [[0, 0, 1, 1],
        [0, 0, 1, 1],
        [2, 2, 255, 255],
        [2, 2, 2, 2]]
PREDICTED = [[0, 1, 1, 1],
             [0, 0, 1, 1],
             [2, 2, 0, 0],
             [2, 2, 2, 0]]


def four_by_four():
    mask = torch.tensor(TRUE, dtype=torch.uint8)
    split = AnnotatedSplit([torch.zeros(1, 4, 4, dtype=torch.uint8)], ["m.png"], masks=[mask])
    return AnnotatedDataset("4x4", "segment", ["background", "road", "car"], split, split)


def test_mean_iou_by_hand():
    ev = evaluate_masks([np.array(PREDICTED)], four_by_four())
    # 14 scored pixels (two ignored); rows true, columns predicted
    assert ev.confusion.tolist() == [[3, 1, 0], [0, 4, 0], [1, 0, 5]]
    # IoU = TP / (true + predicted - TP): 3/5, 4/5, 5/6
    assert ev.per_class_iou == pytest.approx([3 / 5, 4 / 5, 5 / 6])
    assert ev.miou == pytest.approx((3 / 5 + 4 / 5 + 5 / 6) / 3)
    assert ev.pixel_accuracy == pytest.approx(12 / 14) and ev.pixels == 14
    assert ev.per_class_accuracy == pytest.approx([3 / 4, 1, 5 / 6])
    assert json.loads(json.dumps(ev.to_dict()))["miou"] == pytest.approx(ev.miou)
    assert "mean IoU" in ev.format()


def test_confusion_matches_scikit_learn():
    from sklearn.metrics import confusion_matrix as sk_confusion

    rng = np.random.default_rng(0)
    true = rng.integers(0, 4, (30, 20))
    true[rng.random(true.shape) < 0.1] = 255
    predicted = rng.integers(0, 4, (30, 20))
    keep = true != 255
    ours = confusion_matrix(torch.from_numpy(predicted), torch.from_numpy(true), 4)
    assert (ours.numpy() == sk_confusion(true[keep], predicted[keep], labels=range(4))).all()


def test_mask_scores_on_a_dataset_and_refusals():
    ds = load_dataset("fake-masks")
    ev = evaluate_masks(ds.test.masks, ds)
    assert ev.miou == pytest.approx(1.0) and ev.pixel_accuracy == pytest.approx(1.0)
    background = evaluate_masks([torch.zeros_like(m) for m in ds.test.masks], ds)
    assert background.per_class_iou[1] == 0.0 and background.miou < 0.5
    absent = evaluate_masks([np.array(TRUE).clip(0, 1)], four_by_four())
    assert absent.per_class_iou[2] == 0.0  # a true class never predicted scores 0, not None
    with pytest.raises(ConvscopeError, match="is \\(3, 3\\) but its image is \\(4, 4\\)"):
        evaluate_masks([np.zeros((3, 3))], four_by_four())
    with pytest.raises(ConvscopeError, match="outside 0..2"):
        evaluate_masks([np.full((4, 4), 3)], four_by_four())
    with pytest.raises(ConvscopeError, match="`split` must be"):
        evaluate_masks([np.zeros((4, 4))], four_by_four(), split="val")
