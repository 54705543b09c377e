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


# ----------------------------------------------------------------- model files
class Evil:
    """Unpickling this runs a shell command that creates ``sentinel``."""

    def __init__(self, sentinel):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.sentinel}",))


def _tiny_export(path: Path) -> Path:
    import torch
    from torch import nn

    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()).eval()
    torch.export.save(torch.export.export(net, (torch.zeros(1, 1, 8, 8),)), path)
    return path


def evil_pt2(path: Path, sentinel: Path) -> Path:
    """A valid torch.export archive whose sample inputs are swapped for a pickle payload
    (``torch.export.load`` retries such an entry with ``weights_only=False``)."""
    import zipfile

    import torch

    good = _tiny_export(path.with_name(path.stem + "_good.pt2"))
    payload = io.BytesIO()
    torch.save(Evil(sentinel), payload)
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(path, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith("sample_inputs/model.pt"):
                data = payload.getvalue()
            zout.writestr(info, data)
    good.unlink()
    return path


TS_MARKER = "TORCHSCRIPT-PAYLOAD-RAN"


def evil_torchscript(path: Path) -> Path:
    """A TorchScript archive whose ``__setstate__`` (TorchScript code, run by
    ``torch.jit.load``) prints ``TS_MARKER``."""
    import warnings

    import torch
    from torch import nn

    class Loud(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(1, 2, 3)

        def forward(self, x):
            return self.c(x)

        @torch.jit.export
        def __getstate__(self) -> tuple[int, bool]:
            return (1, self.training)

        @torch.jit.export
        def __setstate__(self, state: tuple[int, bool]) -> None:
            print("TORCHSCRIPT-PAYLOAD-RAN")
            self.training = state[1]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(Loud()), str(path))
    return path


def build_model_corpus(folder: Path, good: Path, sentinel: Path) -> list[Case]:
    """Model files convscope must refuse, each with a fragment of its one sentence, written
    into ``folder`` from the valid convscope model file ``good``."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    with safe_open(str(good), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        metadata = f.metadata()
    meta = json.loads(metadata["convscope"])
    cases: list[Case] = []

    def variant(name, change, reason, what, weights=None):
        m = {**meta, **change}
        save_file(weights or tensors, folder / name, metadata={"convscope": json.dumps(m)})
        cases.append(Case(name, False, reason, what))

    variant("version_str.safetensors", {"version": "2"}, "'version' must be a whole number",
            'metadata `version: "2"`')
    variant("channels_str.safetensors", {"channels": "one"}, "'channels' must be a whole number "
            "from 1 to 4", 'metadata `channels: "one"`')
    variant("channels_9.safetensors", {"channels": 9}, "'channels' must be a whole number from "
            "1 to 4", "metadata `channels: 9`")
    variant("negative_size.safetensors", {"image_size": [-8, -8]}, "'image_size' must be "
            "[height, width]", "metadata `image_size: [-8, -8]`")
    variant("input_str.safetensors", {"input_size": "8x8"}, "'input_size' must be",
            'metadata `input_size: "8x8"`')
    variant("empty_mean.safetensors", {"mean": []}, "'mean' must be a list of 1 finite",
            "metadata `mean: []`")
    variant("std_zero.safetensors", {"std": [0]}, "'std' must be positive",
            "metadata `std: [0]`")
    variant("options_list.safetensors", {"options": [1, 2]}, "'options' must be a JSON object",
            "metadata `options: [1, 2]`")
    variant("option_type.safetensors", {"options": {**meta["options"], "width": "8"}},
            "model option width of convnet must be int", 'metadata option `width: "8"`')
    variant("no_classes.safetensors", {"classes": []}, "'classes' must be a list of 1",
            "metadata `classes: []`")
    variant("huge_spec.safetensors", {"model": "spec", "options": {
        "spec": "CONV3-100000-CONV3-100000-FC"}}, "more than the 500,000,000 convscope builds",
        "a spec of 90 billion parameters (refused from the meta device, nothing allocated)")
    variant("huge_activation.safetensors", {"model": "spec", "options": {"spec": "CONV3-64-GAP-FC"},
            "image_size": [8192, 8192], "input_size": [8192, 8192]},
            "more than the 268,435,456 convscope allows in one layer",
            "a layer output of 4.3 billion values per image")
    nan = {k: v.clone() for k, v in tensors.items()}
    nan["classifier.weight"].view(-1)[0] = float("nan")
    variant("nan_weights.safetensors", {}, "holds NaN or infinite values",
            "a NaN in the weights", weights=nan)
    evil_pt2(folder / "payload.pt2", sentinel)
    cases.append(Case("payload.pt2", False, "--trust-code",
                      "torch.export archive whose sample inputs are a pickle payload"))
    evil_torchscript(folder / "payload.ts")
    cases.append(Case("payload.ts", False, "--trust-code",
                      "TorchScript whose `__setstate__` runs code on load"))
    return cases
