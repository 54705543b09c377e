"""How faithful is a map?  Deletion and insertion curves (Petsiuk et al., RISE, 2018).

Delete the pixels a map ranks highest first and watch the target probability: a faithful
map makes it fall fast (low area under the deletion curve).  Insert them, highest first,
into a blurred copy: a faithful map makes it rise fast (high area under the insertion
curve).  A random map is the baseline every method has to beat.

captum has no deletion/insertion metric, so the curves are written here: one batched
forward pass per step, (steps + 1) masked copies of each image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from convscope.classifier import Classifier
from convscope.data import ImageDataset, load_dataset, parse_dataset_name
from convscope.display import Displayable, detached, draw
from convscope.errors import UsageError, unknown_name
from convscope.inspect.attribution import (
    BASELINES,
    METHODS,
    ExplainConfig,
    baseline_input,
    explain_many,
    rows_per_batch,
)
from convscope.loading import as_classifier
from convscope.options import option, positive_int, seed_option
from convscope.progress import progress_bar

RANDOM = "random"


@dataclass(frozen=True)
class FaithfulnessConfig:
    """The options of one ``faithfulness`` job."""

    n: int = option(100, "test images scored, a seeded sample of the test split",
                    type=positive_int)
    methods: tuple[str, ...] = option(tuple(METHODS), "methods to score (the random map is "
                                                      "always added as the baseline)",
                                      many=True, choices=tuple(METHODS), metavar="METHOD")
    steps: int = option(20, "points on each curve after the start: 1/steps of the pixels move "
                            "per step", type=positive_int)
    deletion_baseline: str = option("zero", "what deleted pixels become: zero (black), mean "
                                            "(the data's mean colour) or blur",
                                    choices=BASELINES)
    insertion_baseline: str = option("blur", "what insertion starts from", choices=BASELINES)
    seed: int = seed_option("which test images")
    #: the options of the maps (window, stride, layer, ...); the target is the predicted class
    explain: ExplainConfig = field(default_factory=ExplainConfig)


@dataclass
class FaithfulnessResult(Displayable):
    """Deletion and insertion curves of each method (and the random baseline)."""

    config: FaithfulnessConfig
    fractions: np.ndarray               # (steps + 1,) fraction of pixels moved
    deletion: dict[str, np.ndarray]     # method -> (n, steps + 1) target probability
    insertion: dict[str, np.ndarray]
    resolved: dict[str, dict] = field(default_factory=dict)  # method -> its resolved config

    @property
    def methods(self) -> list[str]:
        return list(self.deletion)

    def figure(self):
        """The mean deletion and insertion curves per method, as a matplotlib Figure."""
        return detached(draw("faithfulness_figure", self))

    def auc(self, kind: str) -> dict[str, tuple[float, float]]:
        """Area under each method's ``deletion`` or ``insertion`` curve: (mean, standard
        error) over the images."""
        curves = getattr(self, kind)
        out = {}
        dx = np.diff(self.fractions)
        for m, c in curves.items():
            per_image = ((c[:, 1:] + c[:, :-1]) / 2 * dx).sum(axis=1)  # trapezoids, (n,)
            sem = per_image.std(ddof=1) / np.sqrt(len(per_image)) if len(per_image) > 1 else 0.0
            out[m] = (float(per_image.mean()), float(sem))
        return out

    def to_dict(self) -> dict:
        dele, ins = self.auc("deletion"), self.auc("insertion")
        return {
            "config": asdict(self.config), "resolved": self.resolved,
            "n": int(len(next(iter(self.deletion.values())))),
            "auc": {m: {"deletion": dele[m][0], "deletion_sem": dele[m][1],
                        "insertion": ins[m][0], "insertion_sem": ins[m][1]}
                    for m in self.methods},
            "fractions": self.fractions.tolist(),
            "mean_curves": {m: {"deletion": self.deletion[m].mean(0).tolist(),
                                "insertion": self.insertion[m].mean(0).tolist()}
                            for m in self.methods},
        }

    def format(self) -> str:
        """The table: AUC per method, the random baseline last."""
        dele, ins = self.auc("deletion"), self.auc("insertion")
        width = max(len(m) for m in [*self.methods, "method"])
        head = ("deletion AUC (lower is better)", "insertion AUC (higher is better)")
        cell = lambda auc: f"{auc[0]:.4f} ± {auc[1]:.4f}"  # noqa: E731
        lines = [f"{'method':<{width}}  {head[0]}  {head[1]}"]
        for m in self.methods:
            lines.append(f"{m:<{width}}  {cell(dele[m]):<{len(head[0])}}  {cell(ins[m])}")
        return "\n".join(lines)


def perturbation_curves(clf: Classifier, start: torch.Tensor, end: torch.Tensor,
                        importance: torch.Tensor, targets: torch.Tensor, steps: int
                        ) -> np.ndarray:
    """P(target) as pixels go from ``start`` to ``end``, the most important first.

    ``start``/``end``: (N, C, H, W) normalised images; ``importance``: (N, H, W).  Step k
    of ``steps`` takes round(k/steps * H*W) pixels (all channels) from ``end``.  Returns
    (N, steps + 1).  Ties keep pixel order (a stable sort), so curves are reproducible.
    """
    n, c, h, w = start.shape
    order = importance.flatten(1).argsort(dim=1, descending=True, stable=True)  # (N, HW)
    rank = torch.empty_like(order).scatter_(
        1, order, torch.arange(h * w).expand(n, -1).contiguous())               # (N, HW)
    counts = torch.round(torch.linspace(0, h * w, steps + 1)).long()            # (S+1,)
    per_batch = max(1, rows_per_batch((c, h, w)) // (steps + 1))
    out = []
    for i in range(0, n, per_batch):
        b = slice(i, i + per_batch)
        moved = rank[b, None, :] < counts[None, :, None]                  # (b, S+1, HW)
        moved = moved.view(-1, 1, h, w).to(start.device)                  # (b*(S+1), 1, H, W)
        x = torch.where(moved, end[b].repeat_interleave(steps + 1, 0),
                        start[b].repeat_interleave(steps + 1, 0))         # (b*(S+1), C, H, W)
        with torch.no_grad():
            p = torch.softmax(clf.model(clf.preprocess.resize(x)).float(), 1)
        t = targets[b].repeat_interleave(steps + 1).to(p.device)
        out.append(p.gather(1, t[:, None]).view(-1, steps + 1).cpu())
    return torch.cat(out).numpy()


def sample_images(clf: Classifier, data, n: int, seed: int, **load_options) -> torch.Tensor:
    """n test images, seeded, at the model's size and channels, (n, C, H, W) uint8.

    ``data`` is a dataset name (None: the one the model was trained on), an ImageDataset,
    or images.  Only the picked images are resized, so a 224 px model can be scored on
    CIFAR-10 without resizing all of it.
    """
    if data is None:
        data = clf.meta.dataset
        try:
            parse_dataset_name(data)
        except UsageError:
            raise UsageError(f"this model was trained on {data or 'arrays'}, which convscope "
                             "cannot load; pass a dataset as `data`.") from None
    if isinstance(data, str):
        data = load_dataset(data, **load_options)
    if isinstance(data, ImageDataset):
        data = data.test_images
    if not (isinstance(data, torch.Tensor) and data.ndim == 4):
        data = clf.as_batch(data)
    if len(data) == 0:
        raise UsageError("there are no test images to score.")
    pick = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n]
    return clf.as_batch(data[pick.sort().values])


def faithfulness(model, data=None, config: FaithfulnessConfig | None = None, *,
                 progress: bool = False, data_root=None, image_size: int | None = None,
                 **options) -> FaithfulnessResult:
    """Deletion and insertion curves of each method's maps on ``n`` test images.

    ``model``: a Classifier, model file or torchvision name; ``data``: a dataset name (None:
    the model's own), an ImageDataset, or images.  The target is each image's predicted
    class, so the data's classes need not be the model's.

    >>> r = faithfulness("runs/demo/model.safetensors", "mnist5k", n=50)   # doctest: +SKIP
    >>> print(r.format())                                                  # doctest: +SKIP
    """
    clf = as_classifier(model)
    config = replace(config or FaithfulnessConfig(), **options)
    _check(config)
    images = sample_images(clf, data, config.n, config.seed, data_root=data_root,
                           image_size=image_size, progress=progress)   # (n, C, H, W) uint8

    # ---- the maps, and a random one as the baseline
    maps = explain_many(clf, images, config.methods, replace(config.explain, target=None),
                        progress=progress)
    first = next(iter(maps.values()))
    targets = first.targets
    importance = {m: a.importance for m, a in maps.items()}
    g = torch.Generator().manual_seed(config.seed)
    importance[RANDOM] = torch.rand(first.maps.shape, generator=g)

    # ---- deletion: image -> baseline; insertion: blurred image -> image
    z = clf.preprocess.normalize(images.to(clf.device))
    sigma = max(1.0, min(z.shape[-2:]) / 16)
    gone = baseline_input(config.deletion_baseline, z, clf, sigma)
    empty = baseline_input(config.insertion_baseline, z, clf, sigma)
    deletion, insertion = {}, {}
    with progress_bar(importance, desc="deletion/insertion", unit="method",
                      enable=progress) as bar:
        for m in bar:
            deletion[m] = perturbation_curves(clf, z, gone, importance[m], targets, config.steps)
            insertion[m] = perturbation_curves(clf, empty, z, importance[m], targets,
                                               config.steps)
    return FaithfulnessResult(config, np.linspace(0, 1, config.steps + 1), deletion, insertion,
                              resolved={m: asdict(a.config) for m, a in maps.items()})


def _check(config: FaithfulnessConfig) -> None:
    if config.n < 1 or config.steps < 1:
        raise UsageError("`n` and `steps` must be at least 1.")
    if not config.methods:
        raise UsageError(f"give at least one method to score: {', '.join(METHODS)}.")
    for m in config.methods:
        if m not in METHODS:
            raise unknown_name("attribution method", m, list(METHODS))
    for kind in (config.deletion_baseline, config.insertion_baseline):
        if kind not in BASELINES:
            raise unknown_name("baseline", kind, list(BASELINES))
    if config.explain.channel is not None:
        raise UsageError("faithfulness scores class maps; drop `channel`.")
