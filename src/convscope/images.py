"""Reading images from the wild into the arrays convscope's models expect.

Everything that reads an image file (CLI, API, folder datasets) goes through
:func:`load_image`, so every command treats odd files the same way:

* EXIF orientation is applied, so photos come out upright;
* grayscale, palette, CMYK, LA/RGBA (composited over white) and 16-bit images are
  converted, 16-bit ones by scaling to 8 bits rather than clipping;
* only an allow-list of formats is decoded, and images above a pixel limit are
  refused *before* decoding (decompression bombs);
* missing, empty, truncated or corrupt files raise :class:`ImageError` naming the file.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from convscope.errors import ConvscopeError, ImageError

#: Formats convscope decodes; anything else is refused even if Pillow could read it.
ALLOWED_FORMATS = frozenset({"PNG", "JPEG", "MPO", "BMP", "GIF", "TIFF", "WEBP", "PPM"})
#: File suffixes a folder dataset considers to be images.  Suffixes of image formats
#: outside the allow-list are included, so that such files are listed as skipped
#: ("PCX images are not accepted") rather than silently ignored.
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
     ".pgm", ".pbm", ".pnm", ".mpo",
     ".pcx", ".ico", ".icns", ".psd", ".tga", ".svg", ".heic", ".heif", ".avif", ".jp2",
     ".j2k", ".xbm", ".xpm", ".eps", ".dds", ".sgi", ".im", ".msp", ".cur", ".fits"}
)
#: Largest image, in pixels, that is decoded (env CONVSCOPE_MAX_PIXELS overrides).
DEFAULT_MAX_PIXELS = 50_000_000
#: modes that fit_image resizes before converting (their conversion copies the full image)
_RESIZE_FIRST = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F", "LA", "La", "RGBA",
                           "RGBa", "CMYK", "YCbCr"})

#: the EXIF tag of a photo's orientation, and its values that turn it a quarter (the
#: stored width is the upright height)
_ORIENTATION = 0x0112
_QUARTER_TURNS = frozenset({5, 6, 7, 8})

ImageLike = Union[str, os.PathLike, bytes, Image.Image, np.ndarray, torch.Tensor]


def max_pixels() -> int:
    return int(os.environ.get("CONVSCOPE_MAX_PIXELS", DEFAULT_MAX_PIXELS))


def _describe(source) -> str:
    return str(source) if isinstance(source, (str, os.PathLike)) else "image data"


def _too_large(name: str, w: int, h: int, limit: int | None) -> ImageError:
    hint = ("shrink the image or raise CONVSCOPE_MAX_PIXELS" if limit is None
            else "send a smaller image")
    cap = max_pixels() if limit is None else limit
    return ImageError(f"{name}: {w}x{h} = {w * h:,} pixels is above the limit of {cap:,}; "
                      f"{hint}.", "too_large")


@contextmanager
def _checked(source: str | os.PathLike | bytes) -> Iterator[Image.Image]:
    """Open lazily (header only) and refuse what must not be decoded; every failure,
    now or while the caller decodes inside the block, becomes one ImageError."""
    name = _describe(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"{name}: no such image file; check the path.", "missing")
        if path.stat().st_size == 0:
            raise ImageError(f"{name}: the file is empty (0 bytes); it is not an image.",
                             "empty")
        fp = path
    else:
        if len(source) == 0:
            raise ImageError("the image data is empty (0 bytes); send an image file.", "empty")
        fp = io.BytesIO(source)
    try:
        with Image.open(fp) as img:
            if img.format not in ALLOWED_FORMATS:
                raise ImageError(
                    f"{name}: {img.format} images are not accepted; "
                    f"use one of {', '.join(sorted(ALLOWED_FORMATS - {'MPO'}))}.", "format"
                )
            w, h = img.size
            if w * h > max_pixels():
                raise _too_large(name, w, h, None)
            yield img
    except ImageError:
        raise
    except Image.DecompressionBombError:  # Pillow's own guard, which fires far above ours
        raise ImageError(f"{name}: the image is above the limit of {max_pixels():,} pixels, "
                         "like a decompression bomb; it was not decoded.", "too_large") from None
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not a readable image (unknown or damaged format).",
                         "format") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        raise ImageError(f"{name}: the image is corrupt or truncated ({_reason(exc)}).") from None


def probe_image(source: str | os.PathLike | bytes) -> tuple[int, int, str]:
    """(width, height, mode) from the header, after the same checks as open_image."""
    with _checked(source) as img:
        return img.size[0], img.size[1], img.mode


def upright_size(source: str | os.PathLike | bytes) -> tuple[int, int]:
    """(width, height) the image will have decoded upright (its EXIF orientation applied),
    from the header, after the same checks as open_image."""
    with _checked(source) as img:
        w, h = img.size
        return (h, w) if img.getexif().get(_ORIENTATION) in _QUARTER_TURNS else (w, h)


def open_image(
    source: str | os.PathLike | bytes, draft_size: tuple[int, int] | None = None
) -> Image.Image:
    """Decode a file (or bytes) into an upright 8-bit PIL image in mode "L" or "RGB".

    ``draft_size`` (W, H) lets JPEG decoding skip detail finer than that size,
    which makes thumbnails of big photos several times faster to decode.
    """
    return to_standard_mode(_decode(source, draft_size))


def read_label_image(source: str | os.PathLike | bytes) -> np.ndarray:
    """A label image (an indexed or grayscale PNG, as Pascal VOC's masks) as its ``(H, W)``
    uint8 pixel values: palette indices as they are, never converted to colours.  The same
    checks as :func:`open_image` (allow-list, pixel limit, EXIF orientation) apply."""
    with _checked(source) as img:
        if img.mode not in ("P", "L", "1"):
            raise ImageError(f"{_describe(source)}: a mask must be an indexed (palette) or "
                             f"grayscale image of class indices, not {img.mode}.", "format")
        img.load()
        return np.array(ImageOps.exif_transpose(img), dtype=np.uint8)


def _decode(source: str | os.PathLike | bytes, draft_size: tuple[int, int] | None = None,
            limit: int | None = None) -> Image.Image:
    """Decode upright in the file's own mode (no conversion yet: deep and alpha images are
    converted after the resize, so no full-size copy is made of them).  A JPEG is decoded
    reduced (``draft``) to no less than ``draft_size`` (W, H) in either axis, upright (a
    photo stored a quarter turned, EXIF orientation 5-8, is drafted with the sides
    swapped); ``limit`` bounds the pixels actually decoded."""
    with _checked(source) as img:
        if draft_size is not None and img.format == "JPEG":
            w, h = draft_size
            if img.getexif().get(_ORIENTATION) in _QUARTER_TURNS:
                w, h = h, w
            img.draft(img.mode, (max(1, w), max(1, h)))
        w, h = img.size  # after draft: what will be decoded
        if limit is not None and w * h > limit:
            raise _too_large(_describe(source), w, h, limit)
        img.load()
        return ImageOps.exif_transpose(img)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().rstrip(".")
    return (text or type(exc).__name__)[:200]


def to_standard_mode(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit "L" or "RGB", scaling (not clipping) deep images."""
    mode = img.mode
    if mode in ("L", "RGB"):
        return img
    if mode == "1":
        return img.convert("L")
    if mode.startswith("I;16"):
        # 65535 -> 255: scale the 16-bit range, never clip it; (v + 128) // 257 is
        # round(v / 257) exactly (no ties: 257 is odd), in uint32 rather than float64
        arr = np.asarray(img).astype(np.uint32)
        arr += 128
        arr //= 257
        return Image.fromarray(arr.astype(np.uint8), "L")
    if mode in ("I", "F"):
        arr = np.asarray(img).astype(np.float32)  # float32: half of float64's memory
        if (mode == "I" and arr.size and arr.max() > 255):
            arr /= 257.0
        elif mode == "F" and arr.size and arr.max() <= 1.0:
            arr *= 255.0
        np.rint(arr, out=arr)
        np.clip(arr, 0, 255, out=arr)
        return Image.fromarray(arr.astype(np.uint8), "L")
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("LA", "La", "PA", "RGBA", "RGBa"):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background.convert("L") if mode in ("LA", "La") else background
    return img.convert("RGB")


def fit_image(img: Image.Image, size: tuple[int, int] | None, channels: int) -> np.ndarray:
    """Resize (shorter side, then centre crop) and convert to (C, H, W) uint8.

    ``size`` None keeps the image's own size.  An image in a deep or alpha mode is
    resized in its own mode first (Pillow premultiplies alpha), then converted: the
    conversion then touches only the model's size, not a full-size copy.
    """
    if size is None:
        size = (img.height, img.width)
    th, tw = size
    w, h = img.size
    if img.mode in _RESIZE_FIRST and (w > tw or h > th) and (w, h) != (tw, th):
        scale = max(tw / w, th / h)
        nw, nh = max(tw, round(w * scale)), max(th, round(h * scale))
        if nw * nh < w * h:
            img = img.resize((nw, nh), Image.BILINEAR)
    img = to_standard_mode(img)
    if channels == 1 and img.mode != "L":
        img = img.convert("L")
    elif channels == 3 and img.mode != "RGB":
        img = img.convert("RGB")
    if img.size != (tw, th):
        w, h = img.size
        scale = max(tw / w, th / h)
        nw, nh = max(tw, round(w * scale)), max(th, round(h * scale))
        img = img.resize((nw, nh), Image.BILINEAR)
        left, top = (nw - tw) // 2, (nh - th) // 2
        img = img.crop((left, top, left + tw, top + th))
    arr = np.array(img, dtype=np.uint8)  # a writable copy, not a view of PIL's buffer
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def load_image(source: ImageLike, size: tuple[int, int] | None, channels: int,
               limit: int | None = None) -> np.ndarray:
    """Any supported image input as a (C, H, W) uint8 array of the given size (None: its own).

    Accepts a path, encoded bytes, a PIL image, a uint8 HWC/HW numpy array, or a
    tensor (uint8 CHW, or float CHW in [0, 1]).  A file or bytes is decoded lean: a JPEG
    reduced to the size needed (``draft``), deep and alpha images converted after the
    resize; ``limit`` bounds the pixels decoded (the web app's per-upload bound).
    """
    if isinstance(source, (str, os.PathLike, bytes)):
        draft = None if size is None else (size[1], size[0])
        return fit_image(_decode(source, draft, limit), size, channels)
    return fit_image(to_pil(source), size, channels)


def to_pil(source: ImageLike) -> Image.Image:
    """Any supported image input decoded to an upright "L" or "RGB" PIL image."""
    if isinstance(source, (str, os.PathLike, bytes)):
        return open_image(source)
    if isinstance(source, Image.Image):
        return to_standard_mode(ImageOps.exif_transpose(source))
    if isinstance(source, (np.ndarray, torch.Tensor)):
        return array_to_pil(source)
    raise ImageError(f"cannot use a {type(source).__name__} as an image; pass a path, "
                     "bytes, PIL image, numpy array or tensor.", "format")


def load_image_scaled(source: ImageLike, longer: int, channels: int) -> np.ndarray:
    """An image as (C, H, W) uint8 with its longer side ``longer`` px and its aspect kept."""
    img = to_pil(source)
    w, h = img.size
    scale = longer / max(w, h)
    return fit_image(img, (max(1, round(h * scale)), max(1, round(w * scale))), channels)


def array_to_pil(arr: np.ndarray | torch.Tensor) -> Image.Image:
    """A numpy HWC/HW array or a CHW tensor as a PIL image (uint8 or float in [0, 1])."""
    if isinstance(arr, torch.Tensor):
        t = arr.detach().cpu()
        if t.ndim == 3 and t.shape[0] in (1, 3, 4):
            t = t.permute(1, 2, 0)
        arr = t.numpy()
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
        raise ImageError(f"an image array must be HxW or HxWx{{1,3,4}}, got shape {arr.shape}.",
                         "format")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and arr.max() <= 1.0:
            arr = arr * 255.0
        elif arr.dtype == np.uint16:
            arr = arr / 257.0
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    return to_standard_mode(Image.fromarray(arr))



def image_batch(images, size: tuple[int, int] | None = None,
                channels: int | None = None) -> torch.Tensor:
    """Any supported input as a uint8 ``(N, C, H, W)`` tensor: the one path from a user's
    images to a batch (``Classifier.as_batch`` and ``convscope.train`` both take it).

    Accepts one image or a sequence of images (paths, bytes, PIL images, HWC arrays, CHW
    tensors), or a batch: an ``(N, H, W[, C])`` array or an ``(N, C, H, W)`` tensor (uint8,
    or float in [0, 1]).  ``size`` (H, W) and ``channels`` are a model's; None keeps the
    images' own: a batch's, or for separate images the first one's size, and grayscale
    when the first 16 are all grayscale.  A uint8 batch already at that size and channel
    count is returned as it is, without a pass through PIL.
    """
    if isinstance(images, (str, os.PathLike, bytes, Image.Image)) or _one_array(images):
        c = channels or _own_channels([images])
        return torch.from_numpy(load_image(images, size, c))[None]
    if isinstance(images, np.ndarray):
        a = images[..., None] if images.ndim == 3 else images  # (N, H, W): grayscale
        if a.ndim != 4:
            raise ConvscopeError(f"cannot read an array of shape {images.shape} as images.")
        return _fit_batch(torch.from_numpy(np.ascontiguousarray(
            _uint8(a).transpose(0, 3, 1, 2))), size, channels)
    if isinstance(images, torch.Tensor):
        t = images.detach().cpu()
        t = t[:, None] if t.ndim == 3 else t  # (N, H, W): grayscale
        if t.ndim != 4:
            raise ConvscopeError(f"cannot read a tensor of shape {tuple(images.shape)} as "
                                 "images.")
        if t.is_floating_point():
            t = (t.clamp(0, 1) * 255).round()
        elif t.dtype != torch.uint8:
            t = t.clamp(0, 255)
        return _fit_batch(t.to(torch.uint8), size, channels)
    if isinstance(images, Sequence) and not isinstance(images, str):
        if len(images) == 0:
            raise ConvscopeError("no images were given.")
        c = channels or _own_channels(images)
        if size is None:
            w, h = to_pil(images[0]).size
            size = (h, w)
        return torch.stack([torch.from_numpy(load_image(x, size, c)) for x in images])
    raise ConvscopeError(f"cannot read a {type(images).__name__} as images; pass paths, "
                         "PIL images, arrays or tensors.")


def _one_array(x) -> bool:
    """An HW / HWC array or an HW / CHW tensor: one image, not a batch."""
    if isinstance(x, np.ndarray):
        return x.ndim == 2 or (x.ndim == 3 and x.shape[-1] in (1, 3, 4))
    if isinstance(x, torch.Tensor):
        return x.ndim == 2 or (x.ndim == 3 and x.shape[0] in (1, 3, 4))
    return False


def _own_channels(images) -> int:
    """1 when the first 16 images are grayscale, else 3."""
    return 1 if all(to_pil(x).mode == "L" for x in images[:16]) else 3


def _uint8(a: np.ndarray) -> np.ndarray:
    """A batch in uint8 by :func:`array_to_pil`'s rule, decided once for the whole batch:
    floats in [0, 1] are scaled by 255, 16-bit values divided by 257, the rest rounded."""
    if a.dtype == np.uint8:
        return a
    if np.issubdtype(a.dtype, np.floating) and a.size and a.max() <= 1.0:
        a = a * 255.0
    elif a.dtype == np.uint16:
        a = a / 257.0
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def _fit_batch(t: torch.Tensor, size, channels) -> torch.Tensor:
    """A uint8 (N, C, H, W) batch at ``size`` and ``channels`` (None: its own, with 4
    channels read as RGBA -> RGB); images are converted one by one only when needed."""
    c = channels or (t.shape[1] if t.shape[1] in (1, 3) else 3)
    size = tuple(size) if size is not None else tuple(t.shape[-2:])
    if tuple(t.shape[-2:]) == size and t.shape[1] == c:
        return t.contiguous()
    return torch.stack([torch.from_numpy(load_image(x, size, c)) for x in t])
