"""``folder:PATH``: a user's own images as ``PATH/<class>/<image>``.

The folder is scanned once: every file is opened, bad ones are skipped and
listed (never fatal), and the decoded, resized images are cached as one uint8
array keyed by the file list, sizes and modification times.  Later runs, and
every epoch of a run, read that array instead of decoding images again.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import statistics
import tarfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from convscope.data.base import (
    UNLABELLED,
    DataWarning,
    ImageDataset,
    listing,
    stratified_split,
)
from convscope.data.cache import (
    GRAY_MODES,
    cache_dir,
    cache_key,
    cache_root,
    decode_each,
    header,
    load_cache,
    save_cache,
)
from convscope.data.registry import register_dataset
from convscope.errors import ConvscopeError
from convscope.images import IMAGE_SUFFIXES, fit_image, open_image
from convscope.progress import progress_bar

TEST_FRACTION = 0.2
SPLIT_SEED = 0


ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def extract_archive(path: Path) -> Path:
    """Extract a .tar(.gz)/.zip of images into the cache once; return the folder.

    Extraction goes to a temporary folder that is renamed when complete, so an
    interrupted extraction is never mistaken for a finished one.  Members that
    would land outside the folder (absolute paths, ``..``, links) are refused.
    """
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


#: what a folder dataset says about an entry that is not an image it can read
BROKEN_LINK = "broken link: its target does not exist"
LINK_LOOP = "symlink loop"
FOLDER_SEEN = "folder already scanned through another path: a link loop or a second link"
NOT_REGULAR = "not a regular file: a FIFO, socket or device"
IMAGE_NAMED_FOLDER = "folder named like an image, not an image file"
OUTSIDE_CLASS = "image outside any class folder"


def _problem(path: Path) -> tuple[os.stat_result | None, str | None]:
    """(stat, None) for an entry whose target exists (links followed), else (None, why not)."""
    try:
        return path.stat(), None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None, LINK_LOOP
        if path.is_symlink() and exc.errno == errno.ENOENT:
            return None, BROKEN_LINK
        return None, f"could not be read: {exc.strerror or exc}"


class _Scan:
    """One walk over a split folder's class subfolders, recording everything it passes over.

    Hand-written rather than ``Path.rglob`` so that links to folders are followed (with
    loop detection) and no entry is dropped without a reason: broken links, link loops,
    FIFOs and devices, folders named like images and unreadable folders are listed.
    """

    def __init__(self, root: Path):
        self.root = root
        self.skipped: dict[str, str] = {}
        self.ignored = 0

    def skip(self, path: Path, reason: str) -> None:
        self.skipped[str(path.relative_to(self.root))] = reason

    def class_files(self, split_dir: Path) -> dict[str, list[Path]]:
        """{class: sorted image files} for every class subfolder of split_dir (possibly empty)."""
        classes: dict[str, list[Path]] = {}
        try:
            top = sorted(split_dir.iterdir())
        except OSError as exc:
            raise ConvscopeError(f"{split_dir}: the folder could not be read "
                                 f"({exc.strerror or exc}); check its permissions.") from None
        for entry in top:
            if entry.name.startswith("."):
                continue
            st, why = _problem(entry)
            if why:
                self.skip(entry, why)
            elif stat.S_ISDIR(st.st_mode):
                files: list[Path] = []
                self._walk(entry, {(st.st_dev, st.st_ino)}, files)  # seen: this class's folders
                classes[entry.name] = sorted(files)
            elif entry.suffix.lower() in IMAGE_SUFFIXES:
                self.skip(entry, OUTSIDE_CLASS)
            elif not stat.S_ISREG(st.st_mode):
                self.skip(entry, NOT_REGULAR)
            else:
                self.ignored += 1
        return classes

    def _walk(self, folder: Path, seen: set[tuple[int, int]], files: list[Path]) -> None:
        try:
            entries = sorted(folder.iterdir())
        except OSError as exc:
            self.skip(folder, f"folder that could not be read: {exc.strerror or exc}")
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue  # hidden files and folders (.DS_Store, .git) are never images
            st, why = _problem(entry)
            if why:
                self.skip(entry, why)
            elif stat.S_ISDIR(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    self.skip(entry, FOLDER_SEEN)
                    continue
                seen.add(key)
                if entry.suffix.lower() in IMAGE_SUFFIXES:
                    self.skip(entry, IMAGE_NAMED_FOLDER)
                self._walk(entry, seen, files)
            elif entry.suffix.lower() not in IMAGE_SUFFIXES:
                self.ignored += 1
            elif not stat.S_ISREG(st.st_mode):
                self.skip(entry, NOT_REGULAR)
            else:
                files.append(entry)


def _layout(root: Path):
    """(train files, test files or None, the scan, description of the layout)."""
    scan = _Scan(root)
    test_dir = next((root / n for n in ("test", "val") if (root / n).is_dir()), None)
    if (root / "train").is_dir():
        train = scan.class_files(root / "train")
        if test_dir is not None:
            test = scan.class_files(test_dir)
            return train, test, scan, f"train/ and {test_dir.name}/ subfolders"
        return train, None, scan, "train/ subfolder"
    classes = scan.class_files(root)
    flat = sorted(root / f for f, why in scan.skipped.items() if why == OUTSIDE_CLASS)
    if not classes and flat:  # photos without class folders: one unlabelled set
        for f in flat:
            del scan.skipped[str(f.relative_to(root))]
        return {UNLABELLED: flat}, None, scan, "images without class folders (unlabelled)"
    return classes, None, scan, "class subfolders"


def test_dir_name(root: Path) -> str:
    return next(n for n in ("test", "val") if (root / n).is_dir())


def _choose_size(headers: list[tuple[int, int, str]]) -> int:
    sizes = {(w, h) for w, h, _ in headers}
    if len(sizes) == 1:
        w, h = sizes.pop()
        if w == h:
            return w
    shorter = statistics.median(min(w, h) for w, h, _ in headers)
    return int(min(224, max(1, round(shorter))))  # the typical size, at most 224


def _decode_all(files: list[Path], size: int, channels: int, progress: bool):
    """Decode files into one (N, C, size, size) uint8 array; returns it and the failures."""
    out = np.zeros((len(files), channels, size, size), dtype=np.uint8)

    def work(i: int) -> None:
        img = open_image(files[i], draft_size=(size, size))
        out[i] = fit_image(img, (size, size), channels)

    return out, decode_each(len(files), work, progress)


def _cache_fits(n_files: int):
    """Whether a cache entry holds one image, label and split per readable file."""
    def fits(images: np.ndarray, meta: dict) -> bool:
        n = len(meta["files"])
        return (images.ndim == 4 and len(meta["labels"]) == len(meta["splits"]) == n
                == len(images) and isinstance(meta["skipped"], dict)
                and n + len(meta["skipped"]) == n_files)
    return fits


@register_dataset("folder", "your own images as PATH/<class>/<image>; uses train/ and "
                  "test/ (or val/) subfolders when present; PATH may be a .tar(.gz) or .zip",
                  arg="PATH", arg_required=True, holdout=True)
def load_folder(arg, *, image_size=None, progress=True, holdout=TEST_FRACTION,
                **_) -> ImageDataset:
    given = Path(arg).expanduser()
    root = given
    if is_archive(root):
        root = _descend(extract_archive(root))
    elif not root.is_dir():
        raise ConvscopeError(f"folder dataset {arg!r} is not a directory or a .tar/.tar.gz/.zip "
                             "archive; give folder:PATH where PATH holds one subfolder per class.")
    train_files, test_files, scan, layout = _layout(root)
    if test_files is not None:
        unknown = sorted(c for c, fs in test_files.items() if fs and c not in train_files)
        if unknown:
            raise ConvscopeError(f"{root}: the test split has classes that train/ lacks "
                                 f"({', '.join(unknown)}); give both the same class folders.")
    classes = sorted(train_files)
    unlabelled = classes == [UNLABELLED] and layout.endswith("(unlabelled)")
    if len(classes) < 2 and not unlabelled:
        raise ConvscopeError(f"{root}: found {len(classes)} class folder(s); a classifier needs "
                             "at least two, as PATH/<class>/<image>.")
    entries = [(f, i, "train") for i, c in enumerate(classes) for f in train_files[c]]
    if test_files:
        entries += [(f, i, "test") for i, c in enumerate(classes) for f in test_files.get(c, [])]
    files = [e[0] for e in entries]
    if not files:
        raise ConvscopeError(f"{root}: the class folders hold no image files"
                             + (f" (skipped: {listing(scan.skipped, 5)})" if scan.skipped else "")
                             + f"; put images ({', '.join(sorted(IMAGE_SUFFIXES)[:6])}, ...) in "
                             "PATH/<class>/.")

    key_path = cache_dir("folder") / cache_key(root, f"{image_size}|{classes}", files)
    cached = load_cache(key_path, _cache_fits(len(files)))
    if cached is not None:
        images, meta = cached
    else:
        headers = {}
        bad: dict[str, str] = {}
        for f in progress_bar(files, desc="scanning files", unit="file", enable=progress):
            h = header(f)
            if isinstance(h, str):
                bad[str(f.relative_to(root))] = h
            else:
                headers[f] = h
        if not headers:
            raise ConvscopeError(f"{root}: none of the {len(files)} image files could be read "
                                 f"({listing(bad, 5)}).")
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
        }
        save_cache(key_path, images, meta)
    skipped = dict(sorted({**scan.skipped, **meta["skipped"]}.items()))

    labels = np.asarray(meta["labels"], dtype=np.int64)
    is_test = np.asarray([s == "test" for s in meta["splits"]], dtype=bool)
    image_files = list(meta["files"])
    # a class folder with no readable training image can't be learnt: leave it out, loudly
    trained = np.bincount(labels[~is_test], minlength=len(classes))
    empty = [c for i, c in enumerate(classes) if trained[i] == 0]
    drop_notes = []
    if empty:
        kept_classes = [c for i, c in enumerate(classes) if trained[i] > 0]
        where = "train/ image" if test_files is not None else "image"
        if len(kept_classes) < 2:
            raise ConvscopeError(
                f"{root}: only {len(kept_classes)} class folder(s) hold a readable {where} "
                f"({', '.join(kept_classes) or 'none'}) and a classifier needs at least two; "
                f"{', '.join(empty[:10])}{' ...' if len(empty) > 10 else ''} had none"
                + (f" (skipped: {listing(skipped, 5)})" if skipped else "") + ".")
        rows = np.flatnonzero(trained[labels] > 0)
        lost = len(labels) - len(rows)
        remap = np.cumsum(trained > 0) - 1
        labels, is_test = remap[labels[rows]], is_test[rows]
        images, image_files = images[rows], [image_files[i] for i in rows]
        message = (f"{root}: left out class folder(s) {', '.join(empty)}, which hold no "
                   f"readable {where}, and kept the other {len(kept_classes)} classes"
                   + (f" (their {lost} test image(s) left out too)" if lost else "") + ".")
        warnings.warn(message, DataWarning, stacklevel=2)
        drop_notes.append(message)
        classes = kept_classes

    if test_files is not None:
        tr, te = np.flatnonzero(~is_test), np.flatnonzero(is_test)
        split = f"{test_dir_name(root)}/ subfolder"
    elif unlabelled:  # nothing to learn or score: the views look at every image as "test"
        tr, te = np.arange(0), np.arange(len(labels))
        split = "every image (no labels: for the views of a trained model, not for training)"
    elif holdout:
        size = int(holdout) if holdout >= 1 else float(holdout)
        tr, te = stratified_split(labels, size, SPLIT_SEED, classes, folder=True)
        split = f"seeded stratified split, {len(te):,} held out"
    else:
        tr, te = np.arange(len(labels)), np.arange(0)
        split = "no test split (--holdout 0)"
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    notes = [f"layout: {layout}; test split: {split}", *drop_notes]
    if len(te):
        untested = [c for i, c in enumerate(classes) if not (labels[te] == i).any()]
        if untested:
            notes.append(f"the test split has no image of class(es) {', '.join(untested[:10])}"
                         + (" ..." if len(untested) > 10 else ""))
    if skipped:
        notes.append(f"skipped {len(skipped)} unreadable file(s): {listing(skipped)}"
                     + (f" (`convscope datasets folder:{given} --json` lists them all)"
                        if len(skipped) > 20 else ""))
    if scan.ignored:
        notes.append(f"ignored {scan.ignored} file(s) without an image suffix")
    return ImageDataset(
        f"folder:{given.resolve()}", classes, x[tr], y[tr], x[te], y[te], natural=True, notes=notes,
        train_files=[image_files[i] for i in tr], test_files=[image_files[i] for i in te],
        skipped=skipped,
    )
