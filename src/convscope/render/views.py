"""Pictures of the "look inside" views: filters, activation maps, neighbours, embeddings and
maximally activating patches.

Most are mosaics of many small images, so they are assembled pixel for pixel with numpy
(each image enlarged by whole pixels or shrunk with antialiasing, never blurred by a
plotting library's resampling), with a caption drawn by Pillow; only the scatter plot is
drawn by matplotlib.  Every function returns an (H, W, 3) uint8 array for ``save_image``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from convscope.display import drawing
from convscope.render.figures import _plt

WHITE = (255, 255, 255)
SAME, OTHER = (0, 160, 60), (220, 30, 30)   # neighbour borders: same label as the query, not
OUTSIDE = (200, 200, 215)                   # patch canvas beyond the image border
FONT_SIZE = 12
LINE = 16                                   # caption line height, px


# --------------------------------------------------------------------------- small pieces
def to_rgb(img) -> np.ndarray:
    """A (C, H, W) uint8 tensor, or an (H, W) / (H, W, 3) float array in [0, 1], as
    (H, W, 3) uint8."""
    if isinstance(img, torch.Tensor):
        a = img.detach().cpu().numpy()
        a = a.transpose(1, 2, 0) if a.ndim == 3 else a
    else:
        a = np.asarray(img)
        if a.dtype != np.uint8:
            a = np.clip(np.rint(a * 255), 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    return np.ascontiguousarray(a[..., :3])


@drawing
def enlarge(a: np.ndarray, zoom: int) -> np.ndarray:
    """Each pixel as a zoom x zoom block (nearest neighbour)."""
    return a if zoom == 1 else np.repeat(np.repeat(a, zoom, 0), zoom, 1)


def fit(a: np.ndarray, side: int) -> np.ndarray:
    """An (H, W, 3) image at most ``side`` px a side: small ones enlarged by whole pixels,
    large ones shrunk with antialiasing; the aspect ratio is kept."""
    h, w = a.shape[:2]
    if max(h, w) <= side:
        return enlarge(a, max(1, side // max(h, w)))
    s = side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return np.asarray(Image.fromarray(a).resize(size, Image.LANCZOS))


def pad(a: np.ndarray, height: int, width: int, colour=WHITE) -> np.ndarray:
    """``a`` in the top-left corner of a height x width canvas."""
    out = np.empty((height, width, 3), dtype=np.uint8)
    out[:] = colour
    out[: a.shape[0], : a.shape[1]] = a
    return out


def centred(a: np.ndarray, height: int, width: int, colour=WHITE) -> np.ndarray:
    """``a`` in the middle of a canvas of at least height x width."""
    height, width = max(height, a.shape[0]), max(width, a.shape[1])
    out = np.empty((height, width, 3), dtype=np.uint8)
    out[:] = colour
    top, left = (height - a.shape[0]) // 2, (width - a.shape[1]) // 2
    out[top: top + a.shape[0], left: left + a.shape[1]] = a
    return out


def framed(a: np.ndarray, colour, width: int = 2) -> np.ndarray:
    """``a`` inside a border of ``width`` px."""
    out = np.empty((a.shape[0] + 2 * width, a.shape[1] + 2 * width, 3), dtype=np.uint8)
    out[:] = colour
    out[width: width + a.shape[0], width: width + a.shape[1]] = a
    return out


def hstack(parts: Sequence[np.ndarray], gap: int = 4, colour=WHITE) -> np.ndarray:
    """Side by side, tops aligned."""
    h = max(p.shape[0] for p in parts)
    cols = []
    for i, p in enumerate(parts):
        cols.append(pad(p, h, p.shape[1], colour))
        if gap and i < len(parts) - 1:
            cols.append(pad(p[:0, :0], h, gap, colour))
    return np.concatenate(cols, axis=1)


def vstack(parts: Sequence[np.ndarray], gap: int = 4, colour=WHITE) -> np.ndarray:
    """One above the other, left edges aligned."""
    w = max(p.shape[1] for p in parts)
    rows = []
    for i, p in enumerate(parts):
        rows.append(pad(p, p.shape[0], w, colour))
        if gap and i < len(parts) - 1:
            rows.append(pad(p[:0, :0], gap, w, colour))
    return np.concatenate(rows, axis=0)


def grid(tiles: Sequence[np.ndarray], cols: int, gap: int = 2, colour=WHITE) -> np.ndarray:
    """Tiles (any sizes) in rows of ``cols``, each cell as large as the largest tile."""
    th, tw = max(t.shape[0] for t in tiles), max(t.shape[1] for t in tiles)
    cells = [pad(t, th, tw, colour) for t in tiles]
    cells += [pad(cells[0][:0, :0], th, tw, colour)] * (-len(cells) % cols)
    rows = [hstack(cells[i: i + cols], gap, colour) for i in range(0, len(cells), cols)]
    return vstack(rows, gap, colour)


def _font(size: int = FONT_SIZE):
    return ImageFont.load_default(size=size)


def wrapped(lines: Sequence[str], width: int, size: int = FONT_SIZE) -> list[str]:
    """Lines broken at spaces so that each fits ``width`` px."""
    font, out = _font(size), []
    for line in lines:
        words, current = line.split(" "), ""
        for word in words:
            trial = f"{current} {word}" if current else word
            if current and font.getlength(trial) > width - 8:
                out.append(current)
                current = word
            else:
                current = trial
        out.append(current)
    return out


def text_block(lines: Sequence[str], width: int, size: int = FONT_SIZE) -> np.ndarray:
    """Lines of dark text on white, ``width`` px wide, wrapped to fit."""
    lines = wrapped(lines, width, size)
    img = Image.new("RGB", (max(1, width), LINE * len(lines) + 4), WHITE)
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((4, 2 + LINE * i), line, fill=(20, 20, 20), font=_font(size))
    return np.asarray(img)


#: a caption is as wide as the picture under it, and at least this wide
MIN_CAPTION = 320
#: white margin round every picture
MARGIN = 6


def captioned(body: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """``body`` under a caption wrapped to its width, with a white margin all round."""
    width = max(body.shape[1], MIN_CAPTION)
    return framed(vstack([text_block(lines, width), body], gap=4), WHITE, MARGIN)


def scaled_gray(values: np.ndarray) -> np.ndarray:
    """Activations in [0, 1] on one scale: 0 to the largest value when none is negative,
    otherwise 0 at mid-grey and the largest |value| at black or white."""
    lo, hi = float(values.min()), float(values.max())
    if lo >= 0:
        return values / max(hi, 1e-12)
    m = max(abs(lo), abs(hi), 1e-12)
    return 0.5 + 0.5 * values / m


# --------------------------------------------------------------------------- filters
@drawing
def filters_image(f) -> np.ndarray:
    """Colour tiles in a square grid, or grayscale ones: one row of channel tiles per
    filter, the rows laid out in columns so that the picture stays about 3:2."""
    tiles, z = f.tiles(), f.config.zoom
    if f.colour:
        body = grid([enlarge(to_rgb(t), z) for t in tiles], math.ceil(math.sqrt(len(tiles))),
                    gap=2)
    else:
        blocks = [hstack([enlarge(to_rgb(ch), z) for ch in filt], gap=1) for filt in tiles]
        bh, bw = blocks[0].shape[:2]
        cols = max(1, min(len(blocks), round(math.sqrt(1.5 * len(blocks) * bh / bw))))
        body = grid(blocks, cols, gap=6)
    return captioned(body, [f.describe()])


# --------------------------------------------------------------------------- activations
@drawing
def activations_image(a) -> np.ndarray:
    """The input image beside the grid of maps, all maps on one scale."""
    maps = scaled_gray(a.shown.numpy())                   # (K, h, w) in [0, 1]
    k, h, w = maps.shape
    z = max(1, math.ceil(48 / max(h, w)))
    body = grid([enlarge(to_rgb(m), z) for m in maps], math.ceil(math.sqrt(k)), gap=2)
    side = max(96, min(body.shape[0], 320))
    image = fit(to_rgb(a.image), side)
    return captioned(hstack([image, body], gap=16),
                     [a.describe(), "left: the input as the model sees it; right: one map per "
                      "channel, white = the largest activation"])


# --------------------------------------------------------------------------- neighbours
def thumb_side(height: int, width: int, target: int = 48) -> int:
    """Side of a square thumbnail near ``target`` px: small images enlarged by a whole
    factor, large ones shrunk to ``target``."""
    m = max(height, width)
    return m * max(1, target // m) if m <= target else target


def shown_queries(total: int, show: int) -> list[int]:
    """``show`` queries spread evenly over all of them (datasets are often sorted by class)."""
    if show >= total:
        return list(range(total))
    return sorted({round(i * (total - 1) / max(1, show - 1)) for i in range(show)})


@drawing
def neighbors_image(r) -> np.ndarray:
    """One row per query: the query, its feature-space neighbours, its pixel-space ones;
    green borders share the query's label, red ones do not."""
    side = thumb_side(*r.query_images.shape[-2:])
    rows = []
    for q in shown_queries(len(r.query_indices), r.config.show):
        label = int(r.query_labels[q])
        query = framed(centred(fit(to_rgb(r.query_images[q]), side), side, side), (90, 90, 90))

        def panel(knn, q=q, label=label):
            return hstack([framed(centred(fit(to_rgb(r.database_images[int(i)]), side), side,
                                          side), (90, 90, 90) if not r.labelled
                                         else SAME if int(y) == label else OTHER)
                           for i, y in zip(knn.indices[q], knn.labels[q])], gap=2)

        rows.append([query, panel(r.feature), panel(r.pixel)])
    c, agree = r.config, r.agreement
    scores = ([f"label agreement {agree[s]:.3f}"] if r.labelled else [] for s in
              ("feature", "pixel"))
    heads = [text_block([], rows[0][0].shape[1]),
             text_block([f"feature space ({c.layer})", *next(scores)], rows[0][1].shape[1]),
             text_block(["pixel space", *next(scores)], rows[0][2].shape[1])]
    body = vstack([hstack(heads, gap=14), *[hstack(row, gap=14) for row in rows]], gap=4)
    if not r.labelled:
        return captioned(body, [
            f"the {c.k} nearest of the other images of {r.data} to each of {c.queries} of them "
            f"({c.metric}; {min(c.show, c.queries)} shown); the folder has no labels"])
    return captioned(body, [
        f"the {c.k} nearest of {c.database:,} training images to test images of {r.data} "
        f"({c.metric}); the number is the label agreement over all {c.queries} queries "
        f"({min(c.show, c.queries)} shown); green: the query's label, red: another"])


# --------------------------------------------------------------------------- embedding
def class_colours(n: int) -> np.ndarray:
    """(n, 3) distinct colours in [0, 1]: tab10 / tab20, else evenly spaced hues."""
    import matplotlib  # heavy optional dependency

    if n <= 10:
        return np.asarray(matplotlib.colormaps["tab10"].colors)[:n]
    if n <= 20:
        return np.asarray(matplotlib.colormaps["tab20"].colors)[:n]
    return matplotlib.colormaps["hsv"](np.linspace(0, 1, n, endpoint=False))[:, :3]


def scatter_array(coords: np.ndarray, labels, classes, side: int, title: str) -> np.ndarray:
    """The 2-D points coloured by class, drawn by matplotlib as a side x side image."""
    plt = _plt()
    fig = plt.figure(figsize=(side / 100, side / 100), dpi=100)
    ax = fig.add_axes((0.03, 0.03, 0.94, 0.9))
    s = max(1.0, min(20.0, 4000 / len(coords)))
    if labels is None:
        ax.scatter(coords[:, 0], coords[:, 1], s=s, c="tab:blue", linewidths=0)
    else:
        labels = np.asarray(labels)
        present = np.unique(labels)
        colours = class_colours(len(present))
        for colour, k in zip(colours, present):
            m = labels == k
            ax.scatter(coords[m, 0], coords[m, 1], s=s, color=colour, linewidths=0,
                       label=classes[int(k)] if classes else str(k))
        if len(present) <= 20:
            ax.legend(fontsize=7, markerscale=max(1.0, 12 / s), loc="best", framealpha=0.7)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    fig.canvas.draw()
    out = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return out


def thumbnail_map(images: torch.Tensor, cells: np.ndarray, side: int) -> np.ndarray:
    """Each grid cell's image as a side x side thumbnail, touching (the classic look)."""
    g = cells.shape[0]
    out = np.full((g * side, g * side, 3), 255, dtype=np.uint8)
    for r in range(g):
        for c in range(g):
            if cells[r, c] >= 0:
                t = centred(fit(to_rgb(images[int(cells[r, c])]), side), side, side)
                out[r * side:(r + 1) * side, c * side:(c + 1) * side] = t
    return out


@drawing
def embedding_image(e) -> np.ndarray:
    """The scatter coloured by class beside the thumbnail map, both the same height."""
    side = max(16, min(32, max(e.images.shape[-2:])))
    tiles = thumbnail_map(e.images, e.grid_cells(), side)
    height = max(tiles.shape[0], 480)
    c = e.config
    scatter = scatter_array(e.coords, e.labels, e.classes, height,
                            f"{c.method} of {c.layer} features, {c.n} images")
    return captioned(hstack([scatter, centred(tiles, height, tiles.shape[1])], gap=12), [
        f"{c.method} of {c.n} images of {e.data} at {c.layer}: coloured by class (left), "
        f"snapped to a {c.grid}x{c.grid} grid (right)"])


# --------------------------------------------------------------------------- patches
@drawing
def patches_image(p) -> np.ndarray:
    """One row per channel: its label, then its top patches, strongest first; the part of
    a field beyond the image border is shaded."""
    canvases = [[p.tile(h) for h in hits] for hits in p.hits]
    largest = max((max(c.shape[1:]) for row in canvases for c, _ in row), default=1)
    side = thumb_side(largest, largest, 64)
    rows = []
    for c, hits, row in zip(p.config.channels, p.hits, canvases):
        tiles = []
        for canvas, mask in row:
            a = to_rgb(canvas)
            a[~mask.numpy()] = OUTSIDE
            tiles.append(framed(centred(fit(a, side), side, side), WHITE, 1))
        label = text_block([f"ch {c}", f"{hits[0].activation:.3g}" if hits else "-"], 64)
        rows.append(hstack([centred(label, side + 2, 64)] + tiles, gap=2))
    rf = p.field
    size = "x".join(map(str, rf.size))
    return captioned(vstack(rows, gap=3), [
        f"{p.config.layer}: top {p.config.top} of {p.config.n} images of {p.data} per channel "
        f"(label: channel, best activation)",
        f"receptive field {size} px on the network input, jump {rf.jump[0]}"
        + ("" if rf.exact else " (an over-estimate)") + "; shaded: beyond the image border"])
