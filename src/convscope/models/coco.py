"""COCO's names: the 80 object classes under their original 1-90 ids (as TensorFlow's
object-detection models number their outputs), the 17 person keypoints and the skeleton
that joins them.  Data only: every detector, drawing and alt text reads them from here."""

from __future__ import annotations

#: id -> name for the 80 classes of COCO 2017 (ids 12, 26, 29, 30, 45, 66, 68, 69, 71 and
#: 83 were dropped from the 2014 list and are never predicted)
COCO_CLASSES: dict[int, str] = {
    1: "person", 2: "bicycle", 3: "car", 4: "motorcycle", 5: "airplane", 6: "bus",
    7: "train", 8: "truck", 9: "boat", 10: "traffic light", 11: "fire hydrant",
    13: "stop sign", 14: "parking meter", 15: "bench", 16: "bird", 17: "cat", 18: "dog",
    19: "horse", 20: "sheep", 21: "cow", 22: "elephant", 23: "bear", 24: "zebra",
    25: "giraffe", 27: "backpack", 28: "umbrella", 31: "handbag", 32: "tie", 33: "suitcase",
    34: "frisbee", 35: "skis", 36: "snowboard", 37: "sports ball", 38: "kite",
    39: "baseball bat", 40: "baseball glove", 41: "skateboard", 42: "surfboard",
    43: "tennis racket", 44: "bottle", 46: "wine glass", 47: "cup", 48: "fork", 49: "knife",
    50: "spoon", 51: "bowl", 52: "banana", 53: "apple", 54: "sandwich", 55: "orange",
    56: "broccoli", 57: "carrot", 58: "hot dog", 59: "pizza", 60: "donut", 61: "cake",
    62: "chair", 63: "couch", 64: "potted plant", 65: "bed", 67: "dining table", 70: "toilet",
    72: "tv", 73: "laptop", 74: "mouse", 75: "remote", 76: "keyboard", 77: "cell phone",
    78: "microwave", 79: "oven", 80: "toaster", 81: "sink", 82: "refrigerator", 84: "book",
    85: "clock", 86: "vase", 87: "scissors", 88: "teddy bear", 89: "hair drier",
    90: "toothbrush",
}

#: the 17 keypoints of a COCO person, in COCO's order (MoveNet's outputs too)
KEYPOINTS: tuple[str, ...] = (
    "nose", "left eye", "right eye", "left ear", "right ear", "left shoulder",
    "right shoulder", "left elbow", "right elbow", "left wrist", "right wrist", "left hip",
    "right hip", "left knee", "right knee", "left ankle", "right ankle",
)

#: the limbs drawn between keypoints (indices into KEYPOINTS), COCO's skeleton
SKELETON: tuple[tuple[int, int], ...] = (
    (0, 1), (0, 2), (1, 3), (2, 4), (5, 6), (5, 7), (7, 9), (6, 8), (8, 10), (5, 11),
    (6, 12), (11, 12), (11, 13), (13, 15), (12, 14), (14, 16), (3, 5), (4, 6),
)

#: plurals that do not add -s / -es, for counts in sentences ("2 people", "3 skis")
_PLURALS = {"person": "people", "mouse": "mice", "knife": "knives", "sheep": "sheep",
            "skis": "skis", "scissors": "scissors", "tv": "tvs", "hair drier": "hair driers"}


def plural(name: str) -> str:
    """``name`` in the plural: "person" -> "people", "bus" -> "buses", "cup" -> "cups"."""
    if name in _PLURALS:
        return _PLURALS[name]
    head, _, last = name.rpartition(" ")
    if last in _PLURALS:
        return f"{head} {_PLURALS[last]}"
    if last.endswith(("s", "sh", "ch", "x")):
        return name + "es"
    return name + "s"


def with_article(name: str) -> str:
    """One of ``name``: "a cup", "an orange"."""
    return ("an " if name[:1] in "aeiou" else "a ") + name
