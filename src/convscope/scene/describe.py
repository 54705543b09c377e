"""The automatic alt text (Wu et al. 2017, Facebook's "Image may contain: 2 people,
smiling, outdoor"), built from what the scene models find: the people (faces and person
boxes), the COCO objects with counts, and the ImageNet classifier's top class as a
"possibly".

A concept enters only when its score is above a threshold chosen for precision, as
Facebook kept only concepts recognised with a precision of at least 0.8.  The defaults
are the smallest thresholds at which each source reached a precision of 0.8 on labelled
images we have offline (``python -m bench describe``; docs/benchmarks.md has the curves):
2,000 CIFAR-10 photos (upsampled from 32 px) for the objects and scikit-image's LFW faces
and non-faces (with CIFAR photos as more negatives) for the face detectors.  For the
ImageNet class no threshold reached 0.8 on the upsampled CIFAR photos (a pessimistic test
for an ImageNet classifier; the best was 0.66, at 0.83): it is used at that best threshold
and worded as a guess, "possibly ...", last.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from convscope.classifier import Classifier, pretrained_classifier
from convscope.errors import UsageError
from convscope.models.coco import plural, with_article
from convscope.models.pretrained import list_pretrained, pretrained_entry
from convscope.options import fraction, option
from convscope.scene.models import Detector, as_photos, cached_scene, scene_names
from convscope.scene.results import AltText, Concept, Detections

#: the calibrated thresholds (``python -m bench describe``): MTCNN's precision was 0.99 at
#: every threshold, and its own last stage keeps nothing under 0.7; BlazeFace's 0.44; the
#: Haar cascade's scores are stage margins, not probabilities, so it keeps what it finds
FACE_THRESHOLDS = {"mtcnn": 0.7, "blazeface": 0.44, "haar-cascade": 0.0}
#: the score a face with no person box round it needs: nothing else vouches for it.  Not
#: calibrated on a set (the LFW faces and CIFAR negatives gave MTCNN 0.99 precision at any
#: threshold, yet it gives scikit-image's motorcycle wheel hub 0.93); MTCNN keeps 96.5% of
#: the LFW faces at 0.95, and BlazeFace's precision there was 0.97 at 0.7
LONE_FACE_THRESHOLDS = {"mtcnn": 0.95, "blazeface": 0.7, "haar-cascade": 0.0}
#: SSD-MobileNetV2's image-level precision reached 0.82 at 0.71 (0.69 at 0.5)
OBJECT_THRESHOLD = 0.71
#: EfficientNet-Lite0's top-1: no threshold reached 0.8; 0.83 gave the best, 0.66
CLASS_THRESHOLD = 0.83


@dataclass(frozen=True)
class DescribeConfig:
    """The options of one ``describe`` job."""

    faces: str = option("mtcnn", "face detector", choices=lambda: scene_names("faces"))
    objects: str = option("ssd-mobilenet-v2", "object detector",
                          choices=lambda: scene_names("detect"))
    classifier: str = option("efficientnet-lite0", "ImageNet classifier for the closing "
                                                   "'possibly ...' (none leaves it out)",
                             choices=lambda: [*imagenet_classifiers(), "none"])
    face_threshold: float | None = option(
        None, "score a face needs (default: the detector's calibrated threshold, "
              f"{', '.join(f'{k} {v:g}' for k, v in FACE_THRESHOLDS.items())})",
        type=fraction, metavar="P")
    lone_face_threshold: float | None = option(
        None, "score a face needs when no person box surrounds it (default: "
              f"{', '.join(f'{k} {v:g}' for k, v in LONE_FACE_THRESHOLDS.items())})",
        type=fraction, metavar="P")
    object_threshold: float = option(OBJECT_THRESHOLD, "score an object needs",
                                     type=fraction, metavar="P")
    class_threshold: float = option(CLASS_THRESHOLD, "probability the ImageNet class needs",
                                    type=fraction, metavar="P")

    def resolve(self) -> DescribeConfig:
        face = (self.face_threshold if self.face_threshold is not None
                else FACE_THRESHOLDS.get(self.faces, 0.9))
        lone = (self.lone_face_threshold if self.lone_face_threshold is not None
                else max(face, LONE_FACE_THRESHOLDS.get(self.faces, face)))
        return replace(self, face_threshold=face, lone_face_threshold=lone)


def imagenet_classifiers() -> list[str]:
    """The packaged ImageNet classifiers the alt text can use."""
    return [n for n in list_pretrained() if pretrained_entry(n).task == "classify"]


def _imagenet_name(label: str) -> str:
    """An ImageNet class as words ("tabby, tabby cat" -> "tabby")."""
    return label.split(",")[0].strip()


class Describer:
    """The models the alt text is built from, opened once: ``describe(images)``."""

    def __init__(self, config: DescribeConfig | None = None, device="cpu", *,
                 faces: Detector | None = None, objects: Detector | None = None,
                 classifier: Classifier | None = None):
        self.config = (config or DescribeConfig()).resolve()
        c = self.config
        self.faces = faces or cached_scene(c.faces, "faces", device)
        self.objects = objects or cached_scene(c.objects, "detect", device)
        self.classifier = classifier
        if classifier is None and c.classifier != "none":
            entry = pretrained_entry(c.classifier)
            if entry is None or entry.task != "classify":
                raise UsageError(f"`classifier` must be a packaged ImageNet classifier "
                                 f"({', '.join(imagenet_classifiers())}) or none, not "
                                 f"{c.classifier!r}.")
            self.classifier = pretrained_classifier(entry, None, device)

    @property
    def thresholds(self) -> dict[str, float]:
        c = self.config
        return {"faces": c.face_threshold, "lone faces": c.lone_face_threshold,
                "objects": c.object_threshold,
                "imagenet": c.class_threshold}

    def describe(self, images) -> list[AltText]:
        """The alt text of each photo."""
        photos = as_photos(images)
        c = self.config
        faces = self.faces.predict(photos, min_score=c.face_threshold)
        objects = self.objects.predict(photos, min_score=c.object_threshold)
        tops = (self.classifier.topk([p.array for p in photos], k=3)
                if self.classifier is not None else [[] for _ in photos])
        return [self._one(p.name, f, o, t) for p, f, o, t in zip(photos, faces, objects, tops)]

    def __call__(self, image) -> AltText:
        return self.describe([image])[0]

    def _one(self, name: str, faces: Detections, objects: Detections,
             top: list[tuple[str, float]]) -> AltText:
        concepts = people_concepts(faces, objects, self.config.lone_face_threshold)
        by_label: dict[str, list[float]] = {}
        for label, score in zip(objects.labels, objects.scores):
            if label != "person":
                by_label.setdefault(label, []).append(float(score))
        for label, scores in sorted(by_label.items(), key=lambda kv: -max(kv[1])):
            n = len(scores)
            words = with_article(label) if n == 1 else f"{n} {plural(label)}"
            concepts.append(Concept(label, n, objects.model, max(scores), words))
        if top and top[0][1] >= self.config.class_threshold:
            label, p = top[0]
            words = _imagenet_name(label)
            concepts.append(Concept(words, 1, self.classifier.meta.model, p,
                                    f"possibly {words}"))
        return AltText(alt_text(concepts), concepts, faces, objects, top, self.thresholds,
                       name)


def people_concepts(faces: Detections, objects: Detections,
                    lone_threshold: float = 0.0) -> list[Concept]:
    """"N people" from the faces and the person boxes: the larger count (a person seen
    from behind has a box but no face; a face in a crowd may have no box of its own).  A
    face whose centre lies in no person box counts only at ``lone_threshold`` or above:
    nothing else vouches for it (MTCNN gives a motorcycle's wheel hub 0.93)."""
    person = [i for i, lab in enumerate(objects.labels) if lab == "person"]
    boxes = objects.boxes[person]
    centres = (faces.boxes[:, :2] + faces.boxes[:, 2:]) / 2
    inside = ((centres[:, None, :] >= boxes[None, :, :2])
              & (centres[:, None, :] <= boxes[None, :, 2:])).all(-1).any(-1)
    counted = inside | (faces.scores >= lone_threshold)
    n_faces = int(counted.sum())
    n = max(n_faces, len(person))
    if n == 0:
        return []
    sources = [m for m, k in ((faces.model, n_faces), (objects.model, len(person))) if k]
    scores = [float(s) for s in objects.scores[person]]
    if faces.score_kind == "probability":
        scores += [float(s) for s in faces.scores[counted]]
    words = "1 person" if n == 1 else f"{n} people"
    return [Concept("person", n, " + ".join(sources), max(scores or [1.0]), words)]


def alt_text(concepts: list[Concept]) -> str:
    """"Image may contain: 2 people, a cup; possibly espresso" (people first, then the
    objects, then the ImageNet class), or a sentence saying nothing was recognised."""
    things = [c.words for c in concepts if not c.words.startswith("possibly ")]
    maybe = [c.words for c in concepts if c.words.startswith("possibly ")]
    if not things and not maybe:
        return "No description: nothing in the photo was recognised with enough confidence."
    return "Image may contain: " + "; ".join(p for p in (", ".join(things), ", ".join(maybe))
                                             if p)


_DESCRIBERS: dict[tuple, Describer] = {}


def describe(images, config: DescribeConfig | None = None, device="cpu") -> list[AltText]:
    """The alt text of each photo: ``convscope.describe("kitchen.jpg")[0].text`` (the
    models are opened once per config and device)."""
    key = (config or DescribeConfig(), str(device))
    if key not in _DESCRIBERS:
        _DESCRIBERS[key] = Describer(key[0], device)
    return _DESCRIBERS[key].describe(images)


__all__ = ["AltText", "DescribeConfig", "Describer", "alt_text", "describe"]
