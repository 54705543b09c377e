"""The scene networks through convscope against each one called through its own package,
side by side: images/s at 640 px and the ratio convscope / bare."""

from __future__ import annotations

import numpy as np

from bench.common import interleaved

TITLE = "Scene networks: convscope's predict against each package's own call"
DESCRIPTION = (
    "Images per second on the CPU for the six packaged scene networks, each through "
    "convscope (`open_scene(name).predict(photos)`: photo conversion, the network's own "
    "resizing, the network, decoding into `Detections`/`Poses`/`PersonMask` in the photo's "
    "pixels) against the same network object called through its own package, timed in "
    "alternation in one run: facenet-pytorch's `MTCNN.detect(batch, landmarks=True)`; "
    "`cv2.dnn.blobFromImages` + `net.forward()` for SSD-MobileNetV2; "
    "`CascadeClassifier.detectMultiScale3` on the equalised grey photo with convscope's "
    "parameters; and for the TFLite networks (BlazeFace, MoveNet Lightning, selfie "
    "segmentation) the LiteRT interpreter fed by hand (`cv2.resize` to the input size, "
    "normalisation, `set_tensor`/`invoke`/`get_tensor`, no decoding). The photos are "
    "scikit-image's astronaut, chelsea, coffee, rocket and the left stereo motorcycle, "
    "cropped to 3:2 and resized to 640x427, cycled; the ratio is convscope's images/s over "
    "the bare call's (target >= 0.9). MTCNN and SSD take batches: convscope's default "
    "(16 photos per network call), batches of 8 and one photo at a time, the bare call in "
    "the same batches."
)

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left")
SIZE = (427, 640)  # (H, W)


def photos() -> list[np.ndarray]:
    """scikit-image's photos, each cropped to 3:2 landscape and resized to 640x427 (uint8
    RGB), so that every photo has one size and a batch is one network call."""
    import cv2
    import skimage.data as data

    out = []
    for name in PHOTOS:
        a = data.stereo_motorcycle()[0] if name == "motorcycle_left" else getattr(data, name)()
        h, w = a.shape[:2]
        ch, cw = min(h, round(w * SIZE[0] / SIZE[1])), min(w, round(h * SIZE[1] / SIZE[0]))
        # the astronaut's face is near the top: crop her from the top, the others centred
        top = 0 if name == "astronaut" else (h - ch) // 2
        left = (w - cw) // 2
        crop = np.ascontiguousarray(a[top:top + ch, left:left + cw, :3])
        out.append(cv2.resize(crop, (SIZE[1], SIZE[0]), interpolation=cv2.INTER_AREA))
    return out


def chunks(seq: list, n: int) -> list[list]:
    return [seq[i:i + n] for i in range(0, len(seq), n)]


# --------------------------------------------------------------------------- bare calls
def bare_mtcnn(net, batch: int):
    import torch

    def call(imgs):
        out = []
        with torch.no_grad():
            for c in chunks(imgs, batch):
                boxes, probs, points = net.detect(np.stack(c), landmarks=True)
                out += list(probs)
        return out
    return call


def bare_ssd(net, batch: int):
    import cv2

    def call(imgs):
        out = []
        for c in chunks(imgs, batch):
            net.setInput(cv2.dnn.blobFromImages(c, size=(300, 300), swapRB=False))
            out.append(net.forward())
        return out
    return call


def bare_cascade(cascade):
    import cv2

    def call(imgs):
        out = []
        for a in imgs:
            grey = cv2.equalizeHist(cv2.cvtColor(a, cv2.COLOR_RGB2GRAY))
            side = max(24, min(a.shape[:2]) // 40)
            out.append(cascade.detectMultiScale3(grey, scaleFactor=1.1, minNeighbors=5,
                                                 minSize=(side, side),
                                                 outputRejectLevels=True))
        return out
    return call


def bare_tflite(network, prepare):
    """The network's .tflite file in its own LiteRT interpreter (the thread count
    convscope gives its own), fed by hand one photo at a time: ``prepare`` turns the
    resized uint8 photo into the input tensor's values."""
    import os

    import cv2
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(network.path), num_threads=os.cpu_count() or 1)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    outs = [o["index"] for o in interp.get_output_details()]
    _, h, w, _ = (int(s) for s in inp["shape"])

    def call(imgs):
        out = []
        for a in imgs:
            x = prepare(cv2.resize(a, (w, h), interpolation=cv2.INTER_LINEAR))
            interp.set_tensor(inp["index"], x[None])
            interp.invoke()
            out.append([interp.get_tensor(i) for i in outs])
        return out
    return call


# --------------------------------------------------------------------------- checks
def faces_agree(ours, theirs_probs, min_score: float) -> str:
    """Whether convscope's faces per photo match the bare call's count above min_score."""
    a = [len(r) for r in ours]
    b = [sum(x is not None and x >= min_score for x in np.ravel(p)) if p is not None else 0
         for p in theirs_probs]  # facenet-pytorch gives [None] for a photo with no face
    return "same faces" if a == b else f"DIFFER {a[:5]} vs {b[:5]}"


def ssd_agree(ours, blobs, min_score: float) -> str:
    """Whether convscope's boxes match the bare forward's rows above min_score (COCO
    classes only, as convscope keeps them)."""
    from convscope.models.coco import COCO_CLASSES

    rows = np.concatenate([b.reshape(-1, 7) for b in blobs])
    n = int(((rows[:, 2] >= min_score)
             & np.isin(rows[:, 1].astype(int), list(COCO_CLASSES))).sum())
    ours_n = sum(len(r) for r in ours)
    return "same boxes" if n == ours_n else f"DIFFER {ours_n} vs {n}"


def run(quick: bool = False) -> dict:
    import cv2

    from convscope.scene import open_scene

    n, repeats = (8, 2) if quick else (16, 5)
    base = photos()
    imgs = [base[i % len(base)] for i in range(n)]
    rows: list[list] = []
    notes: list[str] = []

    def row(name, mode, ours, bare, agree=""):
        t = interleaved({"convscope": ours, "bare": lambda: bare(imgs)}, repeats=repeats)
        rows.append([name, mode, round(n / t["convscope"], 1), round(n / t["bare"], 1),
                     round(t["bare"] / t["convscope"], 2), agree])

    # --- batched detectors: MTCNN and SSD, predict's default batch, 8 and 1, all six
    # calls timed in one alternation (the machine's load moves between rows)
    for name, make_bare, agree in (("mtcnn", bare_mtcnn, faces_agree),
                                   ("ssd-mobilenet-v2", bare_ssd, ssd_agree)):
        m = open_scene(name)
        default = min(m.batch, n)  # convscope's photos per network call (16; 8 if quick)
        fns, checks = {}, {}
        for batch in dict.fromkeys((default, 8, 1)):
            bare = make_bare(m.network, batch)
            ours = (lambda m=m: m.predict(imgs)) if batch == default else \
                (lambda m=m, b=batch: [r for c in chunks(imgs, b) for r in m.predict(c)])
            checks[batch] = agree(ours(), bare(imgs), m.default_min_score)
            fns[f"ours{batch}"] = ours
            fns[f"bare{batch}"] = lambda bare=bare: bare(imgs)
        t = interleaved(fns, repeats=repeats)
        for batch in checks:
            mode = f"batches of {batch}" + (" (predict's default)" if batch == default else "")
            rows.append([name, mode, round(n / t[f"ours{batch}"], 1),
                         round(n / t[f"bare{batch}"], 1),
                         round(t[f"bare{batch}"] / t[f"ours{batch}"], 2), checks[batch]])

    # --- the cascade: one photo at a time, the same parameters
    m = open_scene("haar-cascade")
    bare = bare_cascade(m.network)
    ours = m.predict(imgs)
    theirs = bare(imgs)
    same = [len(r) for r in ours] == [len(t[0]) for t in theirs]
    row("haar-cascade", "one at a time", lambda: m.predict(imgs), bare,
        "same faces" if same else "DIFFER")

    # --- the TFLite networks: the interpreter fed by hand (plain stretch resize)
    for name, prepare in (
            ("blazeface", lambda a: a.astype(np.float32) / 127.5 - 1.0),
            ("movenet-lightning", lambda a: a),
            ("selfie-segmentation", lambda a: a.astype(np.float32) / 255.0)):
        m = open_scene(name)
        b = getattr(m, "batch", 1)
        mode = "one at a time" if b == 1 else f"convscope batches of {b}, bare one at a time"
        row(name, mode, lambda m=m: m.predict(imgs), bare_tflite(m.network, prepare),
            "n/a (bare: stretched, undecoded)")

    for r in rows:
        if r[4] < 0.9:
            notes.append(f"BELOW TARGET: {r[0]} ({r[1]}) runs at {r[4]:.2f} of the bare call.")
    for name in ("mtcnn", "ssd-mobilenet-v2"):
        by = {r[1].split(" (")[0]: r for r in rows if r[0] == name}
        notes.append(f"{name}: batches of 8 give {by['batches of 8'][2] / by['batches of 1'][2]:.2f}x "
                     f"the images/s of one photo at a time through convscope, "
                     f"{by['batches of 8'][3] / by['batches of 1'][3]:.2f}x bare.")
    notes += [
        f"{n} photos (5 scikit-image photos cycled, all 640x427 uint8 RGB arrays decoded once); "
        f"median of {repeats} alternating repeats after one warm-up each (MTCNN's and "
        "SSD's six calls, three batchings x convscope/bare, in one alternation); "
        f"OpenCV {cv2.__version__} with {cv2.getNumThreads()} threads; the TFLite "
        "interpreters with convscope's thread count (the machine's CPUs); the bare calls "
        "use their own interpreter on the same .tflite file.",
        "The bare TFLite calls stretch the photo to the input square with cv2.resize and "
        "stop at the raw output tensors; convscope letterboxes (keeps the aspect), decodes "
        "(BlazeFace: anchors, sigmoid, weighted NMS; MoveNet: keypoints back to photo "
        "pixels; selfie: the mask cropped and upsampled back to 640x427) and builds a result "
        "object. 'agree' compares how many faces/boxes each path finds at convscope's default "
        "min_score.",
        "target: ratio (convscope / bare) >= 0.9 for every network.",
    ]
    return {"columns": ["network", "batching", "convscope images/s", "bare images/s",
                        "ratio (convscope / bare)", "agree"],
            "rows": rows, "notes": notes}
