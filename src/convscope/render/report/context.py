"""What every section reads: :class:`ReportContext`, over the same
:class:`~convscope.render.workbench.Workbench` the web app uses, and
:func:`open_report_data` (the data a report or the web app looks at)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import torch

from convscope.classifier import Classifier
from convscope.data import ImageDataset
from convscope.data.annotated import AnnotatedDataset
from convscope.errors import ConvscopeError
from convscope.evaluate import Evaluation, evaluate_logits, resolve_split, sharded_logits
from convscope.inspect.sources import open_dataset, sample
from convscope.render.report.config import ReportConfig
from convscope.render.workbench import Workbench


@dataclass
class ReportContext:
    """What every section reads: the model, the data (its test split is the one scored),
    the config, and results computed once and shared (the logits of the test images; the
    workbench's views, the same the web app serves)."""

    clf: Classifier
    source: ImageDataset    # the dataset as loaded: train split (neighbours) and test split
    split: str              # the split scored: "test" of the model's own data, else "all"
    config: ReportConfig
    model_path: Path | None = None
    facts: dict = field(default_factory=dict)  # what sections measured, for the record

    @cached_property
    def bench(self) -> Workbench:
        """The model and data as the web app holds them, with the report's sample sizes:
        the t-SNE map and the challenges are computed there."""
        c = self.config
        return Workbench(self.clf, self.source, self.split, seed=c.seed, tsne_n=c.n,
                         challenge_n=c.challenge_images,
                         neighbour_database=c.neighbour_database, batch_size=c.batch_size,
                         model=c.model)

    @property
    def dataset(self) -> ImageDataset:
        """The dataset with the scored split as its test images."""
        return self.bench.dataset

    @property
    def images(self) -> torch.Tensor:
        return self.dataset.test_images

    @property
    def labels(self) -> torch.Tensor:
        return self.dataset.test_labels

    @cached_property
    def logits(self) -> torch.Tensor:
        """(N, K) scores of every test image: the one pass the accuracy sections share
        (under torchrun each process scores a share and all get every score)."""
        if isinstance(self.images, torch.Tensor):
            return sharded_logits(self.clf, self.images, self.config.batch_size)
        return self.clf.logits(self.images, self.config.batch_size)

    @cached_property
    def evaluation(self) -> Evaluation:
        if list(self.dataset.classes) != self.clf.classes:
            raise ConvscopeError(f"{self.dataset.name} has other classes than the model, so "
                                 "accuracy cannot be scored; pass `data` naming a dataset "
                                 "with the model's classes.")
        return evaluate_logits(self.logits, self.labels, self.clf.classes)

    def sample(self, n: int) -> torch.Tensor:
        """Sorted positions of a seeded sample of ``n`` test images."""
        return sample(len(self.images), n, self.config.seed)

    def label(self, i: int) -> str:
        return self.dataset.classes[int(self.labels[i])]

    @property
    def test_count(self) -> int:
        return len(self.images)

    @property
    def tile_side(self) -> int:
        """Thumbnail width: small images enlarged (pixelated), big ones shrunk."""
        return int(min(128, max(64, 4 * max(self.clf.image_size))))


@dataclass
class AnnotatedContext:
    """What the sections of a detector's or segmenter's report read: the model (``clf``, as
    in :class:`ReportContext`), its boxes or masks dataset (``source``; its test split is
    the one looked at), the config, and the model's outputs on the test images, computed
    once."""

    clf: object             # a TrainedDetector or TrainedSegmenter
    source: AnnotatedDataset
    config: ReportConfig
    model_path: Path | None = None
    facts: dict = field(default_factory=dict)
    split: str = "test"

    @property
    def task(self) -> str:
        return self.clf.task

    @property
    def dataset(self) -> AnnotatedDataset:
        return self.source

    @property
    def test_count(self) -> int:
        return len(self.source.test)

    @cached_property
    def evaluation(self):
        """COCO mAP (detector) or mean IoU (segmenter) on the test images."""
        return self.clf.evaluate(self.source)

    def sample(self, n: int) -> torch.Tensor:
        """Sorted positions of a seeded sample of ``n`` test images."""
        return sample(self.test_count, n, self.config.seed)


def open_report_data(clf: Classifier, data, *, data_root=None, image_size: int | None = None,
                     progress: bool = True) -> tuple[ImageDataset, str]:
    """``(dataset, split)``: the dataset a report (or the web app) looks at, and the split
    it scores: a name (None: the model's own data, split exactly as in training, so its
    test images stay unseen) or an ImageDataset; ``auto`` scores the test images of the
    model's own data and every image of any other (as ``convscope evaluate`` does)."""
    ds, own = open_dataset(clf, data, data_root=data_root, image_size=image_size,
                           progress=progress)
    return ds, resolve_split("auto", own)
