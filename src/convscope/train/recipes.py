"""Training recipes: named sets of defaults (and an optimiser) for TrainConfig.

``--recipe default`` is the general-purpose loop; ``--recipe fast`` is convscope's
airbench-class recipe for small natural images (CIFAR-10 and folders like it).
Options the user sets explicitly always win over the recipe's.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Recipe:
    name: str
    summary: str
    defaults: dict = field(default_factory=dict)


RECIPES = {
    "default": Recipe(
        "default",
        "any model and data: SGD (Nesterov) or AdamW, warm-up then cosine decay, flip+crop "
        "for natural images",
        {"model": "convnet", "epochs": 8, "batch_size": 128, "optimizer": "sgd",
         "label_smoothing": 0.1, "augment": "auto", "warmup_epochs": 1.0, "schedule": "cosine",
         "tta": 0, "channels_last": False},
    ),
    "fast": Recipe(
        "fast",
        "small natural images (CIFAR-10 class): fastnet, Muon on conv filters, linear decay, "
        "label smoothing 0.2, alternating flip + 2-px translation, flip/shift test-time "
        "augmentation",
        {"model": "fastnet", "epochs": 10, "batch_size": 2000, "lr": 0.053,
         "label_smoothing": 0.2, "augment": "altflip-translate", "warmup_epochs": 0.0,
         "schedule": "linear", "tta": 2, "channels_last": True, "optimizer": "muon"},
    ),
}


def list_recipes() -> list[str]:
    return list(RECIPES)
