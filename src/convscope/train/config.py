"""The one config of a training job; every run writes its resolved values to config.json."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from convscope.errors import UsageError

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "linear", "constant")
AUGMENTS = ("auto", "none", "flip", "crop", "flip-crop")
DEFAULT_LR = {"sgd": 0.05, "adamw": 2e-3}
DEFAULT_WEIGHT_DECAY = {"sgd": 5e-4, "adamw": 0.05}


@dataclass
class TrainConfig:
    """Options of ``convscope train``; ``None`` means "resolve a sensible default"."""

    data: str = "mnist5k"
    model: str = "convnet"
    epochs: int = 8
    batch_size: int = 128
    lr: float | None = None  # sgd 0.05, adamw 0.002
    optimizer: str = "sgd"  # sgd (Nesterov momentum) or adamw
    momentum: float = 0.9
    weight_decay: float | None = None  # sgd 5e-4, adamw 0.05
    schedule: str = "cosine"  # after the warm-up: cosine or linear decay to 0, or constant
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    augment: str = "auto"  # auto: flip+crop for natural images, none for digits
    seed: int = 0
    device: str = "auto"
    data_root: str | None = None
    image_size: int | None = None
    weights: str | None = None  # ILSVRC models: DEFAULT or a local state dict
    eval_batch_size: int = 512
    max_grad_norm: float | None = None  # clip the gradient norm to this before each step
    checkpoint_every: int | None = None  # also checkpoint every N steps (always every epoch)
    out: str | None = None
    #: filled in by resolve(): what the run actually used
    resolved: dict = field(default_factory=dict)

    def validate(self) -> None:
        checks = [
            (self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}"),
            (self.lr is None or self.lr > 0, f"--lr must be positive, got {self.lr}"),
            (self.optimizer in OPTIMIZERS,
             f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}"),
            (self.schedule in SCHEDULES,
             f"--schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}"),
            (self.augment in AUGMENTS,
             f"--augment must be one of {', '.join(AUGMENTS)}, got {self.augment!r}"),
            (0 <= self.label_smoothing < 1,
             f"--label-smoothing must be in [0, 1), got {self.label_smoothing}"),
            (self.warmup_epochs >= 0, f"--warmup-epochs must be >= 0, got {self.warmup_epochs}"),
            (self.weight_decay is None or self.weight_decay >= 0,
             f"--weight-decay must be >= 0, got {self.weight_decay}"),
            (0 <= self.momentum < 1, f"--momentum must be in [0, 1), got {self.momentum}"),
            (self.max_grad_norm is None or self.max_grad_norm > 0,
             f"--max-grad-norm must be positive, got {self.max_grad_norm}"),
            (self.checkpoint_every is None or self.checkpoint_every >= 1,
             f"--checkpoint-every must be at least 1, got {self.checkpoint_every}"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message + ".")

    def resolve(self) -> TrainConfig:
        """Fill in the defaults that depend on other options."""
        self.validate()
        if self.lr is None:
            self.lr = DEFAULT_LR[self.optimizer]
        if self.weight_decay is None:
            self.weight_decay = DEFAULT_WEIGHT_DECAY[self.optimizer]
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
