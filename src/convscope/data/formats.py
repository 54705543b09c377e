"""A user's own labelled images: ``coco:PATH``, ``voc:PATH``, ``yolo:PATH`` (boxes) and
``masks:PATH`` (indexed-PNG masks).

Each reader turns its format into :class:`Record`\\ s (an image file and its boxes, or its
mask file); :func:`build` then does what every format shares: decode the images once through
the shared cache (``data/cache.py``), fit each box to its image, and split.

A bad annotation is counted and listed in ``skipped``, never fatal, with what was done:

* a box partly outside its image is clipped to it (and listed as clipped);
* a box wholly outside, or empty after clipping, and an empty or degenerate box (x1 <= x0 or
  y1 <= y0) are left out;
* a box of a class the dataset does not name is left out (a mask's pixels of such a class
  become 255, ignored);
* an image that is missing or unreadable (``convscope.images`` decides) is left out with its
  annotations, and so is an image whose mask is missing, unreadable or of another size;
* a malformed annotation (a line, an object, an entry) is left out; a malformed annotation
  file leaves out its image's annotations (the image stays only where the format says an
  image without annotations is a background image: COCO and YOLO).

Images keep their own sizes; one longer than :data:`LONGEST` pixels is scaled down to it on
decoding (its boxes and mask with it), as detectors resize large images anyway.
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image

from convscope.data.annotated import IGNORE, AnnotatedDataset, AnnotatedSplit, seeded_split
from convscope.data.base import listing
from convscope.data.cache import (
    GRAY_MODES,
    cache_dir,
    cache_key,
    decode_each,
    header,
    image_failure,
    load_cache,
    pack,
    packed_fits,
    save_cache,
    unpack,
)
from convscope.data.registry import register_dataset
from convscope.errors import ConvscopeError, ImageError
from convscope.images import IMAGE_SUFFIXES, fit_image, open_image, read_label_image
from convscope.progress import progress_bar

#: images longer than this (pixels) are scaled down on decoding, their boxes and masks too
LONGEST = 1024
TEST_FRACTION = 0.2
SPLIT_SEED = 0
#: an annotation file larger than this is refused unread (XML and JSON parsers hold it whole)
MAX_ANNOTATION_BYTES = 256 * 2**20


@dataclass
class Record:
    """One image as an annotation format names it, before any pixel is read."""

    file: Path
    #: boxes x0, y0, x1, y1 in the file's own pixels, with their class indices and where
    #: each was written (the key it is listed under in ``skipped``)
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    where: list[str] = field(default_factory=list)
    mask: Path | None = None
    #: "train" or "test" when the format says; None: the seeded split decides
    split: str | None = None
    #: what named the image ("annotations.json", "labels/a.txt"), for a missing image
    source: str = ""
    #: boxes in fractions of the image's width and height (YOLO), not pixels
    normalised: bool = False

    def add(self, box, label: int, where: str) -> None:
        self.boxes.append(tuple(float(v) for v in box))
        self.labels.append(int(label))
        self.where.append(where)


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _fmt(box) -> str:
    return ", ".join(f"{v:g}" for v in box)


def fit_box(box, width: int, height: int) -> tuple[tuple | None, str | None]:
    """(the box to keep or None, the reason to list or None) for one box x0, y0, x1, y1 on a
    width x height image: clipped when partly outside, left out when empty, degenerate or
    wholly outside."""
    if not all(math.isfinite(v) for v in box):
        return None, f"box ({_fmt(box)}) is not four finite numbers: left out"
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        return None, f"empty box ({_fmt(box)}): x1 <= x0 or y1 <= y0: left out"
    c = (min(max(x0, 0.0), width), min(max(y0, 0.0), height),
         min(max(x1, 0.0), width), min(max(y1, 0.0), height))
    if c[2] <= c[0] or c[3] <= c[1]:
        return None, f"box ({_fmt(box)}) lies outside the {width}x{height} image: left out"
    if c != tuple(box):
        return c, (f"box ({_fmt(box)}) is partly outside the {width}x{height} image: clipped "
                   f"to ({_fmt(c)})")
    return tuple(box), None


def _read_text(path: Path, what: str) -> str:
    """An annotation file's text; a missing, huge or undecodable one is one sentence."""
    try:
        if path.stat().st_size > MAX_ANNOTATION_BYTES:
            raise ConvscopeError(f"{path}: the {what} is larger than "
                                 f"{MAX_ANNOTATION_BYTES // 2**20} MiB; refusing to read it.")
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConvscopeError(f"{path}: the {what} could not be read ({exc}).") from None


def _class_list(path: Path) -> list[str]:
    """Class names one per line (blank lines and surrounding spaces dropped)."""
    return [line.strip() for line in _read_text(path, "class list").splitlines() if line.strip()]


def _root(arg: str, kind: str, layout: str) -> Path:
    root = Path(arg).expanduser()
    if not root.exists():
        raise ConvscopeError(f"{kind} dataset {arg!r} does not exist; give {kind}:PATH where "
                             f"PATH holds {layout}.")
    return root


# --------------------------------------------------------------------------- decoding

def _decode(root: Path, records: list[Record], task: str, progress: bool):
    """{record index: (image (C, H, W) uint8, mask (H, W) uint8 or None, (W, H) of the file)}
    and {record index: why it could not be read}, through the shared decode cache."""
    files = [r.file for r in records] + [r.mask for r in records if r.mask is not None]
    key = cache_dir("annotated") / cache_key(root, f"{task}|{LONGEST}", files)

    def fits(flat, meta) -> bool:
        return (packed_fits(flat, meta["shapes"]) and isinstance(meta["failed"], dict)
                and len(meta["shapes"]) == len(meta["sizes"]) == len(meta["decoded"])
                and len(meta["decoded"]) + len(meta["failed"]) == len(records))

    cached = load_cache(key, fits)
    if cached is None:
        heads, failed = {}, {}
        for i, r in enumerate(progress_bar(records, desc="scanning files", unit="file",
                                           enable=progress)):
            h = header(r.file)
            if isinstance(h, str):
                failed[i] = h
            else:
                heads[i] = h
        channels = 1 if heads and all(m in GRAY_MODES for _, _, m in heads.values()) else 3
        good = sorted(heads)
        out: dict[int, tuple[np.ndarray, tuple[int, int]]] = {}

        def work(j: int) -> None:
            r = records[good[j]]
            img = open_image(r.file)
            w, h = img.size
            scale = min(1.0, LONGEST / max(w, h))
            size = (max(1, round(h * scale)), max(1, round(w * scale)))
            planes = [fit_image(img, size, channels)]
            if r.mask is not None:
                planes.append(_mask_plane(r.mask, (w, h), size))
            out[j] = (np.concatenate(planes), (w, h))

        for j, reason in decode_each(len(good), work, progress).items():
            failed[good[j]] = reason
        decoded = [good[j] for j in sorted(out)]
        flat, shapes = pack([out[j][0] for j in sorted(out)])
        meta = {"decoded": decoded, "shapes": shapes, "channels": channels,
                "sizes": [list(out[j][1]) for j in sorted(out)],
                "failed": {str(i): why for i, why in failed.items()}}
        save_cache(key, flat, meta)
    else:
        flat, meta = cached
    arrays = unpack(flat, meta["shapes"])
    c = meta["channels"]
    images = {}
    for i, a, (w, h) in zip(meta["decoded"], arrays, meta["sizes"]):
        mask = torch.from_numpy(a[c].copy()) if records[i].mask is not None else None
        images[i] = (torch.from_numpy(a[:c].copy()), mask, (w, h))
    return images, {int(i): why for i, why in meta["failed"].items()}


def _mask_plane(path: Path, size_wh: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """A mask file as a (1, H, W) plane at ``size``; an ImageError when it does not fit."""
    try:
        mask = read_label_image(path)
    except ImageError as exc:
        raise ImageError(f"{path}: mask {path.name}: {image_failure(exc)}", exc.kind) from None
    w, h = size_wh
    if mask.shape != (h, w):
        raise ImageError(f"{path}: mask {path.name} is {mask.shape[1]}x{mask.shape[0]} but "
                         f"its image is {w}x{h}.", "format")
    if mask.shape != size:  # nearest: a class index is never blended with its neighbour's
        mask = np.asarray(Image.fromarray(mask).resize((size[1], size[0]), Image.NEAREST))
    return mask[None]


# --------------------------------------------------------------------------- assembling

def build(kind: str, root: Path, task: str, classes: list[str], records: list[Record],
          skipped: dict[str, str], *, layout: str, holdout: float, progress: bool,
          natural: bool = True) -> AnnotatedDataset:
    """The dataset from a reader's records: missing and unreadable images and bad boxes
    listed in ``skipped``, the rest fitted to the decoded images and split."""
    if not classes:
        raise ConvscopeError(f"{root}: no class names were found; {kind} datasets name their "
                             "classes (see `convscope datasets`).")
    present = []
    for r in records:
        if r.file.is_file():
            present.append(r)
        else:
            skipped[_rel(r.file, root)] = ("missing image" + (f", named in {r.source}"
                                                              if r.source else "")
                                           + ": left out with its annotations")
    if not present:
        raise ConvscopeError(f"{root}: none of the {len(records)} images its annotations name "
                             "could be found" + (f" ({listing(skipped, 3)})" if skipped else "")
                             + "; check that the images sit where the format expects them.")
    decoded, failed = _decode(root, present, task, progress)
    for i, why in failed.items():
        skipped[_rel(present[i].file, root)] = f"{why.rstrip('.')}: left out with its annotations"
    if not decoded:
        raise ConvscopeError(f"{root}: none of the {len(present)} images could be read "
                             f"({listing(skipped, 3)}).")

    rows, images, files, boxes, labels, masks, splits = [], [], [], [], [], [], []
    for i in sorted(decoded):
        r, (image, mask, (w, h)) = present[i], decoded[i]
        sx, sy = image.shape[2] / w, image.shape[1] / h
        kept_boxes, kept_labels = [], []
        for box, label, where in zip(r.boxes, r.labels, r.where):
            if r.normalised:
                box = (box[0] * w, box[1] * h, box[2] * w, box[3] * h)
            fitted, why = fit_box(box, w, h)
            if why:
                skipped[where] = why
            if fitted is not None:
                x0, y0, x1, y1 = fitted
                kept_boxes.append((x0 * sx, y0 * sy, x1 * sx, y1 * sy))
                kept_labels.append(label)
        if mask is not None:
            unknown = sorted({int(v) for v in mask.unique()} - {IGNORE} - set(range(len(classes))))
            if unknown:
                mask[(mask >= len(classes)) & (mask != IGNORE)] = IGNORE
                skipped[_rel(r.mask, root)] = (f"pixels of unknown class(es) "
                                               f"{', '.join(map(str, unknown))} (there are "
                                               f"{len(classes)} classes): set to {IGNORE}, "
                                               "ignored")
        rows.append(i)
        images.append(image)
        files.append(_rel(r.file, root))
        boxes.append(torch.tensor(kept_boxes, dtype=torch.float32).reshape(-1, 4))
        labels.append(torch.tensor(kept_labels, dtype=torch.int64))
        masks.append(mask)
        splits.append(r.split)

    whole = AnnotatedSplit(images, files, boxes if task == "detect" else None,
                           labels if task == "detect" else None,
                           masks if task == "segment" else None)
    if any(s is not None for s in splits):
        tr = [k for k, s in enumerate(splits) if s != "test"]
        te = [k for k, s in enumerate(splits) if s == "test"]
        split = "the format's own train/test split"
    else:
        tr, te = seeded_split(len(images), holdout, SPLIT_SEED)
        split = (f"seeded random split, {len(te):,} held out" if len(te)
                 else "no test split (`holdout=0`)")
    notes = [f"layout: {layout}; test split: {split}"]
    if skipped:
        notes.append(f"{len(skipped)} annotation(s) or image(s) not taken as they were: "
                     f"{listing(skipped)}")
    return AnnotatedDataset(f"{kind}:{root.resolve()}", task, classes, whole.subset(tr),
                            whole.subset(te), notes=notes, skipped=dict(skipped),
                            natural=natural)


# --------------------------------------------------------------------------- COCO

def _coco_files(root: Path) -> list[tuple[Path, str | None]]:
    """The annotation files of a COCO folder with the split each one is: a .json given
    itself, else the .json files in PATH or PATH/annotations (split by train/val/test in
    their names when there are several)."""
    if root.is_file():
        return [(root, None)]
    found = sorted(p for d in (root, root / "annotations") if d.is_dir()
                   for p in d.glob("*.json"))
    if len(found) == 1:
        return [(found[0], None)]
    named = [(p, "test" if re.search(r"val|test", p.stem, re.I) else "train")
             for p in found if re.search(r"train|val|test", p.stem, re.I)]
    if found and len(named) == len(found):
        return named
    raise ConvscopeError(f"{root}: found {len(found)} .json annotation files; give coco:PATH "
                         "with one annotations .json (or train and val ones), or the .json "
                         "itself as PATH.")


def _coco_image(root: Path, ann: Path, name: str) -> Path:
    """Where a COCO entry's file_name lies: PATH/, PATH/images/, the .json's folder, or the
    split's folder (instances_val2017.json: val2017/)."""
    split_dir = ann.stem.split("_")[-1]
    for base in (root, root / "images", ann.parent, root / split_dir, root / "images" / split_dir):
        if (base / name).is_file():
            return base / name
    return (root / "images" if (root / "images").is_dir() else root) / name


@register_dataset("coco", "boxes in COCO JSON: PATH holds the images and an annotations "
                  ".json (or train and val ones); PATH may be the .json", arg="PATH",
                  arg_required=True, task="detect", holdout=True)
def load_coco(arg, *, progress=True, holdout=TEST_FRACTION, **_) -> AnnotatedDataset:
    given = _root(arg, "coco", "images and an annotations .json")
    root = given.parent if given.is_file() else given
    skipped: dict[str, str] = {}
    records: list[Record] = []
    categories: dict[int, str] = {}
    documents = []
    for ann, split in _coco_files(given):
        try:
            doc = json.loads(_read_text(ann, "annotations file"))
            if not isinstance(doc, dict):
                raise ValueError("the top level is not an object")
        except ValueError as exc:
            raise ConvscopeError(f"{ann}: not a COCO annotations file ({exc}); it must be "
                                 "JSON with images, annotations and categories.") from None
        documents.append((ann, split, doc))
        for c in doc.get("categories") or []:
            if isinstance(c, dict) and isinstance(c.get("id"), int) and c.get("name"):
                categories.setdefault(c["id"], str(c["name"]))
    ids = sorted(categories)
    index = {cid: k for k, cid in enumerate(ids)}
    for ann, split, doc in documents:
        name = _rel(ann, root)
        by_id: dict = {}
        for k, im in enumerate(doc.get("images") or []):
            if not (isinstance(im, dict) and "id" in im and isinstance(im.get("file_name"), str)):
                skipped[f"{name}: images[{k}]"] = "malformed image entry (needs id and " \
                                                  "file_name): left out"
                continue
            by_id[im["id"]] = Record(_coco_image(root, ann, im["file_name"]), split=split,
                                     source=name)
        for k, a in enumerate(doc.get("annotations") or []):
            where = f"{name}: annotation {a.get('id', k) if isinstance(a, dict) else k}"
            bbox = a.get("bbox") if isinstance(a, dict) else None
            if (not isinstance(bbox, list) or len(bbox) != 4
                    or not all(isinstance(v, (int, float)) for v in bbox)):
                skipped[where] = "malformed annotation (bbox must be [x, y, width, height]): " \
                                 "left out"
            elif a.get("image_id") not in by_id:
                skipped[where] = f"names image_id {a.get('image_id')!r}, which no image " \
                                 "entry has: left out"
            elif a.get("category_id") not in index:
                skipped[where] = f"unknown class: category_id {a.get('category_id')!r} is not " \
                                 "in categories: left out"
            elif a.get("iscrowd"):
                skipped[where] = "crowd region (iscrowd=1), not one object: left out"
            else:
                x, y, w, h = bbox
                by_id[a["image_id"]].add((x, y, x + w, y + h), index[a["category_id"]], where)
        records += by_id.values()
    layout = "COCO JSON " + ", ".join(_rel(a, root) for a, _, _ in documents)
    return build("coco", root, "detect", [categories[c] for c in ids], records, skipped,
                 layout=layout, holdout=holdout, progress=progress)


# --------------------------------------------------------------------------- Pascal VOC

def _image_beside(folder: Path, name: str | None, stem: str) -> Path:
    """``folder/name``, else the image file in ``folder`` with that stem."""
    if name and (folder / name).is_file():
        return folder / name
    for suffix in sorted(IMAGE_SUFFIXES):
        for candidate in (folder / f"{stem}{suffix}", folder / f"{stem}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    return folder / (name or f"{stem}.jpg")


def _voc_split(root: Path) -> dict[str, str]:
    """{image stem: "train" | "test"} from ImageSets/Main/{train,val,test}.txt when present."""
    sets = root / "ImageSets" / "Main"
    split = {}
    for name, side in (("train", "train"), ("val", "test"), ("test", "test")):
        if (sets / f"{name}.txt").is_file():
            for line in _read_text(sets / f"{name}.txt", "image set").split():
                split.setdefault(line.strip(), side)
    return split


@register_dataset("voc", "boxes in Pascal VOC XML: PATH/Annotations/*.xml and "
                  "PATH/JPEGImages/ (ImageSets/Main/ splits and a classes.txt when present)",
                  arg="PATH", arg_required=True, task="detect", holdout=True)
def load_voc(arg, *, progress=True, holdout=TEST_FRACTION, **_) -> AnnotatedDataset:
    root = _root(arg, "voc", "Annotations/*.xml and JPEGImages/")
    if not (root / "Annotations").is_dir():
        raise ConvscopeError(f"{root}: no Annotations/ folder; a VOC dataset holds "
                             "Annotations/*.xml and JPEGImages/.")
    skipped: dict[str, str] = {}
    parsed = []  # (xml name, image name, stem, [(class name, box, where)])
    for xml in sorted((root / "Annotations").glob("*.xml")):
        name = _rel(xml, root)
        try:
            # expat (2.4 and later) refuses entity expansion bombs; no external entity is read
            doc = ET.fromstring(_read_text(xml, "annotation file"))
            objects = []
            for k, obj in enumerate(doc.iter("object"), 1):
                where = f"{name}: object {k}"
                box = obj.find("bndbox")
                try:
                    values = [float(box.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax")]
                    cls = (obj.findtext("name") or "").strip()
                    if not cls:
                        raise ValueError("no name")
                except (AttributeError, TypeError, ValueError):
                    skipped[where] = "malformed object (needs name and bndbox xmin, ymin, " \
                                     "xmax, ymax): left out"
                    continue
                # VOC counts pixels from 1, both ends inclusive: pixel columns xmin..xmax
                x0, y0, x1, y1 = values
                objects.append((cls, (x0 - 1, y0 - 1, x1, y1), where))
        except (ET.ParseError, ConvscopeError) as exc:
            skipped[name] = f"malformed annotation file ({str(exc).rstrip('.')}): its image " \
                            "left out"
            continue
        parsed.append((name, doc.findtext("filename"), xml.stem, objects))
    listed = root / "classes.txt"
    classes = (_class_list(listed) if listed.is_file()
               else sorted({cls for *_, objects in parsed for cls, _, _ in objects}))
    index = {c: k for k, c in enumerate(classes)}
    split = _voc_split(root)
    records = []
    for name, filename, stem, objects in parsed:
        r = Record(_image_beside(root / "JPEGImages", filename, stem), split=split.get(stem),
                   source=name)
        for cls, box, where in objects:
            if cls in index:
                r.add(box, index[cls], where)
            else:
                skipped[where] = f"unknown class {cls!r} (not in classes.txt): left out"
        records.append(r)
    layout = "Pascal VOC XML" + (", classes from classes.txt" if listed.is_file() else "")
    return build("voc", root, "detect", classes, records, skipped, layout=layout,
                 holdout=holdout, progress=progress)


# --------------------------------------------------------------------------- YOLO

def _yolo_names(root: Path) -> tuple[list[str], str]:
    """The class names from classes.txt (PATH or PATH/labels) or data.yaml's ``names``."""
    for path in (root / "classes.txt", root / "labels" / "classes.txt"):
        if path.is_file():
            return _class_list(path), path.name
    for path in (root / "data.yaml", root / "dataset.yaml"):
        if path.is_file():
            try:
                names = (yaml.safe_load(_read_text(path, "dataset file")) or {}).get("names")
            except (yaml.YAMLError, AttributeError) as exc:
                raise ConvscopeError(f"{path}: not a readable YOLO dataset file "
                                     f"({str(exc).splitlines()[0]}).") from None
            if isinstance(names, dict):  # {0: person, 1: bicycle}
                names = [names[k] for k in sorted(names)]
            if isinstance(names, list) and names:
                return [str(n) for n in names], path.name
            raise ConvscopeError(f"{path}: has no `names` list of classes.")
    raise ConvscopeError(f"{root}: no classes.txt or data.yaml names the classes; write the "
                         "class names one per line in classes.txt.")


def _yolo_label(path: Path, root: Path, r: Record, classes: list[str],
                skipped: dict[str, str]) -> None:
    """Read a label file's lines (class cx cy w h, normalised) into r's boxes, still
    normalised: build() scales them by the image's size once it is decoded (upright)."""
    name = _rel(path, root)
    try:
        text = _read_text(path, "label file")
    except ConvscopeError as exc:
        skipped[name] = f"unreadable label file ({str(exc).rstrip('.')}): image kept unlabelled"
        return
    for k, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{name}: line {k}"
        parts = line.split()
        try:
            if len(parts) != 5:
                raise ValueError
            cls, cx, cy, bw, bh = int(parts[0]), *map(float, parts[1:])
        except ValueError:
            skipped[where] = "malformed line (needs class cx cy w h): left out"
            continue
        if not 0 <= cls < len(classes):
            skipped[where] = f"unknown class {cls} (there are {len(classes)}): left out"
            continue
        r.add((cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2), cls, where)


@register_dataset("yolo", "boxes in YOLO txt: PATH/images/ and PATH/labels/*.txt (class cx "
                  "cy w h, normalised; train/ and val/ subfolders when present), classes in "
                  "classes.txt or data.yaml", arg="PATH", arg_required=True, task="detect",
                  holdout=True)
def load_yolo(arg, *, progress=True, holdout=TEST_FRACTION, **_) -> AnnotatedDataset:
    root = _root(arg, "yolo", "images/ and labels/")
    if not (root / "images").is_dir() or not (root / "labels").is_dir():
        raise ConvscopeError(f"{root}: a YOLO dataset holds images/ and labels/ folders.")
    classes, named_by = _yolo_names(root)
    skipped: dict[str, str] = {}
    images = {p.relative_to(root / "images").with_suffix("").as_posix(): p
              for p in sorted((root / "images").rglob("*"))
              if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()}
    labels = {p.relative_to(root / "labels").with_suffix("").as_posix(): p
              for p in sorted((root / "labels").rglob("*.txt")) if p.name != "classes.txt"}
    records = []
    for stem in sorted(set(images) | set(labels)):
        first = stem.split("/", 1)[0] if "/" in stem else None
        label = labels.get(stem)
        # an image without a label file is a background image; a label file without an
        # image is listed by build() as a missing image
        r = Record(images.get(stem) or root / "images" / f"{stem}.jpg", normalised=True,
                   split={"train": "train", "val": "test", "test": "test"}.get(first),
                   source=_rel(label, root) if label else "")
        if label is not None:
            _yolo_label(label, root, r, classes, skipped)
        records.append(r)
    return build("yolo", root, "detect", classes, records, skipped,
                 layout=f"YOLO txt, classes from {named_by}", holdout=holdout,
                 progress=progress)


# --------------------------------------------------------------------------- masks

@register_dataset("masks", "masks as indexed PNGs, VOC style: PATH/images/ (or JPEGImages/) "
                  "and PATH/masks/ (or SegmentationClass/) with the same stems, 255 ignored; "
                  "classes in classes.txt, else numbered", arg="PATH", arg_required=True,
                  task="segment", holdout=True)
def load_masks(arg, *, progress=True, holdout=TEST_FRACTION, **_) -> AnnotatedDataset:
    root = _root(arg, "masks", "images/ and masks/")
    pairs = [(root / i, root / m) for i, m in (("images", "masks"),
                                              ("JPEGImages", "SegmentationClass"))]
    found = next(((i, m) for i, m in pairs if i.is_dir() and m.is_dir()), None)
    if found is None:
        raise ConvscopeError(f"{root}: a masks dataset holds images/ and masks/ folders (or "
                             "VOC's JPEGImages/ and SegmentationClass/).")
    image_dir, mask_dir = found
    skipped: dict[str, str] = {}
    images = {p.stem: p for p in sorted(image_dir.iterdir())
              if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()}
    masks = {p.stem: p for p in sorted(mask_dir.iterdir())
             if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()}
    split = _voc_split(root)
    records = []
    for stem in sorted(set(images) | set(masks)):
        if stem not in masks:
            skipped[_rel(images[stem], root)] = "image without a mask: left out"
            continue
        file = images.get(stem) or image_dir / f"{stem}.jpg"
        records.append(Record(file, mask=masks[stem], split=split.get(stem),
                              source=_rel(masks[stem], root)))
    listed = root / "classes.txt"
    if listed.is_file():
        classes, named = _class_list(listed), "classes.txt"
    else:  # numbered by the largest index any mask holds (read from the files, never decoded)
        top = max((_largest_index(r.mask) for r in records), default=0)
        classes, named = [str(k) for k in range(top + 1)], "numbered by the masks' indices"
    return build("masks", root, "segment", classes, records, skipped,
                 layout=f"{image_dir.name}/ and {mask_dir.name}/, classes {named}",
                 holdout=holdout, progress=progress)


def _largest_index(path: Path) -> int:
    """The largest class index in a mask file other than 255 (0 when unreadable)."""
    try:
        values = np.unique(read_label_image(path))
    except ImageError:
        return 0
    values = values[values != IGNORE]
    return int(values.max()) if len(values) else 0
