"""Training on real data: config → run directory, exact resume, evaluation and recipes."""

from contrastkit.train.config import ConfigError, list_recipes, resolve
from contrastkit.train.encoder import MLPEncoder, SmallCNN
from contrastkit.train.model import TrainModel
from contrastkit.train.trainer import Trainer

__all__ = [
    "ConfigError",
    "MLPEncoder",
    "SmallCNN",
    "TrainModel",
    "Trainer",
    "list_recipes",
    "resolve",
]
