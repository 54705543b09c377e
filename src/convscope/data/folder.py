"""``folder:PATH``: a user's own images as ``PATH/<class>/<image>``.

The folder is scanned once: every file is opened, bad ones are skipped and
listed (never fatal), and the decoded, resized images are cached as one uint8
array keyed by the file list, sizes and modification times.  Later runs, and
every epoch of a run, read that array instead of decoding images again.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from convscope.data.base import ImageDataset, stratified_split
from convscope.data.registry import register_dataset
from convscope.errors import ConvscopeError, ImageError
from convscope.images import IMAGE_SUFFIXES, fit_image, open_image, probe_image
from convscope.progress import progress_bar

CACHE_VERSION = 1
TEST_FRACTION = 0.2
SPLIT_SEED = 0
GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")


def cache_root() -> Path:
    return Path(os.environ.get("CONVSCOPE_CACHE") or Path.home() / ".cache" / "convscope")


def cache_dir() -> Path:
    return cache_root() / "folder"


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def extract_archive(path: Path) -> Path:
    """Extract a .tar(.gz)/.zip of images into the cache once; return the folder.

    Extraction goes to a temporary folder that is renamed when complete, so an
    interrupted extraction is never mistaken for a finished one.  Members that
    would land outside the folder (absolute paths, ``..``, links) are refused.
    """
    import shutil
    import tarfile
    import zipfile

    st = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()
    dest = cache_root() / "archives" / key[:32]
    if dest.is_dir():
        return dest
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if path.name.lower().endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                for name in zf.namelist():
                    target = (tmp / name).resolve()
                    if not target.is_relative_to(tmp.resolve()):
                        raise ConvscopeError(f"{path}: member {name!r} would be written outside "
                                             "the extraction folder; refusing the archive.")
                zf.extractall(tmp)
        else:
            with tarfile.open(path) as tf:
                tf.extractall(tmp, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ConvscopeError(f"{path}: could not extract the archive ({exc}).") from None
    tmp.rename(dest)
    return dest


def _descend(root: Path) -> Path:
    """Skip wrapper folders: a folder whose only entry is one folder can't hold classes."""
    while True:
        entries = [p for p in root.iterdir() if not p.name.startswith(".")]
        if len(entries) == 1 and entries[0].is_dir() and entries[0].name not in ("train", "test", "val"):
            root = entries[0]
        else:
            return root


def _class_files(split_dir: Path) -> tuple[dict[str, list[Path]], int]:
    """{class: sorted image files} for the class subfolders of split_dir, and the
    number of non-image files ignored."""
    classes: dict[str, list[Path]] = {}
    ignored = 0
    for sub in sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = []
        for f in sorted(sub.rglob("*")):
            if not f.is_file() or any(part.startswith(".") for part in f.relative_to(sub).parts):
                continue
            if f.suffix.lower() in IMAGE_SUFFIXES:
                files.append(f)
            else:
                ignored += 1
        if files:
            classes[sub.name] = files
    return classes, ignored


def _layout(root: Path) -> tuple[dict[str, list[Path]], dict[str, list[Path]] | None, int, str]:
    """(train files, test files or None, ignored count, description of the layout)."""
    test_dir = next((root / n for n in ("test", "val") if (root / n).is_dir()), None)
    if (root / "train").is_dir():
        train, ignored = _class_files(root / "train")
        if test_dir is not None:
            test, ignored_test = _class_files(test_dir)
            return train, test, ignored + ignored_test, f"train/ and {test_dir.name}/ subfolders"
        return train, None, ignored, "train/ subfolder"
    train, ignored = _class_files(root)
    return train, None, ignored, "class subfolders"


def test_dir_name(root: Path) -> str:
    return next(n for n in ("test", "val") if (root / n).is_dir())


def _header(path: Path) -> tuple[int, int, str] | str:
    """(width, height, mode) from the file header, or the reason it is unusable."""
    try:
        return probe_image(path)
    except ImageError as exc:
        return str(exc).split(": ", 1)[-1]


def _choose_size(headers: list[tuple[int, int, str]]) -> int:
    sizes = {(w, h) for w, h, _ in headers}
    if len(sizes) == 1:
        w, h = sizes.pop()
        if w == h:
            return w
    shorter = statistics.median(min(w, h) for w, h, _ in headers)
    return int(min(224, max(1, round(shorter))))  # the typical size, at most 224


def _cache_key(root: Path, files: list[Path], image_size: int | None) -> str:
    h = hashlib.sha256(f"v{CACHE_VERSION}|{root.resolve()}|{image_size}".encode())
    for f in files:
        st = f.stat()
        h.update(f"|{f.relative_to(root)}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:32]


def _decode_all(files: list[Path], size: int, channels: int, progress: bool):
    """Decode files into one (N, C, size, size) uint8 array; returns it and the failures."""
    out = np.zeros((len(files), channels, size, size), dtype=np.uint8)
    failed: dict[int, str] = {}

    def work(i: int) -> None:
        try:
            img = open_image(files[i], draft_size=(size, size))
            out[i] = fit_image(img, (size, size), channels)
        except ImageError as exc:
            failed[i] = str(exc).split(": ", 1)[-1]

    workers = min(8, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool, progress_bar(
        total=len(files), desc="decoding images", unit="img", enable=progress
    ) as bar:
        for _ in pool.map(work, range(len(files))):
            bar.update(1)
    return out, failed


def _save_cache(path: Path, images: np.ndarray, meta: dict) -> None:
    """Write the cache atomically; a cache that can't be written is only a lost speed-up."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, images)
        tmp.replace(path.with_suffix(".npy"))
        path.with_suffix(".json").write_text(json.dumps(meta))
    except OSError:
        pass


@register_dataset("folder", "your own images as PATH/<class>/<image>; uses train/ and "
                  "test/ (or val/) subfolders when present; PATH may be a .tar(.gz) or .zip",
                  arg="PATH", arg_required=True)
def load_folder(arg, *, image_size=None, progress=True, holdout=TEST_FRACTION,
                **_) -> ImageDataset:
    given = Path(arg).expanduser()
    root = given
    if is_archive(root):
        root = _descend(extract_archive(root))
    elif not root.is_dir():
        raise ConvscopeError(f"folder dataset {arg!r} is not a directory or a .tar/.tar.gz/.zip "
                             "archive; give folder:PATH where PATH holds one subfolder per class.")
    train_files, test_files, ignored, layout = _layout(root)
    if test_files is not None:
        unknown = sorted(set(test_files) - set(train_files))
        if unknown:
            raise ConvscopeError(f"{root}: the test split has classes that train/ lacks "
                                 f"({', '.join(unknown)}); give both the same class folders.")
    classes = sorted(train_files)
    if len(classes) < 2:
        raise ConvscopeError(f"{root}: found {len(classes)} class folder(s) with images; a "
                             "classifier needs at least two, as PATH/<class>/<image>.")
    entries = [(f, classes.index(c), "train") for c in classes for f in train_files[c]]
    if test_files:
        entries += [(f, classes.index(c), "test") for c in classes for f in test_files.get(c, [])]
    files = [e[0] for e in entries]

    key_path = cache_dir() / _cache_key(root, files, image_size)
    meta_path = key_path.with_suffix(".json")
    if meta_path.is_file() and key_path.with_suffix(".npy").is_file():
        meta = json.loads(meta_path.read_text())
        images = np.load(key_path.with_suffix(".npy"))
    else:
        headers = {}
        bad: dict[str, str] = {}
        for f in progress_bar(files, desc="scanning files", unit="file", enable=progress):
            h = _header(f)
            if isinstance(h, str):
                bad[str(f.relative_to(root))] = h
            else:
                headers[f] = h
        if not headers:
            raise ConvscopeError(f"{root}: none of the {len(files)} image files could be read.")
        size = image_size or _choose_size(list(headers.values()))
        channels = 1 if all(m in GRAY_MODES for _, _, m in headers.values()) else 3
        good = [i for i, f in enumerate(files) if f in headers]
        images, failed = _decode_all([files[i] for i in good], size, channels, progress)
        for j, reason in failed.items():
            bad[str(files[good[j]].relative_to(root))] = reason
        keep = [j for j in range(len(good)) if j not in failed]
        images = images[keep]
        kept = [good[j] for j in keep]
        meta = {
            "labels": [entries[i][1] for i in kept],
            "splits": [entries[i][2] for i in kept],
            "files": [str(files[i].relative_to(root)) for i in kept],
            "skipped": bad,
            "ignored": ignored,
        }
        _save_cache(key_path, images, meta)

    labels = np.asarray(meta["labels"], dtype=np.int64)
    is_test = np.asarray([s == "test" for s in meta["splits"]], dtype=bool)
    if test_files is not None:
        tr, te = np.flatnonzero(~is_test), np.flatnonzero(is_test)
        split = f"{test_dir_name(root)}/ subfolder"
    elif holdout:
        size = int(holdout) if holdout >= 1 else float(holdout)
        if isinstance(size, int) and size >= len(labels):
            raise ConvscopeError(f"--holdout {size} leaves no training images out of "
                                 f"{len(labels)}; hold out fewer.")
        tr, te = stratified_split(labels, size, SPLIT_SEED)
        split = f"seeded stratified split, {len(te):,} held out"
    else:
        tr, te = np.arange(len(labels)), np.arange(0)
        split = "no test split (--holdout 0)"
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    notes = [f"layout: {layout}; test split: {split}"]
    if meta["skipped"]:
        listed = "; ".join(f"{f} ({r})" for f, r in list(meta["skipped"].items())[:20])
        more = len(meta["skipped"]) - 20
        notes.append(f"skipped {len(meta['skipped'])} unreadable file(s): {listed}"
                     + (f"; and {more} more" if more > 0 else ""))
    if meta["ignored"]:
        notes.append(f"ignored {meta['ignored']} file(s) without an image suffix")
    return ImageDataset(
        f"folder:{given.resolve()}", classes, x[tr], y[tr], x[te], y[te], natural=True, notes=notes,
        train_files=[meta["files"][i] for i in tr], test_files=[meta["files"][i] for i in te],
        skipped=dict(meta["skipped"]),
    )
