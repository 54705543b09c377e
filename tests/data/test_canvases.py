"""digits-boxes / digits-masks and fake-boxes / fake-masks: boxes are the objects' pixel
extents and masks their pixels, checked against the canvases themselves."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from convscope.data import IGNORE, load_dataset
from convscope.data.canvases import THRESHOLD
from convscope.errors import UsageError

SMALL = "n=12,test=4,seed=3"


@pytest.fixture(scope="module")
def digits():
    return load_dataset(f"digits-boxes:{SMALL}"), load_dataset(f"digits-masks:{SMALL}")


def test_digit_boxes_are_the_digits_pixel_extent(digits):
    boxes, _ = digits
    assert boxes.task == "detect" and boxes.classes == list("0123456789")
    assert (len(boxes.train), len(boxes.test)) == (12, 4) and boxes.channels == 1
    for split in (boxes.train, boxes.test):
        for image, b in zip(split.images, split.boxes):
            h, w = image.shape[1:]
            assert 96 <= h <= 128 and 96 <= w <= 128 and 1 <= len(b) <= 3
            ink = image[0] >= THRESHOLD  # clutter stays below the threshold: only digits
            covered = torch.zeros_like(ink)
            for x0, y0, x1, y1 in b.long().tolist():
                inside = ink[y0:y1, x0:x1]
                # the box is tight: ink on every edge row and column
                assert inside[0].any() and inside[-1].any()
                assert inside[:, 0].any() and inside[:, -1].any()
                covered[y0:y1, x0:x1] = True
            assert not (ink & ~covered).any()  # no ink outside every box
            assert (image[0][~covered] >= 40).any()  # clutter strokes outside the digits


def test_one_canvas_by_hand(digits):
    boxes, masks = digits
    image, b = boxes.train.images[0][0], boxes.train.boxes[0]
    x0, y0, x1, y1 = b[0].long().tolist()
    rows = torch.nonzero((image >= THRESHOLD).any(1)).flatten()
    cols = torch.nonzero((image >= THRESHOLD).any(0)).flatten()
    if len(b) == 1:  # the extent of every bright pixel on the canvas
        assert (x0, y0, x1, y1) == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
    label = int(boxes.train.labels[0][0])
    mask = masks.train.masks[0]
    assert torch.equal(masks.train.images[0], boxes.train.images[0])  # the same canvases
    # the mask holds the digit (class label + 1, background 0) exactly where the ink is
    assert ((mask[y0:y1, x0:x1] == label + 1) == (image[y0:y1, x0:x1] >= THRESHOLD)).all()


def test_digit_masks_match_the_boxes(digits):
    boxes, masks = digits
    assert masks.task == "segment" and masks.classes == ["background", *"0123456789"]
    assert masks.train.boxes is None
    for image, mask, b, y in zip(masks.train.images, masks.train.masks, boxes.train.boxes,
                                 boxes.train.labels):
        ink = image[0] >= THRESHOLD
        assert torch.equal((mask >= 1) & (mask <= 10), ink)
        rim = (mask == IGNORE)
        assert ((image[0][rim] > 0) & (image[0][rim] < THRESHOLD)).all()
        assert set(mask.unique().tolist()) <= {0, IGNORE, *(y + 1).tolist()}
        for (x0, y0, x1, y1), label in zip(b.long().tolist(), y.tolist()):
            digit = mask[y0:y1, x0:x1] == label + 1
            assert torch.equal(digit, ink[y0:y1, x0:x1])


def test_canvases_are_seeded_and_test_digits_are_unseen(digits):
    boxes, _ = digits
    again = load_dataset(f"digits-boxes:{SMALL}")
    assert all(torch.equal(a, b) for a, b in zip(boxes.test.images, again.test.images))
    other = load_dataset("digits-boxes:n=12,test=4,seed=4")
    assert [x.shape for x in other.train.images] != [x.shape for x in boxes.train.images]
    assert any("mnist5k digits" in n for n in boxes.notes)


def test_fake_shapes():
    boxes, masks = load_dataset("fake-boxes"), load_dataset("fake-masks")
    assert boxes.classes == ["rectangle", "ellipse"]
    assert masks.classes == ["background", "rectangle", "ellipse"]
    assert (len(boxes.train), len(boxes.test)) == (24, 8) and boxes.channels == 3
    for image, mask, b, y in zip(masks.train.images, masks.train.masks, boxes.train.boxes,
                                 boxes.train.labels):
        assert image.shape == (3, 64, 64) and mask.shape == (64, 64)
        for (x0, y0, x1, y1), label in zip(b.long().tolist(), y.tolist()):
            shape = mask[y0:y1, x0:x1] == label + 1
            assert shape[0].any() and shape[-1].any() and shape[:, 0].any() and shape[:, -1].any()
        assert int((mask > 0).sum()) == sum(int((mask[y0:y1, x0:x1] > 0).sum())
                                            for x0, y0, x1, y1 in b.long().tolist())
    small = load_dataset("fake-boxes:n=3,test=1,size=32")
    assert small.train.images[0].shape == (3, 32, 32)
    with pytest.raises(UsageError, match="bad fake-masks option 'colour=1'"):
        load_dataset("fake-masks:colour=1")
    assert np.isfinite(boxes.normalization()[1]).all()
