"""Reading odd image files: conversions, and errors that name the file."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from convscope.errors import ImageError
from convscope.images import load_image, open_image


def save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


def test_grayscale_to_rgb_and_back(tmp_path):
    p = save(Image.new("L", (4, 4), 100), tmp_path / "g.png")
    rgb = load_image(p, (4, 4), 3)
    assert rgb.shape == (3, 4, 4) and (rgb == 100).all()
    gray = load_image(save(Image.new("RGB", (4, 4), (255, 0, 0)), tmp_path / "r.png"), (4, 4), 1)
    # ITU-R 601-2 luma: 299/1000 * 255 = 76.2
    assert gray.shape == (1, 4, 4) and (gray == 76).all()


def test_rgba_is_composited_over_white(tmp_path):
    img = Image.new("RGBA", (2, 2), (0, 0, 0, 0))
    img.putpixel((0, 0), (10, 20, 30, 255))
    arr = load_image(save(img, tmp_path / "a.png"), (2, 2), 3)
    assert tuple(arr[:, 0, 0]) == (10, 20, 30)
    assert tuple(arr[:, 1, 1]) == (255, 255, 255)


def test_palette_with_transparency(tmp_path):
    img = Image.new("P", (2, 2), 0)
    img.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    img.putpixel((1, 1), 1)
    img.info["transparency"] = 0
    arr = load_image(save(img, tmp_path / "p.png", transparency=0), (2, 2), 3)
    assert tuple(arr[:, 1, 1]) == (200, 10, 10)
    assert tuple(arr[:, 0, 0]) == (255, 255, 255)


def test_16bit_is_scaled_not_clipped(tmp_path):
    arr16 = np.array([[0, 65535], [32896, 1000]], dtype=np.uint16)
    p = save(Image.fromarray(arr16), tmp_path / "deep.png")
    out = load_image(p, (2, 2), 1)[0]
    assert out.tolist() == [[0, 255], [128, 4]]  # 32896/257 = 128, 1000/257 = 3.9


def test_cmyk_jpeg(tmp_path):
    p = save(Image.new("CMYK", (3, 3), (0, 255, 255, 0)), tmp_path / "c.jpg")
    arr = load_image(p, (3, 3), 3)
    assert arr[0].mean() > 200 and arr[1].mean() < 60  # cyan=0, magenta+yellow=255: red


def test_exif_rotation_is_applied(tmp_path):
    img = Image.new("RGB", (4, 2), (0, 0, 0))
    img.putpixel((0, 0), (255, 255, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    p = tmp_path / "rot.jpg"
    img.save(p, exif=exif, quality=100)
    up = open_image(p)
    assert up.size == (2, 4)
    a = np.asarray(up.convert("L"))
    assert a[0, -1] > 200  # the top-left pixel went to the top-right corner


def test_resize_takes_centre_crop(tmp_path):
    arr = np.zeros((10, 20, 3), np.uint8)
    arr[:, 5:15] = 255  # a white centre band exactly half the width
    out = load_image(arr, (10, 10), 3)
    assert out.shape == (3, 10, 10) and out.min() == 255


@pytest.mark.parametrize("content,needle", [
    (b"", "empty"),
    (b"this is just text renamed to jpg", "not a readable image"),
])
def test_bad_files_name_the_file(tmp_path, content, needle):
    p = tmp_path / "bad.jpg"
    p.write_bytes(content)
    with pytest.raises(ImageError, match=needle) as exc:
        open_image(p)
    assert str(p) in str(exc.value)


def test_truncated_and_missing(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
        buf, "JPEG")
    p = tmp_path / "trunc.jpg"
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])
    with pytest.raises(ImageError, match="trunc.jpg"):
        open_image(p)
    with pytest.raises(ImageError, match="no such image file"):
        open_image(tmp_path / "missing.png")


def test_pixel_limit_refuses_before_decoding(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVSCOPE_MAX_PIXELS", "100")
    p = save(Image.new("L", (11, 10)), tmp_path / "big.png")
    with pytest.raises(ImageError, match="above the limit"):
        open_image(p)


def test_format_outside_allow_list(tmp_path):
    p = save(Image.new("RGB", (4, 4)), tmp_path / "x.pcx")
    with pytest.raises(ImageError, match="PCX images are not accepted"):
        open_image(p)


def test_a_big_16bit_image_is_converted_without_a_float64_copy():
    """Issue 20, finding 9: a 16-bit PNG was converted in float64 at full size (8 bytes a
    pixel: +1.2 GB for 7000x7000).  Now it is resized in its own mode, then converted;
    numpy's allocations (tracemalloc sees them) stay far below one full-size copy."""
    import tracemalloc

    buf = io.BytesIO()
    Image.new("I;16", (3000, 3000), 40000).save(buf, "PNG")
    tracemalloc.start()
    try:
        out = load_image(buf.getvalue(), (8, 8), 1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.shape == (1, 8, 8) and (out == 156).all()  # round(40000 / 257) = 156
    assert peak < 3000 * 3000, f"numpy peak {peak / 2**20:.0f} MB"  # float64 copy: 69 MB


def test_a_jpeg_is_decoded_reduced_and_the_limit_counts_decoded_pixels():
    """A 4000x4000 JPEG asked for at 64x64 decodes at 1/8 scale (500x500), so a caller's
    pixel limit of 1,000,000 lets it through; the same image as PNG is refused."""
    jpg, png = io.BytesIO(), io.BytesIO()
    Image.new("RGB", (4000, 4000), (10, 200, 30)).save(jpg, "JPEG")
    Image.new("RGB", (4000, 4000), (10, 200, 30)).save(png, "PNG")
    out = load_image(jpg.getvalue(), (64, 64), 3, limit=1_000_000)
    assert out.shape == (3, 64, 64) and abs(int(out[1].mean()) - 200) < 4
    with pytest.raises(ImageError, match="above the limit of 1,000,000; send a smaller"):
        load_image(png.getvalue(), (64, 64), 3, limit=1_000_000)


def test_train_and_the_classifier_read_images_by_one_path():
    import torch

    from convscope.api import as_dataset
    from convscope.images import image_batch

    u8 = np.random.default_rng(0).integers(0, 256, (6, 5, 7, 3)).astype(np.uint8)  # NHWC
    nchw = torch.from_numpy(u8).permute(0, 3, 1, 2)
    labels = [0, 1] * 3

    def read(images):
        return as_dataset(images, labels, test_images=images, test_labels=labels).train_images

    assert torch.equal(read(u8), nchw)
    assert torch.equal(read(u8 / 255.0), nchw)          # floats in [0, 1], as a batch
    assert torch.equal(read(nchw.float() / 255), nchw)  # a float NCHW tensor
    gray = [Image.fromarray(a[..., 0]) for a in u8]      # separate images: their own size
    assert torch.equal(read(gray), nchw[:, :1]) and torch.equal(image_batch(gray), nchw[:, :1])
    three = torch.from_numpy(u8[:3, ..., 0])             # (3, H, W): three grayscale images
    assert as_dataset(three, [0, 1, 0], test_images=three, test_labels=[0, 1, 0]
                      ).train_images.shape == (3, 1, 5, 7)
    # a Classifier reads the same inputs the same way, at its own size and channels
    assert torch.equal(image_batch(u8 / 255.0, (5, 7), 3), nchw)
    assert image_batch(gray, (4, 4), 3).shape == (6, 3, 4, 4)


def test_a_photo_stored_a_quarter_turned_is_drafted_upright():
    """A phone's portrait JPEG is stored landscape with EXIF orientation 6: the reduced
    decode must be worked out on the upright sides, or it decodes four times the pixels
    (750,000 here instead of 187,500) and trips a per-upload pixel limit."""
    stored = Image.new("RGB", (4000, 3000), (120, 60, 30))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    stored.save(buf, format="JPEG", quality=60, exif=exif.tobytes())
    arr = load_image(buf.getvalue(), (400, 300), 3, limit=300_000)
    assert arr.shape == (3, 400, 300)
