"""Config glue for per-image captions (``text.captions``) and their controls (``text.control``).

The captions themselves are made in :mod:`contrastkit.data.captions`; this module attaches them
to the training rows and, after the frozen text embeddings are computed, swaps those for a
control when asked. Captions are data, not training randomness: they are drawn with seed 0 for
every training seed, so a study's seeds share one caption set (and one embedding cache entry).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from contrastkit.data.dataset import ArrayDataset
from contrastkit.train.config import ConfigError

CAPTION_SEED = 0


def attach_captions(cfg: Mapping[str, Any], train: ArrayDataset) -> ArrayDataset:
    """``train`` with one measured caption per row when ``text.captions`` is on.

    Raises:
        ConfigError: captions need labelled images with class names.
    """
    if cfg["text"]["control"] != "none" and cfg["model"]["text_tower"] != "minilm-frozen":
        raise ConfigError(
            "text.control: replaces frozen text embeddings; it needs "
            "model.text_tower = 'minilm-frozen'"
        )
    if not cfg["text"]["captions"]:
        return train
    if train.labels is None or not train.is_image or not train.class_names:
        raise ConfigError("text.captions: needs labelled images with class names")
    if train.texts is not None:
        raise ConfigError("text.captions: the data already has a text per row")
    from contrastkit.data.captions import image_captions

    texts = image_captions(train.inputs, train.labels, train.class_names, seed=CAPTION_SEED)
    return replace(train, texts=texts)


def caption_class_texts(cfg: Mapping[str, Any], class_names: tuple[str, ...]) -> list[str] | None:
    """Zero-shot class descriptions from WordNet when captions are on and none are given."""
    if not cfg["text"]["captions"] or cfg["text"]["descriptions"] or not class_names:
        return None
    from contrastkit.data.captions import class_descriptions

    return class_descriptions(class_names)


def apply_control(cfg: Mapping[str, Any], train: ArrayDataset) -> ArrayDataset:
    """``train`` with its paired text embeddings replaced by ``text.control`` (if not "none")."""
    control = cfg["text"]["control"]
    if control == "none":
        return train
    if train.paired is None or train.labels is None:
        raise ConfigError("text.control: needs paired text embeddings and labels")
    from contrastkit.data.captions import control_embeddings

    return train.with_paired(control_embeddings(train.paired, train.labels, control, cfg["seed"]))
