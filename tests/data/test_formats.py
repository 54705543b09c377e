"""coco:, voc:, yolo: and masks: on tiny folders written here, each with broken entries among
the good ones: every bad annotation or image is counted and listed, never fatal."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import convscope.data.formats as formats
from convscope.data import IGNORE, load_dataset
from convscope.data.formats import fit_box
from convscope.errors import ConvscopeError, UsageError


def image(path, w, h, seed=0, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(arr).convert(mode).save(path)
    return path


def broken(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not an image at all")
    return path


def boxes_of(ds, file):
    split = ds.train if file in ds.train.files else ds.test
    i = split.files.index(file)
    return split.boxes[i].tolist(), split.labels[i].tolist()


def test_fit_box_clips_or_drops_and_says_which():
    assert fit_box((1, 2, 5, 6), 10, 10) == ((1, 2, 5, 6), None)
    kept, why = fit_box((-3, 2, 5, 16), 10, 10)
    assert kept == (0.0, 2, 5, 10) and "partly outside the 10x10 image: clipped to (0, 2, 5, 10)" \
        in why
    assert fit_box((12, 2, 15, 6), 10, 10) == (None, "box (12, 2, 15, 6) lies outside the 10x10 "
                                                     "image: left out")
    assert fit_box((10, 0, 12, 5), 10, 10)[0] is None  # empty once clipped: only the border
    assert "empty box" in fit_box((5, 5, 5, 9), 10, 10)[1]
    assert "finite" in fit_box((0, 0, float("nan"), 3), 10, 10)[1]


# --------------------------------------------------------------------------- COCO

@pytest.fixture
def coco(tmp_path):
    root = tmp_path / "coco"
    image(root / "images" / "a.png", 40, 30)
    image(root / "images" / "b.png", 20, 20, seed=1)
    broken(root / "images" / "c.png")
    doc = {
        "images": [{"id": 1, "file_name": "a.png", "width": 40, "height": 30},
                   {"id": 2, "file_name": "b.png"}, {"id": 3, "file_name": "c.png"},
                   {"id": 4, "file_name": "gone.png"}, {"file_name": "no-id.png"}],
        "categories": [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 3, "bbox": [5, 5, 10, 10]},
            {"id": 11, "image_id": 1, "category_id": 7, "bbox": [35, 20, 10, 10]},  # clipped
            {"id": 12, "image_id": 1, "category_id": 7, "bbox": [50, 50, 5, 5]},  # outside
            {"id": 13, "image_id": 2, "category_id": 3, "bbox": [1, 1, 0, 5]},  # empty
            {"id": 14, "image_id": 2, "category_id": 9, "bbox": [1, 1, 5, 5]},  # unknown class
            {"id": 15, "image_id": 2, "category_id": 3, "bbox": "oops"},  # malformed
            {"id": 16, "image_id": 3, "category_id": 3, "bbox": [1, 1, 5, 5]},  # unreadable
            {"id": 17, "image_id": 4, "category_id": 3, "bbox": [1, 1, 5, 5]},  # missing image
            {"id": 18, "image_id": 99, "category_id": 3, "bbox": [1, 1, 5, 5]},  # no such image
        ],
    }
    (root / "annotations.json").write_text(json.dumps(doc))
    return root


def test_coco_loads_counts_and_lists_every_bad_entry(coco):
    ds = load_dataset(f"coco:{coco}", holdout=0, progress=False)
    assert ds.task == "detect" and ds.classes == ["cat", "dog"]  # ordered by category id
    assert sorted(ds.train.files) == ["images/a.png", "images/b.png"] and len(ds.test) == 0
    assert boxes_of(ds, "images/a.png") == ([[5, 5, 15, 15], [35, 20, 40, 30]], [0, 1])
    assert boxes_of(ds, "images/b.png") == ([], [])  # every box of b was bad: kept as background
    s = ds.skipped
    assert len(s) == 9
    assert "clipped to (35, 20, 40, 30)" in s["annotations.json: annotation 11"]
    assert "lies outside the 40x30 image: left out" in s["annotations.json: annotation 12"]
    assert "empty box" in s["annotations.json: annotation 13"]
    assert "unknown class" in s["annotations.json: annotation 14"]
    assert "malformed annotation" in s["annotations.json: annotation 15"]
    assert "no image entry" in s["annotations.json: annotation 18"]
    assert "malformed image entry" in s["annotations.json: images[4]"]
    assert s["images/gone.png"].startswith("missing image, named in annotations.json")
    assert "not a readable image" in s["images/c.png"]
    assert any("9 annotation(s) or image(s)" in n for n in ds.notes)
    assert ds.train.boxes[0].dtype == torch.float32 and ds.train.labels[0].dtype == torch.int64
    assert ds.train.images[0].shape == (3, 30, 40) and ds.train.images[0].dtype == torch.uint8


def test_coco_decodes_once_then_reads_the_cache(coco, monkeypatch):
    first = load_dataset(f"coco:{coco}", holdout=0, progress=False)

    def no_decoding(*a, **k):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(formats, "open_image", no_decoding)
    again = load_dataset(f"coco:{coco}", holdout=0, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(first.train.images, again.train.images))
    assert again.skipped == first.skipped


def test_coco_split_files_and_a_malformed_json(tmp_path, coco):
    doc = json.loads((coco / "annotations.json").read_text())
    (coco / "annotations.json").unlink()
    (coco / "annotations").mkdir()
    (coco / "annotations" / "instances_train.json").write_text(json.dumps(doc))
    val = {**doc, "images": doc["images"][1:2], "annotations": []}
    (coco / "annotations" / "instances_val.json").write_text(json.dumps(val))
    ds = load_dataset(f"coco:{coco}", progress=False)
    assert ds.test.files == ["images/b.png"] and "images/a.png" in ds.train.files
    (coco / "annotations" / "instances_val.json").write_text("{not json")
    with pytest.raises(ConvscopeError, match="instances_val.json: not a COCO annotations file"):
        load_dataset(f"coco:{coco}", progress=False)


def test_seeded_split_is_fixed(tmp_path):
    root = tmp_path / "many"
    doc = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "thing"}]}
    for i in range(10):
        image(root / f"{i}.png", 12, 12, seed=i)
        doc["images"].append({"id": i, "file_name": f"{i}.png"})
        doc["annotations"].append({"id": i, "image_id": i, "category_id": 1,
                                   "bbox": [1, 1, 4, 4]})
    (root / "boxes.json").write_text(json.dumps(doc))
    ds = load_dataset(f"coco:{root}", progress=False)
    assert (len(ds.train), len(ds.test)) == (8, 2)
    assert load_dataset(f"coco:{root}", progress=False).test.files == ds.test.files
    assert len(load_dataset(f"coco:{root}", holdout=5, progress=False).test) == 5


def test_large_images_are_scaled_down_with_their_boxes(coco, monkeypatch):
    monkeypatch.setattr(formats, "LONGEST", 20)
    ds = load_dataset(f"coco:{coco}", holdout=0, progress=False)
    i = ds.train.files.index("images/a.png")
    assert ds.train.images[i].shape == (3, 15, 20)
    assert ds.train.boxes[i].tolist() == [[2.5, 2.5, 7.5, 7.5], [17.5, 10, 20, 15]]


# --------------------------------------------------------------------------- VOC

def voc_xml(filename, objects):
    body = "".join(f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{b[0]}"
                   f"</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox>"
                   "</object>" for n, b in objects)
    return (f"<annotation><filename>{filename}</filename><size><width>30</width>"
            f"<height>20</height><depth>3</depth></size>{body}</annotation>")


def test_voc_loads_counts_and_lists_every_bad_entry(tmp_path):
    root = tmp_path / "voc"
    ann = root / "Annotations"
    ann.mkdir(parents=True)
    image(root / "JPEGImages" / "a.jpg", 30, 20)
    broken(root / "JPEGImages" / "d.jpg")
    (root / "classes.txt").write_text("car\nbus\n")
    (ann / "a.xml").write_text(voc_xml("a.jpg", [
        ("car", (1, 1, 10, 8)),  # VOC pixels 1..10 inclusive: x0 = 0, x1 = 10
        ("bus", (21, 11, 40, 20)),  # partly outside: clipped
        ("tram", (2, 2, 5, 5)),  # unknown class
        ("car", (9, 5, 3, 7)),  # degenerate
    ]) .replace("</annotation>", "<object><name>car</name></object></annotation>"))
    (ann / "b.xml").write_text("<annotation><object>")  # malformed
    (ann / "c.xml").write_text(voc_xml("c.jpg", [("car", (1, 1, 5, 5))]))  # missing image
    (ann / "d.xml").write_text(voc_xml("d.jpg", [("car", (1, 1, 5, 5))]))  # unreadable image
    ds = load_dataset(f"voc:{root}", holdout=0, progress=False)
    assert ds.classes == ["car", "bus"] and ds.train.files == ["JPEGImages/a.jpg"]
    assert boxes_of(ds, "JPEGImages/a.jpg") == ([[0, 0, 10, 8], [20, 10, 30, 20]], [0, 1])
    s = ds.skipped
    assert len(s) == 7, s
    assert "clipped to (20, 10, 30, 20)" in s["Annotations/a.xml: object 2"]
    assert "unknown class 'tram'" in s["Annotations/a.xml: object 3"]
    assert "empty box" in s["Annotations/a.xml: object 4"]
    assert "malformed object" in s["Annotations/a.xml: object 5"]
    assert "malformed annotation file" in s["Annotations/b.xml"]
    assert s["JPEGImages/c.jpg"].startswith("missing image, named in Annotations/c.xml")
    assert "JPEGImages/d.jpg" in s


def test_voc_image_sets_and_classes_from_the_files(tmp_path):
    root = tmp_path / "voc"
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for i, name in enumerate(["p", "q", "r"]):
        image(root / "JPEGImages" / f"{name}.jpg", 16, 16, seed=i)
        (root / "Annotations" / f"{name}.xml").write_text(
            voc_xml(f"{name}.jpg", [("zebra" if i else "ant", (2, 2, 8, 8))]))
    (root / "ImageSets" / "Main" / "train.txt").write_text("p\nq\n")
    (root / "ImageSets" / "Main" / "val.txt").write_text("r\n")
    ds = load_dataset(f"voc:{root}", progress=False)
    assert ds.classes == ["ant", "zebra"] and ds.test.files == ["JPEGImages/r.jpg"]
    assert ds.skipped == {}


# --------------------------------------------------------------------------- YOLO

def test_yolo_loads_counts_and_lists_every_bad_entry(tmp_path):
    root = tmp_path / "yolo"
    image(root / "images" / "a.png", 50, 40)
    image(root / "images" / "bg.png", 20, 20, seed=1)  # no label file: a background image
    broken(root / "images" / "bad.png")
    (root / "labels").mkdir()
    (root / "labels" / "a.txt").write_text(
        "0 0.5 0.5 0.2 0.25\n"  # (20, 15, 30, 25)
        "5 0.5 0.5 0.1 0.1\n"  # unknown class
        "0 0.5 0.5\n"  # malformed
        "1 0.95 0.5 0.2 0.2\n"  # partly outside: clipped at x = 50
        "1 0.5 0.5 0 0.1\n"  # empty
        "\n")
    (root / "labels" / "bad.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "labels" / "lost.txt").write_text("0 0.5 0.5 0.2 0.2\n")  # its image is missing
    (root / "data.yaml").write_text("names:\n  0: person\n  1: bike\n")
    ds = load_dataset(f"yolo:{root}", holdout=0, progress=False)
    assert ds.classes == ["person", "bike"]
    assert sorted(ds.train.files) == ["images/a.png", "images/bg.png"]
    boxes, labels = boxes_of(ds, "images/a.png")
    assert labels == [0, 1]
    assert np.allclose(boxes, [[20, 15, 30, 25], [42.5, 16, 50, 24]])
    assert boxes_of(ds, "images/bg.png") == ([], [])
    s = ds.skipped
    assert len(s) == 6, s
    assert "unknown class 5" in s["labels/a.txt: line 2"]
    assert "malformed line" in s["labels/a.txt: line 3"]
    assert "clipped" in s["labels/a.txt: line 4"] and "empty box" in s["labels/a.txt: line 5"]
    assert s["images/lost.jpg"].startswith("missing image, named in labels/lost.txt")
    assert "images/bad.png" in s


def test_yolo_split_folders_and_classes_txt(tmp_path):
    root = tmp_path / "yolo"
    for split, n in (("train", 3), ("val", 2)):
        for i in range(n):
            image(root / "images" / split / f"{i}.jpg", 16, 12, seed=i)
            (root / "labels" / split).mkdir(parents=True, exist_ok=True)
            (root / "labels" / split / f"{i}.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (root / "classes.txt").write_text("blob\n")
    ds = load_dataset(f"yolo:{root}", progress=False)
    assert (len(ds.train), len(ds.test)) == (3, 2) and ds.classes == ["blob"]
    assert ds.test.files == ["images/val/0.jpg", "images/val/1.jpg"]
    assert ds.train.boxes[0].tolist() == [[4, 3, 12, 9]]
    (root / "classes.txt").unlink()
    with pytest.raises(ConvscopeError, match="no classes.txt or data.yaml"):
        load_dataset(f"yolo:{root}", progress=False)


# --------------------------------------------------------------------------- masks

def mask_png(path, values, mode="P"):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(np.asarray(values, dtype=np.uint8), "L")
    if mode == "P":
        img = img.convert("P")  # an indexed PNG: the palette maps index i to grey i
        img.putdata(np.asarray(values, dtype=np.uint8).ravel().tolist())
    elif mode == "RGB":
        img = img.convert("RGB")
    img.save(path)
    return path


def test_masks_loads_counts_and_lists_every_bad_entry(tmp_path):
    root = tmp_path / "seg"
    a = np.zeros((16, 20), np.uint8)
    a[2:6, 3:9] = 1
    a[8:12, 10:15] = 2
    a[0, :] = 255
    a[15, 0:2] = 7  # a class the list does not name
    image(root / "images" / "a.jpg", 20, 16)
    mask_png(root / "masks" / "a.png", a)
    image(root / "images" / "b.png", 20, 16, seed=1)
    mask_png(root / "masks" / "b.png", np.zeros((10, 10)))  # another size
    image(root / "images" / "c.png", 20, 16, seed=2)  # no mask
    mask_png(root / "masks" / "d.png", a)  # no image
    image(root / "images" / "e.png", 20, 16, seed=3)
    mask_png(root / "masks" / "e.png", a, mode="RGB")  # colours, not class indices
    (root / "classes.txt").write_text("background\nroad\ncar\n")
    ds = load_dataset(f"masks:{root}", holdout=0, progress=False)
    assert ds.task == "segment" and ds.classes == ["background", "road", "car"]
    assert ds.train.files == ["images/a.jpg"] and ds.train.boxes is None
    mask = ds.train.masks[0]
    assert mask.dtype == torch.uint8 and mask.shape == (16, 20)
    expected = torch.from_numpy(a.copy())
    expected[15, 0:2] = IGNORE
    assert torch.equal(mask, expected)
    s = ds.skipped
    assert len(s) == 5, s
    assert "unknown class(es) 7" in s["masks/a.png"]
    assert "mask b.png is 10x10 but its image is 20x16" in s["images/b.png"]
    assert s["images/c.png"] == "image without a mask: left out"
    assert s["images/d.jpg"].startswith("missing image, named in masks/d.png")
    assert "indexed (palette) or grayscale" in s["images/e.png"]
    counts = ds.class_counts()
    assert counts.tolist() == [int((a == 0).sum()), 24, 20]


def test_masks_numbered_classes_and_voc_folders(tmp_path):
    root = tmp_path / "seg"
    for i in range(3):
        image(root / "JPEGImages" / f"{i}.png", 8, 8, seed=i, mode="L")
        m = np.zeros((8, 8), np.uint8)
        m[:4] = i + 1
        mask_png(root / "SegmentationClass" / f"{i}.png", m, mode="L")
    ds = load_dataset(f"masks:{root}", holdout=1, progress=False)
    assert ds.classes == ["0", "1", "2", "3"] and ds.channels == 1
    assert (len(ds.train), len(ds.test)) == (2, 1) and ds.skipped == {}


# --------------------------------------------------------------------------- the registry

def test_tasks_and_sizes_are_checked_by_name(coco):
    with pytest.raises(UsageError, match="'coco' is for the task 'detect', not 'segment'.*masks"):
        load_dataset(f"coco:{coco}", task="segment")
    with pytest.raises(UsageError, match="`image_size` applies to classification datasets"):
        load_dataset(f"coco:{coco}", image_size=32)
    with pytest.raises(ConvscopeError, match="does not exist"):
        load_dataset(f"voc:{coco / 'nope'}")
    with pytest.raises(ConvscopeError, match="no Annotations/ folder"):
        load_dataset(f"voc:{coco}")
