"""The Python API: ``train(images, labels) -> Classifier`` and ``predict(model, images)``."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from convscope import distributed
from convscope.classifier import Classifier
from convscope.data import ImageDataset, from_arrays, load_dataset, parse_dataset_name
from convscope.data.annotated import AnnotatedDataset
from convscope.errors import ConvscopeError
from convscope.images import image_batch
from convscope.loading import as_classifier
from convscope.models import parse_model_name
from convscope.train import TrainConfig, fit
from convscope.train.loop import run_folder


def _train_images(images) -> torch.Tensor:
    """Images given to ``train`` as uint8 (N, C, H, W) at their own size and channels; a
    3-D array or tensor is always (N, H, W) grayscale here, never one image."""
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = images[..., None]
    elif isinstance(images, torch.Tensor) and images.ndim == 3:
        images = images[:, None]
    return image_batch(images)


def _labels(labels, classes: list[str] | None) -> tuple[np.ndarray, list[str]]:
    arr = np.asarray(labels)
    if arr.dtype.kind in "iu":
        k = int(arr.max()) + 1 if arr.size else 0
        names = classes or [str(i) for i in range(k)]
        if arr.size and (arr.min() < 0 or arr.max() >= len(names)):
            raise ConvscopeError(f"labels must lie in 0..{len(names) - 1}.")
        return arr.astype(np.int64), list(names)
    names = classes or sorted({str(v) for v in arr})
    lookup = {c: i for i, c in enumerate(names)}
    try:
        return np.asarray([lookup[str(v)] for v in arr], dtype=np.int64), list(names)
    except KeyError as exc:
        raise ConvscopeError(f"label {exc.args[0]!r} is not among the classes.") from None


def _load(name: str, data_root, image_size, holdout, progress):
    """A dataset by name; ``image_size`` resizes a classification dataset's images, while
    boxes and masks keep theirs (the trainer reads it as the network's side)."""
    entry, _ = parse_dataset_name(name)
    return load_dataset(name, data_root=data_root, holdout=holdout, progress=progress,
                        image_size=image_size if entry.task == "classify" else None)


def as_dataset(data, labels=None, *, test_images=None, test_labels=None, classes=None,
               holdout: float | None = None, data_root=None, image_size=None, natural=None,
               progress: bool = True) -> ImageDataset | AnnotatedDataset:
    """Turn whatever ``train`` was given into an ImageDataset (or boxes and masks, as the
    named dataset holds)."""
    if isinstance(data, (ImageDataset, AnnotatedDataset)):
        return data
    if isinstance(data, (str, os.PathLike)) and labels is None:
        name = str(data)
        try:
            parse_dataset_name(name)
        except ConvscopeError:
            if Path(name).is_dir():
                name = f"folder:{name}"
            else:
                raise
        return _load(name, data_root, image_size, holdout, progress)
    if labels is None:
        raise ConvscopeError("train needs labels when given images: train(images, labels).")
    x = _train_images(data)
    y, names = _labels(labels, classes)
    if len(x) != len(y):
        raise ConvscopeError(f"{len(x)} images but {len(y)} labels.")
    is_natural = x.shape[1] == 3 if natural is None else natural
    if test_images is not None:
        if test_labels is None:
            raise ConvscopeError("test_images need test_labels.")
        xt = _train_images(test_images)
        yt, _ = _labels(test_labels, names)
        return ImageDataset("arrays", names, x, torch.from_numpy(y), xt, torch.from_numpy(yt),
                            natural=is_natural)
    holdout = 0.1 if holdout is None else holdout
    if not 0 < holdout < 1:
        raise ConvscopeError("holdout must be between 0 and 1, or pass test_images.")
    return from_arrays("arrays", x.numpy(), y, names, test_size=holdout, natural=is_natural,
                       notes=[f"held out {holdout:.0%} of the images for testing"])


def train(data="mnist5k", labels=None, *, model: str | None = None, test_images=None,
          test_labels=None, classes: list[str] | None = None, progress: bool = True,
          verbose: bool = True, **options):
    """Train a classifier, a detector or a segmenter (as the data's task says) and return
    it: a :class:`Classifier`, or a ``TrainedDetector`` / ``TrainedSegmenter`` whose
    ``predict`` gives boxes or masks.

    ``model`` defaults to the recipe's (``convnet``; ``fastnet`` for ``recipe="fast"``;
    ``fcos`` for boxes, ``lraspp`` for masks).  ``data`` is a dataset name
    (``"mnist5k"``, ``"cifar10"``, ``"folder:PATH"``, ``"digits-boxes"``, ``"coco:PATH"``,
    ``"voc:PATH"``, ``"yolo:PATH"``, ``"masks:PATH"``), a folder of ``<class>/<image>``
    files, or images with ``labels``.  For boxes and masks ``image_size`` is the longest
    side the network reads (default: the largest image side, at most 512).  Images given as
    arrays hold out ``holdout`` (default 0.1) for testing unless ``test_images`` are
    given; folder datasets hold out 0.2 unless they have a test/ subfolder.
    Any :class:`TrainConfig` field (``epochs``, ``lr``, ``out``, ...) is accepted.

    >>> import convscope
    >>> clf = convscope.train("digits", model="linear", epochs=2, progress=False)  # doctest: +SKIP
    >>> clf.predict(images)  # doctest: +SKIP
    >>> det = convscope.train("digits-boxes", epochs=1, progress=False)  # doctest: +SKIP
    >>> det.predict(canvas)[0].boxes  # doctest: +SKIP
    """
    if options.get("out") is not None:  # a Path is fine; config.json holds its text
        options["out"] = str(options["out"])
    config = TrainConfig(model=model, **options)
    if model:
        parse_model_name(model, None)  # a bad name or spec fails before any data is loaded
    d = distributed.init_from_env(config.device)  # a no-op outside torchrun
    with distributed.main_first():  # rank 0 decodes and caches a folder; the others read it
        dataset = as_dataset(data, labels, test_images=test_images, test_labels=test_labels,
                             classes=classes, holdout=config.holdout,
                             data_root=config.data_root, image_size=config.image_size,
                             progress=progress and d.is_main)
    config = replace(config, data=dataset.name)
    log = print if verbose and d.is_main else (lambda _m: None)
    for note in dataset.notes:
        log(f"note: {note}")
    return fit(dataset, config, progress=progress, log=log)


def resume(out: str | os.PathLike, *, progress: bool = True, verbose: bool = True,
           data_root=None):
    """Continue the training run in folder ``out`` from its last checkpoint, exactly.

    The run's own ``config.json`` says what to train on; with the same seed on the CPU,
    the result equals that of an uninterrupted run.

    >>> clf = convscope.resume("runs/mnist")  # doctest: +SKIP
    """
    out = Path(out)
    cfg_path = run_folder(out) / "config.json"
    if not cfg_path.is_file():
        raise ConvscopeError(f"{out} holds no config.json; `resume` takes the `out` folder of an "
                             "earlier training run.")
    try:
        saved = json.loads(cfg_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConvscopeError(f"{cfg_path} is damaged ({str(exc).splitlines()[0][:120]}); "
                             "restore it, or start a new run over it "
                             "(`convscope train --force`).") from None
    config = TrainConfig.from_dict(saved, source=str(cfg_path))
    config = replace(config, out=str(out), data_root=str(data_root) if data_root
                     else config.data_root)
    if config.data == "arrays":
        raise ConvscopeError("this run trained on arrays from the Python API; resume it with "
                             "convscope.train.fit(dataset, config, resume=True).")
    d = distributed.init_from_env(config.device)
    with distributed.main_first():
        dataset = _load(config.data, config.data_root, config.image_size, config.holdout,
                        progress and d.is_main)
    log = print if verbose and d.is_main else (lambda _m: None)
    return fit(dataset, config, progress=progress, log=log, resume=True)


def predict(model: Classifier | str | os.PathLike, images) -> np.ndarray:
    """Class indices predicted for ``images`` by a Classifier, a model file or a name
    (anything :func:`convscope.open_model` opens as a classifier)."""
    return as_classifier(model).predict(images)


__all__ = ["as_dataset", "predict", "resume", "train"]
