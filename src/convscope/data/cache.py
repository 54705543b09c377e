"""The decode cache every file-reading dataset shares (``folder:``, ``coco:``, ``voc:``, ...).

Decoded images are kept as one uint8 ``.npy`` array next to a ``.json`` of what it holds,
keyed by the file list, sizes and modification times, so that a later run (and every epoch
of a run) reads the array instead of decoding images again.  A damaged entry is reported
once and rebuilt; an entry that can't be written is only a lost speed-up.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from convscope.data.base import DataWarning
from convscope.errors import ConvscopeError, ImageError
from convscope.fileio import atomic_path, write_text_atomic
from convscope.images import probe_image
from convscope.progress import progress_bar

CACHE_VERSION = 2
#: Pillow modes read as one channel: a dataset of only these is decoded as grayscale
GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def cache_root() -> Path:
    return Path(os.environ.get("CONVSCOPE_CACHE") or Path.home() / ".cache" / "convscope")


def cache_dir(kind: str = "folder") -> Path:
    """Where one kind of dataset keeps its decoded images (``folder``, ``annotated``)."""
    return cache_root() / kind


def cache_key(root: Path, what: str, files: list[Path]) -> str:
    """A key that changes when any file is added, removed, resized or touched, or when
    ``what`` (the decoding settings) changes."""
    h = hashlib.sha256(f"v{CACHE_VERSION}|{root.resolve()}|{what}".encode())
    for f in files:
        st = f.stat()
        h.update(f"|{f.relative_to(root)}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:32]


def image_failure(exc: ImageError) -> str:
    """The reason of an ImageError without the file name its message starts with."""
    return str(exc).split(": ", 1)[-1]


def header(path: Path) -> tuple[int, int, str] | str:
    """(width, height, mode) from the file header, or the reason it is unusable."""
    try:
        return probe_image(path)
    except ImageError as exc:
        return image_failure(exc)


def decode_each(n: int, work: Callable[[int], None], progress: bool,
                desc: str = "decoding images") -> dict[int, str]:
    """Run ``work(i)`` for i in range(n) on a thread pool (Pillow decodes without the GIL);
    returns {i: reason} for each ``work`` that raised an ImageError."""
    failed: dict[int, str] = {}

    def run(i: int) -> None:
        try:
            work(i)
        except ImageError as exc:
            failed[i] = image_failure(exc)

    workers = min(8, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool, progress_bar(
        total=n, desc=desc, unit="img", enable=progress
    ) as bar:
        for _ in pool.map(run, range(n)):
            bar.update(1)
    return failed


def load_cache(path: Path, fits: Callable[[np.ndarray, dict], bool]
               ) -> tuple[np.ndarray, dict] | None:
    """The cached array and its metadata, or None when missing or unreadable.

    ``fits(array, meta)`` says whether the entry describes the files asked for.  A damaged
    entry (truncated, half-written by an older version, edited) is never fatal: it is
    reported once, and the caller decodes again and overwrites it.
    """
    npy, js = path.with_suffix(".npy"), path.with_suffix(".json")
    if not (npy.is_file() and js.is_file()):
        return None
    try:
        meta = json.loads(js.read_text())
        images = np.load(npy, allow_pickle=False)
        if (images.dtype != np.uint8 or list(images.shape) != meta["shape"]
                or not fits(images, meta)):
            raise ValueError("its contents do not match")
    except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:
        warnings.warn(f"the decoded-image cache {npy} could not be read ({exc}); decoding the "
                      "images again and rewriting it.", DataWarning, stacklevel=3)
        return None
    return images, meta


def save_cache(path: Path, images: np.ndarray, meta: dict) -> None:
    """Write the cache atomically (images first; the metadata, written last, completes it).

    A cache that can't be written is only a lost speed-up: it is reported, not fatal.
    """
    try:
        with atomic_path(path.with_suffix(".npy")) as tmp, open(tmp, "wb") as f:
            np.save(f, images)
        write_text_atomic(path.with_suffix(".json"), json.dumps({**meta,
                                                                 "shape": list(images.shape)}))
    except ConvscopeError as exc:
        warnings.warn(f"the decoded images were not cached, so the next run decodes them "
                      f"again: {exc}", DataWarning, stacklevel=3)


def pack(arrays: list[np.ndarray]) -> tuple[np.ndarray, list[list[int]]]:
    """Arrays of different shapes as one flat uint8 array and their shapes (what a cache of
    images at their own sizes stores)."""
    flat = np.concatenate([a.ravel() for a in arrays]) if arrays else np.zeros(0, np.uint8)
    return flat.astype(np.uint8, copy=False), [list(a.shape) for a in arrays]


def unpack(flat: np.ndarray, shapes: list[list[int]]) -> list[np.ndarray]:
    """The arrays :func:`pack` stored, as views into ``flat``."""
    out, at = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        out.append(flat[at : at + size].reshape(shape))
        at += size
    return out


def packed_fits(flat: np.ndarray, shapes) -> bool:
    """Whether ``shapes`` (a cache's metadata) describes exactly the flat array."""
    return flat.ndim == 1 and isinstance(shapes, list) and all(
        isinstance(s, list) and all(isinstance(d, int) and d > 0 for d in s) for s in shapes
    ) and sum(int(np.prod(s)) for s in shapes) == len(flat)
