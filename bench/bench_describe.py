"""How the alt text's score thresholds are chosen: image-level precision and recall against
the score threshold on labelled images we have offline, Facebook style (a concept is kept
only above a threshold where its precision is at least 0.8)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from bench.common import SHARED_CIFAR

TITLE = "Alt text: the score thresholds that keep precision at 0.8"
DESCRIPTION = (
    "A concept goes into the alt text only above a score threshold where it is right at "
    "least 80% of the time (the rule of Facebook's automatic alt text, Wu et al. 2017). "
    "Image-level precision and recall against the threshold, on labelled images available "
    "offline, for three sources: objects (SSD-MobileNetV2's COCO labels on CIFAR-10 "
    "training photos upsampled to 256 px, over the 8 COCO labels that CIFAR-10 classes map "
    "to; deer and frog photos are negatives); the ImageNet classifier's \"possibly X\" "
    "(EfficientNet-Lite0's top-1 probability on the same photos, right when the top-1 class "
    "is in the photo's CIFAR-10 class's ImageNet group); and \"a face is present\" "
    "(MTCNN and BlazeFace on scikit-image's LFW subset, 100 faces and 100 non-face "
    "patches, and CIFAR-10 photos as further negatives, each placed on a mid-grey canvas). "
    "For each source the rows show the threshold chosen (the smallest in the sweep, 0.30 to "
    "0.99 in steps of 0.01, with precision >= 0.8 and at least 10 images predicted), a few "
    "around it and 0.3/0.5/0.7/0.9; `precision low` is the Wilson 95% lower bound."
)

TARGET = 0.8
GRID = np.round(np.arange(0.30, 0.9901, 0.01), 2)
#: at least this many predictions for a threshold to be chosen (precision of 1 of 1 is noise)
MIN_PREDICTED = 10
UPSAMPLE = 256  # px: the 32-px CIFAR photos as the detector and the classifier see them

CIFAR = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
         "truck")
#: CIFAR-10 class -> the COCO label it is; deer and frog have none (negatives)
TO_COCO = {"airplane": "airplane", "automobile": "car", "bird": "bird", "cat": "cat",
           "dog": "dog", "horse": "horse", "ship": "boat", "truck": "truck"}


def _span(first: int, last: int) -> list[int]:
    return list(range(first, last + 1))


#: CIFAR-10 class -> ImageNet-1k indices whose top-1 counts as right (WordNet groups;
#: the names are checked against convscope's list in imagenet_groups())
IMAGENET = {
    "airplane": {404: "airliner", 895: "warplane", 908: "wing"},
    "automobile": {436: "beach wagon", 468: "cab", 511: "convertible", 609: "jeep",
                   627: "limousine", 656: "minivan", 661: "Model T", 751: "racer",
                   817: "sports car"},
    "truck": {555: "fire engine", 569: "garbage truck", 864: "tow truck",
              867: "trailer truck"},
    "ship": {403: "aircraft carrier", 472: "canoe", 484: "catamaran", 510: "container ship",
             554: "fireboat", 576: "gondola", 625: "lifeboat", 628: "liner", 724: "pirate",
             780: "schooner", 814: "speedboat", 833: "submarine", 871: "trimaran",
             914: "yawl"},
    "horse": {339: "sorrel", 603: "horse cart"},
    "deer": {351: "hartebeest", 352: "impala", 353: "gazelle"},
    "frog": {30: "bullfrog", 31: "tree frog", 32: "tailed frog"},
    "cat": dict.fromkeys(_span(281, 293)),  # tabby .. cheetah: domestic and wild cats
    "dog": dict.fromkeys(_span(151, 268)),  # Chihuahua .. Mexican hairless
    "bird": dict.fromkeys(_span(7, 24) + _span(80, 100) + _span(127, 146)),
}
#: vans and pickups, which CIFAR-10 puts in neither automobile nor truck ("sedans, SUVs"
#: vs "big trucks"): right for a photo of either
CAR_OR_TRUCK = {407: "ambulance", 654: "minibus", 675: "moving van", 717: "pickup",
                734: "police van", 757: "recreational vehicle"}
#: the first and last names of the index spans above, checked against convscope's list
SPAN_ENDS = {7: "cock", 24: "great grey owl", 80: "black grouse", 100: "black swan",
             127: "white stork", 146: "albatross", 151: "Chihuahua", 268: "Mexican hairless",
             281: "tabby", 293: "cheetah"}


def imagenet_groups() -> dict[int, set[str]]:
    """ImageNet index -> the CIFAR-10 classes for which it is right (names checked)."""
    from convscope.models.imagenet import imagenet_classes

    names = imagenet_classes()
    out: dict[int, set[str]] = {}
    for cls, idx in IMAGENET.items():
        for i, name in idx.items():
            if name is not None and names[i] != name:
                raise AssertionError(f"ImageNet {i} is {names[i]!r}, not {name!r}")
            out.setdefault(i, set()).add(cls)
    for i, name in {**CAR_OR_TRUCK, **SPAN_ENDS}.items():
        if names[i] != name:
            raise AssertionError(f"ImageNet {i} is {names[i]!r}, not {name!r}")
    for i in CAR_OR_TRUCK:
        out.setdefault(i, set()).update({"automobile", "truck"})
    return out


# --------------------------------------------------------------------------- data
def cifar_root() -> Path | None:
    """The shared CIFAR-10 training JPEGs, extracted once into convscope's cache
    (``convscope.data.folder.extract_archive``: ~/.cache/convscope/archives/<key>/train)."""
    if not SHARED_CIFAR.is_file():
        return None
    from convscope.data.folder import extract_archive

    return extract_archive(SHARED_CIFAR) / "train"


def cifar_sample(root: Path, per_class: int, seed: int) -> list[tuple[Path, str]]:
    """``per_class`` files of each class, drawn without replacement by numpy's
    default_rng(seed) from the class's files sorted by name."""
    rng = np.random.default_rng(seed)
    out = []
    for cls in CIFAR:
        files = sorted((root / cls).glob("*.jpg"))
        out += [(files[i], cls) for i in sorted(rng.choice(len(files), per_class,
                                                           replace=False))]
    return out


def read_up(path: Path, side: int = UPSAMPLE) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB").resize((side, side), Image.BICUBIC))


def on_canvas(img: np.ndarray, face: int, side: int = 200) -> np.ndarray:
    """``img`` (grey float in [0, 1] or uint8 RGB) resized to face x face (bicubic) and
    centred on a side x side mid-grey (128) RGB canvas."""
    from PIL import Image

    if img.dtype != np.uint8:
        img = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
    pil = Image.fromarray(img).convert("RGB").resize((face, face), Image.BICUBIC)
    out = np.full((side, side, 3), 128, np.uint8)
    o = (side - face) // 2
    out[o:o + face, o:o + face] = np.asarray(pil)
    return out


# --------------------------------------------------------------------------- sweeps
def wilson_low(k: int, n: int, z: float = 1.96) -> float:
    if n == 0:
        return 0.0
    p = k / n
    d = 1 + z * z / n
    return (p + z * z / (2 * n) - z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))) / d


def sweep(scores: np.ndarray, correct: np.ndarray, positives: int) -> list[dict]:
    """Precision and recall of the predictions ``scores >= t`` for each t of GRID;
    ``correct`` says which predictions are right, ``positives`` how many there are to find."""
    out = []
    for t in GRID:
        hit = scores >= t
        n, k = int(hit.sum()), int((hit & correct).sum())
        out.append({"threshold": float(t), "predicted": n, "correct": k,
                    "precision": k / n if n else None,
                    "recall": k / positives if positives else None,
                    "precision_low": wilson_low(k, n)})
    return out


def choose(curve: list[dict]) -> dict | None:
    """The smallest threshold with precision >= TARGET over at least MIN_PREDICTED
    predictions, or None."""
    for p in curve:
        if p["predicted"] >= MIN_PREDICTED and p["precision"] >= TARGET:
            return p
    return None


def stays(curve: list[dict], chosen: dict) -> bool:
    """Whether precision stays >= TARGET at every higher threshold (with enough
    predictions)."""
    return all(p["precision"] >= TARGET for p in curve
               if p["threshold"] >= chosen["threshold"] and p["predicted"] >= MIN_PREDICTED)


# --------------------------------------------------------------------------- sources
def objects_and_imagenet(sample, chunk: int = 100) -> tuple[dict, dict]:
    """(SSD's best score per vocabulary label per photo, Lite0's top-1 per photo), each as
    arrays, over the CIFAR sample; photos are upsampled chunk by chunk (memory)."""
    import convscope
    from convscope.scene import open_scene

    ssd = open_scene("ssd-mobilenet-v2")
    clf = convscope.open_model("efficientnet-lite0")
    vocab = sorted(set(TO_COCO.values()))
    best = np.zeros((len(sample), len(vocab)), np.float32)
    top_p = np.zeros(len(sample), np.float32)
    top_i = np.zeros(len(sample), np.int64)
    names = list(clf.classes)
    for start in range(0, len(sample), chunk):
        part = sample[start:start + chunk]
        imgs = [read_up(p) for p, _ in part]
        for j, det in enumerate(ssd.predict(imgs, min_score=float(GRID[0]))):
            for lab, s in zip(det.labels, det.scores):
                if lab in vocab:
                    col = vocab.index(lab)
                    best[start + j, col] = max(best[start + j, col], float(s))
        for j, top in enumerate(clf.topk(imgs, k=1)):
            label, p = top[0]
            top_i[start + j], top_p[start + j] = names.index(label), p
        print(f"  objects/imagenet: {min(start + chunk, len(sample))}/{len(sample)}",
              file=sys.stderr, flush=True)
    return {"vocab": vocab, "best": best}, {"index": top_i, "prob": top_p}


def objects_curve(sample, found: dict) -> list[dict]:
    """(image, label) pairs over the 8-label vocabulary: predicted when the label's best
    score in the photo >= t, right when it is the photo's mapped class."""
    vocab, best = found["vocab"], found["best"]
    truth = np.zeros_like(best, dtype=bool)
    for i, (_, cls) in enumerate(sample):
        if cls in TO_COCO:
            truth[i, vocab.index(TO_COCO[cls])] = True
    return sweep(best.ravel(), truth.ravel(), int(truth.sum()))


def objects_mistakes(sample, found: dict, t: float, n: int = 8) -> str:
    """The commonest wrong (photo class -> label) pairs at threshold t."""
    vocab, best = found["vocab"], found["best"]
    counts: dict[str, int] = {}
    for i, (_, cls) in enumerate(sample):
        for j, lab in enumerate(vocab):
            if best[i, j] >= t and TO_COCO.get(cls) != lab:
                key = f"{cls} photo -> {lab}"
                counts[key] = counts.get(key, 0) + 1
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:n]
    return ", ".join(f"{k} ({v})" for k, v in top) or "none"


def imagenet_curve(sample, top: dict) -> list[dict]:
    groups = imagenet_groups()
    right = np.array([cls in groups.get(int(i), ()) for i, (_, cls) in
                      zip(top["index"], sample)])
    return sweep(top["prob"], right, len(sample))


def imagenet_mistakes(sample, top: dict, t: float, n: int = 10) -> str:
    """The commonest wrong top-1 classes (with the photo's class) at probability >= t."""
    from convscope.models.imagenet import imagenet_classes

    names, groups = imagenet_classes(), imagenet_groups()
    counts: dict[str, int] = {}
    for i, p, (_, cls) in zip(top["index"], top["prob"], sample):
        if p >= t and cls not in groups.get(int(i), ()):
            key = f"{cls} photo -> {names[int(i)]}"
            counts[key] = counts.get(key, 0) + 1
    out = sorted(counts.items(), key=lambda kv: -kv[1])[:n]
    return ", ".join(f"{k} ({v})" for k, v in out) or "none"


def faces_data(cifar: list[tuple[Path, str]] | None, n_lfw: int,
               framings: tuple[int, ...]) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """The face test set: the first n_lfw faces and the first n_lfw non-faces of
    scikit-image's LFW subset (25x25 grey) and the CIFAR photos, each placed at each
    framing (face size in px) on a 200-px mid-grey canvas."""
    import skimage.data
    from PIL import Image

    lfw = skimage.data.lfw_subset()  # 100 faces, then 100 non-faces
    srcs = [(lfw[i], True, "lfw face") for i in range(n_lfw)]
    srcs += [(lfw[100 + i], False, "lfw non-face") for i in range(n_lfw)]
    for path, cls in cifar or ():
        with Image.open(path) as im:
            srcs.append((np.asarray(im.convert("RGB")), False, f"cifar {cls}"))
    imgs, face, kind = [], [], []
    for f in framings:
        for img, is_face, k in srcs:
            imgs.append(on_canvas(img, f))
            face.append(is_face)
            kind.append(f"{k} @{f}")
    return imgs, np.array(face), kind


def face_curves(imgs, face: np.ndarray, kind: list[str]) -> dict[str, dict]:
    from convscope.scene import open_scene

    out = {}
    for name in ("mtcnn", "blazeface"):
        m = open_scene(name)
        best = np.zeros(len(imgs), np.float32)
        for start in range(0, len(imgs), 64):
            for j, det in enumerate(m.predict(imgs[start:start + 64],
                                              min_score=float(GRID[0]))):
                best[start + j] = float(det.scores.max()) if len(det) else 0.0
        out[name] = {"best": best, "curve": sweep(best, face, int(face.sum()))}
        print(f"  faces: {name} done", file=sys.stderr, flush=True)
    return out


# --------------------------------------------------------------------------- table
def rows_for(source: str, curve: list[dict]) -> tuple[list[list], dict | None]:
    chosen = choose(curve)
    show = {0.3, 0.5, 0.7, 0.9}
    if chosen:
        c = chosen["threshold"]
        show |= {round(c + d, 2) for d in (-0.05, -0.02, 0.0, 0.02, 0.05)}
    rows = []
    for p in curve:
        if not any(abs(p["threshold"] - s) < 1e-6 for s in show):
            continue
        mark = "CHOSEN" if chosen is not None and p is chosen else ""
        rows.append([source, f"{p['threshold']:.2f}",
                     round(p["precision"], 3) if p["predicted"] else "-",
                     round(p["precision_low"], 3) if p["predicted"] else "-",
                     round(p["recall"], 3), p["predicted"], p["correct"], mark])
    return rows, chosen


def run(quick: bool = False) -> dict:
    per_class, n_neg_per_class, n_lfw = (10, 2, 20) if quick else (200, 20, 100)
    framings = (100, 50)
    root = cifar_root()
    rows: list[list] = []
    notes: list[str] = []
    chosen: dict[str, dict | None] = {}
    curves: dict[str, list[dict]] = {}

    def add(source, curve):
        r, c = rows_for(source, curve)
        rows.extend(r)
        chosen[source] = c
        curves[source] = curve

    if root is None:
        notes.append(f"objects and ImageNet skipped: {SHARED_CIFAR} is absent (faces run "
                     "without the CIFAR negatives).")
        negatives = None
    else:
        sample = cifar_sample(root, per_class, seed=0)
        found, top = objects_and_imagenet(sample)
        add("objects (ssd-mobilenet-v2)", objects_curve(sample, found))
        add("possibly X (efficientnet-lite0 top-1)", imagenet_curve(sample, top))
        c = chosen["objects (ssd-mobilenet-v2)"]
        t = c["threshold"] if c else 0.5
        notes.append(f"Objects, commonest wrong pairs at {t:.2f}: "
                     f"{objects_mistakes(sample, found, t)}.")
        notes.append("Possibly X, commonest wrong top-1 at probability >= 0.5: "
                     f"{imagenet_mistakes(sample, top, 0.5)}.")
        # face negatives: a second seeded draw (it may share a few photos with the first)
        negatives = cifar_sample(root, n_neg_per_class, seed=1)
        notes.append(
            f"CIFAR photos: {per_class} per class ({len(sample)} in all) from the shared "
            f"{SHARED_CIFAR.name} (the 50,000 training JPEGs, extracted once into "
            f"convscope's cache), drawn without replacement by numpy default_rng(0) from "
            f"each class's files sorted by name; upsampled from 32 to {UPSAMPLE} px "
            f"(PIL bicubic). SSD sees them at its own 300x300 (min_score {GRID[0]}); Lite0 "
            "at its 224x224 (convscope's resize), no test-time augmentation.")
        notes.append(
            "Objects: image-level (photo, label) pairs over the 8 COCO labels airplane, car, "
            "bird, cat, dog, horse, boat, truck (CIFAR airplane, automobile, bird, cat, dog, "
            "horse, ship, truck); a pair is predicted when the label's best box score in the "
            "photo is >= t and right when the label is the photo's mapped class; recall is "
            f"over the {8 * per_class} photos of the 8 mapped classes (deer and frog photos "
            "can only add false predictions). COCO labels outside the 8 are ignored.")
        notes.append(
            "Possibly X: precision = photos whose top-1 is in their CIFAR class's ImageNet "
            "group / photos with top-1 probability >= t; recall over all photos (deer and "
            "frog included). Groups: dogs 151-268, cats 281-293, birds 7-24, 80-100, "
            "127-146, frogs 30-32, deer: hartebeest, impala, gazelle; horse: sorrel, horse "
            "cart; airplane: airliner, warplane, wing; automobile: beach wagon, cab, "
            "convertible, jeep, limousine, minivan, Model T, racer, sports car; truck: fire "
            "engine, garbage truck, tow truck, trailer truck; ship: aircraft carrier, canoe, "
            "catamaran, container ship, fireboat, gondola, lifeboat, liner, pirate, "
            "schooner, speedboat, submarine, trimaran, yawl; ambulance, minibus, moving van, "
            "pickup, police van and recreational vehicle count as right for automobile and "
            "for truck (CIFAR-10 puts such vans in neither). Any other top-1 is wrong.")

    imgs, face, kind = faces_data(negatives, n_lfw, framings)
    for name, res in face_curves(imgs, face, kind).items():
        add(f"face present ({name})", res["curve"])
        for f in framings:
            sel = np.array([k.endswith(f"@{f}") for k in kind])
            c = choose(sweep(res["best"][sel], face[sel], int(face[sel].sum())))
            notes.append(
                f"face present ({name}), faces {f} px only: " +
                (f"chosen {c['threshold']:.2f} (precision {c['precision']:.3f}, recall "
                 f"{c['recall']:.3f}, {c['predicted']} predicted)" if c else
                 "no threshold reaches precision 0.8"))
    n_cifar_neg = len(negatives or ())
    notes.append(
        f"Faces: the first {n_lfw} faces and first {n_lfw} non-faces of scikit-image's "
        "lfw_subset (25x25 grey, LFW crops and random non-face patches)"
        + (f", and {n_cifar_neg} CIFAR photos ({n_neg_per_class} per class, numpy "
           "default_rng(1), CIFAR has no person class; a rider or sailor may appear) as "
           "further negatives" if n_cifar_neg else "")
        + f"; each resized (bicubic) to {framings[0]} px and again to {framings[1]} px and "
        f"centred on a 200x200 mid-grey canvas ({len(imgs)} images, {int(face.sum())} with "
        "a face). A photo is predicted to have a face when its best face score is >= t.")
    notes.append(
        f"Chosen: the smallest threshold of the sweep (0.30 to 0.99, step 0.01) whose "
        f"precision is >= {TARGET} with at least {MIN_PREDICTED} photos (or pairs) predicted.")
    for source, c in chosen.items():
        if c is None:
            best = max((p for p in curves[source] if p["predicted"] >= MIN_PREDICTED),
                       key=lambda p: p["precision"], default=None)
            line = (f"THRESHOLD {source}: none reaches precision {TARGET}"
                    + (f" (best {best['precision']:.3f} at {best['threshold']:.2f}, "
                       f"{best['predicted']} predicted)" if best else ""))
        else:
            line = (f"THRESHOLD {source}: {c['threshold']:.2f} (precision "
                    f"{c['precision']:.3f}, 95% low {c['precision_low']:.3f}, recall "
                    f"{c['recall']:.3f}, {c['predicted']} predicted, {c['correct']} right; "
                    + ("precision stays >= 0.8 above it" if stays(curves[source], c) else
                       "precision dips below 0.8 at some higher threshold") + ")")
        notes.append(line)
        print(line, file=sys.stderr)
    return {"columns": ["source", "threshold", "precision", "precision low (95%)", "recall",
                        "predicted", "right", "chosen"],
            "rows": rows, "notes": notes,
            "chosen": {s: (c["threshold"] if c else None) for s, c in chosen.items()},
            "sweeps": curves}
