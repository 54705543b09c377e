"""The lecture's six recognition challenges as numbers: top-1 accuracy under viewpoint change,
illumination, deformation, occlusion, background clutter and intra-class variation, each at
severities 0 (the plain test images) to ``severities`` (severe).

Every corruption is drawn once per image from a generator seeded by ``(seed, challenge)``
and only its strength grows with the severity (the same rotation direction, the same patch
position, the same clutter strokes, ...), so the curves are smooth and a run is repeatable.
The pixel operations are torchvision's ``transforms.v2.functional`` (rotate, affine,
perspective, elastic, erase, brightness, contrast, gamma); only the colour temperature, the
clutter strokes and the evidence-placed patch are written here, since no maintained library
has them.  Each severity's images for all challenges go through the model in one batched
pass; the mean corruption error (mCE, Hendrycks & Dietterich 2019) compares against a
baseline model scored on the very same corrupted images.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image, ImageDraw

from convscope.classifier import Classifier
from convscope.display import Displayable, detached, draw
from convscope.errors import UsageError, unknown_name
from convscope.fileio import write_text_atomic
from convscope.inspect.attribution import explain
from convscope.inspect.features import extract, model_images
from convscope.inspect.layers import choose_layer
from convscope.inspect.sources import image_set, split_option
from convscope.loading import as_classifier
from convscope.options import batch_option, layer_option, option, positive_int, seed_option
from convscope.progress import progress_bar
from convscope.registries import adds_to

#: the lecture's six challenges, in its order
GROUPS = ("viewpoint", "illumination", "deformation", "occlusion", "clutter", "intra-class")
#: a forward pass over corrupted images holds at most this many pixel values at once
PASS_VALUES = 2**27


def challenge_list(text: str) -> tuple[str, ...]:
    """``--only`` (a value type): challenge or group names, comma-separated; a name of the
    registry below, looked up when the flag is read."""
    try:
        return tuple(select([t for t in text.split(",") if t.strip()]))
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


@dataclass(frozen=True)
class ChallengesConfig:
    """The options of one ``challenges`` job (written next to its outputs)."""

    #: test images, a seeded sample (None: all of them)
    n: int | None = option(500, "test images, a seeded sample", type=positive_int)
    severities: int = option(5, "severities above 0 (the plain images); 5 as in ImageNet-C",
                             type=positive_int)
    #: which challenges (None: all); names or group names, see ``list_challenges()``
    only: tuple[str, ...] | None = option(None, "comma-separated challenges or groups, "
                                                "all by default", type=challenge_list,
                                          metavar="NAMES")
    seed: int = seed_option("images and corruptions")
    split: str = split_option()
    layer: str | None = layer_option("features for intra-class spread (default: the layer "
                                     "feeding the classifier, the lecture's FC7)")
    batch_size: int = batch_option()
    #: classes listed as suffering most under each challenge
    worst: int = 3


# --------------------------------------------------------------------------- the registry
@dataclass(frozen=True)
class Challenge:
    name: str
    group: str
    summary: str
    #: (severity fraction t in (0, 1], image shape (C, H, W)) -> the parameters at that
    #: severity (JSON-able)
    params: Callable[[float, tuple[int, int, int]], dict]
    #: (images (N, C, H, W) uint8, params, Draws) -> corrupted images, same shape and dtype
    apply: Callable[..., torch.Tensor] | None
    #: only for colour images
    color: bool = False


CHALLENGES: dict[str, Challenge] = {}


def register_challenge(name: str, group: str, summary: str, params, color: bool = False):
    if group not in GROUPS:
        raise ValueError(f"unknown group {group!r}")

    return adds_to(CHALLENGES, lambda fn: Challenge(name, group, summary, params, fn, color))


def list_challenges() -> list[str]:
    return list(CHALLENGES)


def select(only) -> list[str]:
    """Challenge names from names or group names (None: all); a group's name (e.g.
    ``occlusion``) stands for all its challenges."""
    if not only:
        return list(CHALLENGES)
    chosen: list[str] = []
    for item in only:
        item = item.strip().lower()
        names = [c.name for c in CHALLENGES.values() if item in (c.name, c.group)]
        if not names:
            raise unknown_name("challenge", item, list(CHALLENGES) + list(GROUPS))
        chosen += [n for n in names if n not in chosen]
    return chosen


@dataclass
class Draws:
    """What a challenge draws once per image (seeded), shared by every severity."""

    generator: torch.Generator
    others: torch.Tensor      # (N, C, H, W) uint8: another test image for each image
    fill: list[float]         # the data's mean colour, 0-255: what occluders are
    borders: torch.Tensor     # (N, C) each image's mean edge colour: what a moved image
    #                           uncovers (black around a digit, the scene's colour in a photo)
    evidence: torch.Tensor | None = None  # (N, H, W) occlusion importance, for that challenge

    def border(self, i: int) -> list[float]:
        return self.borders[i].tolist()

    def uniform(self, n: int, *shape: int) -> torch.Tensor:
        return torch.rand((n, *shape), generator=self.generator)

    def signs(self, n: int) -> torch.Tensor:
        return torch.randint(0, 2, (n,), generator=self.generator).float() * 2 - 1


def _per_image(images: torch.Tensor, fn) -> torch.Tensor:
    return torch.stack([fn(i, img) for i, img in enumerate(images)])


# ---- viewpoint
@register_challenge("rotation", "viewpoint", "in-plane rotation, alternating direction",
                    lambda t, shape: {"degrees": round(60 * t, 3)})
def _rotation(images, p, d: Draws):
    sign = d.signs(len(images))
    return _per_image(images, lambda i, x: TF.rotate(
        x, float(sign[i] * p["degrees"]), interpolation=TF.InterpolationMode.BILINEAR,
        fill=d.border(i)))


@register_challenge("scale", "viewpoint", "the object seen from further away (shrunk about "
                    "the centre)", lambda t, shape: {"factor": round(1 - 0.6 * t, 3)})
def _scale(images, p, d: Draws):
    return _per_image(images, lambda i, x: TF.affine(
        x, angle=0.0, translate=[0, 0], scale=p["factor"], shear=[0.0, 0.0],
        interpolation=TF.InterpolationMode.BILINEAR, fill=d.border(i)))


@register_challenge("perspective", "viewpoint", "the camera tilted: corners pulled inwards",
                    lambda t, shape: {"distortion": round(0.7 * t, 3)})
def _perspective(images, p, d: Draws):
    n, _, h, w = images.shape
    pulls = d.uniform(n, 4, 2)  # (N, corner, (x, y)) in [0, 1): how far each corner moves
    corners = [[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]]
    inward = [[1, 1], [-1, 1], [-1, -1], [1, -1]]

    def one(i, x):
        half = (p["distortion"] * (w - 1) / 2, p["distortion"] * (h - 1) / 2)
        end = [[round(cx + sx * float(pulls[i, k, 0]) * half[0]),
                round(cy + sy * float(pulls[i, k, 1]) * half[1])]
               for k, ((cx, cy), (sx, sy)) in enumerate(zip(corners, inward))]
        return TF.perspective(x, corners, end, interpolation=TF.InterpolationMode.BILINEAR,
                              fill=d.border(i))

    return _per_image(images, one)


@register_challenge("translation", "viewpoint", "the object off-centre, in a random direction",
                    lambda t, shape: {"shift": round(0.35 * t, 3)})
def _translation(images, p, d: Draws):
    n, _, h, w = images.shape
    angle = d.uniform(n) * 2 * math.pi
    return _per_image(images, lambda i, x: TF.affine(
        x, angle=0.0, scale=1.0, shear=[0.0, 0.0], fill=d.border(i),
        translate=[round(p["shift"] * w * math.cos(angle[i])),
                   round(p["shift"] * h * math.sin(angle[i]))]))


# ---- illumination
@register_challenge("brightness", "illumination", "less light: pixels scaled towards black",
                    lambda t, shape: {"factor": round(1 - 0.8 * t, 3)})
def _brightness(images, p, d: Draws):
    return TF.adjust_brightness(images, p["factor"])


@register_challenge("contrast", "illumination", "flat light: contrast reduced towards the "
                    "mean gray", lambda t, shape: {"factor": round(1 - 0.85 * t, 3)})
def _contrast(images, p, d: Draws):
    return TF.adjust_contrast(images, p["factor"]) if images.shape[1] in (1, 3) else images


@register_challenge("gamma", "illumination", "a different exposure curve: gamma above 1 "
                    "darkens the mid-tones", lambda t, shape: {"gamma": round(1 + 2.5 * t, 3)})
def _gamma(images, p, d: Draws):
    return TF.adjust_gamma(images, p["gamma"])


@register_challenge("temperature", "illumination", "colour temperature: warm (red up, blue "
                    "down) or cool light", lambda t, shape: {"shift": round(0.6 * t, 3)},
                    color=True)
def _temperature(images, p, d: Draws):
    # hand-written: torchvision has no white-balance shift; red and blue scaled oppositely
    sign = d.signs(len(images))[:, None, None]
    x = images.float()
    x[:, 0] *= 1 + sign * p["shift"]
    x[:, 2] *= 1 - sign * p["shift"]
    return x.round().clamp(0, 255).to(torch.uint8)


# ---- deformation
def _sigma(size: tuple[int, int]) -> float:
    return round(max(2.0, min(size) / 8), 3)


@register_challenge("elastic", "deformation", "elastic deformation (Simard et al. 2003), "
                    "torchvision's ElasticTransform", lambda t, shape: {
                        "alpha": round(min(shape[1:]) * 2.5 * t, 3), "sigma": _sigma(shape[1:])})
def _elastic(images, p, d: Draws):
    n, _, h, w = images.shape
    # one smooth unit field per image, drawn as torchvision's ElasticTransform does
    # (uniform noise in [-1, 1], Gaussian-blurred, over the size); alpha scales it
    noise = d.uniform(n, 2, h, w) * 2 - 1
    k = min(int(8 * p["sigma"]), 2 * min(h, w) - 2) // 2 * 2 + 1  # reflect padding < size
    field_ = TF.gaussian_blur(noise, [k, k], [p["sigma"], p["sigma"]])
    disp = torch.stack([field_[:, 0] / w, field_[:, 1] / h], dim=-1) * p["alpha"]  # (N,H,W,2)
    return _per_image(images, lambda i, x: TF.elastic(
        x, disp[i:i + 1], interpolation=TF.InterpolationMode.BILINEAR, fill=d.border(i)))


# ---- occlusion
def _patch_side(t: float, size: tuple[int, int]) -> int:
    return max(1, round(math.sqrt(0.45 * t) * min(size)))


def _erase(images, tops, lefts, side: int, fill) -> torch.Tensor:
    value = torch.tensor(fill, dtype=torch.float32).round().to(torch.uint8)[:, None, None]
    return _per_image(images, lambda i, x: TF.erase(
        x, int(tops[i]), int(lefts[i]), side, side, value.expand(x.shape[0], side, side)))


def _occlusion_params(t, shape):
    side = _patch_side(t, shape[1:])
    return {"side": side, "area": round(side * side / (shape[1] * shape[2]), 4)}


@register_challenge("occlusion-random", "occlusion", "a square patch of the data's mean "
                    "colour at a random place", _occlusion_params)
def _occlusion(images, p, d: Draws):
    n, _, h, w = images.shape
    centre = d.uniform(n, 2)
    side = p["side"]
    tops = ((centre[:, 0] * h - side / 2).round().clamp(0, h - side))
    lefts = ((centre[:, 1] * w - side / 2).round().clamp(0, w - side))
    return _erase(images, tops, lefts, side, d.fill)


@register_challenge("occlusion-evidence", "occlusion", "the same patch placed where the "
                    "model's own occlusion map finds the most evidence", _occlusion_params)
def _occlusion_evidence(images, p, d: Draws):
    n, _, h, w = images.shape
    side = p["side"]
    # the window of this side holding the most evidence: a box sum over the importance map
    box = torch.nn.functional.avg_pool2d(d.evidence[:, None].float(), side, stride=1)[:, 0]
    best = box.flatten(1).argmax(dim=1)
    tops, lefts = best // box.shape[-1], best % box.shape[-1]
    return _erase(images, tops, lefts, side, d.fill)


# ---- background clutter
@register_challenge("clutter", "clutter", "colour images: another test image blended in; "
                    "grayscale: bright clutter strokes drawn over the image",
                    lambda t, shape: {"blend": round(0.55 * t, 3)} if shape[0] >= 3 else
                    {"strokes": math.ceil(10 * t)})
def _clutter(images, p, d: Draws):
    n, c, h, w = images.shape
    if c >= 3:  # natural images: the background of another scene shows through
        a = p["blend"]
        return (images.float() * (1 - a) + d.others.float() * a).round().to(torch.uint8)
    # digits: textured strokes (hand-written: no library draws clutter); the same 10 strokes
    # per image at every severity, the first `strokes` of them drawn
    ends = d.uniform(n, 10, 4)
    width = max(1, round(min(h, w) / 14))
    out = []
    for i in range(n):
        layer = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(layer)
        for k in range(p["strokes"]):
            x0, y0, x1, y1 = (ends[i, k] * torch.tensor([w, h, w, h])).tolist()
            draw.line([(x0, y0), ((x0 + x1) / 2, y0), (x1, y1)], fill=255, width=width)
        mask = torch.from_numpy(np.array(layer))[None].expand(c, h, w)
        out.append(torch.maximum(images[i], mask))
    return torch.stack(out)


# ---- intra-class variation (not a corruption: the test images sorted by typicality)
register_challenge("intra-class", "intra-class", "the same test images grouped from a class's "
                   "most typical members (severity 1) to its least typical (highest), by "
                   "distance to the class mean in feature space",
                   lambda t, shape: {"quantile": [round(t - 0.2, 3), round(t, 3)]})(None)


# --------------------------------------------------------------------------- results
@dataclass
class Curve:
    """One challenge's accuracy at each severity, for one model."""

    name: str
    group: str
    accuracy: list[float]                # (S + 1,) top-1 at severities 0..S
    per_class: list[list[float | None]]  # (S + 1, K), None where a class has no image
    counts: list[int]                    # images scored at each severity

    @property
    def score(self) -> float:
        """Mean accuracy over severities 1..S."""
        return float(np.mean(self.accuracy[1:]))


@dataclass
class ModelCurves:
    """Every challenge's curve for one model."""

    model: str
    clean: float
    curves: dict[str, Curve]
    worst: dict[str, list[tuple[str, float]]] = field(default_factory=dict)

    def group_scores(self) -> dict[str, float]:
        out: dict[str, list[float]] = {}
        for c in self.curves.values():
            out.setdefault(c.group, []).append(c.score)
        return {g: float(np.mean(v)) for g, v in out.items()}

    def hardest(self) -> str:
        """The challenge (group) with the lowest score."""
        scores = self.group_scores()
        return min(scores, key=scores.get)

    def to_dict(self) -> dict:
        return {"model": self.model, "clean_accuracy": self.clean,
                "scores": {k: c.score for k, c in self.curves.items()},
                "group_scores": self.group_scores(), "hardest": self.hardest(),
                "curves": {k: asdict(c) for k, c in self.curves.items()},
                "worst_classes": {k: [{"class": n, "drop": v} for n, v in w]
                                  for k, w in self.worst.items()}}


@dataclass
class Challenges(Displayable):
    """The result of :func:`challenges`: curves per model, strips, mCE and every parameter."""

    config: ChallengesConfig
    data: str
    classes: list[str]
    #: "accuracy" against the labels, or "agreement" with each model's clean prediction
    #: (for images without labels, or labels of other classes than the model's)
    measure: str
    n: int
    names: list[str]               # the challenges run, in order
    skipped: dict[str, str]        # challenge -> why it did not run
    params: dict[str, list[dict]]  # challenge -> parameters at severities 0..S
    models: list[ModelCurves]      # the model, then each --compare model
    baseline: ModelCurves | None
    #: challenge -> corruption error against the baseline (%), and their mean under "mCE"
    ce: dict[str, float] | None
    strip_image: int               # which image the strips show (position in the sample)
    strips: dict[str, torch.Tensor]  # challenge -> (S + 1, C, H, W) uint8
    spread: dict[str, float]       # class -> mean distance to its centroid / between centroids

    @property
    def main(self) -> ModelCurves:
        return self.models[0]

    @property
    def mce(self) -> float | None:
        return None if not self.ce else float(np.mean(list(self.ce.values())))

    def to_dict(self) -> dict:
        return {
            "config": asdict(self.config), "data": self.data, "measure": self.measure,
            "n": self.n, "classes": self.classes, "challenges": self.names,
            "groups": {k: CHALLENGES[k].group for k in self.names},
            "skipped": self.skipped, "params": self.params,
            "models": [m.to_dict() for m in self.models],
            "baseline": None if self.baseline is None else self.baseline.to_dict(),
            "corruption_error": self.ce, "mce": self.mce,
            "strip_image": self.strip_image, "intra_class_spread": self.spread,
        }

    def format(self) -> str:
        s = self.config.severities
        width = max(len(n) for n in self.names) + 2
        lines = [f"{self.data}: {self.n:,} images, top-1 {self.measure} at severities 0..{s}"]
        for m in self.models:
            lines += ["", f"{m.model}  (clean {100 * m.clean:.2f}%)",
                      " " * width + "".join(f"{k:>7}" for k in range(s + 1)) + "   score"]
            for name in self.names:
                c = m.curves[name]
                lines.append(f"{name:<{width}}" + "".join(f"{100 * a:7.1f}" for a in c.accuracy)
                             + f"  {100 * c.score:6.1f}")
            scores = m.group_scores()
            lines.append("by challenge: " + ", ".join(f"{g} {100 * v:.1f}%"
                                                      for g, v in scores.items()))
            lines.append(f"hurts most: {m.hardest()}")
            for name in self.names:
                if m.worst.get(name):
                    lines.append(f"  {name}: worst classes " + ", ".join(
                        f"{c} (-{100 * d:.0f} pts)" for c, d in m.worst[name]))
        for name, why in self.skipped.items():
            lines.append(f"skipped {name}: {why}")
        if self.ce:
            lines += ["", f"mCE against {self.baseline.model}: {self.mce:.1f}% "
                      "(100% = as robust as the baseline; lower is better)"]
            lines += [f"  {k}: {v:.1f}%" for k, v in self.ce.items()]
        return "\n".join(lines)

    def figure(self):
        """Accuracy against severity, one panel per challenge group (a matplotlib Figure)."""
        return detached(draw("curves_figure", self))

    def strips_figure(self):
        """One test image at every severity of every challenge."""
        return detached(draw("strips_figure", self))

    def save(self, out_dir) -> dict[str, str]:
        """curves.png, strips.png and challenges.json in ``out_dir``; their paths."""
        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise UsageError(f"{out} is a file; pass a folder for the challenge outputs.")
        out.mkdir(parents=True, exist_ok=True)
        paths = {"curves": draw("save_figure", self.figure(), out / "curves.png", self.config),
                 "strips": draw("save_figure", self.strips_figure(), out / "strips.png",
                                self.config)}
        paths["json"] = out / "challenges.json"
        write_text_atomic(paths["json"], json.dumps(self.to_dict(), indent=2) + "\n")
        return {k: str(v) for k, v in paths.items()}


# --------------------------------------------------------------------------- the job
def _check(config: ChallengesConfig) -> None:
    if config.severities < 1 or config.severities > 20:
        raise UsageError(f"the number of severities must be 1 to 20, got {config.severities}.")
    if config.n is not None and config.n < 2:
        raise UsageError(f"challenges needs at least 2 images, got {config.n}.")
    if config.worst < 0:
        raise UsageError(f"the number of worst classes must be >= 0, got {config.worst}.")


def _measure(clf: Classifier, labels, classes) -> str:
    """Accuracy against the labels when they are the model's classes, else agreement with
    the model's own clean predictions."""
    ok = labels is not None and classes is not None and list(classes) == clf.classes
    return "accuracy" if ok else "agreement"


def _per_class(correct: torch.Tensor, labels: torch.Tensor, k: int) -> list[float | None]:
    out: list[float | None] = []
    for c in range(k):
        sel = labels == c
        out.append(float(correct[sel].double().mean()) if bool(sel.any()) else None)
    return out


def _typicality_bins(clf: Classifier, images, labels, layer, severities, batch_size,
                     progress) -> tuple[list[torch.Tensor], dict[int, float]]:
    """Per severity 1..S, the positions of the images in that typicality quantile of their
    class; and each class's spread (mean distance to its centroid over the mean distance
    between centroids)."""
    feats = extract(clf, model_images(clf, images), [layer], reduction="flatten",
                    batch_size=batch_size, progress=progress)[layer].flatten(1).double()
    dist = torch.empty(len(images), dtype=torch.float64)
    centroids = {}
    for c in labels.unique().tolist():
        sel = (labels == c).nonzero()[:, 0]
        centroids[c] = feats[sel].mean(0)
        dist[sel] = (feats[sel] - centroids[c]).norm(dim=1)
    bins: list[list[int]] = [[] for _ in range(severities)]
    for c in centroids:
        sel = (labels == c).nonzero()[:, 0]
        order = sel[dist[sel].argsort(stable=True)]
        for s, part in enumerate(np.array_split(order.numpy(), severities)):
            bins[s] += part.tolist()
    cents = torch.stack(list(centroids.values()))
    between = torch.cdist(cents, cents)
    mean_between = float(between.sum() / max(1, len(cents) * (len(cents) - 1)))
    spread = {c: float(dist[labels == c].mean()) / mean_between if mean_between else 0.0
              for c in centroids}
    return [torch.tensor(sorted(b), dtype=torch.long) for b in bins], spread


def _batched_logits(clf: Classifier, batches: list[torch.Tensor], batch_size: int
                    ) -> list[torch.Tensor]:
    """One forward pass over several batches of images (concatenated, within a memory
    budget), split back."""
    out: list[torch.Tensor] = []
    group: list[torch.Tensor] = []

    def flush():
        if group:
            logits = clf.logits(torch.cat(group), batch_size)
            out.extend(logits.split([len(g) for g in group]))
            group.clear()

    for b in batches:
        if group and (sum(g.numel() for g in group) + b.numel()) > PASS_VALUES:
            flush()
        group.append(b)
    flush()
    return out


def challenges(model, data=None, config: ChallengesConfig | None = None, *, compare=(),
               baseline=None, labels=None, data_root=None, image_size: int | None = None,
               weights: str | None = None, device="cpu", progress: bool = False,
               **options) -> Challenges:
    """Top-1 accuracy of ``model`` on ``data``'s test images under each challenge.

    ``model`` (and each of ``compare`` and ``baseline``): a Classifier, model file or
    torchvision name; ``data``: a dataset name (None: the model's own), an ImageDataset, or
    images with optional ``labels``; ``options`` are :class:`ChallengesConfig` fields.

    >>> r = challenges("runs/demo/model.safetensors", n=200)       # doctest: +SKIP
    >>> r.main.curves["rotation"].accuracy                          # doctest: +SKIP
    [0.985, 0.98, 0.955, 0.87, 0.69, 0.5]
    """
    config = replace(config or ChallengesConfig(), **options)
    if isinstance(config.only, str):
        config = replace(config, only=tuple(config.only.split(",")))
    _check(config)
    clf = as_classifier(model, weights, device)
    others = [as_classifier(m, None, device) for m in (
        compare if isinstance(compare, (list, tuple)) else [compare])]
    base = as_classifier(baseline, None, device) if baseline is not None else None
    imgs = image_set(clf, data, config.split, n=config.n, seed=config.seed, labels=labels,
                     data_root=data_root, image_size=image_size, progress=progress)
    images, n = imgs.images, len(imgs.images)
    c, h, w = images.shape[1:]
    names = select(config.only)
    skipped = {}
    for name in list(names):
        if CHALLENGES[name].color and c < 3:
            skipped[name] = f"{imgs.name} is grayscale, so colour temperature has no meaning"
    names = [nm for nm in names if nm not in skipped]
    if not names:
        raise UsageError("no challenge applies to these images; choose others with `only`.")
    S = config.severities
    params = {nm: [{}] + [CHALLENGES[nm].params(s / S, (c, h, w)) for s in range(1, S + 1)]
              for nm in names}
    everyone = [clf, *others] + ([base] if base is not None else [])
    measure = _measure(clf, imgs.labels, imgs.classes)
    for m in everyone[1:]:
        if m.classes != clf.classes:
            raise UsageError(f"{m.meta.model} has other classes than {clf.meta.model}; "
                             "compare models trained on the same classes.")
    predicted = [m.logits(images, config.batch_size).argmax(1) for m in everyone]  # clean
    refs = [imgs.labels if measure == "accuracy" else p for p in predicted]
    k = len(clf.classes)
    cls_labels = refs[0] if measure == "agreement" else imgs.labels

    # ---- what each challenge draws once per image (seeded), shared by every severity
    fill = [float(v) * 255 for v in clf.meta.mean][:c] if len(clf.meta.mean) >= c else \
        [float(np.mean(clf.meta.mean)) * 255] * c
    if len(fill) < c:
        fill = fill * c
    ring = torch.ones(h, w, dtype=torch.bool)
    ring[1:-1, 1:-1] = False
    borders = images[:, :, ring].float().mean(-1)  # (N, C)
    g = torch.Generator().manual_seed(config.seed)
    partner = (torch.arange(n) + 1 + torch.randint(0, max(1, n - 1), (n,), generator=g)) % n
    evidence = None
    if "occlusion-evidence" in names:
        # a coarse map (a 7x7 grid of non-overlapping windows) is enough to place a patch
        # that covers at least 1/7 of the image's side, at a quarter of the default's cost
        win = max(2, round(min(clf.image_size) / 7))
        evidence = explain(clf, images, "occlusion", window=win, stride=win,
                           progress=progress).importance  # (N, h', w')
        if tuple(evidence.shape[-2:]) != (h, w):  # maps are at the model's image size
            evidence = torch.nn.functional.interpolate(evidence[:, None], size=(h, w),
                                                       mode="bilinear")[:, 0]
    draws = {}
    for idx, nm in enumerate(names):
        gen = torch.Generator().manual_seed(config.seed * 1_000_003 + 7919 * (idx + 1))
        draws[nm] = Draws(gen, images[partner], fill, borders, evidence)
    state = {nm: draws[nm].generator.get_state() for nm in names}

    # ---- the strip image: the first sampled image the model gets right
    right = (predicted[0] == refs[0]).nonzero()
    strip = int(right[0]) if len(right) else 0

    # ---- intra-class: typicality bins in the model's feature space
    bins, spread = None, {}
    if "intra-class" in names:
        layer = choose_layer(clf, config.layer, "embed")
        bins, spread_idx = _typicality_bins(clf, images, cls_labels, layer, S,
                                            config.batch_size, progress)
        names_of = imgs.classes if measure == "accuracy" else clf.classes
        spread = {names_of[i]: v for i, v in spread_idx.items()}

    # ---- severity 0 is the plain images; then one batched pass per severity
    correct = {i: {nm: [] for nm in names} for i in range(len(everyone))}
    clean = [p == r for p, r in zip(predicted, refs)]
    for i in range(len(everyone)):
        for nm in names:
            correct[i][nm].append(clean[i])
    strips = {nm: [images[strip]] for nm in names}
    corrupt = [nm for nm in names if CHALLENGES[nm].apply is not None]
    bar = progress_bar(total=S * len(corrupt), desc="challenges", unit="set",
                       enable=progress)
    with bar:
        for s in range(1, S + 1):
            batch = []
            for nm in corrupt:
                draws[nm].generator.set_state(state[nm])  # the same draws at every severity
                x = CHALLENGES[nm].apply(images, params[nm][s], draws[nm])
                batch.append(x)
                strips[nm].append(x[strip])
                bar.update(1)
            for i, m in enumerate(everyone):
                for nm, logits in zip(corrupt, _batched_logits(m, batch, config.batch_size)):
                    correct[i][nm].append(logits.argmax(1) == refs[i])
            if bins is not None:
                sel = bins[s - 1]
                for i in range(len(everyone)):
                    correct[i]["intra-class"].append(clean[i][sel])
                same = (cls_labels[sel] == cls_labels[strip]).nonzero()[:, 0]
                pick = sel[same[len(same) // 2]] if len(same) else strip
                strips["intra-class"].append(images[pick])

    # ---- curves, per-class figures, worst classes
    def curves_of(i: int, label: str) -> ModelCurves:
        curves = {}
        for nm in names:
            acc, per, counts = [], [], []
            for s, corr in enumerate(correct[i][nm]):
                lab = cls_labels if (nm != "intra-class" or s == 0) else cls_labels[bins[s - 1]]
                acc.append(float(corr.double().mean()) if len(corr) else 0.0)
                per.append(_per_class(corr, lab, k))
                counts.append(len(corr))
            curves[nm] = Curve(nm, CHALLENGES[nm].group, acc, per, counts)
        mc = ModelCurves(label, float(clean[i].double().mean()), curves)
        for nm, cv in curves.items():
            drops = []
            for ci in range(k):
                before = cv.per_class[0][ci]
                after = [row[ci] for row in cv.per_class[1:] if row[ci] is not None]
                if before is not None and after:
                    drops.append((clf.classes[ci], before - float(np.mean(after))))
            drops.sort(key=lambda t: -t[1])
            mc.worst[nm] = [d for d in drops[:config.worst] if d[1] >= 0.005]
        return mc

    specs = [model, *(compare if isinstance(compare, (list, tuple)) else [compare])][
        :1 + len(others)] + ([baseline] if base else [])
    labels_of = _labels(specs, everyone)
    models = [curves_of(i, labels_of[i]) for i in range(1 + len(others))]
    base_curves = curves_of(len(everyone) - 1, labels_of[-1]) if base else None
    ce = None
    if base_curves is not None:
        ce = {}
        for nm in corrupt:
            err_m = sum(1 - a for a in models[0].curves[nm].accuracy[1:])
            err_b = sum(1 - a for a in base_curves.curves[nm].accuracy[1:])
            ce[nm] = 100 * err_m / err_b if err_b > 0 else float("nan")
    return Challenges(config, imgs.name, list(clf.classes), measure, n, names, skipped, params,
                      models, base_curves, ce, strip, {k: torch.stack(v) for k, v in
                                                        strips.items()}, spread)


def _labels(specs, clfs) -> list[str]:
    """Names for the models in tables and legends: the shortest tail of their paths that
    tells them apart ("aug/model.safetensors" and "noaug/model.safetensors"), so that two
    runs' model.safetensors never read alike, and the main model is named like the others."""
    full = [c.meta.model if isinstance(s, Classifier) or s is None else str(s)
            for s, c in zip(specs, clfs)]
    if len(set(full)) < 2:  # one model, or one model compared with itself
        return full
    parts = [Path(f).parts for f in full]
    for k in range(1, max(len(p) for p in parts) + 1):
        tails = ["/".join(p[-k:]) for p in parts]
        if len(set(tails)) == len(set(full)):
            return tails
    return full
