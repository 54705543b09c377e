"""Generated boxes and masks: ``digits-boxes`` / ``digits-masks`` (real mnist5k digits on
cluttered canvases, the embedded default) and ``fake-boxes`` / ``fake-masks`` (coloured
shapes on noise, for tests).

Every canvas is drawn from one seeded generator, so a name always gives the same images.
A digit's box is the extent of its pixels at or above :data:`THRESHOLD` (x1, y1 exclusive),
and its mask is those pixels; the digit's fainter anti-aliased rim (1..127) is
:data:`~convscope.data.annotated.IGNORE`, as Pascal VOC leaves object outlines unscored.
Clutter strokes stay below the threshold, so thresholding a canvas at 128 gives exactly the
digits' pixels (the tests check the boxes and masks that way).  Objects never overlap.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from PIL import Image, ImageDraw

from convscope.data.annotated import IGNORE, AnnotatedDataset, AnnotatedSplit
from convscope.data.builtin import DIGIT_CLASSES, load_mnist5k, parse_options
from convscope.data.registry import register_dataset
from convscope.errors import UsageError

#: a digit's pixels are those at or above this value; clutter stays below it
THRESHOLD = 128
#: the brightest clutter stroke (noise included)
CLUTTER_MAX = 110
CANVAS_SIDES = (96, 128)
DIGIT_SIDES = (20, 56)  # 28 px digits at 0.7x to 2x
SHAPES = ["rectangle", "ellipse"]
DIGITS_DEFAULTS = {"n": 4000, "test": 200, "seed": 0}
FAKE_DEFAULTS = {"n": 24, "test": 8, "size": 64, "seed": 0}

#: one canvas: image (C, H, W) uint8, boxes [(x0, y0, x1, y1)], labels [class], mask (H, W)
Canvas = tuple[np.ndarray, list[tuple[int, int, int, int]], list[int], np.ndarray]


def _free_spot(rng: np.random.Generator, taken: list[tuple[int, int, int, int]], h: int,
               w: int, height: int, width: int, margin: int = 2, tries: int = 30):
    """(y, x) where an h x w patch fits on the canvas clear of every taken (y0, x0, y1, x1)
    by ``margin`` pixels; None when ``tries`` random spots all collide."""
    if h > height or w > width:
        return None
    for _ in range(tries):
        y, x = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
        if all(y + h + margin <= t0 or t2 + margin <= y or x + w + margin <= t1
               or t3 + margin <= x for t0, t1, t2, t3 in taken):
            return y, x
    return None


def _extent(pixels: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) of the true pixels of a 2-D array, x1 and y1 exclusive."""
    ys, xs = np.nonzero(pixels)
    if not len(ys):
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def clutter(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W) uint8 background: faint noise and 2-5 grey strokes, all below THRESHOLD."""
    img = Image.fromarray(rng.integers(0, 25, (height, width), dtype=np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(2, 6))):
        points = [(float(rng.uniform(0, width)), float(rng.uniform(0, height)))
                  for _ in range(int(rng.integers(2, 5)))]
        draw.line(points, fill=int(rng.integers(40, CLUTTER_MAX + 1)),
                  width=int(rng.integers(1, 4)))
    return np.minimum(np.asarray(img), CLUTTER_MAX)


def digit_canvas(rng: np.random.Generator, digits: np.ndarray, labels: np.ndarray) -> Canvas:
    """One canvas holding the given (k, 28, 28) digits (those that fit) at random scales."""
    height, width = (int(v) for v in rng.integers(CANVAS_SIDES[0], CANVAS_SIDES[1] + 1, 2))
    canvas = clutter(rng, height, width)
    mask = np.zeros((height, width), np.uint8)
    taken, boxes, kept = [], [], []
    for digit, label in zip(digits, labels):
        side = int(rng.integers(DIGIT_SIDES[0], DIGIT_SIDES[1] + 1))
        patch = np.asarray(Image.fromarray(digit).resize((side, side), Image.BILINEAR))
        ink = _extent(patch >= THRESHOLD)
        spot = _free_spot(rng, taken, side, side, height, width)
        if ink is None or spot is None:
            continue
        y, x = spot
        taken.append((y, x, y + side, x + side))
        region = canvas[y : y + side, x : x + side]
        np.maximum(region, patch, out=region)
        m = mask[y : y + side, x : x + side]
        m[(patch > 0) & (patch < THRESHOLD)] = IGNORE
        m[patch >= THRESHOLD] = int(label) + 1
        x0, y0, x1, y1 = ink
        boxes.append((x + x0, y + y0, x + x1, y + y1))
        kept.append(int(label))
    return canvas[None], boxes, kept, mask


def shape_canvas(rng: np.random.Generator, size: int) -> Canvas:
    """One RGB canvas of 1-3 coloured rectangles and ellipses on noise."""
    img = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8) // 2)
    mask_img = Image.new("L", (size, size), 0)
    draw, draw_mask = ImageDraw.Draw(img), ImageDraw.Draw(mask_img)
    taken, classes = [], []
    for _ in range(int(rng.integers(1, 4))):
        h, w = (int(v) for v in rng.integers(size // 5, size // 2 + 1, 2))
        spot = _free_spot(rng, taken, h, w, size, size)
        if spot is None:
            continue
        y, x = spot
        taken.append((y, x, y + h, x + w))
        kind = int(rng.integers(0, len(SHAPES)))
        shape = [x, y, x + w - 1, y + h - 1]
        colour = tuple(int(v) for v in rng.integers(128, 256, 3))
        getattr(draw, SHAPES[kind])(shape, fill=colour)
        getattr(draw_mask, SHAPES[kind])(shape, fill=kind + 1)
        classes.append(kind)
    mask = np.asarray(mask_img).copy()
    boxes = [_extent(mask[y0:y1, x0:x1] > 0) for y0, x0, y1, x1 in taken]
    boxes = [(x0 + tx, y0 + ty, x1 + tx, y1 + ty)
             for (x0, y0, x1, y1), (ty, tx, _, _) in zip(boxes, taken)]
    return np.asarray(img).transpose(2, 0, 1).copy(), boxes, classes, mask


def canvas_split(canvases: list[Canvas], task: str, prefix: str) -> AnnotatedSplit:
    """An AnnotatedSplit of canvases: boxes and labels for detect, masks for segment."""
    images = [torch.from_numpy(np.ascontiguousarray(c[0])) for c in canvases]
    files = [f"{prefix}-{i:05d}" for i in range(len(canvases))]
    if task == "detect":
        return AnnotatedSplit(images, files,
                              [torch.tensor(c[1], dtype=torch.float32).reshape(-1, 4)
                               for c in canvases],
                              [torch.tensor(c[2], dtype=torch.int64) for c in canvases])
    return AnnotatedSplit(images, files, masks=[torch.from_numpy(c[3]) for c in canvases])


def _digit_canvases(images: torch.Tensor, labels: torch.Tensor, n: int,
                    rng: np.random.Generator) -> list[Canvas]:
    """n canvases of 1-3 digits each, the digits taken in a seeded order (cycling)."""
    order = rng.permutation(len(images))
    digits, targets = images[:, 0].numpy()[order], labels.numpy()[order]
    out, at = [], 0
    for _ in range(n):
        k = int(rng.integers(1, 4))
        pick = np.arange(at, at + k) % len(digits)
        out.append(digit_canvas(rng, digits[pick], targets[pick]))
        at += k
    return out


@lru_cache(maxsize=1)
def _mnist5k():
    """mnist5k's fixed split, read once per process (both tasks draw on it; never mutated)."""
    ds = load_mnist5k(None)
    return ds.train_images, ds.train_labels, ds.test_images, ds.test_labels


def load_digit_canvases(arg, task: str) -> AnnotatedDataset:
    o = parse_options(arg, DIGITS_DEFAULTS, f"digits-{'boxes' if task == 'detect' else 'masks'}")
    if o["n"] < 1 or o["test"] < 0:
        raise UsageError("digit canvases need n >= 1 and test >= 0.")
    train_x, train_y, test_x, test_y = _mnist5k()
    rng = np.random.default_rng(o["seed"])
    # training canvases from mnist5k's training digits, test canvases from its test digits:
    # no digit is seen in both
    train = _digit_canvases(train_x, train_y, o["n"], rng)
    test = _digit_canvases(test_x, test_y, o["test"], rng)
    classes = list(DIGIT_CLASSES) if task == "detect" else ["background", *DIGIT_CLASSES]
    name = f"digits-{'boxes' if task == 'detect' else 'masks'}" + (f":{arg}" if arg else "")
    notes = [f"mnist5k digits on {CANVAS_SIDES[0]}-{CANVAS_SIDES[1]} px canvases with clutter "
             f"strokes, 1-3 per canvas at {DIGIT_SIDES[0]}-{DIGIT_SIDES[1]} px, seed {o['seed']}"]
    return AnnotatedDataset(name, task, classes, canvas_split(train, task, "train"),
                            canvas_split(test, task, "test"), notes=notes, natural=False)


def load_shape_canvases(arg, task: str) -> AnnotatedDataset:
    what = f"fake-{'boxes' if task == 'detect' else 'masks'}"
    o = parse_options(arg, FAKE_DEFAULTS, what)
    if o["n"] < 1 or o["test"] < 0 or o["size"] < 16:
        raise UsageError(f"{what} needs n >= 1, test >= 0 and size >= 16.")
    rng = np.random.default_rng(o["seed"])
    train = [shape_canvas(rng, o["size"]) for _ in range(o["n"])]
    test = [shape_canvas(rng, o["size"]) for _ in range(o["test"])]
    classes = list(SHAPES) if task == "detect" else ["background", *SHAPES]
    return AnnotatedDataset(what + (f":{arg}" if arg else ""), task, classes,
                            canvas_split(train, task, "train"), canvas_split(test, task, "test"))


@register_dataset("digits-boxes", "boxes around real mnist5k digits placed at several scales "
                  "on 96-128 px cluttered canvases (offline default for detection); options "
                  "n,test,seed", arg="OPTIONS", task="detect")
def load_digits_boxes(arg, **_) -> AnnotatedDataset:
    return load_digit_canvases(arg, "detect")


@register_dataset("digits-masks", "masks of the same digit canvases (offline default for "
                  "segmentation; background a class, digit rims ignored); options n,test,seed",
                  arg="OPTIONS", task="segment")
def load_digits_masks(arg, **_) -> AnnotatedDataset:
    return load_digit_canvases(arg, "segment")


@register_dataset("fake-boxes", "generated rectangles and ellipses on noise, for tests; "
                  "options n,test,size,seed", arg="OPTIONS", task="detect")
def load_fake_boxes(arg, **_) -> AnnotatedDataset:
    return load_shape_canvases(arg, "detect")


@register_dataset("fake-masks", "masks of the same generated shapes, for tests; options "
                  "n,test,size,seed", arg="OPTIONS", task="segment")
def load_fake_masks(arg, **_) -> AnnotatedDataset:
    return load_shape_canvases(arg, "segment")
