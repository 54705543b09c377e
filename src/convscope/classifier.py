"""A trained model with everything needed to use it: the ``Classifier``."""

from __future__ import annotations

import difflib
import logging
import operator
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torchvision.models as tvm
from torch import nn

from convscope.errors import ConvscopeError, ModelFileError, UsageError
from convscope.evaluate import evaluate_classifier
from convscope.images import image_batch
from convscope.modelfile import (
    ModelDescription,
    ModelMeta,
    load_weights,
    read_meta,
    save_model,
    with_versions,
)
from convscope.models import ModelInput, build_model, get_entry, parse_model_name
from convscope.models.imagenet import imagenet_classes, imagenet_synonyms
from convscope.models.pretrained import Pretrained
from convscope.models.registry import check_options, check_size
from convscope.models.zoo import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    _first,
    _last,
    download_state_dict,
    fit_to_weights,
    read_state_dict,
    torchvision_names,
    torchvision_network,
)

_log = logging.getLogger("convscope")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else the CPU."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "meta":  # shapes without weights, for a layer table
        return torch.device("meta")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConvscopeError('`device="cuda"` was asked for but no CUDA GPU is available; use '
                             '`device="cpu"` or `device="auto"`.')
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ConvscopeError(f"unknown device {device!r}; use auto, cpu or cuda.")
    return torch.device(device)


class Preprocess(nn.Module):
    """uint8 (B, C, H, W) images -> normalised float input at the network's input size."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], input_size: Sequence[int]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1) * 255)
        self.input_size = tuple(int(s) for s in input_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resize(self.normalize(x))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (or float 0-255) pixels -> the normalised float image, at the image's size."""
        return (x.float() - self.mean) / self.std

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        """A normalised image -> the network's input size (differentiable; attribution maps
        stay at the image's own size because they are taken before this step)."""
        return resize_input(x, self.input_size)


def resize_input(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of a float (B, C, H, W) batch to ``size``; a no-op at that size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return nn.functional.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def class_index(classes, target, what: str = "class") -> int:
    """The index of a class given by name or by index: the one lookup of a class a user
    names (``explain``'s target, ``visualize``'s classes).

    ``classes`` is a list of names or anything with ``.classes`` (a :class:`Classifier`,
    whose ``.synonyms`` also count: ImageNet's "tabby cat" is "tabby").  A name matches
    exactly, else case-insensitively, else as a synonym; an int (or a string of digits) is an
    index.  Anything else is a UsageError naming ``what`` (the parameter), the valid
    names and range, and the closest names.
    """
    synonyms = getattr(classes, "synonyms", None)
    classes = list(getattr(classes, "classes", classes))
    if isinstance(target, str):
        if target in classes:
            return classes.index(target)
        folded = [i for i, c in enumerate(classes) if c.casefold() == target.casefold()]
        if not folded and synonyms:  # another name the label list gives ("tabby cat")
            folded = list(dict.fromkeys(i for i, names in enumerate(synonyms)
                                        for n in names if n.casefold() == target.casefold()))
        if len(folded) > 1:
            raise UsageError(f"{what} {target!r} matches several classes but for case "
                             f"({', '.join(repr(classes[i]) for i in folded)}); give one "
                             "exactly.")
        if folded:
            return folded[0]
        index = int(target) if target.strip().isdigit() else -1
    else:
        try:
            index = operator.index(target)
        except TypeError:
            index = -1
    if 0 <= index < len(classes):
        return index
    text = str(target)
    known = [*classes, *(n for names in synonyms or () for n in names)]
    by_fold = {c.casefold(): c for c in reversed(known)}
    close = [by_fold[m] for m in difflib.get_close_matches(text.casefold(), list(by_fold), n=3)]
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    shown = ", ".join(classes[:20]) + (f", ... ({len(classes)} in all)" if len(classes) > 20
                                       else "")
    raise UsageError(f"unknown {what} {text!r}{hint}; give a class name ({shown}) or an "
                     f"index 0..{len(classes) - 1}.")


class Classifier:
    """A network plus its classes and preprocessing; what ``train`` returns and ``load`` reads.

    >>> clf = convscope.train("digits", model="linear", epochs=1)  # doctest: +SKIP
    >>> clf.predict(images)            # class indices
    >>> clf.predict_labels(images)     # class names
    >>> clf.topk("cat.jpg", k=5)       # [[("cat", 0.81), ("dog", 0.07), ...]]
    """

    def __init__(self, model: nn.Module, meta: ModelMeta, device: str | torch.device = "cpu"):
        self.model = model
        self.meta = meta
        self.device = resolve_device(device)
        self.preprocess = Preprocess(meta.mean, meta.std, meta.input_size)
        self.to(self.device)
        self.model.eval()

    #: what a Classifier does, as every model object names its task
    task = "classify"

    def describe(self) -> ModelDescription:
        """Task, labels, input size, normalisation, provenance and licence (the same
        self-description every model object of every task gives)."""
        return self.meta.describe()

    # ----------------------------------------------------------------- properties
    @property
    def classes(self) -> list[str]:
        return list(self.meta.classes)

    @property
    def synonyms(self) -> tuple[tuple[str, ...], ...] | None:
        """Every name of each class when the label list gives several (ImageNet's)."""
        if self.meta.dataset == "imagenet" and len(self.meta.classes) == 1000:
            return imagenet_synonyms()
        return None

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.meta.image_size)  # type: ignore[return-value]

    @property
    def channels(self) -> int:
        return int(self.meta.channels)

    def __repr__(self) -> str:
        h, w = self.image_size
        return (f"Classifier({self.meta.model}, {len(self.classes)} classes, "
                f"{h}x{w}x{self.channels}, on {self.device})")

    def to(self, device: str | torch.device) -> Classifier:
        self.device = resolve_device(device)
        self.model.to(self.device)
        self.preprocess.to(self.device)
        return self

    # ----------------------------------------------------------------- inputs
    def as_batch(self, images) -> torch.Tensor:
        """Any supported input as a uint8 (B, C, H, W) tensor at the model's image size.

        Accepts one image or a sequence of images (paths, bytes, PIL images,
        HWC arrays, CHW tensors), or a batch: a (N, H, W[, C]) uint8 array or
        an (N, C, H, W) tensor (uint8, or float in [0, 1]); see :func:`image_batch`.
        """
        return image_batch(images, self.image_size, self.channels)

    # ----------------------------------------------------------------- outputs
    def tta_level(self, tta: int | None = None) -> int:
        """The test-time augmentation a call uses: ``tta`` (0 or False: none, 1: mirror,
        2: mirror + shifts) or, when None, the model's own (``meta.tta``)."""
        if tta is None:
            return int(self.meta.tta)
        if tta not in (0, 1, 2):
            raise ConvscopeError(f"tta must be 0, 1, 2 or None (the model's own level), not "
                                 f"{tta!r}.")
        return int(tta)

    def scores(self, x: torch.Tensor, tta: int | None = None) -> torch.Tensor:
        """Class scores of a preprocessed batch, with test-time augmentation (``tta``; None:
        the model's own level): level 1 averages the image and its mirror; level 2 also
        averages 1-pixel shifts up-left and down-right (reflect-padded), weighted half and
        half."""
        level = self.tta_level(tta)
        if level == 0:
            return self.model(x)

        def mirror(t):
            return 0.5 * (self.model(t) + self.model(t.flip(-1)))

        out = mirror(x)
        if level >= 2:
            h, w = x.shape[-2:]
            p = nn.functional.pad(x, (1, 1, 1, 1), mode="reflect" if min(h, w) > 1 else "replicate")
            out = 0.5 * out + 0.25 * (mirror(p[..., :h, :w]) + mirror(p[..., 2:, 2:]))
        return out

    @torch.no_grad()
    def logits(self, images, batch_size: int = 256, *, tta: int | None = None) -> torch.Tensor:
        """Raw class scores, (N, K), on the CPU; ``tta`` as in :meth:`scores`."""
        level = self.tta_level(tta)
        if isinstance(images, torch.Tensor) and images.ndim == 4 and len(images) == 0:
            return torch.empty(0, len(self.classes))  # e.g. a process's empty share
        x = self.as_batch(images)
        self.model.eval()
        out = torch.cat([
            self.scores(self.preprocess(x[i : i + batch_size].to(self.device)), level)
            .float().cpu() for i in range(0, len(x), batch_size)])
        bad = (~torch.isfinite(out)).any(dim=1).nonzero()
        if len(bad):
            raise ConvscopeError(
                f"the model gave NaN or infinite scores for {len(bad)} of {len(out)} image(s) "
                f"(the first is number {int(bad[0]) + 1}), so it has no prediction; its weights "
                "overflow or are corrupt: retrain it or use an earlier checkpoint.")
        return out

    def predict_proba(self, images, batch_size: int = 256, *,
                      tta: int | None = None) -> np.ndarray:
        """Softmax probabilities, (N, K).  ``tta``: test-time augmentation level (0 none,
        1 mirror, 2 mirror + shifts); None, the default, uses the model's own."""
        return torch.softmax(self.logits(images, batch_size, tta=tta), dim=1).numpy()

    def predict(self, images, batch_size: int = 256, *, tta: int | None = None) -> np.ndarray:
        """The predicted class index of each image, (N,); ``tta`` as in predict_proba."""
        return self.logits(images, batch_size, tta=tta).argmax(dim=1).numpy()

    def predict_labels(self, images, batch_size: int = 256, *,
                       tta: int | None = None) -> list[str]:
        """The predicted class name of each image."""
        return [self.classes[i] for i in self.predict(images, batch_size, tta=tta)]

    def topk(self, images, k: int = 5, *, tta: int | None = None) -> list[list[tuple[str, float]]]:
        """The k most probable classes of each image, with their probabilities."""
        p = torch.from_numpy(self.predict_proba(images, tta=tta))
        k = max(1, min(k, len(self.classes)))
        values, idx = p.topk(k, dim=1)
        return [[(self.classes[int(i)], float(v)) for v, i in zip(vs, ids)]
                for vs, ids in zip(values, idx)]

    def evaluate(self, data, labels=None, *, batch_size: int = 256, data_root=None,
                 progress: bool = False, tta: int | None = None):
        """Top-1/top-5 accuracy, per-class accuracy and confusion matrix on a dataset.

        ``data`` is a dataset name, an ImageDataset (its test split is used), or
        images with ``labels``.  ``tta`` overrides the model's test-time augmentation.
        """
        return evaluate_classifier(self, data, labels, batch_size=batch_size,
                                   data_root=data_root, progress=progress, tta=tta)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model file (weights and metadata), atomically; ``meta.versions`` is
        filled in (a new ModelMeta) when empty."""
        self.meta = with_versions(self.meta)
        return save_model(self.model, self.meta, path)


def rebuild(meta: ModelMeta, where: str = "the model file") -> nn.Module:
    """The untrained network a model file's metadata describes, after checking its name and
    options against the registry and its size against the bounds (built on the meta device
    first, so a file describing a huge network allocates nothing)."""
    def step(fn):
        try:
            return fn()
        except ConvscopeError as exc:
            text = str(exc)
            raise ModelFileError(text if text.startswith(where) else
                                 f"{where}: {text.rstrip('.')}; the file's metadata was "
                                 "altered or is corrupt.") from None
        except Exception as exc:  # noqa: BLE001 - a builder failing on values it never gets
            raise ModelFileError(f"{where}: its metadata describes a {meta.model} that cannot "
                                 f"be built ({str(exc).splitlines()[0][:160]}); the file was "
                                 "altered or is corrupt.") from None

    entry = step(lambda: get_entry(meta.model))
    step(lambda: check_options(entry, meta.options))
    inp = ModelInput(meta.channels, len(meta.classes), tuple(meta.image_size))
    if entry.family != "ilsvrc":  # torchvision's nets have a fixed size
        step(lambda: check_size(lambda: entry.build(inp, **meta.options), inp,
                                tuple(meta.input_size),
                                f"{where}: the model its metadata describes",
                                "it was not built (the file was altered or is corrupt)"))
    return step(lambda: entry.build(inp, **meta.options))


def load(path: str | os.PathLike, device: str | torch.device = "cpu") -> Classifier:
    """Read a convscope model file back into a :class:`Classifier`.

    >>> clf = convscope.load("runs/demo/model.safetensors")  # doctest: +SKIP
    """
    meta = read_meta(path)
    model = rebuild(meta, str(path))
    load_weights(model, path)
    return Classifier(model, meta, device)


def torchvision_classifier(name: str, weights: str | None = None,
                           device: str | torch.device = "cpu") -> Classifier:
    """A torchvision ImageNet classifier as a Classifier (ImageNet classes and statistics).

    ``weights`` is ``DEFAULT`` (download), an enum name, or a local state dict;
    without weights the network is randomly initialised.  On the ``meta`` device the
    network is built without allocating weights (for a layer table).
    """
    try:
        enum = tvm.get_model_weights(name)
    except (ValueError, KeyError):
        enum = None
    if enum is None or name not in torchvision_names():
        valid = ", ".join(torchvision_names())
        raise ConvscopeError(f"unknown torchvision model {name!r}; choose one of: {valid}.")
    classes = list(enum.DEFAULT.meta["categories"])
    target = resolve_device(device)
    if target.type == "meta" and not weights:
        with target:
            model = torchvision_network(name)
    else:
        model = torchvision_network(name)
    if weights:
        is_file = Path(weights).suffix in (".pt", ".pth", ".safetensors") or Path(weights).exists()
        sd = read_state_dict(weights) if is_file else download_state_dict(name, weights)
        rebuilt = fit_to_weights(model, sd, name, weights)
        stem, conv = _first(model, nn.Conv2d)
        if stem in rebuilt:  # ImageNet's preprocessing feeds 3 channels
            raise ConvscopeError(
                f"the weights in {weights} take {conv.in_channels}-channel images, not "
                f"ImageNet's 3; train with `convscope train --model {name} --weights "
                f"{weights} --data ...` to adapt them to your data, then use that model file.")
        head, fc = _last(model, nn.Linear)
        if head in rebuilt:  # a fine-tuned head: its classes are not ImageNet's
            classes = [str(i) for i in range(fc.out_features)]
            _log.warning("note: the weights in %s have a %d-class head (%s), not ImageNet's "
                         "1000; it is kept, with classes named 0-%d.", weights,
                         fc.out_features, head, fc.out_features - 1)
    if not weights:
        provenance = f"torchvision {name}, random weights (none given)"
    elif Path(weights).exists():
        provenance = f"torchvision {name} with the state dict {weights}"
    else:
        provenance = f"torchvision {name}, weights {name}_Weights.{weights} (torchvision's hub)"
    licence = ("torchvision's code: BSD-3-Clause; " + (
        "random weights: no terms" if not weights else
        "the weights: their source's terms (torchvision's model documentation names them)"))
    meta = ModelMeta(model=f"torchvision:{name}", options={}, classes=classes, channels=3,
                     image_size=[224, 224], input_size=[224, 224], mean=list(IMAGENET_MEAN),
                     std=list(IMAGENET_STD), dataset="imagenet",
                     train_config={"weights": weights or "random"}, provenance=provenance,
                     licence=licence)
    return Classifier(model, meta, device)


def pretrained_classifier(entry: Pretrained, weights: str | None = None,
                          device: str | torch.device = "cpu") -> Classifier:
    """A classifier of the pretrained catalogue (:mod:`convscope.models.pretrained`) with the
    weights its package carries: labels, input size, normalisation, provenance and licence
    come from the catalogue."""
    if weights:
        raise UsageError(f"{entry.name} carries its own weights; leave out `weights` (a "
                         "state dict of your own goes with a torchvision name such as "
                         "resnet18).")
    if entry.labels != "imagenet":
        raise ConvscopeError(f"{entry.name} has {entry.labels!r} labels, which this version "
                             "cannot name; upgrade convscope.")
    model = entry.open()
    h, w = entry.input_size
    meta = ModelMeta(model=entry.name, options={}, classes=list(imagenet_classes()),
                     channels=3, image_size=[h, w], input_size=[h, w], mean=list(entry.mean),
                     std=list(entry.std), dataset="imagenet",
                     train_config={"weights": "packaged"}, provenance=entry.provenance,
                     licence=entry.licence, task=entry.task)
    return Classifier(model, meta, device)


def untrained_classifier(name: str, channels: int, classes: int, size: tuple[int, int],
                         device: str | torch.device = "cpu") -> Classifier:
    """A registered model name or ``spec:...`` built with random weights for ``channels``
    x ``size`` inputs and ``classes`` outputs (what a layer table or ``info`` describes);
    on the ``meta`` device nothing is allocated."""
    entry, options = parse_model_name(name)
    target = resolve_device(device)
    inp = ModelInput(channels, classes, tuple(size))
    if target.type == "meta":  # shapes only: nothing is allocated or initialised
        with target:
            model = build_model(name, inp)
    else:
        model = build_model(name, inp)
    meta = ModelMeta(model=entry.name, options=options, classes=[str(i) for i in range(classes)],
                     channels=channels, image_size=list(size), input_size=list(size),
                     mean=[0.5] * channels, std=[0.5] * channels,
                     provenance=f"untrained: {entry.name} built from its name, random weights",
                     licence="random weights: no terms")
    return Classifier(model, meta, device)


