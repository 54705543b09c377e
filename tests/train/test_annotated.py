"""Training detectors and segmenters through the one Trainer: augmentation that moves boxes
and masks with the pixels, seeded batches, a smoke run that learns, the model file, and the
user's own COCO, VOC and YOLO folders with broken entries."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import convscope
from convscope.data import load_dataset
from convscope.data.annotated import AnnotatedDataset, AnnotatedSplit
from convscope.errors import UsageError
from convscope.scene.trained import TrainedDetector, TrainedSegmenter
from convscope.train import TrainConfig, fit
from convscope.train.annotated import AnnotatedObjective
from tests.conftest import run_cli
from tests.data.test_formats import broken, image, voc_xml

SMALL = dict(epochs=1, batch_size=4, progress=False, verbose=False)


def bright_rectangles(natural=True) -> AnnotatedDataset:
    """Two 40x60 images, each with one bright rectangle (255) on black: its box and mask
    are exactly the pixels at or above 128, which the tests recompute after augmenting."""
    images, boxes, masks = [], [], []
    for x0, y0, x1, y1 in ((10, 5, 22, 15), (30, 20, 50, 34)):
        x = torch.zeros(1, 40, 60, dtype=torch.uint8)
        x[:, y0:y1, x0:x1] = 255
        m = torch.zeros(40, 60, dtype=torch.uint8)
        m[y0:y1, x0:x1] = 1
        images.append(x)
        boxes.append(torch.tensor([[x0, y0, x1, y1]], dtype=torch.float32))
        masks.append(m)
    labels = [torch.tensor([0]), torch.tensor([0])]
    files = ["a", "b"]
    det = AnnotatedDataset("rects", "detect", ["rect"], AnnotatedSplit(images, files, boxes, labels),
                           AnnotatedSplit([], [], [], []), natural=natural)
    seg = AnnotatedDataset("rects", "segment", ["background", "rect"],
                           AnnotatedSplit(images, files, masks=masks),
                           AnnotatedSplit([], [], masks=[]), natural=natural)
    return det, seg


def extent(pixels: torch.Tensor) -> list[float]:
    ys, xs = torch.nonzero(pixels, as_tuple=True)
    return [float(xs.min()), float(ys.min()), float(xs.max()) + 1, float(ys.max()) + 1]


@pytest.mark.parametrize("augment", ["flip", "crop", "flip-crop"])
def test_augmentation_moves_boxes_and_masks_with_the_pixels(augment):
    det, seg = bright_rectangles()
    config = TrainConfig(augment=augment).resolve("detect")
    box_obj = AnnotatedObjective(det, config, torch.device("cpu"))
    mask_obj = AnnotatedObjective(seg, config, torch.device("cpu"))
    moved = 0
    for seed in range(12):
        for i in range(2):
            x, t = box_obj._sample(i, seed)
            if len(t["boxes"]):  # a box pushed off the image goes with its label
                assert t["labels"].tolist() == [0]
                assert torch.allclose(t["boxes"][0], torch.tensor(extent(x[0] >= 128)),
                                      atol=1.0), (augment, seed, i)
                moved += not torch.equal(t["boxes"], det.train.boxes[i])
            x2, t2 = mask_obj._sample(i, seed)
            assert torch.equal(x2, x)  # the same draws for the same seed, either task
            inside = t2["mask"] == 1
            assert torch.equal(inside, x2[0] >= 128), (augment, seed, i)
            assert set(torch.unique(t2["mask"]).tolist()) <= {0, 1, 255}
    assert moved > 0  # the augmentation did move things


def test_digits_are_never_mirrored_and_classifier_augments_are_refused():
    det, _ = bright_rectangles(natural=False)
    obj = AnnotatedObjective(det, TrainConfig().resolve("detect"), torch.device("cpu"))
    assert obj.augment == "none"  # digit canvases: no jitter, never mirrored
    with pytest.raises(UsageError, match="altflip-translate is for classifiers"):
        AnnotatedObjective(det, TrainConfig(augment="altflip-translate").resolve("detect"),
                           torch.device("cpu"))


def test_batches_repeat_with_the_seed_and_a_process_gets_its_share():
    det, _ = bright_rectangles()
    obj = AnnotatedObjective(det, TrainConfig(augment="flip-crop").resolve("detect"),
                             torch.device("cpu"))
    idx = torch.tensor([1, 0, 1, 0])

    def draw(part):
        g = torch.Generator().manual_seed(5)
        return obj.batch(g, idx[part], 4, part, 1)

    whole, again, half = draw(slice(0, 4)), draw(slice(0, 4)), draw(slice(2, 4))
    for (a, b) in zip(whole[0], again[0]):
        assert torch.equal(a, b)
    for a, b in zip(whole[0][2:], half[0]):  # process 2 of 2 augments as one process would
        assert torch.equal(a, b)
    for ta, tb in zip(whole[1][2:], half[1]):
        assert torch.equal(ta["boxes"], tb["boxes"])


def test_segmentation_batches_pad_with_ignored_pixels():
    _, seg = bright_rectangles()
    seg.train.images[1] = seg.train.images[1][:, :30, :50].clone()
    seg.train.masks[1] = seg.train.masks[1][:30, :50].clone()
    obj = AnnotatedObjective(seg, TrainConfig(augment="none").resolve("segment"),
                             torch.device("cpu"))
    x, y = obj.batch(torch.Generator().manual_seed(0), torch.tensor([0, 1]), 2, slice(0, 2), 1)
    assert x.shape == (2, 1, 40, 60) and y.shape == (2, 40, 60)
    assert (y[1, 30:] == 255).all() and (y[1, :, 50:] == 255).all()
    assert torch.equal(y[1, :30, :50], seg.train.masks[1])


# --------------------------------------------------------------------------- smoke runs

@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    out = tmp_path_factory.mktemp("boxes")
    det = convscope.train("fake-boxes:n=32,test=8,size=48", model="fcos", epochs=4,
                          batch_size=8, lr=2e-3, warmup_epochs=1.0, max_grad_norm=2.0,
                          out=out, progress=False, verbose=False)  # a Path works as out
    return det, out


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory):
    out = tmp_path_factory.mktemp("masks")
    seg = convscope.train("fake-masks:n=24,test=8,size=48", model="lraspp", epochs=3,
                          batch_size=8, lr=5e-3, out=str(out), progress=False, verbose=False)
    return seg, out


def rows(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_a_detector_learns_and_its_file_reopens(detector):
    det, out = detector
    assert isinstance(det, TrainedDetector)
    history = rows(out)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert history[-1]["train_loss"] < 0.85 * history[0]["train_loss"]  # it learns
    assert {"test_map", "test_map50", "test_map75"} <= set(history[-1])
    config = json.loads((out / "config.json").read_text())
    assert config["resolved"]["task"] == "detect" and config["model"] == "fcos"
    again = convscope.open_model(out / "model.safetensors")
    assert isinstance(again, TrainedDetector) and again.classes == ["rectangle", "ellipse"]
    assert again.meta.metrics["test_map50"] == history[-1]["test_map50"]
    ds = load_dataset("fake-boxes:n=32,test=8,size=48")
    a, b = det.outputs(ds.test.images), again.outputs(ds.test.images)
    for x, y in zip(a, b):
        assert torch.equal(x["boxes"], y["boxes"]) and torch.equal(x["scores"], y["scores"])
    found = again.predict(ds.test.images[0].permute(1, 2, 0).numpy(), min_score=0.0)[0]
    assert found.labels and set(found.labels) <= {"rectangle", "ellipse"}


def test_the_reported_map_is_pycocotools_on_the_exported_json(detector, tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from convscope.metrics import coco_ground_truth, coco_predictions

    det, out = detector
    proc = run_cli("evaluate", out / "model.safetensors", "--json")
    reported = json.loads(proc.stdout)
    ds = load_dataset("fake-boxes:n=32,test=8,size=48")
    (tmp_path / "gt.json").write_text(json.dumps(coco_ground_truth(ds)))
    preds = coco_predictions(det.outputs(ds.test.images), len(ds.classes))
    assert preds, "the detector found nothing to score"
    (tmp_path / "dt.json").write_text(json.dumps(preds))
    gt = COCO(str(tmp_path / "gt.json"))
    e = COCOeval(gt, gt.loadRes(str(tmp_path / "dt.json")), iouType="bbox")
    e.evaluate()
    e.accumulate()
    e.summarize()
    assert reported["map"] == pytest.approx(e.stats[0], abs=1e-12)
    assert reported["map50"] == pytest.approx(e.stats[1], abs=1e-12)
    assert reported["map50"] > 0  # a score that can differ


def test_a_segmenter_learns_and_writes_masks_a_dataset_reads_back(segmenter, tmp_path):
    seg, out = segmenter
    assert isinstance(seg, TrainedSegmenter)
    history = rows(out)
    assert history[-1]["train_loss"] < 0.7 * history[0]["train_loss"]
    assert 0 <= history[-1]["test_miou"] <= 1
    ds = load_dataset("fake-masks:n=24,test=8,size=48")
    ev = convscope.open_model(out / "model.safetensors").evaluate(ds)
    assert ev.miou == pytest.approx(history[-1]["test_miou"], abs=1e-6)
    # the indexed PNG predict writes is a mask the masks: reader takes back, unchanged
    root = tmp_path / "seg"
    photo = ds.test.images[0].permute(1, 2, 0).numpy()
    image_path = root / "images" / "p.png"
    image_path.parent.mkdir(parents=True)
    from PIL import Image

    Image.fromarray(photo).save(image_path)
    (root / "classes.txt").write_text("\n".join(seg.classes) + "\n")
    run_cli("predict", out / "model.safetensors", image_path, "--mask-out",
            root / "masks" / "p.png", "--out", tmp_path / "drawn.png")
    back = load_dataset(f"masks:{root}", holdout=0, progress=False)
    predicted = seg.predict(photo)[0].labels
    assert np.array_equal(back.train.masks[0].numpy(), predicted)


# --------------------------------------------------------------------------- user folders

def coco_folder(root):
    image(root / "images" / "a.png", 40, 32)
    image(root / "images" / "b.png", 36, 30, seed=1)
    image(root / "images" / "c.png", 40, 32, seed=2)
    broken(root / "images" / "bad.png")
    doc = {"images": [{"id": i, "file_name": f} for i, f in
                      enumerate(["a.png", "b.png", "c.png", "bad.png", "gone.png"], 1)],
           "categories": [{"id": 1, "name": "cell"}, {"id": 2, "name": "debris"}],
           "annotations": [
               {"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 4, 12, 10]},
               {"id": 2, "image_id": 2, "category_id": 2, "bbox": [10, 8, 14, 14]},
               {"id": 3, "image_id": 3, "category_id": 1, "bbox": [20, 10, 12, 12]},
               {"id": 4, "image_id": 3, "category_id": 1, "bbox": [60, 60, 5, 5]},  # outside
               {"id": 5, "image_id": 1, "category_id": 9, "bbox": [1, 1, 5, 5]},  # unknown
               {"id": 6, "image_id": 2, "category_id": 1, "bbox": [3, 3, 0, 4]},  # empty
               {"id": 7, "image_id": 4, "category_id": 1, "bbox": [1, 1, 5, 5]},  # unreadable
               {"id": 8, "image_id": 5, "category_id": 1, "bbox": [1, 1, 5, 5]}]}  # missing
    (root / "annotations.json").write_text(json.dumps(doc))
    return f"coco:{root}", 5


def voc_folder(root):
    (root / "Annotations").mkdir(parents=True)
    for i, name in enumerate("abc"):
        image(root / "JPEGImages" / f"{name}.jpg", 30, 20, seed=i)
        (root / "Annotations" / f"{name}.xml").write_text(voc_xml(f"{name}.jpg", [
            ("car", (2 + i, 2, 12 + i, 12)), ("tram", (1, 1, 4, 4))]))  # tram: unknown
    broken(root / "JPEGImages" / "d.jpg")
    (root / "Annotations" / "d.xml").write_text(voc_xml("d.jpg", [("car", (1, 1, 5, 5))]))
    (root / "Annotations" / "e.xml").write_text("<annotation>")  # malformed
    (root / "classes.txt").write_text("car\nbus\n")
    return f"voc:{root}", 5


def yolo_folder(root):
    for i, name in enumerate("abc"):
        image(root / "images" / f"{name}.png", 32, 24, seed=i)
        (root / "labels").mkdir(parents=True, exist_ok=True)
        (root / "labels" / f"{name}.txt").write_text(f"0 0.{4 + i} 0.5 0.3 0.4\n"
                                                      "7 0.5 0.5 0.1 0.1\n")  # unknown class
    broken(root / "images" / "bad.png")
    (root / "labels" / "bad.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "labels" / "lost.txt").write_text("0 0.5 0.5 0.2 0.2\n")  # no image
    (root / "data.yaml").write_text("names:\n  0: bolt\n  1: nut\n")
    return f"yolo:{root}", 5


@pytest.mark.parametrize("make", [coco_folder, voc_folder, yolo_folder])
def test_user_folders_with_broken_entries_train_and_evaluate(make, tmp_path):
    name, bad = make(tmp_path / "data")
    out = tmp_path / "run"
    proc = run_cli("train", "--data", name, "--holdout", "1", "--epochs", "1", "--batch-size",
                   "2", "--model", "fcos:fpn_channels=64", "--out", out, "--quiet")
    assert f"note: {bad} annotation(s) or image(s) not taken as they were" in proc.stdout
    config = json.loads((out / "config.json").read_text())
    assert len(config["resolved"]["dataset"]["skipped"]) == bad
    proc = run_cli("evaluate", out / "model.safetensors", "--json")
    ev = json.loads(proc.stdout)
    assert ev["task"] == "detect" and ev["images"] == 1  # its own held-out image


def test_detection_options_are_checked_in_one_sentence(tmp_path):
    ds = load_dataset("fake-boxes:n=4,test=2,size=32")
    with pytest.raises(UsageError, match="trainable_layers=0"):
        fit(ds, TrainConfig(model="fcos", weights="x", freeze=True), progress=False)
    with pytest.raises(UsageError, match="recipe fast trains classification models"):
        fit(ds, TrainConfig(recipe="fast"), progress=False)
    with pytest.raises(UsageError, match="not a detector"):
        fit(ds, TrainConfig(model="lraspp"), progress=False)
    with pytest.raises(UsageError, match="not a classifier"):
        fit(load_dataset("digits"), TrainConfig(model="fcos"), progress=False)


def test_info_layers_and_summary_describe_a_trained_detector_and_segmenter(detector, segmenter):
    from tests.conftest import call_cli

    det_file, seg_file = detector[1] / "model.safetensors", segmenter[1] / "model.safetensors"
    info = call_cli("info", det_file).stdout
    assert "task        detect" in info and "test mAP@.5" in info and "top-1" not in info
    assert "test mean IoU" in call_cli("info", seg_file).stdout
    layers = call_cli("layers", det_file).stdout
    assert "backbone.body.features.0.0" in layers and "filters" in layers
    table = json.loads(call_cli("layers", seg_file, "--json").stdout)
    assert table["defaults"]["filters"].startswith("backbone.")
    assert "backbone.body" in call_cli("summary", det_file).stdout
