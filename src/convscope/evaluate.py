"""Top-1/top-5 accuracy, per-class accuracy and the confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from convscope import distributed
from convscope.data import ImageDataset, load_dataset, parse_dataset_name
from convscope.display import Displayable, detached, draw
from convscope.errors import ConvscopeError, UsageError, unknown_name


@dataclass
class Evaluation(Displayable):
    classes: list[str]
    n: int
    top1: float
    top5: float
    #: k of the "top-5" figure: 5, or the number of classes when there are fewer
    k: int
    per_class: list[float]
    confusion: np.ndarray  # (K, K): rows are true classes, columns predictions

    @property
    def error1(self) -> float:
        return 1.0 - self.top1

    @property
    def error5(self) -> float:
        return 1.0 - self.top5

    def to_dict(self) -> dict:
        return {
            "n": self.n,
            "top1": self.top1,
            "top5": self.top5,
            "top1_error": self.error1,
            "top5_error": self.error5,
            "k": self.k,
            "classes": self.classes,
            "per_class": dict(zip(self.classes, self.per_class)),
            "confusion": self.confusion.tolist(),
        }

    def figure(self, title: str = ""):
        """The confusion matrix as a matplotlib Figure (what ``evaluate --out`` saves)."""
        return detached(draw("confusion_figure", self, title))

    def format(self, max_classes: int = 20) -> str:
        lines = [
            f"images      {self.n:,}",
            f"top-1       {100 * self.top1:6.2f}%   (error {100 * self.error1:.2f}%)",
            f"top-{self.k}       {100 * self.top5:6.2f}%   (error {100 * self.error5:.2f}%)",
            "",
            "per-class accuracy",
        ]
        width = max(len(c) for c in self.classes)
        counts = self.confusion.sum(axis=1)
        for c, acc, n in list(zip(self.classes, self.per_class, counts))[:max_classes]:
            lines.append(f"  {c:<{width}}  {100 * acc:6.2f}%  of {int(n)}")
        if len(self.classes) <= max_classes:
            lines += ["", "confusion matrix (rows: true class, columns: predicted)"]
            cell = max(4, len(str(int(self.confusion.max()))) + 1)
            head = " " * (width + 2) + "".join(f"{c[: cell - 1]:>{cell}}" for c in self.classes)
            lines.append(head)
            for c, row in zip(self.classes, self.confusion):
                lines.append(f"  {c:<{width}}" + "".join(f"{int(v):>{cell}}" for v in row))
        return "\n".join(lines)


def evaluate_logits(logits: torch.Tensor, labels: torch.Tensor, classes: list[str]) -> Evaluation:
    """Accuracy figures from (N, K) scores and (N,) true labels."""
    num = len(classes)
    labels = labels.long().cpu()
    k = min(5, num)
    top = logits.topk(k, dim=1).indices.cpu()
    correct1 = top[:, 0] == labels
    correctk = (top == labels[:, None]).any(dim=1)
    confusion = torch.zeros(num, num, dtype=torch.int64)
    confusion.index_put_((labels, top[:, 0]), torch.ones_like(labels), accumulate=True)
    totals = confusion.sum(dim=1).clamp_min(1)
    per_class = (confusion.diag().double() / totals).tolist()
    n = len(labels)
    return Evaluation(
        classes=list(classes),
        n=n,
        top1=float(correct1.double().mean()) if n else 0.0,
        top5=float(correctk.double().mean()) if n else 0.0,
        k=k,
        per_class=[float(v) for v in per_class],
        confusion=confusion.numpy(),
    )


def evaluate_classifier(clf, data, labels=None, *, batch_size=256, data_root=None,
                        progress=False, tta: int | None = None) -> Evaluation:
    """Evaluate a Classifier on a dataset name, an ImageDataset or (images, labels), with
    test-time augmentation ``tta`` (0 none, 1 mirror, 2 mirror + shifts; None: the
    model's own level)."""
    if isinstance(data, str) and labels is None:
        data = load_dataset(data, data_root=data_root, progress=progress,
                            image_size=None, task="classify")
    if isinstance(data, ImageDataset):
        check_compatible(clf, data)
        images, labels = data.test_images, data.test_labels
    else:
        if labels is None:
            raise ConvscopeError("evaluate needs labels when given images.")
        images = data
    labels = torch.as_tensor(np.asarray(labels)).long()
    if isinstance(images, torch.Tensor):  # under torchrun each process scores its share
        logits = sharded_logits(clf, images, batch_size, tta=tta)
    else:
        logits = clf.logits(images, batch_size, tta=tta)
    if len(logits) != len(labels):
        raise ConvscopeError(f"{len(logits)} images but {len(labels)} labels.")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(clf.classes)):
        raise ConvscopeError(f"labels must be class indices 0..{len(clf.classes) - 1}.")
    return evaluate_logits(logits, labels, clf.classes)


def sharded_logits(clf, images: torch.Tensor, batch_size: int, *,
                   tta: int | None = None) -> torch.Tensor:
    """clf.logits over ``images`` (``tta``: the test-time augmentation level, None for the
    model's own); in a torchrun job each process scores a share of whole batches and every
    process gets all scores back, in order."""
    d = distributed.current()
    batches = d.part(-(-len(images) // batch_size))
    share = images[batches.start * batch_size : batches.stop * batch_size]
    return d.gather_rows(clf.logits(share, batch_size, tta=tta))


def check_compatible(clf, data) -> None:
    """Refuse a dataset whose classes or channels differ from the model's."""
    if list(data.classes) != list(clf.classes):
        raise ConvscopeError(
            f"the model was trained on {len(clf.classes)} classes ({', '.join(clf.classes[:5])}"
            f"{', ...' if len(clf.classes) > 5 else ''}) but {data.name} has "
            f"{len(data.classes)} ({', '.join(data.classes[:5])}"
            f"{', ...' if len(data.classes) > 5 else ''}); evaluate it on data with the same "
            "classes."
        )
    if data.channels != clf.channels:
        raise ConvscopeError(f"the model expects {clf.channels}-channel images but {data.name} "
                             f"has {data.channels}; use data with the same channels.")
    if tuple(data.image_size) != tuple(clf.image_size):
        raise ConvscopeError(
            f"the model expects {clf.image_size[0]}x{clf.image_size[1]} images but {data.name} "
            f"has {data.image_size[0]}x{data.image_size[1]}; pass `image_size={clf.image_size[0]}` "
            "to resize the data."
        )


SPLITS = ("auto", "test", "train", "all")


def dataset_for_model(clf, name: str | None = None, *, data_root=None,
                      image_size: int | None = None, fit_folder: bool = True,
                      progress: bool = True):
    """``(dataset, own)``: the dataset called ``name`` (None: the one the model was trained
    on), and whether it is the model's own training data.

    The model's own data is split exactly as in training (its holdout), so its test images
    stay unseen.  A folder dataset is decoded at the model's image size when ``fit_folder``
    (what evaluation needs), otherwise only when it is the model's own.
    """
    if not name:
        name = clf.meta.dataset
        if not name or name == "arrays":
            raise UsageError("this model was trained on arrays from the Python API; pass "
                             "a dataset as `data`.")
        try:
            parse_dataset_name(name)
        except UsageError:
            raise UsageError(f"this model was trained on {name}, which convscope cannot "
                             "load; pass a dataset as `data`.") from None
    own = name == clf.meta.dataset or _same_files(name, str(clf.meta.dataset))
    task = getattr(clf, "task", "classify")
    size = image_size
    if size is None and name.startswith("folder:") and (fit_folder or own):
        size = clf.image_size[0]  # user folders take the model's size
    if task != "classify":
        size = None  # boxes and masks keep their images' own sizes
    holdout = clf.meta.train_config.get("holdout") if own else None
    ds = load_dataset(name, data_root=data_root, image_size=size, holdout=holdout,
                      progress=progress, task=task)
    return ds, own


def _same_files(name: str, own: str) -> bool:
    """Whether dataset ``name`` reads the files of ``own`` (``folder:``, ``coco:``, ... with
    paths written differently)."""
    kind, sep, path = name.partition(":")
    own_kind, _, own_path = own.partition(":")
    if not sep or kind != own_kind or kind not in ("folder", "coco", "voc", "yolo", "masks"):
        return False
    return Path(path).expanduser().resolve() == Path(own_path)


def resolve_split(split: str, own: bool) -> str:
    """``auto`` is the test split of the model's own data and every image of any other."""
    if split not in SPLITS:
        raise unknown_name("split", split, list(SPLITS))
    return split if split != "auto" else ("test" if own else "all")
