"""AnnotatedDataset and AnnotatedSplit: shapes checked on construction, targets, subsets,
the description a user reads, and the seeded split."""

from __future__ import annotations

import pytest
import torch

from convscope.data import AnnotatedDataset, AnnotatedSplit
from convscope.data.annotated import seeded_split


def split(n=3, masks=False):
    images = [torch.full((3, 10 + i, 12), 10 * i, dtype=torch.uint8) for i in range(n)]
    if masks:
        return AnnotatedSplit(images, [f"{i}.png" for i in range(n)],
                              masks=[torch.zeros(10 + i, 12, dtype=torch.uint8)
                                     for i in range(n)])
    return AnnotatedSplit(images, [f"{i}.png" for i in range(n)],
                          [torch.tensor([[1, 1, 5, 5]] * i, dtype=torch.float32).reshape(-1, 4)
                           for i in range(n)],
                          [torch.zeros(i, dtype=torch.int64) for i in range(n)])


def test_a_split_checks_its_shapes():
    s = split()
    assert len(s) == 3 and s.objects() == 3
    assert set(s.target(2)) == {"boxes", "labels"} and s.target(2)["boxes"].shape == (2, 4)
    sub = s.subset([2, 0])
    assert sub.files == ["2.png", "0.png"] and sub.boxes[0].shape == (2, 4)
    with pytest.raises(ValueError, match="uint8"):
        AnnotatedSplit([torch.zeros(3, 4, 4)], ["a"])
    with pytest.raises(ValueError, match="float32"):
        AnnotatedSplit([torch.zeros(3, 4, 4, dtype=torch.uint8)], ["a"],
                       [torch.zeros(1, 4, dtype=torch.int64)], [torch.zeros(1, dtype=torch.int64)])
    with pytest.raises(ValueError, match=r"mask 0 must be uint8 \(4, 4\)"):
        AnnotatedSplit([torch.zeros(3, 4, 4, dtype=torch.uint8)], ["a"],
                       masks=[torch.zeros(4, 5, dtype=torch.uint8)])


def test_a_dataset_checks_its_task_and_labels():
    with pytest.raises(ValueError, match="needs masks"):
        AnnotatedDataset("x", "segment", ["a"], split(), split())
    with pytest.raises(ValueError, match="index the 0 classes"):
        AnnotatedDataset("x", "detect", [], split(), split())
    ds = AnnotatedDataset("x", "detect", ["thing"], split(), split(1), skipped={"a": "why"})
    d = ds.describe()
    assert d["task"] == "detect" and d["objects"] == {"train": 3, "test": 0}
    assert d["image_sizes"] == {"min": [10, 12], "max": [12, 12]} and d["channels"] == 3
    text = ds.format()
    assert "objects     train 3 / test 0" in text and "1 annotation or image" in text
    assert ds.class_counts().tolist() == [3]
    seg = AnnotatedDataset("y", "segment", ["bg"], split(masks=True), split(1, masks=True))
    assert seg.class_counts().tolist() == [10 * 12 + 11 * 12 + 12 * 12]
    mean, std = seg.normalization()
    pixels = torch.cat([x.flatten() for x in seg.train.images]).double() / 255
    assert mean[0] == pytest.approx(float(pixels.mean()), abs=1e-6)
    assert std[0] == pytest.approx(float(pixels.std(unbiased=False)), abs=1e-5)


def test_seeded_split():
    tr, te = seeded_split(10, 0.2, 0)
    assert len(tr) == 8 and len(te) == 2 and sorted([*tr, *te]) == list(range(10))
    assert (seeded_split(10, 0.2, 0)[1] == te).all()
    assert len(seeded_split(10, 3, 0)[1]) == 3 and len(seeded_split(10, 0, 0)[1]) == 0
