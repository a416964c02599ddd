"""Training on real data: config → run directory, exact resume, evaluation and recipes."""

from contrastkit.train.config import ConfigError, list_recipes, resolve
from contrastkit.train.encoder import ContrastiveModel, SmallCNN
from contrastkit.train.trainer import Trainer

__all__ = ["ConfigError", "ContrastiveModel", "SmallCNN", "Trainer", "list_recipes", "resolve"]
