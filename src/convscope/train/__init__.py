"""Training: the loop, its config, optimisers and augmentation."""

from convscope.train.config import TrainConfig
from convscope.train.loop import fit

__all__ = ["TrainConfig", "fit"]
