"""A corpus of bad and odd images, generated, with the outcome each must get.

Used by the tests of predict, folder training and the web server's upload.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Case:
    name: str  # file name
    accepted: bool
    #: for rejected files, a fragment of the one-sentence error
    reason: str = ""
    #: what it is, for the README's table
    what: str = ""


def upright() -> Image.Image:
    """An asymmetric picture: a bright block top-left, a mid-grey bar along the bottom."""
    a = np.full((24, 32, 3), 30, np.uint8)
    a[:8, :8] = 250
    a[-4:, :] = 120
    return Image.fromarray(a)


# EXIF orientation n means "to display, apply this"; we store the inverse of it.
_STORE = {
    1: lambda im: im,
    2: lambda im: im.transpose(Image.FLIP_LEFT_RIGHT),
    3: lambda im: im.transpose(Image.ROTATE_180),
    4: lambda im: im.transpose(Image.FLIP_TOP_BOTTOM),
    5: lambda im: im.transpose(Image.TRANSPOSE),
    6: lambda im: im.transpose(Image.ROTATE_90),
    7: lambda im: im.transpose(Image.TRANSVERSE),
    8: lambda im: im.transpose(Image.ROTATE_270),
}


def _png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (decoding would need GBs)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + chunk(b"IEND", b""))


def build_corpus(folder: Path) -> list[Case]:
    """Write the corpus into ``folder`` and return its cases."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    jpeg = io.BytesIO()
    noise.save(jpeg, "JPEG")
    png = io.BytesIO()
    noise.save(png, "PNG")
    cases: list[Case] = []

    def raw(name, data: bytes, reason, what):
        (folder / name).write_bytes(data)
        cases.append(Case(name, False, reason, what))

    def img(name, image: Image.Image, what, **save):
        image.save(folder / name, **save)
        cases.append(Case(name, True, what=what))

    raw("empty.jpg", b"", "empty", "zero-byte file")
    raw("truncated.jpg", jpeg.getvalue()[: len(jpeg.getvalue()) // 3], "corrupt or truncated",
        "JPEG cut to a third")
    raw("truncated.png", png.getvalue()[: len(png.getvalue()) // 2], "corrupt or truncated",
        "PNG cut in half")
    raw("text.jpg", b"just some text, renamed to .jpg\n" * 4, "not a readable image",
        "text renamed to .jpg")
    raw("page.png", b"<!doctype html><html><body>hi</body></html>", "not a readable image",
        "HTML renamed to .png")
    raw("random.jpg", rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "not a readable image", "random bytes")
    raw("bomb.png", _png_bomb(60_000, 60_000), "above the limit",
        "decompression bomb: 60,000 x 60,000 px in 1 KB")
    Image.new("RGB", (8, 8), (10, 200, 30)).save(folder / "image.pcx")
    cases.append(Case("image.pcx", False, "not accepted", "PCX: a format outside the allow-list"))
    Image.new("RGB", (16, 16), (10, 200, 30)).save(folder / "icon.ico")
    cases.append(Case("icon.ico", False, "not accepted", "ICO: a format outside the allow-list"))

    for n, store in _STORE.items():
        exif = Image.Exif()
        exif[0x0112] = n
        store(upright()).save(folder / f"exif{n}.jpg", exif=exif, quality=95)
        cases.append(Case(f"exif{n}.jpg", True, what=f"EXIF orientation {n}: shown upright"))
    img("cmyk.jpg", Image.new("CMYK", (20, 20), (0, 255, 255, 0)), "CMYK JPEG")
    pal = Image.new("P", (20, 20), 1)
    pal.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    img("palette_alpha.png", pal, "palette with transparency", transparency=0)
    img("la.png", Image.new("LA", (20, 20), (90, 128)), "grayscale + alpha (LA)")
    img("rgba.png", Image.new("RGBA", (20, 20), (10, 20, 30, 100)), "RGBA")
    img("gray16.png", Image.fromarray(np.full((20, 20), 50000, np.uint16)),
        "16-bit grayscale PNG: scaled, not clipped")
    img("gray16.tif", Image.fromarray(np.full((20, 20), 30000, np.uint16)), "16-bit TIFF")
    img("bilevel.png", Image.new("1", (20, 20), 1), "1-bit black and white")
    img("tiny.png", Image.new("RGB", (1, 1), (5, 6, 7)), "1 x 1 pixel")
    frames = [Image.new("RGB", (20, 20), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:])
    cases.append(Case("animated.gif", True, what="animated GIF: first frame"))
    img("large.jpg", Image.fromarray(rng.integers(0, 255, (3000, 4000, 3), dtype=np.uint8)),
        "12-megapixel photo", quality=70)
    img("photo.webp", noise, "WebP")
    img("photo.bmp", noise, "BMP")
    return cases
