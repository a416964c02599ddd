"""contrastkit: every contrastive-learning objective in one place, exact and memory-bounded."""

from contrastkit.gradcache import grad_cache_step
from contrastkit.losses import *  # noqa: F403
from contrastkit.losses import __all__ as _losses_all
from contrastkit.temperature import LearnableTemperature

__version__ = "0.1.0"
__all__ = ["LearnableTemperature", "grad_cache_step", *_losses_all]
