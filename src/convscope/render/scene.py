"""Pictures of what the scene models found: boxes with labels and scores, landmarks, the
pose skeleton, the person mask, and the alt text above them.  Drawn on the photo itself
(downscaled to at most ``SHOWN`` px on its longer side, enlarged when tiny), with Pillow."""

from __future__ import annotations

import zlib

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from convscope.display import drawing
from convscope.models.coco import plural
from convscope.render.views import _font, captioned, centred, fit, grid, hstack, text_block, vstack
from convscope.text import count

#: the longer side of a drawn photo, at most / at least
SHOWN, SMALLEST = 1280, 320
#: well-separated colours (Okabe & Ito), one per label by a stable hash
PALETTE = ((230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178),
           (213, 94, 0), (204, 121, 167), (255, 255, 255))
LANDMARK = (255, 40, 40)


def colour(label: str) -> tuple[int, int, int]:
    return PALETTE[zlib.crc32(label.encode()) % len(PALETTE)]


def _canvas(image: np.ndarray) -> tuple[Image.Image, float]:
    """The photo at the size it is drawn, and the factor from photo pixels to it."""
    img = Image.fromarray(np.asarray(image, dtype=np.uint8)).convert("RGB")
    longer = max(img.size)
    factor = min(1.0, SHOWN / longer) if longer > SHOWN else max(1.0, SMALLEST / longer)
    if factor != 1.0:
        img = img.resize((max(1, round(img.width * factor)), max(1, round(img.height * factor))),
                         Image.BILINEAR if factor < 1 else Image.NEAREST)
    return img, factor


def _width(img: Image.Image) -> int:
    return max(2, round(max(img.size) / 250))


def _label(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, fill, size: int,
           taken: list | None = None):
    """A label on a filled tab above ``xy`` (inside the picture when there is no room),
    moved down past the tabs already drawn (``taken``) so that no two cover each other."""
    font = _font(size)
    x0, y0 = xy
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    w, h = right - left + 6, bottom - top + 4
    y = y0 - h if y0 - h >= 0 else y0
    taken = [] if taken is None else taken
    while any(x0 < tx1 and tx0 < x0 + w and y < ty1 and ty0 < y + h
              for tx0, ty0, tx1, ty1 in taken):
        y += h
    taken.append((x0, y, x0 + w, y + h))
    draw.rectangle((x0, y, x0 + w, y + h), fill=fill)
    dark = sum(fill) > 382
    draw.text((x0 + 3, y + 2 - top), text, fill=(0, 0, 0) if dark else (255, 255, 255), font=font)


def draw_detections(img: Image.Image, factor: float, result, taken: list | None = None) -> None:
    """Each box, its label tab and its landmarks; ``taken`` collects the tabs drawn, so
    that the boxes of several results share it."""
    taken = [] if taken is None else taken
    draw = ImageDraw.Draw(img)
    width, size = _width(img), max(11, round(max(img.size) / 55))
    for box, score, label, points in zip(result.boxes, result.scores, result.labels,
                                         result.keypoints):
        x0, y0, x1, y1 = (float(v) * factor for v in box)
        c = colour(label)
        draw.rectangle((x0, y0, x1, y1), outline=c, width=width)
        shown = f"{score:.2f}" if result.score_kind == "probability" else f"{score:.1f}"
        _label(draw, (x0, y0), f"{label} {shown}", c, size, taken)
        r = width + 1
        for x, y in points:
            x, y = float(x) * factor, float(y) * factor
            draw.ellipse((x - r, y - r, x + r, y + r), fill=LANDMARK, outline=(255, 255, 255))


def draw_poses(img: Image.Image, factor: float, poses) -> None:
    draw = ImageDraw.Draw(img)
    width = _width(img) + 1
    for pts, scores in zip(poses.keypoints, poses.scores):
        seen = scores >= poses.min_score
        for a, b in poses.skeleton:
            if seen[a] and seen[b]:
                draw.line([tuple(pts[a] * factor), tuple(pts[b] * factor)], fill=(0, 230, 255),
                          width=width)
        r = width + 1
        for (x, y), ok, name in zip(pts * factor, seen, poses.names):
            if ok:
                fill = (255, 60, 60) if name.startswith("left") else (
                    (60, 120, 255) if name.startswith("right") else (255, 255, 0))
                draw.ellipse((x - r, y - r, x + r, y + r), fill=fill, outline=(0, 0, 0))


def draw_mask(img: Image.Image, mask) -> Image.Image:
    """The photo with the mask tinted over it and its edge outlined."""
    m = Image.fromarray(mask.mask_image()).resize(img.size, Image.NEAREST)
    arr = np.asarray(img).astype(np.float32)
    on = np.asarray(m) > 127
    tint = np.array((0, 158, 115), np.float32)
    arr[on] = arr[on] * 0.55 + tint * 0.45
    size = 2 * max(1, _width(img) // 2) + 1  # the outline's width, odd for MinFilter
    inner = np.asarray(m.filter(ImageFilter.MinFilter(size))) > 127
    edge = on & ~inner
    arr[edge] = (255, 255, 255)
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


def _caption(lines: list[str], img: Image.Image) -> np.ndarray:
    return captioned(np.asarray(img), [line for line in lines if line])


@drawing
def detections_image(result) -> np.ndarray:
    img, factor = _canvas(result.image)
    draw_detections(img, factor, result)
    counts = ", ".join(count(n, lab, plural(lab)) if lab[:1].isalpha() else f"{n} \"{lab}\""
                       for lab, n in result.counts().items())  # a digit class: 2 "7"
    counts = counts or "nothing"
    return _caption([f"{result.model}: {counts} at score >= {result.min_score:g}"], img)


@drawing
def poses_image(poses) -> np.ndarray:
    img, factor = _canvas(poses.image)
    draw_poses(img, factor, poses)
    seen = int((poses.scores >= poses.min_score).sum())
    return _caption([f"{poses.model}: {seen} of {poses.scores.size} keypoints at score >= "
                     f"{poses.min_score:g}"], img)


@drawing
def mask_image(mask) -> np.ndarray:
    img, _ = _canvas(mask.image)
    img = draw_mask(img, mask)
    return _caption([f"{mask.model}: person mask covers {mask.coverage:.0%} of the photo "
                     f"(probability >= {mask.threshold:g})"], img)


def class_colours(k: int) -> np.ndarray:
    """(k, 3) uint8 colours of classes 0..k-1: Pascal VOC's palette (class 0, the background
    in VOC-style masks, black), so a saved mask looks like VOC's own."""
    out = np.zeros((k, 3), np.uint8)
    for c in range(k):
        v, r, g, b = c, 0, 0, 0
        for shift in range(7, -1, -1):  # VOC's bit-interleaving colour map
            r |= (v & 1) << shift
            g |= ((v >> 1) & 1) << shift
            b |= ((v >> 2) & 1) << shift
            v >>= 3
        out[c] = (r, g, b)
    return out


@drawing
def indexed_mask(labels: np.ndarray, k: int) -> Image.Image:
    """(H, W) class indices as a palette PNG image (VOC style: 255, ignore, in white)."""
    img = Image.fromarray(np.asarray(labels, dtype=np.uint8), mode="P")
    palette = np.zeros((256, 3), np.uint8)
    palette[:k] = class_colours(k)
    palette[255] = (255, 255, 255)
    img.putpalette(palette.ravel().tolist())
    return img


@drawing
def class_mask_image(mask) -> np.ndarray:
    """The photo with each class but the first tinted in its VOC colour, outlined, and a
    caption naming the classes present with their shares."""
    img, _ = _canvas(mask.image)
    labels = Image.fromarray(mask.mask_image()).resize(img.size, Image.NEAREST)
    lab = np.asarray(labels)
    arr = np.asarray(img).astype(np.float32)
    colours = class_colours(len(mask.classes)).astype(np.float32)
    for k in np.unique(lab):
        if k == 0 or k >= len(colours):
            continue
        on = lab == k
        tint = colours[k] if colours[k].any() else np.array((0, 158, 115), np.float32)
        arr[on] = arr[on] * 0.45 + tint * 0.55
    edge = np.zeros(lab.shape, bool)
    edge[:, 1:] |= lab[:, 1:] != lab[:, :-1]
    edge[1:, :] |= lab[1:, :] != lab[:-1, :]
    arr[edge] = (255, 255, 255)
    shares = [f"{name} {share:.0%}" for name, share in mask.shares().items()
              if name != mask.classes[0]]
    text = ", ".join(shares[:12]) or f"only {mask.classes[0]}"
    return _caption([f"{mask.model}: {text} of the pixels"], Image.fromarray(
        arr.clip(0, 255).astype(np.uint8)))


@drawing
def scene_image(image, faces=None, objects=None, poses=None, mask=None,
                text: str = "") -> np.ndarray:
    """Everything found in one photo on one picture, the alt text above it."""
    img, factor = _canvas(image)
    if mask is not None:
        img = draw_mask(img, mask)
    taken: list = []
    for found in (objects, faces):
        if found is not None:
            draw_detections(img, factor, found, taken)
    if poses is not None:
        draw_poses(img, factor, poses)
    return _caption([text], img)


def heat_overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``heat`` (positive part, scaled to its largest value) in the jet colours over the
    photo."""
    import matplotlib  # heavy optional dependency

    m = np.clip(heat, 0, None)
    m = m / max(float(m.max()), 1e-12)
    colours = matplotlib.colormaps["jet"](m)[..., :3] * 255
    weight = (alpha * np.clip(m * 3, 0, 1))[..., None]  # cold places keep the photo
    return (image * (1 - weight) + colours * weight).clip(0, 255).astype(np.uint8)


@drawing
def box_explanation_image(expl) -> np.ndarray:
    """The photo with the detection's box, beside the map over the photo."""
    plain, factor = _canvas(expl.image)
    over, _ = _canvas(heat_overlay(expl.image, expl.heat))
    for img in (plain, over):
        draw = ImageDraw.Draw(img)
        x0, y0, x1, y1 = (float(v) * factor for v in expl.box)
        draw.rectangle((x0, y0, x1, y1), outline=colour(expl.label), width=_width(img))
    both = np.concatenate([np.asarray(plain), np.full((plain.height, 8, 3), 255, np.uint8),
                           np.asarray(over)], axis=1)
    if expl.method == "occlusion":
        what = (f"occlusion: where hiding a {expl.settings['window']}-px grey square lowers "
                f"the box's score (red: most, a drop of {float(expl.heat.max()):.3f})")
    elif "map" in expl.settings:  # a detector convscope trained
        h, w = expl.settings["map"]
        what = (f"Grad-CAM of the box's score (log-odds) on {expl.settings['layer']}, a "
                f"{h}x{w} map (red: most)")
    else:
        what = "Grad-CAM of O-Net's face log-odds on the box's crop (red: most)"
    return captioned(both, [f"{expl.model}: {expl.label} {expl.score:.2f}", what,
                            f"{expl.inside_share():.0%} of the map is inside the box"])


#: the colours of the truth and of the model's answer in the mistakes' pictures
TRUTH, ANSWER = (0, 158, 115), (213, 94, 0)
#: the names of Pascal VOC's first colours (class_colours), for legends
VOC_NAMES = ("black", "dark red", "green", "olive", "navy", "purple", "teal", "grey")
#: the side of one picture in the mistakes' grids
TILE = 160


def _outline(img: Image.Image, box, factor: float, fill, dashed: bool = False) -> None:
    draw = ImageDraw.Draw(img)
    x0, y0, x1, y1 = (float(v) * factor for v in box)
    draw.rectangle((x0, y0, max(x0, x1), max(y0, y1)), outline=fill,
                   width=max(2, round(max(img.size) / 80)))


def _crop(image: np.ndarray, boxes, margin: float = 0.6, least: int = 32):
    """The region round ``boxes`` (x0, y0, x1, y1), ``margin`` box sizes each side and at
    least ``least`` px a side, clipped to the image: ``(crop, (left, top))``."""
    h, w = image.shape[:2]
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    x0, y0 = b[:, 0].min(), b[:, 1].min()
    x1, y1 = b[:, 2].max(), b[:, 3].max()
    mx, my = max(margin * (x1 - x0), (least - (x1 - x0)) / 2, 0), \
        max(margin * (y1 - y0), (least - (y1 - y0)) / 2, 0)
    left, top = max(0, int(x0 - mx)), max(0, int(y0 - my))
    right, bottom = min(w, int(np.ceil(x1 + mx))), min(h, int(np.ceil(y1 + my)))
    return image[top:max(bottom, top + 1), left:max(right, left + 1)], (left, top)


def _rgb(image) -> np.ndarray:
    a = np.asarray(image.permute(1, 2, 0) if hasattr(image, "permute") else image)
    return np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a[..., :3]


def mistake_tile(image, mistake, side: int = TILE) -> np.ndarray:
    """One false positive or missed object: the region round it with the truth's box in
    green and the detection's in orange, and a caption."""
    boxes = [mistake.box] + ([mistake.other[0]] if mistake.other else [])
    crop, (left, top) = _crop(_rgb(image), boxes)
    img = Image.fromarray(np.ascontiguousarray(crop))
    factor = side / max(img.size)
    img = img.resize((max(1, round(img.width * factor)), max(1, round(img.height * factor))),
                     Image.NEAREST if factor >= 1 else Image.BILINEAR)

    def shifted(box):
        return (box[0] - left, box[1] - top, box[2] - left, box[3] - top)

    false = mistake.kind == "false positive"
    if mistake.other and mistake.other[3] > 0:  # the nearest box of the other side
        _outline(img, shifted(mistake.other[0]), factor, ANSWER if not false else TRUTH)
    _outline(img, shifted(mistake.box), factor, ANSWER if false else TRUTH)
    head = (f"#{mistake.image} {mistake.label} {mistake.score:.2f}" if false else
            f"#{mistake.image} missed {mistake.label}")
    body = np.asarray(img)
    return vstack([text_block([head, mistake.why], side, size=11), centred(body, side, side)],
                  gap=0)


@drawing
def worst_detections_image(worst) -> np.ndarray:
    """The false positives (highest score first) and the missed objects, each in the region
    round it: truth green, detections orange."""
    parts, cols = [], 6
    head = (f"{worst.model} on {worst.data} ({worst.split}): {worst.found} of "
            f"{count(worst.objects, 'object')} found, "
            f"{count(worst.detections - worst.found, 'false positive')} at score >= "
            f"{worst.min_score:g} (IoU >= {worst.iou:g}). Green: the truth; orange: the "
            "detector's box.")
    for title, items in (("False positives, highest score first", worst.false_positives),
                         ("Missed objects, largest first", worst.missed)):
        if not items:
            parts.append(text_block([f"{title.split(',')[0]}: none."], cols * (TILE + 2)))
            continue
        parts.append(text_block([f"{title}:"], cols * (TILE + 2)))
        parts.append(grid([mistake_tile(worst.images[m.image], m) for m in items], cols))
    return captioned(vstack(parts, gap=6), [head])


@drawing
def worst_masks_image(worst) -> np.ndarray:
    """Each of the worst images: the image, the true mask and the predicted one, in the
    classes' VOC colours (white: not scored)."""
    k = len(worst.classes)
    colours = np.zeros((256, 3), np.uint8)
    colours[:k] = class_colours(k)
    colours[255] = (255, 255, 255)
    side = TILE
    rows = []
    for m, image, truth, pred in zip(worst.worst, worst.images, worst.truths,
                                     worst.predictions):
        panels = [fit(np.ascontiguousarray(_rgb(image)), side),
                  fit(colours[np.asarray(truth, np.uint8)], side),
                  fit(colours[np.asarray(pred, np.uint8)], side)]
        caption = text_block([f"#{m.image} {m.file}: IoU {m.iou:.2f}, pixels right "
                              f"{m.accuracy:.0%}", "image · truth · prediction"],
                             3 * side + 8, size=11)
        rows.append(vstack([caption, hstack(panels)], gap=0))
    legend = ", ".join(f"{name} {VOC_NAMES[i]}" for i, name in enumerate(worst.classes[:8]))
    body = grid(rows, 2, gap=8) if rows else text_block(["no images"], 320)
    return captioned(body, [f"{worst.model} on {worst.data} ({worst.split}): the "
                            f"{len(worst.worst)} images with the lowest IoU (mean per image "
                            f"{worst.mean_iou:.2f}); classes: {legend}"])


@drawing
def mask_explanation_image(expl) -> np.ndarray:
    """The photo with the class's predicted pixels outlined, beside the map over it."""
    plain, factor = _canvas(expl.image)
    over, _ = _canvas(heat_overlay(expl.image, expl.heat))
    m = Image.fromarray(expl.mask.astype(np.uint8) * 255).resize(plain.size, Image.NEAREST)
    on = np.asarray(m) > 127
    edge = np.zeros_like(on)
    edge[:, 1:] |= on[:, 1:] != on[:, :-1]
    edge[1:, :] |= on[1:, :] != on[:-1, :]
    arrays = []
    for img in (plain, over):
        a = np.asarray(img).copy()
        a[edge] = (255, 255, 255)
        arrays.append(a)
    both = np.concatenate([arrays[0], np.full((plain.height, 8, 3), 255, np.uint8),
                           arrays[1]], axis=1)
    if expl.method == "occlusion":
        what = (f"occlusion: where hiding a {expl.settings['window']}-px grey square lowers "
                f"the class's mean probability over its pixels (red: most, a drop of "
                f"{float(expl.heat.max()):.3f})")
    else:
        h, w = expl.settings["map"]
        what = (f"Grad-CAM of the {expl.label} logits summed over its pixels, on "
                f"{expl.settings['layer']}, a {h}x{w} map (red: most)")
    return captioned(both, [f"{expl.model}: {expl.label} on {int(expl.mask.sum())} pixels "
                            f"(outlined), mean probability {expl.score:.2f}", what,
                            f"{expl.inside_share():.0%} of the map is on those pixels"])
