"""The one config of a training job; every run writes its resolved values to config.json."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

from convscope.errors import ConvscopeError, UsageError, unknown_name
from convscope.train.recipes import RECIPES

OPTIMIZERS = ("sgd", "adamw", "muon")
SCHEDULES = ("cosine", "linear", "constant")
AUGMENTS = ("auto", "none", "flip", "crop", "flip-crop", "altflip-translate")
AMP = ("auto", "off", "bf16", "fp16")
DEFAULT_LR = {"sgd": 0.05, "adamw": 2e-3, "muon": 0.053}
DEFAULT_WEIGHT_DECAY = {"sgd": 5e-4, "adamw": 0.05, "muon": 0.0}


@dataclass(frozen=True)
class TrainConfig:
    """Options of ``convscope train``.  ``None`` means "the recipe's default" (see
    ``convscope.train.recipes``); ``resolve()`` returns a copy with every one filled in.

    Frozen: nothing (the trainer included) writes into a caller's config; changed values
    are new configs made with ``dataclasses.replace``.
    """

    data: str = "mnist5k"
    recipe: str = "default"
    model: str | None = None  # default recipe: convnet; fast: fastnet
    epochs: int | None = None  # default 8; fast 10
    batch_size: int | None = None  # default 128; fast 2000 (at most a tenth of the data)
    lr: float | None = None  # sgd 0.05, adamw 0.002, muon 0.053 (per example, SGD groups)
    optimizer: str | None = None  # sgd (Nesterov momentum), adamw, or muon
    momentum: float = 0.9
    weight_decay: float | None = None  # sgd 5e-4, adamw 0.05
    schedule: str | None = None  # after the warm-up: cosine or linear decay to 0, or constant
    warmup_epochs: float | None = None
    label_smoothing: float | None = None
    augment: str | None = None  # auto: flip+crop for natural images, none for digits
    tta: int | None = None  # test-time augmentation: 0 none, 1 mirror, 2 mirror + 1-px shifts
    channels_last: bool | None = None
    amp: str = "auto"  # mixed precision: auto = bf16 on CUDA, off on the CPU
    compile: bool = False  # torch.compile the model, falling back to eager if it fails
    sync_bn: bool = False  # torchrun on GPUs: batch-norm statistics over all processes
    seed: int = 0
    device: str = "auto"
    data_root: str | None = None
    image_size: int | None = None
    holdout: float | None = None  # folder datasets: test fraction or count (default 0.2), 0: none
    weights: str | None = None  # ILSVRC models: DEFAULT or a local state dict
    eval_batch_size: int = 500
    max_grad_norm: float | None = None  # clip the gradient norm to this before each step
    checkpoint_every: int | None = None  # also checkpoint every N steps (always every epoch)
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
            (self.checkpoint_every is None or self.checkpoint_every >= 1,
             f"`checkpoint_every` must be at least 1, got {self.checkpoint_every}"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message + ".")

    def resolve(self) -> TrainConfig:
        """A new config with the recipe's defaults and the defaults that depend on other
        options filled in (this one is left as it is); ``resolved["from_recipe"]`` names
        the options the recipe supplied (a config resolved before keeps its list)."""
        if self.recipe not in RECIPES:
            raise unknown_name("recipe", self.recipe, list(RECIPES))
        values = {key: value for key, value in RECIPES[self.recipe].defaults.items()
                  if getattr(self, key) is None}
        from_recipe = list(values)
        optimizer = values.get("optimizer", self.optimizer)
        if values.get("lr", self.lr) is None:
            values["lr"] = DEFAULT_LR.get(optimizer, 0.0)
        if values.get("weight_decay", self.weight_decay) is None:
            values["weight_decay"] = DEFAULT_WEIGHT_DECAY.get(optimizer, 0.0)
        resolved = {**self.resolved,
                    "from_recipe": list(self.resolved.get("from_recipe", from_recipe))}
        config = replace(self, **values, resolved=resolved)
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
