"""What the trainer needs to learn boxes or masks: the model object, each step's batch with
its annotations moved by the augmentation, the loss, and the test scores.

The :class:`~convscope.train.loop.Trainer` runs the same loop for every task (checkpoints,
``--resume``, Ctrl-C, divergence, progress, ``metrics.jsonl``, torchrun); an *objective*
holds what differs.  This module has the detection and segmentation objectives; the
classification one sits beside the loop.

Augmentation is torchvision.transforms.v2 on tv_tensors, which moves boxes and masks with
the pixels.  Its random draws come from torch's global generator, so each image's draw is
seeded from the loop's own generator (one draw per global batch, then the image's place in
it): a resumed run and every process of a data-parallel one augment each image exactly as
one uninterrupted process would.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torchvision import tv_tensors
from torchvision.transforms import v2

from convscope.data.annotated import IGNORE, AnnotatedDataset, AnnotatedSplit
from convscope.errors import UsageError
from convscope.models import ModelInput, build_model
from convscope.models.detection import detection_loss
from convscope.models.segmentation import mask_loss
from convscope.scene.trained import TRAINED, annotator_meta

#: the longest side the network reads by default: a dataset's largest image side, at most
DEFAULT_SIDE = 512
#: what ``augment`` means for boxes and masks ("auto": crop, plus flip for natural photos)
ANNOTATED_AUGMENTS = ("none", "flip", "crop", "flip-crop")
#: the scale and shift jitter of "crop": scale 0.75-1.25, shift up to a tenth of each side
JITTER_SCALE, JITTER_SHIFT = (0.75, 1.25), 0.1


def resolve_annotated_augment(augment: str, natural: bool) -> str:
    if augment == "auto":  # digit canvases already vary in scale and place; and a
        return "flip-crop" if natural else "none"  # mirrored digit is not a digit
    if augment not in ANNOTATED_AUGMENTS:
        raise UsageError(f"augment {augment} is for classifiers; boxes and masks take "
                         f"{', '.join(ANNOTATED_AUGMENTS)} or auto.")
    return augment


def _transform(augment: str, task: str):
    steps = []
    if augment in ("flip", "flip-crop"):
        steps.append(v2.RandomHorizontalFlip())
    if augment in ("crop", "flip-crop"):
        steps.append(v2.RandomAffine(degrees=0, translate=(JITTER_SHIFT, JITTER_SHIFT),
                                     scale=JITTER_SCALE,
                                     fill={tv_tensors.Image: 0, tv_tensors.Mask: IGNORE}))
    if not steps:
        return None
    if task == "detect":  # boxes pushed (mostly) off the image go, with their labels
        steps.append(v2.SanitizeBoundingBoxes(min_size=2))
    return v2.Compose(steps)


def _shrunk(split: AnnotatedSplit, side: int) -> AnnotatedSplit:
    """The split with every image whose longer side exceeds ``side`` scaled down to it
    (boxes scaled, masks by nearest neighbour): the network never reads more pixels."""
    images, boxes, masks = list(split.images), split.boxes, split.masks
    boxes = None if boxes is None else list(boxes)
    masks = None if masks is None else list(masks)
    for i, x in enumerate(images):
        h, w = x.shape[1:]
        if max(h, w) <= side:
            continue
        f = side / max(h, w)
        size = (max(1, round(h * f)), max(1, round(w * f)))
        images[i] = F.interpolate(x[None].float(), size=size, mode="bilinear",
                                  antialias=True, align_corners=False)[0].round().clamp(
                                      0, 255).to(torch.uint8)
        if boxes is not None:
            boxes[i] = boxes[i] * torch.tensor([size[1] / w, size[0] / h] * 2)
        if masks is not None:
            masks[i] = F.interpolate(masks[i][None, None].float(), size=size,
                                     mode="nearest")[0, 0].to(torch.uint8)
    return AnnotatedSplit(images, list(split.files), boxes,
                          None if split.labels is None else list(split.labels), masks)


class AnnotatedObjective:
    """Boxes or masks: the model object, batches, loss and scores for the trainer."""

    #: whether a training step counts correct answers (classification's accuracy)
    has_accuracy = False
    #: batch norm learns the data's statistics even from a pretrained trunk: measured on the
    #: digit canvases, where ImageNet's statistics do not fit grey digits (see the recipe)
    keeps_pretrained_norms = False

    def __init__(self, dataset: AnnotatedDataset, config, device: torch.device) -> None:
        need = 1 if dataset.task == "detect" else 2
        if len(dataset.classes) < need:
            raise UsageError(
                f"{dataset.name} has {len(dataset.classes)} class"
                f"{'' if len(dataset.classes) == 1 else 'es'}, and a "
                f"{'detector' if need == 1 else 'segmenter'} needs at least {need}"
                + ("" if need == 1 else " (the background and one more)") + ".")
        if config.freeze:
            raise UsageError("`freeze` trains a classifier's head alone; for a detector or "
                             "segmenter freeze its trunk with the model option "
                             "trainable_layers=0 (e.g. model fcos:trainable_layers=0).")
        self.dataset, self.device, self.task = dataset, device, dataset.task
        sizes = [max(x.shape[1:]) for x in dataset.train.images + dataset.test.images]
        self.side = int(config.image_size or min(DEFAULT_SIDE, max(sizes, default=128)))
        if not 16 <= self.side <= 4096:
            raise UsageError(f"`image_size` must be 16 to 4096 px for boxes and masks, got "
                             f"{self.side}.")
        self.train = _shrunk(dataset.train, self.side)
        self.n = len(self.train)
        self.augment = resolve_annotated_augment(config.augment, dataset.natural)
        self.transform = _transform(self.augment, dataset.task)

    @property
    def test_count(self) -> int:
        return len(self.dataset.test)

    # ------------------------------------------------------------------ the model
    def build(self, config):
        """The seeded network and its model object (metadata: classes, size, data)."""
        ds = self.dataset
        meta = annotator_meta(config.model, ds.task, ds.classes, ds.channels, self.side,
                              dataset=ds.name)
        torch.manual_seed(config.seed)
        model = build_model(config.model, ModelInput(ds.channels, len(ds.classes),
                                                     (self.side, self.side)),
                            weights=config.weights, task=ds.task)
        return TRAINED[ds.task](model, meta, self.device)

    # ------------------------------------------------------------------ batches
    def _sample(self, i: int, seed: int) -> tuple[torch.Tensor, dict]:
        """Training image ``i`` and its target, augmented with draws seeded by ``seed``."""
        s = self.train
        x = s.images[i]
        target = {"labels": s.labels[i]} if self.task == "detect" else {}
        if self.transform is None:
            if self.task == "detect":
                target["boxes"] = s.boxes[i]
            else:
                target["mask"] = s.masks[i]
            return x, target
        sample = {"image": tv_tensors.Image(x), **target}
        if self.task == "detect":
            sample["boxes"] = tv_tensors.BoundingBoxes(s.boxes[i], format="XYXY",
                                                       canvas_size=tuple(x.shape[1:]))
        else:
            sample["mask"] = tv_tensors.Mask(s.masks[i])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            out = self.transform(sample)
        image = out.pop("image").as_subclass(torch.Tensor)
        return image, {k: v.as_subclass(torch.Tensor) for k, v in out.items()}

    def batch(self, generator: torch.Generator, idx: torch.Tensor, total: int,
              part: slice, epoch: int):
        """This process's ``part`` of a global batch: images and targets on the device."""
        base = int(torch.randint(0, 2**62, (1,), generator=generator))
        offset = range(total)[part].start
        samples = [self._sample(int(i), base + offset + j) for j, i in enumerate(idx)]
        if self.task == "detect":
            images = [x.to(self.device, non_blocking=True) for x, _ in samples]
            targets = [{k: v.to(self.device) for k, v in t.items()} for _, t in samples]
            return images, targets
        # masks: one padded batch, the padding ignored
        h = max(x.shape[1] for x, _ in samples)
        w = max(x.shape[2] for x, _ in samples)
        x = torch.zeros(len(samples), samples[0][0].shape[0], h, w, dtype=torch.uint8)
        y = torch.full((len(samples), h, w), IGNORE, dtype=torch.uint8)
        for k, (image, t) in enumerate(samples):
            x[k, :, :image.shape[1], :image.shape[2]] = image
            y[k, :image.shape[1], :image.shape[2]] = t["mask"]
        return x.to(self.device), y.to(self.device)

    def loss(self, forward: nn.Module, inputs, targets) -> tuple[torch.Tensor, float]:
        if self.task == "detect":
            return detection_loss(forward, inputs, targets), 0.0
        return mask_loss(forward(inputs.float() / 255), targets), 0.0

    # ------------------------------------------------------------------ scores
    def evaluate(self, model, tta: int) -> tuple[dict, str]:
        """The test split's scores as metrics.jsonl columns, and their line in the log."""
        if not len(self.dataset.test):
            return ({"test_map": None, "test_map50": None} if self.task == "detect"
                    else {"test_miou": None, "test_pixel_acc": None}), "no test split"
        ev = model.evaluate(self.dataset)
        if self.task == "detect":
            def pct(v):
                return "  -  " if v is None else f"{100 * v:5.1f}%"
            return ({"test_map": _r(ev.map), "test_map50": _r(ev.map50),
                     "test_map75": _r(ev.map75)},
                    f"test mAP@.5 {pct(ev.map50)}  mAP {pct(ev.map)}")
        return ({"test_miou": _r(ev.miou), "test_pixel_acc": _r(ev.pixel_accuracy)},
                f"test mIoU {100 * (ev.miou or 0):5.1f}%  pixel acc. "
                f"{100 * (ev.pixel_accuracy or 0):5.1f}%")


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 6)
