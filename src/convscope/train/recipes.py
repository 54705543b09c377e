"""Training recipes: named sets of defaults (and an optimiser) for TrainConfig.

``--recipe default`` is the general-purpose loop; ``--recipe fast`` is convscope's
airbench-class recipe for small natural images (CIFAR-10 and folders like it).
Options the user sets explicitly always win over the recipe's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from convscope.errors import UsageError


@dataclass(frozen=True)
class Recipe:
    name: str
    summary: str
    defaults: dict = field(default_factory=dict)
    #: what it trains: "classify", "detect" or "segment"
    task: str = "classify"


RECIPES = {
    "default": Recipe(
        "default",
        "any model and data: SGD (Nesterov) or AdamW, warm-up then cosine decay, flip+crop "
        "for natural images",
        {"model": "convnet", "epochs": 8, "batch_size": 128, "optimizer": "sgd",
         "label_smoothing": 0.1, "augment": "auto", "warmup_epochs": 1.0, "schedule": "cosine",
         "tta": 0, "channels_last": False, "backbone_lr": 0.1},
    ),
    "fast": Recipe(
        "fast",
        "small natural images (CIFAR-10 class): fastnet, Muon on conv filters, linear decay, "
        "label smoothing 0.2, alternating flip + 2-px translation, flip/shift test-time "
        "augmentation",
        {"model": "fastnet", "epochs": 10, "batch_size": 2000, "lr": 0.053,
         "label_smoothing": 0.2, "augment": "altflip-translate", "warmup_epochs": 0.0,
         "schedule": "linear", "tta": 2, "channels_last": True, "optimizer": "muon",
         "backbone_lr": 0.1},
    ),
    "detect": Recipe(
        "detect",
        "boxes (the default for detection data): FCOS on EfficientNet-Lite0 from its packaged "
        "ImageNet weights (every layer at the full rate, batch norm learning the data's "
        "statistics), AdamW, a short warm-up then cosine decay, 2 epochs; mirroring and "
        "scale-and-shift jitter for natural photos",
        {"model": "fcos:backbone=efficientnet-lite0,fpn_channels=64", "weights": "pretrained",
         "epochs": 2, "batch_size": 16, "optimizer": "adamw", "lr": 2e-3,
         "backbone_lr": 1.0, "max_grad_norm": 10.0, "label_smoothing": 0.0,
         "augment": "auto", "warmup_epochs": 0.2, "schedule": "cosine", "tta": 0,
         "channels_last": False},
        task="detect",
    ),
    "segment": Recipe(
        "segment",
        "masks (the default for segmentation data): LR-ASPP on EfficientNet-Lite0 from its "
        "packaged weights, its low-level branch at stride 4 (every layer at the full rate, "
        "batch norm learning the data's statistics), AdamW, a short warm-up then cosine "
        "decay, 3 epochs; mirroring and scale-and-shift jitter for natural photos",
        {"model": "lraspp:backbone=efficientnet-lite0", "weights": "pretrained",
         "epochs": 3, "batch_size": 16, "optimizer": "adamw", "lr": 2e-3,
         "backbone_lr": 1.0, "max_grad_norm": 10.0, "label_smoothing": 0.0,
         "augment": "auto", "warmup_epochs": 0.1, "schedule": "cosine", "tta": 0,
         "channels_last": False},
        task="segment",
    ),
}


def recipe_for(name: str, task: str) -> Recipe:
    """The recipe ``name`` for data of ``task``: "default" means the task's own default
    (``detect``, ``segment``); a recipe of another task is refused in one sentence."""
    if name == "default" and task != "classify":
        name = task
    recipe = RECIPES[name]
    if recipe.task != task:
        what = {"classify": "classification", "detect": "detection",
                "segment": "segmentation"}
        raise UsageError(f"recipe {name} trains {what[recipe.task]} models, and this data is "
                         f"for {what[task]}; leave `recipe` out (its default recipe is "
                         f"{'default' if task == 'classify' else task}).")
    return recipe


def list_recipes() -> list[str]:
    return list(RECIPES)
